//! The x86-64 tier over 16-lane `__m512` vectors: `generic.rs` compiled with AVX-512F.
//! Tails are masked loads and stores, lane conditions live in mask registers, and short
//! rows go 16 to a group, one per lane.

use core::arch::x86_64::*;

use super::SimdTier;
use super::generic::gemm_entry;
use super::vector::{F32Vector, MAX_LANES, RowGroups};

/// Sixteen f32 lanes in a ZMM register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x16(__m512);

/// Bits 0..n set (n ≤ 16).
#[inline(always)]
fn low_bits(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

// SAFETY: every method uses only AVX-512F instructions (and SSE for the prefetch), which
// the trait's contract requires the caller to have.
unsafe impl F32Vector for F32x16 {
    const LANES: usize = 16;
    type Mask = __mmask16;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_set1_ps(v) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 16 readable values at `p` and AVX-512F (caller contract).
        F32x16(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 16 writable values at `p` and AVX-512F (caller contract).
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn mul_add(self, m: Self, a: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_fmadd_ps(self.0, m.0, a.0) })
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // vmaxps returns its second operand when either is NaN.
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // vminps returns its second operand when either is NaN.
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> __mmask16 {
        // SAFETY: AVX-512F (caller contract).
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    unsafe fn eq(self, o: Self) -> __mmask16 {
        // SAFETY: AVX-512F (caller contract).
        unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> __mmask16 {
        low_bits(n)
    }
    #[inline(always)]
    unsafe fn lane(k: usize) -> __mmask16 {
        debug_assert!(k < 16);
        1 << k
    }
    #[inline(always)]
    unsafe fn select(mask: __mmask16, a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_mask_blend_ps(mask, b.0, a.0) })
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        F32x16(unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(self.0))) })
    }
    #[inline(always)]
    unsafe fn with_sign_of(self, sign: Self) -> Self {
        // SAFETY: AVX-512F (caller contract).
        unsafe {
            // Bitwise select: the sign bit from `sign`, the rest from `self` (0xD8 is
            // "B where C is set, else A" for (A, B, C) = (self, sign, sign bit)).
            let bits = _mm512_ternarylogic_epi32::<0xD8>(
                _mm512_castps_si512(self.0),
                _mm512_castps_si512(sign.0),
                _mm512_set1_epi32(i32::MIN),
            );
            F32x16(_mm512_castsi512_ps(bits))
        }
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        // SAFETY: AVX-512F (caller contract).
        unsafe { _mm512_reduce_add_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        // SAFETY: AVX-512F (caller contract).
        unsafe { _mm512_reduce_max_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // Into L2 rather than L1 (T0): 3–7% faster on 32000- and 128256-value rows on the
        // Intel Xeon, where L1 holds the block being computed; no change on the 256-bit tiers.
        // SAFETY: prefetching never faults, whatever the address; SSE (caller contract).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        // A masked load reads only the lanes of its mask and never faults on the others.
        // SAFETY: the caller guarantees `n` readable values at `p`; AVX-512F (caller
        // contract).
        F32x16(unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), low_bits(n), p) })
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        // SAFETY: the caller guarantees `n` writable values at `p`; the masked store writes
        // no other lane. AVX-512F (caller contract).
        unsafe { _mm512_mask_storeu_ps(p, low_bits(n), self.0) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // A bf16 is the high half of an f32: zero-extend to 32 bits, shift into place; a
        // signalling NaN comes out quiet, as a conversion makes it (and the scalar tail).
        // SAFETY: 16 readable values at `p`; AVX-512F (caller contract).
        unsafe {
            let halves = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
            let bits = _mm512_slli_epi32::<16>(halves);
            let v = _mm512_castsi512_ps(bits);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let quiet = _mm512_mask_or_epi32(bits, nan, bits, _mm512_set1_epi32(0x0040_0000));
            F32x16(_mm512_castsi512_ps(quiet))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16) {
        // Integer rounding rather than vcvtneps2bf16, which flushes subnormals to zero.
        // SAFETY: 16 writable values at `p`; AVX-512F (caller contract).
        unsafe {
            let bits = _mm512_castps_si512(self.0);
            // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, keep the
            // high half (a carry rounds up into the exponent, up to ±∞ as it should).
            let lowest_kept = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let rounded = _mm512_add_epi32(
                bits,
                _mm512_add_epi32(lowest_kept, _mm512_set1_epi32(0x7FFF)),
            );
            // A NaN keeps its sign and top payload bits, made quiet (rounding could carry
            // it into ±∞).
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, self.0);
            let quiet_nan = _mm512_or_si512(bits, _mm512_set1_epi32(0x0040_0000));
            let chosen = _mm512_mask_blend_epi32(nan, rounded, quiet_nan);
            let high = _mm512_srli_epi32::<16>(chosen);
            _mm256_storeu_si256(p.cast(), _mm512_cvtepi32_epi16(high));
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: 16 readable values at `p`; AVX-512F (caller contract).
        unsafe { F32x16(_mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16) {
        // SAFETY: 16 writable values at `p`; AVX-512F (caller contract).
        unsafe {
            let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(self.0);
            _mm256_storeu_si256(p.cast(), h);
        }
    }
}

// SAFETY: as for `F32Vector` (AVX-512F only).
unsafe impl RowGroups for F32x16 {
    #[inline(always)]
    unsafe fn transpose(block: &mut [Self; MAX_LANES]) {
        // SAFETY: AVX-512F (caller contract).
        unsafe {
            // (Intrinsics in loops, not closures, which would be compiled without
            // AVX-512.) Interleave pairs of rows within each 128-bit lane...
            let r = block.map(|v| v.0);
            let mut t = r;
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            // ...then pairs of pairs: u[4k + j] holds, in its 128-bit lane l, column
            // 4l + j of rows 4k..4k + 4...
            let mut u = t;
            for k in 0..4 {
                let (a, b, c, d) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
                u[4 * k] = _mm512_shuffle_ps::<0x44>(a, c);
                u[4 * k + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
                u[4 * k + 2] = _mm512_shuffle_ps::<0x44>(b, d);
                u[4 * k + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
            }
            // ...then gather lane l of u[j], u[4 + j], u[8 + j], u[12 + j] into column
            // 4l + j: two rounds of 128-bit lane shuffles.
            for j in 0..4 {
                let low = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
                let high = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
                let low2 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
                let high2 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
                block[j] = F32x16(_mm512_shuffle_f32x4::<0x88>(low, low2));
                block[4 + j] = F32x16(_mm512_shuffle_f32x4::<0xDD>(low, low2));
                block[8 + j] = F32x16(_mm512_shuffle_f32x4::<0x88>(high, high2));
                block[12 + j] = F32x16(_mm512_shuffle_f32x4::<0xDD>(high, high2));
            }
        }
    }
}

/// The 512-bit tier: [`F32x16`] for long rows and short-row groups alike.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

// SAFETY: `F32x16` uses AVX-512F (with SSE's prefetch and F16C's conversions), all enabled
// here.
unsafe impl SimdTier for Avx512 {
    type Vector = F32x16;

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    // 28 accumulators, two vectors of B and a broadcast: 31 of the 32 registers.
    gemm_entry!(F32x16, 14);
}

/// Whether this CPU has AVX2, FMA, F16C, AVX-512F and AVX-512VL.
pub(crate) fn supported() -> bool {
    super::avx2::supported_avx512vl()
}
