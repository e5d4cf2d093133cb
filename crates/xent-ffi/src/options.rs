//! The options struct as C sees it, its defaults, and its reading into the core crate's
//! [`Options`]. The reduction arrives as a plain integer and is decoded here, so an
//! out-of-range value from C is refused instead of becoming a Rust enum.

use core::ops::Range;

use xent::{Options, Reduction};

use crate::raw::Buffer;
use crate::status::XentStatus;

/// How the per-row losses are combined into `loss`: the values of `xent_options.reduction`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XentReduction {
    /// The weighted mean over the counted rows (PyTorch's default): `loss` holds 1 value.
    /// NaN, with an all-zero gradient, when no row counts.
    Mean = 0,
    /// The sum over the rows: `loss` holds 1 value.
    Sum = 1,
    /// One loss per row (0 for ignored rows): `loss` holds `rows` values.
    None = 2,
}

impl XentReduction {
    /// The reduction whose value is `value`; any other value is an invalid option.
    fn decode(value: u32) -> Result<Reduction, XentStatus> {
        const MEAN: u32 = XentReduction::Mean as u32;
        const SUM: u32 = XentReduction::Sum as u32;
        const NONE: u32 = XentReduction::None as u32;
        match value {
            MEAN => Ok(Reduction::Mean),
            SUM => Ok(Reduction::Sum),
            NONE => Ok(Reduction::None),
            _ => Err(XentStatus::InvalidOption),
        }
    }
}

/// The options of a cross-entropy call. Start from `xent_options_default()` and change
/// fields; passing NULL instead of a pointer to options means the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XentOptions {
    /// An `xent_reduction` value; any other value makes the call return
    /// `XENT_STATUS_INVALID_OPTION`. Default: `XENT_REDUCTION_MEAN`.
    pub reduction: u32,
    /// Rows whose hard target equals this contribute 0 loss and 0 gradient. Default: -100.
    pub ignore_index: i64,
    /// epsilon in [0, 1]: the target distribution is mixed with the uniform one. Default: 0.
    pub label_smoothing: f32,
    /// z >= 0, finite: adds z * lse^2 per counted row (PaLM's auxiliary loss). Default: 0.
    pub z_loss: f32,
    /// c >= 0, finite, and not subnormal (0 or at least FLT_MIN): when c > 0 the logits are
    /// first mapped to c * tanh(x / c) (Gemma 2). Default: 0 (off).
    pub softcap: f32,
    /// The upstream gradient of the reduced loss (for `XENT_REDUCTION_NONE`: of the sum of
    /// the row losses); finite. The backward functions take `dloss` instead. Default: 1.
    pub grad_scale: f32,
    /// NULL (every class weighs 1) or `cols` finite non-negative weights, one per class.
    /// Default: NULL.
    pub class_weights: *const f32,
}

impl XentOptions {
    /// PyTorch's defaults (the core crate's, as a test checks).
    const DEFAULT: XentOptions = XentOptions {
        reduction: XentReduction::Mean as u32,
        ignore_index: -100,
        label_smoothing: 0.0,
        z_loss: 0.0,
        softcap: 0.0,
        grad_scale: 1.0,
        class_weights: core::ptr::null(),
    };
}

/// The default options: reduction mean, ignore_index -100, label_smoothing 0, z_loss 0,
/// softcap 0 (off), grad_scale 1, class_weights NULL: PyTorch's defaults.
#[unsafe(no_mangle)]
pub extern "C" fn xent_options_default() -> XentOptions {
    // A constant: nothing here can panic.
    XentOptions::DEFAULT
}

/// A call's options read from C: the reduction decoded and the class weights located and
/// checked as a buffer. The values themselves are checked by the core crate.
#[derive(Debug)]
pub(crate) struct CallOptions {
    pub(crate) reduction: Reduction,
    raw: XentOptions,
    class_weights: Option<Buffer<f32>>,
}

impl CallOptions {
    /// Reads `*options` (the defaults when NULL) for a batch of `cols` classes.
    ///
    /// # Safety
    ///
    /// `options` is NULL or points to a readable `xent_options` (any alignment).
    pub(crate) unsafe fn read(
        options: *const XentOptions,
        cols: usize,
    ) -> Result<Self, XentStatus> {
        let raw = if options.is_null() {
            XentOptions::DEFAULT
        } else {
            // SAFETY: the caller guarantees a readable xent_options; every bit pattern of its
            // fields is a valid value (integers, floats, a raw pointer), and an unaligned
            // read needs no alignment.
            unsafe { options.read_unaligned() }
        };
        Ok(CallOptions {
            reduction: XentReduction::decode(raw.reduction)?,
            class_weights: Buffer::optional(raw.class_weights, cols)?,
            raw,
        })
    }

    /// The bytes of the class weights, an input of the call.
    pub(crate) fn weight_bytes(&self) -> Option<Range<usize>> {
        self.class_weights.as_ref().map(Buffer::bytes)
    }

    /// The core crate's options.
    ///
    /// # Safety
    ///
    /// The class weights, when given, are readable and not written for `'a`.
    pub(crate) unsafe fn to_core<'a>(&self) -> Options<'a> {
        let raw = &self.raw;
        Options {
            reduction: self.reduction,
            ignore_index: raw.ignore_index,
            label_smoothing: raw.label_smoothing,
            z_loss: raw.z_loss,
            softcap: raw.softcap,
            // SAFETY: forwarded to the caller.
            class_weights: self.class_weights.as_ref().map(|w| unsafe { w.as_slice() }),
            grad_scale: raw.grad_scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_decode_only_from_their_values() {
        let pairs = [
            (XentReduction::Mean, Reduction::Mean),
            (XentReduction::Sum, Reduction::Sum),
            (XentReduction::None, Reduction::None),
        ];
        for (c, reduction) in pairs {
            assert_eq!(XentReduction::decode(c as u32), Ok(reduction));
        }
        for value in [3, 7, u32::MAX] {
            assert_eq!(XentReduction::decode(value), Err(XentStatus::InvalidOption));
        }
    }

    #[test]
    fn defaults_are_the_core_crates() {
        let c = xent_options_default();
        // SAFETY: `&c` is a readable xent_options without class weights.
        let read = unsafe { CallOptions::read(&c, 4) }.unwrap();
        // SAFETY: no class weights.
        let core = unsafe { read.to_core() };
        assert_eq!(core, Options::default());
        // SAFETY: NULL means the defaults.
        let from_null = unsafe { CallOptions::read(core::ptr::null(), 4) }.unwrap();
        // SAFETY: no class weights.
        assert_eq!(unsafe { from_null.to_core() }, Options::default());
    }
}
