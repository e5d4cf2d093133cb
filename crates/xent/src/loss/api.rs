//! The public cross-entropy functions: each checks its arguments and runs the driver.

use crate::batch_io::BatchIo;
use crate::dtype::Logit;
use crate::error::Result;
use crate::options::Options;
use crate::rows::{Rows, RowsMut, Targets};

use super::driver::{run_backward, run_forward};

/// The loss of a batch, without a gradient.
///
/// `loss` holds 1 value (reduction mean or sum) or one per row (none); `lse`, when given,
/// receives every row's logsumexp (ignored rows included). Every check runs before any
/// output is written.
///
/// ```
/// use xent::{Options, Rows};
///
/// let logits = [2.0f32, 1.0, 0.1, 0.5, 2.5, -1.0];
/// let batch = Rows::packed(&logits, 3)?;
/// let mut loss = [0.0f32];
/// let mut lse = [0.0f32; 2];
/// xent::cross_entropy(batch, &[0i64, 1][..], &Options::default(), &mut loss, Some(&mut lse))?;
/// let expected = ((lse[0] - 2.0) + (lse[1] - 2.5)) / 2.0;
/// assert!((loss[0] - expected).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(BatchIo::Forward(logits), targets.into(), options, loss, lse)
}

/// The loss of a batch and its gradient with respect to the logits, in one sweep, with the
/// gradient written into `grad` (the logits' shape, any stride).
///
/// ```
/// use xent::{Options, Rows, RowsMut};
///
/// let logits = [1.0f32, 2.0, 3.0];
/// let mut grad = [0.0f32; 3];
/// let mut loss = [0.0f32];
/// xent::cross_entropy_grad(
///     Rows::packed(&logits, 3)?,
///     &[2i64][..],
///     &Options::default(),
///     &mut loss,
///     RowsMut::packed(&mut grad, 3)?,
///     None,
/// )?;
/// // The gradient is softmax minus the one-hot target: its entries sum to 0.
/// assert!(grad.iter().sum::<f32>().abs() < 1e-6);
/// assert!(grad[2] < 0.0 && grad[0] > 0.0);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_grad<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    grad: RowsMut<'_, T>,
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(
        BatchIo::Separate(logits, grad),
        targets.into(),
        options,
        loss,
        lse,
    )
}

/// The loss of a batch, with the logits overwritten by their gradient (padding untouched).
/// On error the logits are unchanged.
///
/// ```
/// use xent::{Options, RowsMut};
///
/// let mut logits = vec![0.0f32; 4]; // one row, uniform
/// let mut loss = [0.0f32];
/// xent::cross_entropy_grad_in_place(
///     RowsMut::packed(&mut logits, 4)?,
///     &[1i64][..],
///     &Options::default(),
///     &mut loss,
///     None,
/// )?;
/// assert!((loss[0] - 4f32.ln()).abs() < 1e-6);
/// assert_eq!(logits, [0.25, -0.75, 0.25, 0.25]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_grad_in_place<'t, T: Logit>(
    logits: RowsMut<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(BatchIo::InPlace(logits), targets.into(), options, loss, lse)
}

/// The gradient with respect to the logits from the `lse` a forward call saved, written
/// into `grad`. `dloss` is the upstream gradient and replaces `options.grad_scale`: 1 value
/// for reduction mean or sum, one per row for none. Each row is read twice and divided by
/// its own Σ exp(x' − lse), so the saved lse's rounding does not reach the gradient at any
/// |lse| (docs/semantics.md).
///
/// ```
/// use xent::{Options, Rows, RowsMut};
///
/// let logits = [0.5f32, -1.0, 2.0, 0.0];
/// let batch = Rows::packed(&logits, 2)?;
/// let targets = [1i64, 0];
/// let (mut loss, mut lse) = ([0.0f32], [0.0f32; 2]);
/// xent::cross_entropy(batch, &targets[..], &Options::default(), &mut loss, Some(&mut lse))?;
///
/// let mut grad = [0.0f32; 4];
/// xent::cross_entropy_backward(
///     batch, &targets[..], &Options::default(), &lse, &[1.0], RowsMut::packed(&mut grad, 2)?,
/// )?;
/// assert!((grad[0] + grad[1]).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_backward<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[T::Stat],
    dloss: &[T::Stat],
    grad: RowsMut<'_, T>,
) -> Result<()> {
    run_backward(
        BatchIo::Separate(logits, grad),
        targets.into(),
        options,
        lse,
        dloss,
    )
}

/// [`cross_entropy_backward`] with the logits overwritten by their gradient.
///
/// ```
/// use xent::{Options, Reduction, RowsMut};
///
/// let mut logits = [0.0f32, 0.0];
/// let lse = [2f32.ln()];
/// let options = Options { reduction: Reduction::None, ..Options::default() };
/// xent::cross_entropy_backward_in_place(
///     RowsMut::packed(&mut logits, 2)?, &[0i64][..], &options, &lse, &[2.0],
/// )?;
/// assert_eq!(logits, [-1.0, 1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_backward_in_place<'t, T: Logit>(
    logits: RowsMut<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[T::Stat],
    dloss: &[T::Stat],
) -> Result<()> {
    run_backward(
        BatchIo::InPlace(logits),
        targets.into(),
        options,
        lse,
        dloss,
    )
}
