//! The exported functions over `float` logits. Each is one call into `calls.rs` behind the
//! panic boundary; the argument checks and statuses are described once, in the header's
//! introduction and on `xent_status`.

use crate::boundary::status_call;
use crate::calls::{self, BackwardCall, Batch, ForwardCall, NormalizeCall, Out, TargetsArg};
use crate::dtype::Normalization;
use crate::options::XentOptions;
use crate::status::XentStatus;

/// The fused softmax cross-entropy of `rows` rows of `cols` logits against hard targets:
/// the loss, and in the same sweep its gradient with respect to the logits when `grad` is
/// not NULL.
///
/// - `logits`: row `i` holds `cols` values from `logits + i * logits_stride`.
/// - `targets`: `rows` class indices, each in `[0, cols)` or equal to
///   `options->ignore_index`.
/// - `options`: NULL for the defaults (see `xent_options_default`).
/// - `loss` (never NULL): receives 1 value (reductions mean and sum) or `rows` values
///   (reduction none).
/// - `grad`: NULL for no gradient, or `rows` rows of `cols` values, row `i` at
///   `grad + i * grad_stride`. `grad == logits` with `grad_stride == logits_stride`
///   overwrites the logits with their gradient (in place); any other overlap is refused.
/// - `lse`: NULL, or `rows` values that receive each row's logsumexp (ignored rows
///   included), for `xent_cross_entropy_backward_f32`.
///
/// # Safety
///
/// Every non-NULL pointer points to the elements its arguments describe, readable (inputs)
/// or writable (outputs) for the duration of the call, and no other thread writes them
/// meanwhile.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the header"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_f32(
    logits: *const f32,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad: *mut f32,
    grad_stride: usize,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<f32> {
            logits: Batch {
                ptr: logits,
                rows,
                cols,
                stride: logits_stride,
            },
            targets: TargetsArg::Hard(targets),
            options,
            loss,
            grad: Out {
                ptr: grad,
                stride: grad_stride,
            },
            lse,
        };
        // SAFETY: this function's contract is `calls::forward`'s.
        unsafe { calls::forward(call) }
    })
}

/// `xent_cross_entropy_f32` against soft targets: `targets` holds `rows` rows of `cols`
/// probabilities, row `i` at `targets + i * targets_stride`. Every row counts
/// (`ignore_index` does not apply), and reduction mean divides by `rows`. The targets are
/// an input: no output may overlap them.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the header"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_soft_f32(
    logits: *const f32,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const f32,
    targets_stride: usize,
    options: *const XentOptions,
    loss: *mut f32,
    grad: *mut f32,
    grad_stride: usize,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<f32> {
            logits: Batch {
                ptr: logits,
                rows,
                cols,
                stride: logits_stride,
            },
            targets: TargetsArg::Soft {
                ptr: targets,
                stride: targets_stride,
            },
            options,
            loss,
            grad: Out {
                ptr: grad,
                stride: grad_stride,
            },
            lse,
        };
        // SAFETY: this function's contract is `calls::forward`'s.
        unsafe { calls::forward(call) }
    })
}

/// The gradient of the loss with respect to the logits from the `lse` a forward call
/// saved, written into `grad` (required; `grad == logits` with equal strides is in place).
///
/// - `lse`: the `rows` logsumexps `xent_cross_entropy_f32` wrote for these logits.
/// - `dloss`: the upstream gradient, which replaces `options->grad_scale`: 1 value
///   (reductions mean and sum) or `rows` values (reduction none).
/// - The other arguments as for `xent_cross_entropy_f32`; `lse`, `dloss` and the targets
///   are inputs, which the gradient must not overlap.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the header"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_backward_f32(
    logits: *const f32,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    lse: *const f32,
    dloss: *const f32,
    grad: *mut f32,
    grad_stride: usize,
) -> XentStatus {
    status_call(|| {
        let call = BackwardCall::<f32> {
            logits: Batch {
                ptr: logits,
                rows,
                cols,
                stride: logits_stride,
            },
            targets: TargetsArg::Hard(targets),
            options,
            lse,
            dloss,
            grad: Out {
                ptr: grad,
                stride: grad_stride,
            },
        };
        // SAFETY: this function's contract is `calls::backward`'s.
        unsafe { calls::backward(call) }
    })
}

/// Writes the softmax of each of the `rows` rows of `x` (`cols` values, row `i` at
/// `x + i * x_stride`) into `y` (row `i` at `y + i * y_stride`). `y == x` with
/// `y_stride == x_stride` is in place; any other overlap is refused.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_softmax_f32(
    x: *const f32,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f32,
    y_stride: usize,
) -> XentStatus {
    // SAFETY: this function's contract is `normalize`'s.
    unsafe { normalize(x, rows, cols, x_stride, y, y_stride, Normalization::Softmax) }
}

/// `xent_softmax_f32` writing each row's log-softmax, `x - logsumexp(x)`.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_log_softmax_f32(
    x: *const f32,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f32,
    y_stride: usize,
) -> XentStatus {
    // SAFETY: this function's contract is `normalize`'s.
    unsafe {
        normalize(
            x,
            rows,
            cols,
            x_stride,
            y,
            y_stride,
            Normalization::LogSoftmax,
        )
    }
}

/// The body of both standalone functions.
///
/// # Safety
///
/// As [`calls::normalize`].
unsafe fn normalize(
    x: *const f32,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f32,
    y_stride: usize,
    normalization: Normalization,
) -> XentStatus {
    status_call(|| {
        let call = NormalizeCall::<f32> {
            x: Batch {
                ptr: x,
                rows,
                cols,
                stride: x_stride,
            },
            y: Out {
                ptr: y,
                stride: y_stride,
            },
            normalization,
        };
        // SAFETY: forwarded to the caller.
        unsafe { calls::normalize(call) }
    })
}
