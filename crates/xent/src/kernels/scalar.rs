//! The scalar tier: `generic.rs` over a vector of one lane, so that it runs the same
//! algorithm as every other tier, one element at a time, on any CPU.

use super::SimdTier;
use super::generic::gemm_entry;
use super::vector::{F32Vector, MAX_LANES, RowGroups};

/// One f32 lane.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct One(f32);

// SAFETY: plain Rust arithmetic, which every CPU runs.
unsafe impl F32Vector for One {
    const LANES: usize = 1;
    type Mask = bool;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        One(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees one readable value at `p`.
        One(unsafe { p.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees one writable value at `p`.
        unsafe { p.write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        One(self.0 + o.0)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        One(self.0 - o.0)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        One(self.0 * o.0)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        One(self.0 / o.0)
    }
    #[inline(always)]
    unsafe fn mul_add(self, m: Self, a: Self) -> Self {
        // Unfused, as on the SSE2 tier: `f32::mul_add` is a library call without FMA.
        One(self.0 * m.0 + a.0)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // As x86's maxps: `o` unless `self` is greater, so a NaN in `o` survives.
        if self.0 > o.0 { self } else { o }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        if self.0 < o.0 { self } else { o }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        One(self.0.abs())
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> bool {
        self.0 < o.0
    }
    #[inline(always)]
    unsafe fn eq(self, o: Self) -> bool {
        self.0 == o.0
    }
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> bool {
        n > 0
    }
    #[inline(always)]
    unsafe fn lane(k: usize) -> bool {
        k == 0
    }
    #[inline(always)]
    unsafe fn select(mask: bool, a: Self, b: Self) -> Self {
        if mask { a } else { b }
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        One(f32::from_bits(self.0.to_bits() << 23))
    }
    #[inline(always)]
    unsafe fn with_sign_of(self, sign: Self) -> Self {
        One(self.0.copysign(sign.0))
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        self.0
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        self.0
    }
}

// SAFETY: as for `F32Vector`; a 1×1 block is its own transpose.
unsafe impl RowGroups for One {
    #[inline(always)]
    unsafe fn transpose(_block: &mut [Self; MAX_LANES]) {}
}

/// The scalar tier; available on every CPU.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

// SAFETY: `One` uses no instructions beyond the build target's.
unsafe impl SimdTier for Scalar {
    type Vector = One;

    #[inline(always)]
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    // 8 accumulators of one value.
    gemm_entry!(One, 4);
}
