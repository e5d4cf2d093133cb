//! The element types logits may have: f32, f64, and the 16-bit floats `half::bf16` and
//! `half::f16`. f64 logits take their own path, in f64 throughout (`loss/f64_rows.rs`).
//!
//! The kernels read 16-bit logits directly, widening each vector to f32 as they load it
//! (exact), and round each output once as they store it (nearest, ties to even). So every
//! term of a gradient entry — p_y − 1 included — is combined in f32 and rounded a single
//! time; rounding p_y first would lose the whole gradient at p_y ≈ 1. Loss and lse stay
//! f32. The exponentials a gradient row is made from are kept in f32 too, in a buffer of
//! the row's length per thread ([`ExpBuffers`]) owned by the call; a row longer than
//! [`EXP_BUFFER_MAX`] values, or one that finds its thread's buffer in use, recomputes
//! them from the logits instead, so a call never holds more than 1 MiB per thread and
//! nothing after it returns.

use std::sync::Mutex;

use half::{bf16, f16};

use crate::dispatch::{Work, on_tier};
use crate::kernels::{Elem, RowKernels};

mod sealed {
    /// Only this crate's element types implement [`super::Logit`] and [`super::Stat`].
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
}

/// The type of losses, lse values and upstream gradients: f32, or f64 for f64 logits.
/// Sealed.
pub trait Stat: Copy + Send + Sync + 'static + sealed::Sealed {
    /// `v` rounded to this type.
    #[doc(hidden)]
    fn from_f64(v: f64) -> Self;

    /// The value as f64 (exact).
    #[doc(hidden)]
    fn to_f64(self) -> f64;
}

impl Stat for f32 {
    fn from_f64(v: f64) -> f32 {
        v as f32
    }

    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Stat for f64 {
    fn from_f64(v: f64) -> f64 {
        v
    }

    fn to_f64(self) -> f64 {
        self
    }
}

/// Work whose path depends on the logits' element type. [`Logit::route`] hands it its
/// value at the concrete type: each `impl Logit` calls its own method, so the type decides
/// the path at compile time, with no cast and no type test.
#[doc(hidden)]
pub trait Route {
    /// The value routed, for element type `T`.
    type Of<T: Logit>;
    /// What the work returns.
    type Output;

    /// The work over f32 logits.
    fn f32(self, value: Self::Of<f32>) -> Self::Output;
    /// The work over f64 logits.
    fn f64(self, value: Self::Of<f64>) -> Self::Output;
    /// The work over bf16 logits.
    fn bf16(self, value: Self::Of<bf16>) -> Self::Output;
    /// The work over f16 logits.
    fn f16(self, value: Self::Of<f16>) -> Self::Output;
}

/// An element type of logits, gradients and probabilities: `f32`, `f64`, `half::bf16` or
/// `half::f16`. Loss, lse and `dloss` are [`Logit::Stat`]: f32, or f64 for f64 logits.
/// Sealed.
pub trait Logit: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The type of this logits type's losses, lse values and upstream gradients.
    type Stat: Stat;

    /// `route`'s method for this type, on `value`.
    #[doc(hidden)]
    fn route<R: Route>(route: R, value: R::Of<Self>) -> R::Output;

    /// dst_c = src_c as f32 (exact for f32 and the 16-bit types).
    #[doc(hidden)]
    fn widen(src: &[Self], dst: &mut [f32]);

    /// dst_c = src_c rounded to this type (nearest, ties to even).
    #[doc(hidden)]
    fn narrow(src: &[f32], dst: &mut [Self]);
}

impl Logit for f32 {
    type Stat = f32;

    fn route<R: Route>(route: R, value: R::Of<f32>) -> R::Output {
        route.f32(value)
    }

    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

/// A conversion of each value of `src` into `dst`, on the tier in force.
struct Convert<'a, I, O> {
    src: &'a [I],
    dst: &'a mut [O],
}

impl<I: Elem, O: Elem> Work for Convert<'_, I, O> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        k.convert(self.src, self.dst)
    }
}

/// `Logit` for a 16-bit type, routed to `$route`.
macro_rules! half_logit {
    ($t:ty, $route:ident) => {
        impl Logit for $t {
            type Stat = f32;

            fn route<R: Route>(route: R, value: R::Of<$t>) -> R::Output {
                route.$route(value)
            }

            fn widen(src: &[$t], dst: &mut [f32]) {
                on_tier(Convert { src, dst });
            }

            fn narrow(src: &[f32], dst: &mut [$t]) {
                on_tier(Convert { src, dst });
            }
        }
    };
}

half_logit!(bf16, bf16);
half_logit!(f16, f16);

impl Logit for f64 {
    type Stat = f64;

    fn route<R: Route>(route: R, value: R::Of<f64>) -> R::Output {
        route.f64(value)
    }

    // f64 batches take the f64 path, which neither widens nor narrows; a path that converts
    // every type (the linear head's) rounds them as Rust's `as` does.
    fn widen(src: &[f64], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as f32;
        }
    }

    fn narrow(src: &[f32], dst: &mut [f64]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f64::from(s);
        }
    }
}

/// The longest row whose exponentials a 16-bit call keeps in f32: 1 MiB of them.
pub(crate) const EXP_BUFFER_MAX: usize = (1 << 20) / size_of::<f32>();

/// The length of a call's exponential buffers by its element type: the row length for
/// 16-bit rows of at most [`EXP_BUFFER_MAX`] values, else 0 (f32 rows keep their
/// exponentials in their output, f64 rows take their own path).
struct BufferLen {
    cols: usize,
}

impl BufferLen {
    fn half(self) -> usize {
        if self.cols <= EXP_BUFFER_MAX {
            self.cols
        } else {
            0
        }
    }
}

impl Route for BufferLen {
    type Of<T: Logit> = ();
    type Output = usize;

    fn f32(self, (): ()) -> usize {
        0
    }

    fn f64(self, (): ()) -> usize {
        0
    }

    fn bf16(self, (): ()) -> usize {
        self.half()
    }

    fn f16(self, (): ()) -> usize {
        self.half()
    }
}

/// The f32 buffers in which a 16-bit call keeps a row's exponentials between its two
/// phases: one per thread of the pool the call runs on (and one for a thread outside it),
/// each allocated at its first use and all freed with the call.
pub(crate) struct ExpBuffers {
    slots: Vec<Mutex<Vec<f32>>>,
    /// The length of each buffer: the row length, 0 when rows are f32 (whose exponentials
    /// go to their output) or longer than [`EXP_BUFFER_MAX`].
    len: usize,
}

impl ExpBuffers {
    /// Buffers for the rows of `cols` values of a call with logits of type `T`.
    pub(crate) fn new<T: Logit>(cols: usize) -> Self {
        let len = T::route(BufferLen { cols }, ());
        let threads = if len > 0 {
            rayon::current_num_threads() + 1
        } else {
            0
        };
        ExpBuffers {
            slots: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
            len,
        }
    }

    /// Runs `f` with this thread's buffer, or with `None` when there is none (f32 rows,
    /// long rows, a buffer in use further up this thread's stack, or no memory for it).
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&mut [f32]>) -> R) -> R {
        if self.slots.is_empty() {
            return f(None);
        }
        let slot = rayon::current_thread_index().map_or(0, |i| i + 1) % self.slots.len();
        let Ok(mut buffer) = self.slots[slot].try_lock() else {
            return f(None);
        };
        if buffer.len() < self.len {
            if buffer.try_reserve_exact(self.len).is_err() {
                return f(None);
            }
            buffer.resize(self.len, 0.0);
        }
        f(Some(&mut buffer[..self.len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the kernels' conversions of `$t` against the `half` crate's on `$all` (bit
    /// patterns, widened) and `$samples` (f32 values, rounded).
    macro_rules! check_conversions {
        ($t:ty, $all:expr, $samples:expr) => {{
            let all: Vec<$t> = $all.iter().map(|&b| <$t>::from_bits(b)).collect();
            let mut wide = vec![0.0f32; all.len()];
            on_tier(Convert {
                src: &all,
                dst: &mut wide,
            });
            for (&h, &w) in all.iter().zip(&wide) {
                let want = h.to_f32();
                assert!(
                    w.to_bits() == want.to_bits() || (w.is_nan() && want.is_nan()),
                    "{} {:#06x}: {w} vs {want}",
                    stringify!($t),
                    h.to_bits()
                );
            }
            let samples: &[f32] = $samples;
            let mut narrow = vec![<$t>::from_f32(0.0); samples.len()];
            on_tier(Convert {
                src: samples,
                dst: &mut narrow,
            });
            for (&x, &got) in samples.iter().zip(&narrow) {
                let want = <$t>::from_f32(x);
                assert!(
                    got.to_bits() == want.to_bits() || (x.is_nan() && got.is_nan()),
                    "{} {x:e} ({:#010x}): {:#06x} vs {:#06x}",
                    stringify!($t),
                    x.to_bits(),
                    got.to_bits(),
                    want.to_bits()
                );
            }
        }};
    }

    /// The kernels' conversions agree with the `half` crate's on special values, ties and
    /// every 16-bit pattern (widening), and on a sweep of f32 patterns (rounding).
    #[test]
    fn conversions_match_half() {
        // Under Miri, which interprets each operation about a million times slower, every
        // 61st pattern (odd, so that every bit varies) with the special ones (±∞, NaN,
        // subnormals of either format), and every 4099·1021st f32 sample.
        let (step16, step32) = if cfg!(miri) {
            (61, 4099 * 1021)
        } else {
            (1, 4099)
        };
        let mut all: Vec<u16> = (0..=u16::MAX).step_by(step16).collect();
        if cfg!(miri) {
            all.extend([
                0x7f80, 0xff80, 0x7fc1, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x83ff,
            ]);
        }
        let samples: Vec<f32> = (0..=u32::MAX)
            .step_by(step32)
            .map(f32::from_bits)
            .chain([
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                -f32::NAN,
                f32::MAX,
                -0.0,
                1.0 + 1.0 / 256.0, // a bf16 tie: rounds to even (1.0)
                1.0 + 3.0 / 256.0, // a bf16 tie: rounds to even (up)
                65520.0,           // rounds to +∞ in f16
                5.9604645e-8,      // the smallest f16 subnormal
            ])
            .collect();
        check_conversions!(bf16, all, &samples);
        check_conversions!(f16, all, &samples);
    }
}
