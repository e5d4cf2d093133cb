//! `xent_cross_entropy_<dtype>`: the fused loss against hard targets, and its gradient in
//! the same sweep when asked for. Its body, [`forward`], is also the soft-target form's.

use xent::{Logit, bf16, f16};

use crate::args::{BatchIo, CheckedTargets, ForwardOut, TargetsArg, Write};
use crate::boundary::status_call;
use crate::options::{CallOptions, XentOptions};
use crate::raw::{StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

macro_rules! export {
    ($($name:ident: $t:ty as $c:ty, $stat:ty;)*) => {$(
        /// The fused softmax cross-entropy of `rows` rows of `cols` logits against hard
        /// targets: the loss, and in the same sweep its gradient with respect to the logits
        /// when `grad` is not NULL.
        ///
        /// - `logits`: row `i` holds `cols` values from `logits + i * logits_stride`.
        /// - `targets`: `rows` class indices, each in `[0, cols)` or equal to
        ///   `options->ignore_index`.
        /// - `options`: NULL for the defaults (see `xent_options_default`).
        /// - `loss` (never NULL): receives 1 value (reductions mean and sum) or `rows` values
        ///   (reduction none).
        /// - `grad`: NULL for no gradient, or `rows` rows of `cols` values, row `i` at
        ///   `grad + i * grad_stride`. `grad == logits` with `grad_stride == logits_stride`
        ///   overwrites the logits with their gradient (in place); any other overlap is
        ///   refused.
        /// - `lse`: NULL, or `rows` values that receive each row's logsumexp (ignored rows
        ///   included), for the backward function of the same element type.
        ///
        /// # Safety
        ///
        /// Every non-NULL pointer points to the elements its arguments describe, readable
        /// (inputs) or writable (outputs) for the duration of the call, and no other thread
        /// writes them meanwhile.
        #[allow(clippy::too_many_arguments, reason = "the C signature")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            logits: *const $c,
            rows: usize,
            cols: usize,
            logits_stride: usize,
            targets: *const i64,
            options: *const XentOptions,
            loss: *mut $stat,
            grad: *mut $c,
            grad_stride: usize,
            lse: *mut $stat,
        ) -> XentStatus {
            status_call(|| {
                let logits = StridedBuffer::new(logits.cast::<$t>(), rows, cols, logits_stride)?;
                let targets = TargetsArg::Hard(targets);
                let grad = (grad.cast::<$t>(), grad_stride);
                // SAFETY: this function's contract is `forward`'s.
                unsafe { forward(logits, targets, options, loss, grad, lse) }
            })
        }
    )*};
}

export! {
    xent_cross_entropy_f32: f32 as f32, f32;
    xent_cross_entropy_bf16: bf16 as u16, f32;
    xent_cross_entropy_f16: f16 as u16, f32;
    xent_cross_entropy_f64: f64 as f64, f64;
}

/// The body of the forward functions, hard or soft targets: checks the arguments after the
/// logits in order, then the overlaps, then calls the core crate.
///
/// # Safety
///
/// The C contract of the exported functions: every non-NULL pointer points to memory valid
/// for the elements its arguments describe (reads for inputs, writes for outputs) for the
/// duration of the call, and no other thread writes any of it meanwhile.
pub(crate) unsafe fn forward<T: Logit>(
    logits: StridedBuffer<T>,
    targets: TargetsArg,
    options: *const XentOptions,
    loss: *mut T::Stat,
    grad: (*mut T, usize),
    lse: *mut T::Stat,
) -> Result<(), XentStatus> {
    let (rows, cols) = (logits.rows(), logits.cols());
    let targets = CheckedTargets::new(targets, rows, cols)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(options, cols) }?;
    let out = ForwardOut::new(logits, (loss, options.reduction.loss_len(rows)), grad, lse)?;
    let inputs = [
        out.logit_bytes(),
        Some(targets.bytes()),
        options.weight_bytes(),
    ];
    check_disjoint(&out.output_bytes(), &inputs)?;
    // SAFETY: C's contract makes every buffer valid for this call; the outputs (loss, grad,
    // lse) were just checked disjoint from each other and from every input, so each
    // exclusive view is the only reference to its memory (in place, the logits the
    // gradient replaces have no other view).
    let ((pass, loss, lse), targets, options) =
        unsafe { (out.views()?, targets.view()?, options.to_core()) };
    threads::run(|| match pass {
        BatchIo::Read(x) => xent::cross_entropy(x, targets, &options, loss, lse),
        BatchIo::Write(Write::Separate(x, grad)) => {
            xent::cross_entropy_grad(x, targets, &options, loss, grad, lse)
        }
        BatchIo::Write(Write::InPlace(x)) => {
            xent::cross_entropy_grad_in_place(x, targets, &options, loss, lse)
        }
    })?;
    Ok(())
}
