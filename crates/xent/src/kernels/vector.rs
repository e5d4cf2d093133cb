//! The small vector trait every SIMD tier implements; the passes in `generic.rs` and the
//! math in `exp.rs` are written once over it.

use core::ptr;

/// The widest vector any tier uses, in f32 lanes (bounds the tail buffers).
pub(crate) const MAX_LANES: usize = 16;

/// A vector of `LANES` f32 values.
///
/// # Safety
///
/// Every method may use instructions of the implementing tier: callers must only call
/// them where that tier's CPU features are enabled (inside the tier's
/// `#[target_feature]` functions, or on a CPU detected to have them).
pub(crate) unsafe trait F32Vector: Copy {
    /// Lanes per vector (at most [`MAX_LANES`]).
    const LANES: usize;

    /// A per-lane condition: a vector of all-ones lanes on the 256-bit and portable tiers,
    /// a mask register on AVX-512.
    type Mask: Copy;

    /// Every lane `v`.
    unsafe fn splat(v: f32) -> Self;
    /// Loads `LANES` values from `p` (no alignment needed); they must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `LANES` values at `p` (no alignment needed); they must be writable.
    unsafe fn store(self, p: *mut f32);
    /// Lane-wise `self + o`.
    unsafe fn add(self, o: Self) -> Self;
    /// Lane-wise `self - o`.
    unsafe fn sub(self, o: Self) -> Self;
    /// Lane-wise `self * o`.
    unsafe fn mul(self, o: Self) -> Self;
    /// Lane-wise `self / o`.
    unsafe fn div(self, o: Self) -> Self;
    /// Lane-wise `self * m + a`, fused where the tier has FMA.
    unsafe fn mul_add(self, m: Self, a: Self) -> Self;
    /// Lane-wise maximum; a lane where `o` is NaN is NaN.
    unsafe fn max(self, o: Self) -> Self;
    /// Lane-wise minimum; a lane where `o` is NaN is NaN.
    unsafe fn min(self, o: Self) -> Self;
    /// Lane-wise `|self|`.
    unsafe fn abs(self) -> Self;
    /// The lanes where `self < o` (false where either is NaN).
    unsafe fn lt(self, o: Self) -> Self::Mask;
    /// The lanes where `self == o` (false where either is NaN).
    unsafe fn eq(self, o: Self) -> Self::Mask;
    /// Lanes `0..n` (`n <= LANES`).
    unsafe fn first_lanes(n: usize) -> Self::Mask;
    /// Lane `k` alone (`k < LANES`).
    unsafe fn lane(k: usize) -> Self::Mask;
    /// `a` in the lanes of `mask`, `b` elsewhere.
    unsafe fn select(mask: Self::Mask, a: Self, b: Self) -> Self;
    /// The bits of each lane shifted left by 23 (an integer in the low mantissa bits
    /// becomes an exponent).
    unsafe fn shl23(self) -> Self;
    /// `self` with the sign bit of `sign`.
    unsafe fn with_sign_of(self, sign: Self) -> Self;
    /// The sum of the lanes.
    unsafe fn reduce_add(self) -> f32;
    /// The maximum of the lanes (NaN lanes may or may not win).
    unsafe fn reduce_max(self) -> f32;

    /// Hints that the cache line at `p` will be read soon. `p` need not be valid.
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}

    /// Loads `n < LANES` values from `p`, the other lanes `fill`; reads nothing past `p + n`.
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        let mut buf = [fill; MAX_LANES];
        // SAFETY: the caller guarantees `n` readable values at `p`; `n < LANES <= MAX_LANES`.
        unsafe {
            ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            Self::load(buf.as_ptr())
        }
    }

    /// Stores the first `n < LANES` lanes at `p`; writes nothing past `p + n`.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds `LANES <= MAX_LANES` values; the caller guarantees `n`
        // writable values at `p`.
        unsafe {
            self.store(buf.as_mut_ptr());
            ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }

    /// Loads `LANES` bf16 values (their bits at `p`), widened to f32 (exact).
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        let mut buf = [0.0f32; MAX_LANES];
        for (k, v) in buf.iter_mut().take(Self::LANES).enumerate() {
            // SAFETY: the caller guarantees `LANES` readable values at `p`.
            *v = half::bf16::from_bits(unsafe { *p.add(k) }).to_f32();
        }
        // SAFETY: `buf` holds MAX_LANES >= LANES values.
        unsafe { Self::load(buf.as_ptr()) }
    }

    /// Stores the lanes at `p` as bf16 bits, each rounded to nearest, ties to even (a NaN
    /// stays a NaN).
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16) {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds MAX_LANES >= LANES values.
        unsafe { self.store(buf.as_mut_ptr()) };
        for (k, v) in buf.iter().take(Self::LANES).enumerate() {
            // SAFETY: the caller guarantees `LANES` writable values at `p`.
            unsafe { *p.add(k) = half::bf16::from_f32(*v).to_bits() };
        }
    }

    /// Loads `LANES` IEEE binary16 values (their bits at `p`), widened to f32 (exact).
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        let mut buf = [0.0f32; MAX_LANES];
        for (k, v) in buf.iter_mut().take(Self::LANES).enumerate() {
            // SAFETY: the caller guarantees `LANES` readable values at `p`.
            *v = half::f16::from_bits(unsafe { *p.add(k) }).to_f32();
        }
        // SAFETY: `buf` holds MAX_LANES >= LANES values.
        unsafe { Self::load(buf.as_ptr()) }
    }

    /// Stores the lanes at `p` as binary16 bits, each rounded to nearest, ties to even
    /// (overflow to ±∞, a NaN stays a NaN).
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16) {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds MAX_LANES >= LANES values.
        unsafe { self.store(buf.as_mut_ptr()) };
        for (k, v) in buf.iter().take(Self::LANES).enumerate() {
            // SAFETY: the caller guarantees `LANES` writable values at `p`.
            unsafe { *p.add(k) = half::f16::from_f32(*v).to_bits() };
        }
    }
}

/// A vector the short-row kernels use with one row in each lane.
///
/// # Safety
///
/// As for [`F32Vector`].
pub(crate) unsafe trait RowGroups: F32Vector {
    /// Transposes the square `block[..LANES]` (LANES vectors of LANES lanes): afterwards
    /// lane `j` of `block[i]` is what lane `i` of `block[j]` was. The rest is left as is.
    unsafe fn transpose(block: &mut [Self; MAX_LANES]);
}

/// Implements [`RowGroups`] for an 8-lane vector type through the `transpose8` function
/// (the 8×8 transpose of eight vectors) in scope where the macro is called.
macro_rules! row_groups_of_8 {
    ($t:ty) => {
        // SAFETY: as for `F32Vector`; the type has eight lanes.
        unsafe impl $crate::kernels::vector::RowGroups for $t {
            #[inline(always)]
            unsafe fn transpose(block: &mut [Self; $crate::kernels::vector::MAX_LANES]) {
                let [r0, r1, r2, r3, r4, r5, r6, r7, ..] = *block;
                // SAFETY: forwarded caller contract.
                let t = unsafe { transpose8([r0, r1, r2, r3, r4, r5, r6, r7]) };
                block[..8].copy_from_slice(&t);
            }
        }
    };
}
pub(crate) use row_groups_of_8;
