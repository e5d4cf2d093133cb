//! The exported fused linear + cross-entropy: a language-model head's loss and gradients
//! without the `rows x classes` logits, over float, bf16 and f16 values (16-bit values
//! cross the C ABI as their bit patterns: `half`'s types are `repr(transparent)` over
//! `u16`, so each pointer is cast, never converted).

use half::{bf16, f16};
use xent_core::Logit;

use crate::boundary::status_call;
use crate::calls::{self, Batch, LinearCall, Out};
use crate::options::XentOptions;
use crate::status::XentStatus;

/// The loss of the logits `hidden * weight^T + bias` (a language-model head) against hard
/// targets, and the gradients with respect to the hidden states, the weight and the bias,
/// without ever holding the `rows x classes` logits: the vocabulary is processed in chunks
/// (about 2M logits, whatever the thread count), each computed by a GEMM twice (the loss, then the
/// gradients). Every option applies, as for `xent_cross_entropy_f32` on those logits.
///
/// - `hidden`: H, `rows` rows of `dim` values, row `i` at `hidden + i * hidden_stride`.
/// - `weight`: W, `classes` rows of `dim` values (one per class, `torch.nn.Linear`'s
///   layout), row `c` at `weight + c * weight_stride`. Its rows are the vocabulary, so it
///   may be NULL only when `classes == 0` (also when `rows == 0`, unlike other buffers);
///   `classes == 0` with `rows > 0` is refused (XENT_STATUS_INVALID_SHAPE).
/// - `bias`: NULL, or `classes` values (-INFINITY masks a class).
/// - `targets`: `rows` class indices in `[0, classes)` or `options->ignore_index`.
/// - `options`: NULL for the defaults; `class_weights`, when set, holds `classes` weights.
/// - `loss` (never NULL): 1 value (mean, sum) or `rows` values (none).
/// - `grad_hidden` (`rows x dim`, stride `grad_hidden_stride`), `grad_weight`
///   (`classes x dim`, stride `grad_weight_stride`), `grad_bias` (`classes`): NULL when
///   not wanted; each given one is overwritten. No output may overlap another buffer.
/// - `lse`: NULL, or `rows` values that receive each row's logsumexp.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_linear_cross_entropy_f32(
    hidden: *const f32,
    rows: usize,
    dim: usize,
    hidden_stride: usize,
    weight: *const f32,
    classes: usize,
    weight_stride: usize,
    bias: *const f32,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad_hidden: *mut f32,
    grad_hidden_stride: usize,
    grad_weight: *mut f32,
    grad_weight_stride: usize,
    grad_bias: *mut f32,
    lse: *mut f32,
) -> XentStatus {
    // SAFETY: this function's contract is `linear`'s.
    unsafe {
        linear(
            hidden,
            rows,
            dim,
            hidden_stride,
            weight,
            classes,
            weight_stride,
            bias,
            targets,
            options,
            loss,
            grad_hidden,
            grad_hidden_stride,
            grad_weight,
            grad_weight_stride,
            grad_bias,
            lse,
        )
    }
}

/// `xent_linear_cross_entropy_f32` over bfloat16 values: `hidden`, `weight`, `bias` and the
/// three gradients are `uint16_t` bit patterns of bfloat16 values; `loss` and `lse` are `float`.
/// The GEMMs run in f32 on the exactly widened values, so `loss` and `lse` are the `_f32`
/// call's on those values, and each gradient is its result rounded once (to nearest, ties
/// to even). The working memory adds f32 copies of H and of its gradient.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_linear_cross_entropy_bf16(
    hidden: *const u16,
    rows: usize,
    dim: usize,
    hidden_stride: usize,
    weight: *const u16,
    classes: usize,
    weight_stride: usize,
    bias: *const u16,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad_hidden: *mut u16,
    grad_hidden_stride: usize,
    grad_weight: *mut u16,
    grad_weight_stride: usize,
    grad_bias: *mut u16,
    lse: *mut f32,
) -> XentStatus {
    // SAFETY: this function's contract is `linear`'s; the casts only retype the bit
    // patterns.
    unsafe {
        linear(
            hidden.cast::<bf16>(),
            rows,
            dim,
            hidden_stride,
            weight.cast::<bf16>(),
            classes,
            weight_stride,
            bias.cast::<bf16>(),
            targets,
            options,
            loss,
            grad_hidden.cast::<bf16>(),
            grad_hidden_stride,
            grad_weight.cast::<bf16>(),
            grad_weight_stride,
            grad_bias.cast::<bf16>(),
            lse,
        )
    }
}

/// `xent_linear_cross_entropy_f32` over binary16 values: `hidden`, `weight`, `bias` and the
/// three gradients are `uint16_t` bit patterns of IEEE binary16 values; `loss` and `lse` are `float`.
/// The GEMMs run in f32 on the exactly widened values, so `loss` and `lse` are the `_f32`
/// call's on those values, and each gradient is its result rounded once (to nearest, ties
/// to even). The working memory adds f32 copies of H and of its gradient.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_linear_cross_entropy_f16(
    hidden: *const u16,
    rows: usize,
    dim: usize,
    hidden_stride: usize,
    weight: *const u16,
    classes: usize,
    weight_stride: usize,
    bias: *const u16,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad_hidden: *mut u16,
    grad_hidden_stride: usize,
    grad_weight: *mut u16,
    grad_weight_stride: usize,
    grad_bias: *mut u16,
    lse: *mut f32,
) -> XentStatus {
    // SAFETY: this function's contract is `linear`'s; the casts only retype the bit
    // patterns.
    unsafe {
        linear(
            hidden.cast::<f16>(),
            rows,
            dim,
            hidden_stride,
            weight.cast::<f16>(),
            classes,
            weight_stride,
            bias.cast::<f16>(),
            targets,
            options,
            loss,
            grad_hidden.cast::<f16>(),
            grad_hidden_stride,
            grad_weight.cast::<f16>(),
            grad_weight_stride,
            grad_bias.cast::<f16>(),
            lse,
        )
    }
}

/// The body of every export: the C arguments as a `calls::linear` call behind the panic
/// boundary.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
unsafe fn linear<T: Logit<Stat = f32>>(
    hidden: *const T,
    rows: usize,
    dim: usize,
    hidden_stride: usize,
    weight: *const T,
    classes: usize,
    weight_stride: usize,
    bias: *const T,
    targets: *const i64,
    options: *const XentOptions,
    loss: *mut f32,
    grad_hidden: *mut T,
    grad_hidden_stride: usize,
    grad_weight: *mut T,
    grad_weight_stride: usize,
    grad_bias: *mut T,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let call = LinearCall {
            hidden: Batch {
                ptr: hidden,
                rows,
                cols: dim,
                stride: hidden_stride,
            },
            weight: Batch {
                ptr: weight,
                rows: classes,
                cols: dim,
                stride: weight_stride,
            },
            bias,
            targets,
            options,
            loss,
            grad_hidden: Out {
                ptr: grad_hidden,
                stride: grad_hidden_stride,
            },
            grad_weight: Out {
                ptr: grad_weight,
                stride: grad_weight_stride,
            },
            grad_bias,
            lse,
        };
        // SAFETY: this function's contract is `calls::linear`'s.
        unsafe { calls::linear(call) }
    })
}
