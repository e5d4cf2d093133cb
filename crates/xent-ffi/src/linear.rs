//! `xent_linear_cross_entropy_<dtype>`: a language-model head's loss and gradients from its
//! hidden states, weight and bias, without the `rows x classes` logits.

use xent::{LinearGrads, LinearHead, bf16, f16};

use crate::boundary::status_call;
use crate::options::{CallOptions, XentOptions};
use crate::raw::{Buffer, StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

macro_rules! export {
    ($($name:ident: $t:ty as $c:ty;)*) => {$(
        /// The loss of the logits `hidden * weight^T + bias` (a language-model head) against
        /// hard targets, and the gradients with respect to the hidden states, the weight and
        /// the bias, without ever holding the `rows x classes` logits: the vocabulary is
        /// processed in chunks (about 2M logits, whatever the thread count), each computed by
        /// a GEMM twice (the loss, then the gradients). Every option applies, as for the
        /// cross-entropy function on those logits.
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
        ///
        /// Over bf16 and f16, the values are `uint16_t` bit patterns, `loss` and `lse` are
        /// `float`: the GEMMs run in f32 on the exactly widened values, so `loss` and `lse`
        /// are the `_f32` call's on those values, and each gradient is its result rounded
        /// once (to nearest, ties to even). The working memory adds f32 copies of H and of
        /// its gradient.
        ///
        /// # Safety
        ///
        /// As `xent_cross_entropy_f32`.
        #[allow(clippy::too_many_arguments, reason = "the C signature")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            hidden: *const $c,
            rows: usize,
            dim: usize,
            hidden_stride: usize,
            weight: *const $c,
            classes: usize,
            weight_stride: usize,
            bias: *const $c,
            targets: *const i64,
            options: *const XentOptions,
            loss: *mut f32,
            grad_hidden: *mut $c,
            grad_hidden_stride: usize,
            grad_weight: *mut $c,
            grad_weight_stride: usize,
            grad_bias: *mut $c,
            lse: *mut f32,
        ) -> XentStatus {
            status_call(|| {
                let hidden = StridedBuffer::new(hidden.cast::<$t>(), rows, dim, hidden_stride)?;
                // The weight's rows are the vocabulary: required whenever there are classes,
                // also without rows; and rows need classes (a shape, so before the overlaps).
                if rows > 0 && classes == 0 {
                    return Err(XentStatus::InvalidShape);
                }
                let weight = StridedBuffer::new(weight.cast::<$t>(), classes, dim, weight_stride)?;
                let bias = Buffer::optional(bias.cast::<$t>(), classes)?;
                let targets = Buffer::new(targets, rows)?;
                // SAFETY: C's contract: NULL or a readable xent_options.
                let options = unsafe { CallOptions::read(options, classes) }?;
                let loss = Buffer::required(loss, options.reduction.loss_len(rows))?;
                let grad_hidden = grad_hidden.cast::<$t>();
                let grad_hidden = optional_rows(grad_hidden, rows, dim, grad_hidden_stride)?;
                let grad_weight = grad_weight.cast::<$t>();
                let grad_weight = optional_rows(grad_weight, classes, dim, grad_weight_stride)?;
                let grad_bias = Buffer::optional(grad_bias.cast::<$t>(), classes)?;
                let lse = Buffer::optional(lse, rows)?;
                check_disjoint(
                    &[
                        Some(loss.bytes()),
                        grad_hidden.as_ref().map(StridedBuffer::bytes),
                        grad_weight.as_ref().map(StridedBuffer::bytes),
                        grad_bias.as_ref().map(Buffer::bytes),
                        lse.as_ref().map(Buffer::bytes),
                    ],
                    &[
                        Some(hidden.bytes()),
                        Some(weight.bytes()),
                        bias.as_ref().map(Buffer::bytes),
                        Some(targets.bytes()),
                        options.weight_bytes(),
                    ],
                )?;
                // SAFETY: C's contract makes every buffer valid for this call; the outputs were
                // just checked disjoint from each other and from every input, so each exclusive
                // view is the only reference to its memory.
                let (head, grads, targets, options, loss, lse) = unsafe {
                    let head = LinearHead {
                        hidden: hidden.as_rows()?,
                        weight: weight.as_rows()?,
                        bias: bias.map(|b| b.as_slice()),
                    };
                    let grads = LinearGrads {
                        hidden: grad_hidden.map(|g| g.as_rows_mut()).transpose()?,
                        weight: grad_weight.map(|g| g.as_rows_mut()).transpose()?,
                        bias: grad_bias.map(|g| g.as_mut_slice()),
                    };
                    (
                        head,
                        grads,
                        targets.as_slice(),
                        options.to_core(),
                        loss.as_mut_slice(),
                        lse.map(|lse| lse.as_mut_slice()),
                    )
                };
                threads::run(|| {
                    xent::linear_cross_entropy(head, targets, &options, loss, grads, lse)
                })?;
                Ok(())
            })
        }
    )*};
}

export! {
    xent_linear_cross_entropy_f32: f32 as f32;
    xent_linear_cross_entropy_bf16: bf16 as u16;
    xent_linear_cross_entropy_f16: f16 as u16;
}

/// An optional output batch: NULL means "not wanted".
fn optional_rows<T>(
    ptr: *mut T,
    rows: usize,
    cols: usize,
    stride: usize,
) -> Result<Option<StridedBuffer<T>>, XentStatus> {
    (!ptr.is_null())
        .then(|| StridedBuffer::new(ptr, rows, cols, stride))
        .transpose()
}
