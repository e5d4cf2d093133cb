//! The element types logits may have: f32, f64, and the 16-bit floats `half::bf16` and
//! `half::f16`. f64 logits take their own path, in f64 throughout (`loss/f64_rows.rs`).
//!
//! A 16-bit batch runs chunk by chunk (the same chunks as f32, about 65536 values): the
//! chunk's rows are widened into a per-thread f32 buffer (exact), the f32 kernels run on it
//! in place, and the result is rounded once into the output (nearest, ties to even). So
//! every term of a gradient entry — p_y − 1 included — is combined in f32 and rounded a
//! single time; rounding p_y first would lose the whole gradient at p_y ≈ 1. Loss and lse
//! stay f32. The buffer is a chunk (or one long row) of f32, reused by each thread; one
//! longer than 1 MiB is freed when its call returns.

use core::cell::RefCell;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::dispatch::{Work, on_tier};
use crate::kernels::{HalfKind, RowKernels};
use crate::pass::Pass;
use crate::rows::{Rows, RowsMut};
use crate::schedule::SplitRows;

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
    /// `Ok` with the same values when they are f32, `Err` with them as f64 otherwise.
    #[doc(hidden)]
    fn f32s_mut(values: &mut [Self]) -> core::result::Result<&mut [f32], &mut [f64]>;

    /// [`Stat::f32s_mut`] for read-only values.
    #[doc(hidden)]
    fn f32s(values: &[Self]) -> core::result::Result<&[f32], &[f64]>;

    /// `v` rounded to this type.
    #[doc(hidden)]
    fn from_f64(v: f64) -> Self;
}

impl Stat for f32 {
    fn f32s_mut(values: &mut [f32]) -> core::result::Result<&mut [f32], &mut [f64]> {
        Ok(values)
    }

    fn f32s(values: &[f32]) -> core::result::Result<&[f32], &[f64]> {
        Ok(values)
    }

    fn from_f64(v: f64) -> f32 {
        v as f32
    }
}

impl Stat for f64 {
    fn f32s_mut(values: &mut [f64]) -> core::result::Result<&mut [f32], &mut [f64]> {
        Err(values)
    }

    fn f32s(values: &[f64]) -> core::result::Result<&[f32], &[f64]> {
        Err(values)
    }

    fn from_f64(v: f64) -> f64 {
        v
    }
}

/// An element type of logits, gradients and probabilities: `f32`, `f64`, `half::bf16` or
/// `half::f16`. Loss, lse and `dloss` are [`Logit::Stat`]: f32, or f64 for f64 logits.
/// Sealed.
pub trait Logit: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The type of this logits type's losses, lse values and upstream gradients.
    type Stat: Stat;

    /// `Ok` with the same rows when they are f64, `Err` with them unchanged otherwise.
    #[doc(hidden)]
    fn f64_rows(rows: Rows<'_, Self>) -> core::result::Result<Rows<'_, f64>, Rows<'_, Self>>;

    /// [`Logit::f64_rows`] for writable rows.
    #[doc(hidden)]
    fn f64_rows_mut(
        rows: RowsMut<'_, Self>,
    ) -> core::result::Result<RowsMut<'_, f64>, RowsMut<'_, Self>>;

    /// `Ok` with the same rows when they are f32, `Err` with them unchanged otherwise.
    #[doc(hidden)]
    fn f32_rows(rows: Rows<'_, Self>) -> core::result::Result<Rows<'_, f32>, Rows<'_, Self>>;

    /// [`Logit::f32_rows`] for writable rows.
    #[doc(hidden)]
    fn f32_rows_mut(
        rows: RowsMut<'_, Self>,
    ) -> core::result::Result<RowsMut<'_, f32>, RowsMut<'_, Self>>;

    /// dst_c = src_c as f32 (exact).
    #[doc(hidden)]
    fn widen(src: &[Self], dst: &mut [f32]);

    /// dst_c = src_c rounded to this type (nearest, ties to even).
    #[doc(hidden)]
    fn narrow(src: &[f32], dst: &mut [Self]);
}

impl Logit for f32 {
    type Stat = f32;

    fn f64_rows(rows: Rows<'_, f32>) -> core::result::Result<Rows<'_, f64>, Rows<'_, f32>> {
        Err(rows)
    }

    fn f64_rows_mut(
        rows: RowsMut<'_, f32>,
    ) -> core::result::Result<RowsMut<'_, f64>, RowsMut<'_, f32>> {
        Err(rows)
    }

    fn f32_rows(rows: Rows<'_, f32>) -> core::result::Result<Rows<'_, f32>, Rows<'_, f32>> {
        Ok(rows)
    }

    fn f32_rows_mut(
        rows: RowsMut<'_, f32>,
    ) -> core::result::Result<RowsMut<'_, f32>, RowsMut<'_, f32>> {
        Ok(rows)
    }

    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

/// A conversion between the bits of 16-bit values and f32, on the tier in force.
enum Convert<'a> {
    /// Widens each value (exact).
    Widen(HalfKind, &'a [u16], &'a mut [f32]),
    /// Rounds each value to nearest, ties to even.
    Narrow(HalfKind, &'a [f32], &'a mut [u16]),
}

impl Work for Convert<'_> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        match self {
            Convert::Widen(kind, src, dst) => k.widen(kind, src, dst),
            Convert::Narrow(kind, src, dst) => k.narrow(kind, src, dst),
        }
    }
}

/// `Logit` for a 16-bit type whose bits the kernels convert as `$kind`.
macro_rules! half_logit {
    ($t:ty, $kind:expr) => {
        impl Logit for $t {
            type Stat = f32;

            fn f64_rows(rows: Rows<'_, $t>) -> core::result::Result<Rows<'_, f64>, Rows<'_, $t>> {
                Err(rows)
            }

            fn f64_rows_mut(
                rows: RowsMut<'_, $t>,
            ) -> core::result::Result<RowsMut<'_, f64>, RowsMut<'_, $t>> {
                Err(rows)
            }

            fn f32_rows(rows: Rows<'_, $t>) -> core::result::Result<Rows<'_, f32>, Rows<'_, $t>> {
                Err(rows)
            }

            fn f32_rows_mut(
                rows: RowsMut<'_, $t>,
            ) -> core::result::Result<RowsMut<'_, f32>, RowsMut<'_, $t>> {
                Err(rows)
            }

            fn widen(src: &[$t], dst: &mut [f32]) {
                on_tier(Convert::Widen($kind, src.reinterpret_cast(), dst));
            }

            fn narrow(src: &[f32], dst: &mut [$t]) {
                on_tier(Convert::Narrow($kind, src, dst.reinterpret_cast_mut()));
            }
        }
    };
}

half_logit!(bf16, HalfKind::Bf16);
half_logit!(f16, HalfKind::F16);

impl Logit for f64 {
    type Stat = f64;

    fn f64_rows(rows: Rows<'_, f64>) -> core::result::Result<Rows<'_, f64>, Rows<'_, f64>> {
        Ok(rows)
    }

    fn f64_rows_mut(
        rows: RowsMut<'_, f64>,
    ) -> core::result::Result<RowsMut<'_, f64>, RowsMut<'_, f64>> {
        Ok(rows)
    }

    fn f32_rows(rows: Rows<'_, f64>) -> core::result::Result<Rows<'_, f32>, Rows<'_, f64>> {
        Err(rows)
    }

    fn f32_rows_mut(
        rows: RowsMut<'_, f64>,
    ) -> core::result::Result<RowsMut<'_, f32>, RowsMut<'_, f64>> {
        Err(rows)
    }

    // f64 batches take the f64 path and are never widened or narrowed; these exist for
    // the trait's sake and convert as Rust's `as` does.
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

/// Runs `f` on `pass` as f32 rows: directly for f32, else on a widened f32 copy of the
/// rows, whose result (if the pass writes one) is then rounded into the pass's output.
pub(crate) fn run_as_f32<T: Logit, R>(pass: Pass<'_, T>, f: impl FnOnce(Pass<'_, f32>) -> R) -> R {
    let pass = match pass.into_f32() {
        Ok(pass) => return f(pass),
        Err(pass) => pass,
    };
    let (rows, cols) = (pass.rows(), pass.cols());
    with_scratch(rows * cols, |scratch| {
        for (i, dst) in scratch.chunks_exact_mut(cols.max(1)).enumerate() {
            T::widen(pass.input(i), dst);
        }
        let packed = "validated shapes make packed views";
        match pass {
            Pass::Forward(_) => f(Pass::Forward(
                Rows::new(scratch, rows, cols, cols).expect(packed),
            )),
            Pass::Separate(_, mut out) => {
                let result = f(Pass::InPlace(
                    RowsMut::new(&mut *scratch, rows, cols, cols).expect(packed),
                ));
                for (i, src) in scratch.chunks_exact(cols.max(1)).enumerate() {
                    T::narrow(src, out.row_mut(i));
                }
                result
            }
            Pass::InPlace(mut x) => {
                let result = f(Pass::InPlace(
                    RowsMut::new(&mut *scratch, rows, cols, cols).expect(packed),
                ));
                for (i, src) in scratch.chunks_exact(cols.max(1)).enumerate() {
                    T::narrow(src, x.row_mut(i));
                }
                result
            }
        }
    })
}

/// The most a thread's f32 buffer keeps between calls: 1 MiB. A chunk of a batch (about
/// 65536 values) fits; a longer row's buffer is freed when its call is done, so that one
/// call on a long row does not leave its size resident for the life of the thread.
const SCRATCH_KEPT: usize = (1 << 20) / size_of::<f32>();

/// Runs `f` on `len` values of this thread's f32 buffer (grown as needed), or on a fresh
/// one when the buffer is already in use further up this thread's stack (rayon may run
/// another chunk here while a long row's blocks wait).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            let result = f(&mut buf[..len]);
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            result
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for kind in [HalfKind::Bf16, HalfKind::F16] {
            let mut wide = vec![0.0f32; all.len()];
            on_tier(Convert::Widen(kind, &all, &mut wide));
            for (&bits, &w) in all.iter().zip(&wide) {
                let want = match kind {
                    HalfKind::Bf16 => bf16::from_bits(bits).to_f32(),
                    HalfKind::F16 => f16::from_bits(bits).to_f32(),
                };
                assert!(
                    w.to_bits() == want.to_bits() || (w.is_nan() && want.is_nan()),
                    "{kind:?} {bits:#06x}: {w} vs {want}"
                );
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
            let mut narrow = vec![0u16; samples.len()];
            on_tier(Convert::Narrow(kind, &samples, &mut narrow));
            for (&x, &got) in samples.iter().zip(&narrow) {
                let (want, got_value) = match kind {
                    HalfKind::Bf16 => (bf16::from_f32(x).to_bits(), bf16::from_bits(got).to_f32()),
                    HalfKind::F16 => (f16::from_f32(x).to_bits(), f16::from_bits(got).to_f32()),
                };
                assert!(
                    got == want || (x.is_nan() && got_value.is_nan()),
                    "{kind:?} {x:e} ({:#010x}): {got:#06x} vs {want:#06x}",
                    x.to_bits()
                );
            }
        }
    }
}
