//! `xent_linear_cross_entropy_<dtype>` and `xent_linear_cross_entropy_backward_<dtype>`: a
//! language-model head's loss and gradients from its hidden states, weight and bias,
//! without the `rows x classes` logits; the backward from a saved lse and an upstream
//! gradient.

use xent::{LinearGrads, LinearHead, bf16, f16};

use crate::boundary::status_call;
use crate::options::{CallOptions, XentOptions};
use crate::raw::{Buffer, StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

macro_rules! export {
    ($($name:ident, $backward:ident: $t:ty as $c:ty;)*) => {$(
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
        /// - `next_token`: 0, or next-token prediction without a shifted copy: the rows are
        ///   sequences of `next_token` positions each (`rows` a multiple of it, else
        ///   XENT_STATUS_INVALID_SHAPE), `targets` holds their tokens, and row `i` is scored
        ///   against `targets[i + 1]`, the last position of each sequence ignored (no loss,
        ///   no gradient, not counted in the mean).
        /// - `options`: NULL for the defaults; `class_weights`, when set, holds `classes` weights.
        /// - `loss` (never NULL): 1 value (mean, sum) or `rows` values (none).
        /// - `grad_hidden` (`rows x dim`, stride `grad_hidden_stride`), `grad_weight`
        ///   (`classes x dim`, stride `grad_weight_stride`), `grad_bias` (`classes`): NULL when
        ///   not wanted; each given one is overwritten. No output may overlap another buffer.
        /// - `lse`: NULL, or `rows` values that receive each row's logsumexp.
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
            next_token: usize,
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
                let raw = RawHead {
                    hidden: (hidden.cast::<$t>(), rows, dim, hidden_stride),
                    weight: (weight.cast::<$t>(), classes, weight_stride),
                    bias: bias.cast::<$t>(),
                    targets,
                    next_token,
                    options,
                    grad_hidden: (grad_hidden.cast::<$t>(), grad_hidden_stride),
                    grad_weight: (grad_weight.cast::<$t>(), grad_weight_stride),
                    grad_bias: grad_bias.cast::<$t>(),
                };
                // SAFETY: this function's contract is `run`'s.
                unsafe { run(raw, RawPass::Step { loss, lse }) }
            })
        }

        /// The gradients of a language-model head's loss (see the function above) from each
        /// row's saved logsumexp and the upstream gradient: an autograd wrapper's backward,
        /// e.g. of per-token losses (reduction none) that are weighted or masked afterwards.
        /// Each chunk of logits is computed once (three GEMMs per chunk), so the forward
        /// without gradients and this backward cost what one call with gradients does.
        ///
        /// - `lse`: the `rows` logsumexps the forward function wrote for this head and targets.
        /// - `dloss`: the upstream gradient, which replaces `options->grad_scale`: 1 value
        ///   (reductions mean and sum) or `rows` values (reduction none).
        /// - The other arguments as for the forward function; `lse` and `dloss` are inputs,
        ///   which no gradient may overlap, and at least one gradient is usually given (with
        ///   none, the call checks its arguments and returns).
        ///
        /// # Safety
        ///
        /// As `xent_cross_entropy_f32`.
        #[allow(clippy::too_many_arguments, reason = "the C signature")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $backward(
            hidden: *const $c,
            rows: usize,
            dim: usize,
            hidden_stride: usize,
            weight: *const $c,
            classes: usize,
            weight_stride: usize,
            bias: *const $c,
            targets: *const i64,
            next_token: usize,
            options: *const XentOptions,
            lse: *const f32,
            dloss: *const f32,
            grad_hidden: *mut $c,
            grad_hidden_stride: usize,
            grad_weight: *mut $c,
            grad_weight_stride: usize,
            grad_bias: *mut $c,
        ) -> XentStatus {
            status_call(|| {
                let raw = RawHead {
                    hidden: (hidden.cast::<$t>(), rows, dim, hidden_stride),
                    weight: (weight.cast::<$t>(), classes, weight_stride),
                    bias: bias.cast::<$t>(),
                    targets,
                    next_token,
                    options,
                    grad_hidden: (grad_hidden.cast::<$t>(), grad_hidden_stride),
                    grad_weight: (grad_weight.cast::<$t>(), grad_weight_stride),
                    grad_bias: grad_bias.cast::<$t>(),
                };
                // SAFETY: this function's contract is `run`'s.
                unsafe { run(raw, RawPass::Backward { lse, dloss }) }
            })
        }
    )*};
}

export! {
    xent_linear_cross_entropy_f32, xent_linear_cross_entropy_backward_f32: f32 as f32;
    xent_linear_cross_entropy_bf16, xent_linear_cross_entropy_backward_bf16: bf16 as u16;
    xent_linear_cross_entropy_f16, xent_linear_cross_entropy_backward_f16: f16 as u16;
}

/// The head's and the gradients' arguments as C passes them: (pointer, rows, cols, stride)
/// of H, (pointer, classes, stride) of W (its columns are H's), (pointer, stride) of each
/// strided gradient.
struct RawHead<T> {
    hidden: (*const T, usize, usize, usize),
    weight: (*const T, usize, usize),
    bias: *const T,
    targets: *const i64,
    next_token: usize,
    options: *const XentOptions,
    grad_hidden: (*mut T, usize),
    grad_weight: (*mut T, usize),
    grad_bias: *mut T,
}

/// The arguments only one of the two calls has.
enum RawPass {
    Step { loss: *mut f32, lse: *mut f32 },
    Backward { lse: *const f32, dloss: *const f32 },
}

/// The body of both functions: every argument checked (the pass's own too, and no output
/// overlapping another buffer), then the core crate's call.
///
/// # Safety
///
/// As [`forward`](crate::cross_entropy::forward), for every buffer `raw` and `pass` point to.
unsafe fn run<T: xent::Logit<Stat = f32>>(
    raw: RawHead<T>,
    pass: RawPass,
) -> Result<(), XentStatus> {
    let (hidden, rows, dim, hidden_stride) = raw.hidden;
    let hidden = StridedBuffer::new(hidden, rows, dim, hidden_stride)?;
    // The weight's rows are the vocabulary: required whenever there are classes, also
    // without rows; and rows need classes (a shape, so before the overlaps).
    let (weight, classes, weight_stride) = raw.weight;
    if rows > 0 && classes == 0 {
        return Err(XentStatus::InvalidShape);
    }
    let weight = StridedBuffer::new(weight, classes, dim, weight_stride)?;
    let bias = Buffer::optional(raw.bias, classes)?;
    let targets = Buffer::new(raw.targets, rows)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(raw.options, classes) }?;
    let loss_len = options.reduction.loss_len(rows);
    let grad_hidden = optional_rows(raw.grad_hidden, rows, dim)?;
    let grad_weight = optional_rows(raw.grad_weight, classes, dim)?;
    let grad_bias = Buffer::optional(raw.grad_bias, classes)?;
    // The pass's buffers: outputs (loss, lse) for the step, inputs (lse, dloss) for the
    // backward.
    let pass = match pass {
        RawPass::Step { loss, lse } => Pass::Step {
            loss: Buffer::required(loss, loss_len)?,
            lse: Buffer::optional(lse, rows)?,
        },
        RawPass::Backward { lse, dloss } => Pass::Backward {
            lse: Buffer::new(lse, rows)?,
            dloss: Buffer::new(dloss, loss_len)?,
        },
    };
    let (pass_out, pass_in) = match &pass {
        Pass::Step { loss, lse } => (
            [Some(loss.bytes()), lse.as_ref().map(Buffer::bytes)],
            [None, None],
        ),
        Pass::Backward { lse, dloss } => ([None, None], [Some(lse.bytes()), Some(dloss.bytes())]),
    };
    check_disjoint(
        &[
            pass_out[0].clone(),
            pass_out[1].clone(),
            grad_hidden.as_ref().map(StridedBuffer::bytes),
            grad_weight.as_ref().map(StridedBuffer::bytes),
            grad_bias.as_ref().map(Buffer::bytes),
        ],
        &[
            Some(hidden.bytes()),
            Some(weight.bytes()),
            bias.as_ref().map(Buffer::bytes),
            Some(targets.bytes()),
            options.weight_bytes(),
            pass_in[0].clone(),
            pass_in[1].clone(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the outputs were just
    // checked disjoint from each other and from every input, so each exclusive view is the
    // only reference to its memory.
    let (head, grads, targets, options) = unsafe {
        let head = LinearHead {
            hidden: hidden.as_rows()?,
            weight: weight.as_rows()?,
            bias: bias.map(|b| b.as_slice()),
            next_token: (raw.next_token > 0).then_some(raw.next_token),
        };
        let grads = LinearGrads {
            hidden: grad_hidden.map(|g| g.as_rows_mut()).transpose()?,
            weight: grad_weight.map(|g| g.as_rows_mut()).transpose()?,
            bias: grad_bias.map(|g| g.as_mut_slice()),
        };
        (head, grads, targets.as_slice(), options.to_core())
    };
    match pass {
        Pass::Step { loss, lse } => {
            // SAFETY: as above (outputs, checked disjoint).
            let (loss, lse) = unsafe { (loss.as_mut_slice(), lse.map(|l| l.as_mut_slice())) };
            threads::run(|| xent::linear_cross_entropy(head, targets, &options, loss, grads, lse))?;
        }
        Pass::Backward { lse, dloss } => {
            // SAFETY: as above (inputs).
            let (lse, dloss) = unsafe { (lse.as_slice(), dloss.as_slice()) };
            threads::run(|| {
                xent::linear_cross_entropy_backward(head, targets, &options, lse, dloss, grads)
            })?;
        }
    }
    Ok(())
}

/// [`RawPass`]'s buffers, checked.
enum Pass {
    Step {
        loss: Buffer<f32>,
        lse: Option<Buffer<f32>>,
    },
    Backward {
        lse: Buffer<f32>,
        dloss: Buffer<f32>,
    },
}

/// An optional output batch of `rows x cols`: NULL means "not wanted".
fn optional_rows<T>(
    (ptr, stride): (*mut T, usize),
    rows: usize,
    cols: usize,
) -> Result<Option<StridedBuffer<T>>, XentStatus> {
    (!ptr.is_null())
        .then(|| StridedBuffer::new(ptr, rows, cols, stride))
        .transpose()
}
