//! `xent_cross_entropy_backward_<dtype>`: the gradient from the logsumexp a forward call
//! saved and the upstream gradient.

use xent::{Logit, bf16, f16};

use crate::args::{CheckedTargets, TargetsArg, Write};
use crate::boundary::status_call;
use crate::options::{CallOptions, XentOptions};
use crate::raw::{Buffer, StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

macro_rules! export {
    ($($name:ident: $t:ty as $c:ty, $stat:ty;)*) => {$(
        /// The gradient of the loss with respect to the logits from the `lse` a forward call
        /// saved, written into `grad` (required; `grad == logits` with equal strides is in
        /// place). Each row is read twice and divided by its own sum of exp(x - lse), so the
        /// saved lse's rounding does not reach the gradient however large the logits.
        ///
        /// - `lse`: the `rows` logsumexps the cross-entropy function of the same element
        ///   type wrote for these logits.
        /// - `dloss`: the upstream gradient, which replaces `options->grad_scale`: 1 value
        ///   (reductions mean and sum) or `rows` values (reduction none).
        /// - The other arguments as for the cross-entropy function; `lse`, `dloss` and the
        ///   targets are inputs, which the gradient must not overlap.
        ///
        /// # Safety
        ///
        /// As `xent_cross_entropy_f32`.
        #[allow(clippy::too_many_arguments, reason = "the C signature")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            logits: *const $c,
            rows: usize,
            cols: usize,
            logits_stride: usize,
            targets: *const i64,
            options: *const XentOptions,
            lse: *const $stat,
            dloss: *const $stat,
            grad: *mut $c,
            grad_stride: usize,
        ) -> XentStatus {
            status_call(|| {
                let logits = StridedBuffer::new(logits.cast::<$t>(), rows, cols, logits_stride)?;
                let targets = TargetsArg::Hard(targets);
                let grad = (grad.cast::<$t>(), grad_stride);
                // SAFETY: this function's contract is `backward`'s.
                unsafe { backward(logits, targets, options, lse, dloss, grad) }
            })
        }
    )*};
}

export! {
    xent_cross_entropy_backward_f32: f32 as f32, f32;
    xent_cross_entropy_backward_bf16: bf16 as u16, f32;
    xent_cross_entropy_backward_f16: f16 as u16, f32;
    xent_cross_entropy_backward_f64: f64 as f64, f64;
}

/// The body of the backward functions.
///
/// # Safety
///
/// As [`forward`](crate::cross_entropy::forward).
unsafe fn backward<T: Logit>(
    logits: StridedBuffer<T>,
    targets: TargetsArg,
    options: *const XentOptions,
    lse: *const T::Stat,
    dloss: *const T::Stat,
    (grad, grad_stride): (*mut T, usize),
) -> Result<(), XentStatus> {
    let (rows, cols) = (logits.rows(), logits.cols());
    let targets = CheckedTargets::new(targets, rows, cols)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(options, cols) }?;
    let lse = Buffer::new(lse, rows)?;
    let dloss = Buffer::new(dloss, options.reduction.loss_len(rows))?;
    let grad = logits.write_to(grad, grad_stride)?;
    check_disjoint(
        &[Some(grad.output_bytes())],
        &[
            grad.input_bytes(),
            Some(targets.bytes()),
            Some(lse.bytes()),
            Some(dloss.bytes()),
            options.weight_bytes(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the gradient, the only
    // output, was just checked disjoint from every input (in place, the logits it replaces
    // have no other view).
    let (write, targets, options, lse, dloss) = unsafe {
        (
            grad.views()?,
            targets.view()?,
            options.to_core(),
            lse.as_slice(),
            dloss.as_slice(),
        )
    };
    threads::run(|| match write {
        Write::Separate(x, grad) => {
            xent::cross_entropy_backward(x, targets, &options, lse, dloss, grad)
        }
        Write::InPlace(x) => {
            xent::cross_entropy_backward_in_place(x, targets, &options, lse, dloss)
        }
    })?;
    Ok(())
}
