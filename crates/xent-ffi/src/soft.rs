//! `xent_cross_entropy_soft_<dtype>`: the fused loss against soft targets (a probability
//! row per logits row), with the hard-target form's body.

use xent::{bf16, f16};

use crate::args::TargetsArg;
use crate::boundary::status_call;
use crate::cross_entropy::forward;
use crate::options::XentOptions;
use crate::raw::StridedBuffer;
use crate::status::XentStatus;

macro_rules! export {
    ($($name:ident: $t:ty as $c:ty, $stat:ty;)*) => {$(
        /// The cross-entropy function of the same element type against soft targets:
        /// `targets` holds `rows` rows of `cols` probabilities (`float` for every element
        /// type), row `i` at `targets + i * targets_stride`. Every row counts
        /// (`ignore_index` does not apply), and reduction mean divides by `rows`. The
        /// targets are an input: no output may overlap them.
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
            targets: *const f32,
            targets_stride: usize,
            options: *const XentOptions,
            loss: *mut $stat,
            grad: *mut $c,
            grad_stride: usize,
            lse: *mut $stat,
        ) -> XentStatus {
            status_call(|| {
                let logits = StridedBuffer::new(logits.cast::<$t>(), rows, cols, logits_stride)?;
                let targets = TargetsArg::Soft(targets, targets_stride);
                let grad = (grad.cast::<$t>(), grad_stride);
                // SAFETY: this function's contract is `forward`'s.
                unsafe { forward(logits, targets, options, loss, grad, lse) }
            })
        }
    )*};
}

export! {
    xent_cross_entropy_soft_f32: f32 as f32, f32;
    xent_cross_entropy_soft_bf16: bf16 as u16, f32;
    xent_cross_entropy_soft_f16: f16 as u16, f32;
    xent_cross_entropy_soft_f64: f64 as f64, f64;
}
