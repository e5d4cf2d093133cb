//! The exported functions over bf16 (bfloat16) logits, suffix `_bf16`: the five of
//! `abi_f32.rs`, with the same arguments, checks and statuses. The logits, gradients and
//! softmax outputs cross the C ABI as their bit patterns (`uint16_t`): `half::bf16` is
//! `repr(transparent)` over `u16`, so each pointer is cast, never converted. Loss, lse,
//! `dloss` and soft targets stay `float`. Each function is one call into `calls.rs` behind
//! the panic boundary.

use half::bf16;

use crate::boundary::status_call;
use crate::calls::{self, BackwardCall, Batch, ForwardCall, NormalizeCall, Out, TargetsArg};
use crate::dtype::Normalization;
use crate::options::XentOptions;
use crate::status::XentStatus;

/// `xent_cross_entropy_f32` over bf16 logits: the fused softmax cross-entropy of `rows`
/// rows of `cols` bf16 logits against hard targets, and in the same sweep its gradient
/// with respect to the logits when `grad` is not NULL.
///
/// - `logits`: bf16 values as their bit patterns; row `i` holds `cols` values from
///   `logits + i * logits_stride` (strides count elements, not bytes).
/// - `targets`: `rows` class indices, each in `[0, cols)` or equal to
///   `options->ignore_index`.
/// - `options`: NULL for the defaults (see `xent_options_default`).
/// - `loss` (never NULL, `float`): receives 1 value (reductions mean and sum) or `rows`
///   values (reduction none).
/// - `grad`: NULL for no gradient, or `rows` rows of `cols` bf16 values, row `i` at
///   `grad + i * grad_stride`. `grad == logits` with `grad_stride == logits_stride`
///   overwrites the logits with their gradient (in place); any other overlap is refused.
/// - `lse`: NULL, or `rows` `float` values that receive each row's logsumexp (ignored rows
///   included), for `xent_cross_entropy_backward_bf16`.
///
/// Rounding: the logits are widened to f32 (exactly) and everything is computed in f32, as
/// `xent_cross_entropy_f32` computes it on the widened logits: `loss` and `lse` are that
/// call's floats, bit for bit, and each gradient entry is its gradient entry rounded once
/// to bf16 (to nearest, ties to even).
///
/// # Safety
///
/// Every non-NULL pointer points to the elements its arguments describe (2 bytes each for
/// the bf16 buffers), readable (inputs) or writable (outputs) for the duration of the call,
/// and no other thread writes them meanwhile.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_bf16(
    logits: *const u16,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad: *mut u16,
    grad_stride: usize,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<bf16> {
            logits: Batch {
                ptr: logits.cast::<bf16>(),
                rows,
                cols,
                stride: logits_stride,
            },
            targets: TargetsArg::Hard(targets),
            options,
            loss,
            grad: Out {
                ptr: grad.cast::<bf16>(),
                stride: grad_stride,
            },
            lse,
        };
        // SAFETY: this function's contract is `calls::forward`'s.
        unsafe { calls::forward(call) }
    })
}

/// `xent_cross_entropy_bf16` against soft targets: `targets` holds `rows` rows of `cols`
/// probabilities as `float` (f32 for every logits type), row `i` at
/// `targets + i * targets_stride`. Every row counts (`ignore_index` does not apply), and
/// reduction mean divides by `rows`. The targets are an input: no output may overlap them.
/// Loss, lse and gradient are `xent_cross_entropy_soft_f32`'s on the widened logits, the
/// gradient rounded once to bf16 (to nearest, ties to even).
///
/// # Safety
///
/// As `xent_cross_entropy_bf16`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_soft_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_soft_bf16(
    logits: *const u16,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const f32,
    targets_stride: usize,
    options: *const XentOptions,
    loss: *mut f32,
    grad: *mut u16,
    grad_stride: usize,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let call = ForwardCall::<bf16> {
            logits: Batch {
                ptr: logits.cast::<bf16>(),
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
                ptr: grad.cast::<bf16>(),
                stride: grad_stride,
            },
            lse,
        };
        // SAFETY: this function's contract is `calls::forward`'s.
        unsafe { calls::forward(call) }
    })
}

/// The gradient of the loss with respect to bf16 logits from the `lse` a forward call
/// saved, written into `grad` (bf16, required; `grad == logits` with equal strides is in
/// place).
///
/// - `lse`: the `rows` logsumexps (`float`) `xent_cross_entropy_bf16` wrote for these
///   logits.
/// - `dloss`: the upstream gradient (`float`), which replaces `options->grad_scale`: 1
///   value (reductions mean and sum) or `rows` values (reduction none).
/// - The other arguments as for `xent_cross_entropy_bf16`; `lse`, `dloss` and the targets
///   are inputs, which the gradient must not overlap.
///
/// Each gradient entry is `xent_cross_entropy_backward_f32`'s on the widened logits,
/// rounded once to bf16 (to nearest, ties to even).
///
/// # Safety
///
/// As `xent_cross_entropy_bf16`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is xent_cross_entropy_backward_f32's"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_cross_entropy_backward_bf16(
    logits: *const u16,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    targets: *const i64,
    options: *const XentOptions,
    lse: *const f32,
    dloss: *const f32,
    grad: *mut u16,
    grad_stride: usize,
) -> XentStatus {
    status_call(|| {
        let call = BackwardCall::<bf16> {
            logits: Batch {
                ptr: logits.cast::<bf16>(),
                rows,
                cols,
                stride: logits_stride,
            },
            targets: TargetsArg::Hard(targets),
            options,
            lse,
            dloss,
            grad: Out {
                ptr: grad.cast::<bf16>(),
                stride: grad_stride,
            },
        };
        // SAFETY: this function's contract is `calls::backward`'s.
        unsafe { calls::backward(call) }
    })
}

/// Writes the softmax of each of the `rows` rows of `x` (bf16 bit patterns, `cols` values,
/// row `i` at `x + i * x_stride`) into `y` (bf16, row `i` at `y + i * y_stride`).
/// `y == x` with `y_stride == x_stride` is in place; any other overlap is refused. Each
/// value is `xent_softmax_f32`'s on the widened rows, rounded once to bf16 (to nearest,
/// ties to even).
///
/// # Safety
///
/// As `xent_cross_entropy_bf16`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_softmax_bf16(
    x: *const u16,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut u16,
    y_stride: usize,
) -> XentStatus {
    // SAFETY: this function's contract is `normalize`'s.
    unsafe { normalize(x, rows, cols, x_stride, y, y_stride, Normalization::Softmax) }
}

/// `xent_softmax_bf16` writing each row's log-softmax, `x - logsumexp(x)`: computed in f32
/// as by `xent_log_softmax_f32` and rounded once to bf16 (to nearest, ties to even).
///
/// # Safety
///
/// As `xent_cross_entropy_bf16`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_log_softmax_bf16(
    x: *const u16,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut u16,
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
    x: *const u16,
    rows: usize,
    cols: usize,
    x_stride: usize,
    y: *mut u16,
    y_stride: usize,
    normalization: Normalization,
) -> XentStatus {
    status_call(|| {
        let call = NormalizeCall::<bf16> {
            x: Batch {
                ptr: x.cast::<bf16>(),
                rows,
                cols,
                stride: x_stride,
            },
            y: Out {
                ptr: y.cast::<bf16>(),
                stride: y_stride,
            },
            normalization,
        };
        // SAFETY: forwarded to the caller.
        unsafe { calls::normalize(call) }
    })
}
