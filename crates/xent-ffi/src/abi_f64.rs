//! The exported functions over f64 (`double`) logits, suffix `_f64`: the five of
//! `abi_f32.rs`, with the same arguments, checks and statuses. Logits, gradients, softmax
//! outputs, loss, lse and `dloss` are `double`; soft targets stay `float` (f32
//! probabilities, as for every logits type). The core crate computes f64 logits in f64
//! throughout, so nothing is rounded to a narrower type. Each function is one call into
//! `calls.rs` behind the panic boundary.

use crate::boundary::status_call;
use crate::calls::{self, BackwardCall, Batch, ForwardCall, NormalizeCall, Out, TargetsArg};
use crate::dtype::Normalization;
use crate::options::XentOptions;
use crate::status::XentStatus;

/// `xent_cross_entropy_f32` over `double` logits: the fused softmax cross-entropy of `rows`
/// rows of `cols` logits against hard targets, and in the same sweep its gradient with
/// respect to the logits when `grad` is not NULL.
///
/// - `logits`: row `i` holds `cols` values from `logits + i * logits_stride` (strides
///   count elements, not bytes).
/// - `targets`: `rows` class indices, each in `[0, cols)` or equal to
///   `options->ignore_index`.
/// - `options`: NULL for the defaults (see `xent_options_default`); its values (`float`)
///   are widened to double exactly.
/// - `loss` (never NULL, `double`): receives 1 value (reductions mean and sum) or `rows`
///   values (reduction none).
/// - `grad`: NULL for no gradient, or `rows` rows of `cols` `double` values, row `i` at
///   `grad + i * grad_stride`. `grad == logits` with `grad_stride == logits_stride`
///   overwrites the logits with their gradient (in place); any other overlap is refused.
/// - `lse`: NULL, or `rows` `double` values that receive each row's logsumexp (ignored rows
///   included), for `xent_cross_entropy_backward_f64`.
///
/// Precision: computed in f64 throughout, one element at a time with the standard
/// library's exp, ln and tanh (no SIMD); no intermediate is rounded to f32 or to a 16-bit
/// type.
///
/// # Safety
///
/// Every non-NULL pointer points to the elements its arguments describe (8 bytes each for
/// the `double` buffers, which must be aligned for `double`), readable (inputs) or writable
/// (outputs) for the duration of the call, and no other thread writes them meanwhile.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_f64(
    logits: *const f64,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f64,
    grad: *mut f64,
    grad_stride: usize,
    lse: *mut f64,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<f64> {
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

/// `xent_cross_entropy_f64` against soft targets: `targets` holds `rows` rows of `cols`
/// probabilities as `float` (f32 for every logits type, `double` logits included), row `i`
/// at `targets + i * targets_stride`; each is widened to double exactly. Every row counts
/// (`ignore_index` does not apply), and reduction mean divides by `rows`. The targets are
/// an input: no output may overlap them. Loss, lse and gradient are `double`, computed in
/// f64 throughout.
///
/// # Safety
///
/// As `xent_cross_entropy_f64`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_soft_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_soft_f64(
    logits: *const f64,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const f32,
    targets_stride: usize,
    options: *const XentOptions,
    loss: *mut f64,
    grad: *mut f64,
    grad_stride: usize,
    lse: *mut f64,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<f64> {
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

/// The gradient of the loss with respect to `double` logits from the `lse` a forward call
/// saved, written into `grad` (`double`, required; `grad == logits` with equal strides is
/// in place).
///
/// - `lse`: the `rows` logsumexps (`double`) `xent_cross_entropy_f64` wrote for these
///   logits.
/// - `dloss`: the upstream gradient (`double`), which replaces `options->grad_scale`: 1
///   value (reductions mean and sum) or `rows` values (reduction none).
/// - The other arguments as for `xent_cross_entropy_f64`; `lse`, `dloss` and the targets
///   are inputs, which the gradient must not overlap.
///
/// Computed in f64 throughout, as by `xent_cross_entropy_f64`.
///
/// # Safety
///
/// As `xent_cross_entropy_f64`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_backward_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_backward_f64(
    logits: *const f64,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    lse: *const f64,
    dloss: *const f64,
    grad: *mut f64,
    grad_stride: usize,
) -> XentStatus {
    status_call(|| {
        let call = BackwardCall::<f64> {
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

/// Writes the softmax of each of the `rows` rows of `x` (`double`, `cols` values, row `i`
/// at `x + i * x_stride`) into `y` (`double`, row `i` at `y + i * y_stride`). `y == x` with
/// `y_stride == x_stride` is in place; any other overlap is refused. Computed in f64 one
/// element at a time with the standard library's exp.
///
/// # Safety
///
/// As `xent_cross_entropy_f64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_softmax_f64(
    x: *const f64,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f64,
    y_stride: usize,
) -> XentStatus {
    // SAFETY: this function's contract is `normalize`'s.
    unsafe { normalize(x, rows, cols, x_stride, y, y_stride, Normalization::Softmax) }
}

/// `xent_softmax_f64` writing each row's log-softmax, `x - logsumexp(x)`, computed in f64
/// with the standard library's exp and ln.
///
/// # Safety
///
/// As `xent_cross_entropy_f64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_log_softmax_f64(
    x: *const f64,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f64,
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
    x: *const f64,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut f64,
    y_stride: usize,
    normalization: Normalization,
) -> XentStatus {
    status_call(|| {
        let call = NormalizeCall::<f64> {
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
