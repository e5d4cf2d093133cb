//! The x86-64 tiers over 8-lane `__m256` vectors, chosen at run time: `generic.rs`
//! compiled with `#[target_feature(enable = "avx2,fma,f16c")]`, and the same code compiled with
//! AVX-512F/VL as well, which keeps the vectors at 256 bits but gives the compiler 32
//! registers and broadcast operands. It is taken only when forced: on an Intel Xeon it ran
//! 0.98× the `avx2` tier's rate, cache-resident on one core and on 8192 × 32000 on two
//! (`XENT_SIMD=avx512vl` against `XENT_SIMD=avx2`, `probe_l1` and `probe` of `benches/`).

use core::arch::x86_64::*;

use super::SimdTier;
use super::generic::gemm_entry;
use super::vector::F32Vector;

/// Eight f32 lanes in an AVX register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x8(__m256);

// SAFETY: every method uses only AVX, AVX2, FMA and F16C instructions, which the trait's
// contract requires the caller to have.
unsafe impl F32Vector for F32x8 {
    const LANES: usize = 8;
    type Mask = Self;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_set1_ps(v) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 8 readable values at `p` and AVX (caller contract).
        F32x8(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 8 writable values at `p` and AVX (caller contract).
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn mul_add(self, m: Self, a: Self) -> Self {
        // SAFETY: FMA (caller contract).
        F32x8(unsafe { _mm256_fmadd_ps(self.0, m.0, a.0) })
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // vmaxps returns its second operand when either is NaN.
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // vminps returns its second operand when either is NaN.
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn eq(self, o: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> Self {
        // SAFETY: AVX2 (caller contract).
        F32x8(unsafe { _mm256_castsi256_ps(lane_mask(n)) })
    }
    #[inline(always)]
    unsafe fn lane(k: usize) -> Self {
        // SAFETY: AVX2 (caller contract).
        F32x8(unsafe {
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(
                _mm256_set1_epi32(k as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            ))
        })
    }
    #[inline(always)]
    unsafe fn select(mask: Self, a: Self, b: Self) -> Self {
        // SAFETY: AVX (caller contract).
        F32x8(unsafe { _mm256_blendv_ps(b.0, a.0, mask.0) })
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        // SAFETY: AVX2 (caller contract).
        F32x8(unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(self.0))) })
    }
    #[inline(always)]
    unsafe fn with_sign_of(self, sign: Self) -> Self {
        // SAFETY: AVX (caller contract).
        unsafe {
            let sign_bit = _mm256_set1_ps(-0.0);
            F32x8(_mm256_or_ps(
                _mm256_andnot_ps(sign_bit, self.0),
                _mm256_and_ps(sign_bit, sign.0),
            ))
        }
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        // SAFETY: AVX (caller contract).
        unsafe {
            let s = _mm_add_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            );
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        // SAFETY: AVX (caller contract).
        unsafe {
            let m = _mm_max_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            );
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
            _mm_cvtss_f32(m)
        }
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        // vmaskmovps reads only the lanes whose mask is set and never faults on the others;
        // the copy through a stack buffer it replaces cost a call and a stalled reload.
        // SAFETY: the caller guarantees `n` readable values at `p`; AVX2 (caller contract).
        unsafe {
            let mask = lane_mask(n);
            let v = _mm256_maskload_ps(p, mask);
            F32x8(_mm256_blendv_ps(
                _mm256_set1_ps(fill),
                v,
                _mm256_castsi256_ps(mask),
            ))
        }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        // SAFETY: the caller guarantees `n` writable values at `p`; the masked store
        // writes no other lane. AVX2 (caller contract).
        unsafe { _mm256_maskstore_ps(p, lane_mask(n), self.0) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self {
        // A bf16 is the high half of an f32: zero-extend to 32 bits, shift into place; a
        // signalling NaN comes out quiet, as a conversion makes it (and the scalar tail).
        // SAFETY: 8 readable values at `p`; AVX2 (caller contract).
        unsafe {
            let halves = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            let v = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(halves));
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            let quiet_bit = _mm256_and_ps(nan, _mm256_castsi256_ps(_mm256_set1_epi32(0x0040_0000)));
            F32x8(_mm256_or_ps(v, quiet_bit))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16) {
        // SAFETY: 8 writable values at `p`; AVX2 (caller contract).
        unsafe {
            let bits = _mm256_castps_si256(self.0);
            // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, keep the
            // high half (a carry rounds up into the exponent, up to ±∞ as it should).
            let lowest_kept = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
            let rounded = _mm256_add_epi32(
                bits,
                _mm256_add_epi32(lowest_kept, _mm256_set1_epi32(0x7FFF)),
            );
            // A NaN keeps its sign and top payload bits, made quiet (rounding could carry
            // it into ±∞).
            let quiet_nan = _mm256_or_si256(bits, _mm256_set1_epi32(0x0040_0000));
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, self.0));
            let high = _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, quiet_nan, nan));
            // Pack the eight 32-bit lanes (each below 2^16) into 16-bit ones: packus works
            // within 128-bit halves, so gather the two useful quarters afterwards.
            let packed = _mm256_packus_epi32(high, high);
            let ordered = _mm256_permute4x64_epi64::<0b00_00_10_00>(packed);
            _mm_storeu_si128(p.cast(), _mm256_castsi256_si128(ordered));
        }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: 8 readable values at `p`; F16C (caller contract).
        unsafe { F32x8(_mm256_cvtph_ps(_mm_loadu_si128(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16) {
        // SAFETY: 8 writable values at `p`; F16C (caller contract).
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(self.0);
            _mm_storeu_si128(p.cast(), h);
        }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: prefetching never faults, whatever the address; SSE (caller contract).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
}

super::vector::row_groups_of_8!(F32x8);

/// The 8×8 transpose of eight vectors: lane `j` of result `i` is lane `i` of input `j`.
#[inline(always)]
unsafe fn transpose8(rows: [F32x8; 8]) -> [F32x8; 8] {
    // SAFETY: AVX (caller contract).
    unsafe {
        // (No `map` closure: it would be compiled without AVX.)
        let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
        let r = [r0.0, r1.0, r2.0, r3.0, r4.0, r5.0, r6.0, r7.0];
        // Interleave pairs of rows, then pairs of pairs, then the 128-bit halves.
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            F32x8(_mm256_permute2f128_ps::<0x20>(u0, u4)),
            F32x8(_mm256_permute2f128_ps::<0x20>(u1, u5)),
            F32x8(_mm256_permute2f128_ps::<0x20>(u2, u6)),
            F32x8(_mm256_permute2f128_ps::<0x20>(u3, u7)),
            F32x8(_mm256_permute2f128_ps::<0x31>(u0, u4)),
            F32x8(_mm256_permute2f128_ps::<0x31>(u1, u5)),
            F32x8(_mm256_permute2f128_ps::<0x31>(u2, u6)),
            F32x8(_mm256_permute2f128_ps::<0x31>(u3, u7)),
        ]
    }
}

/// All bits set in lanes `0..n`, clear in the others.
#[inline(always)]
unsafe fn lane_mask(n: usize) -> __m256i {
    debug_assert!(n <= 8);
    // SAFETY: AVX2 (caller contract).
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// The AVX2+FMA tier.
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

// SAFETY: `F32x8` uses AVX2, FMA and F16C, all enabled here.
unsafe impl SimdTier for Avx2 {
    type Vector = F32x8;

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    // 12 accumulators, two vectors of B and a broadcast: 15 of the 16 registers.
    gemm_entry!(F32x8, 6);
}

/// Whether this CPU has AVX2 and FMA (and F16C, which every AVX2 CPU has, for f16
/// conversions).
pub(crate) fn supported() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The same 256-bit vectors compiled with AVX-512F/VL too (32 registers, mask registers
/// where the compiler finds a use for them).
#[derive(Clone, Copy)]
pub(crate) struct Avx512Vl;

// SAFETY: as for `Avx2`, whose features are among these.
unsafe impl SimdTier for Avx512Vl {
    type Vector = F32x8;

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    // AVX-512's 32 registers: 28 accumulators, two vectors of B and a broadcast.
    gemm_entry!(F32x8, 14);
}

/// Whether this CPU has what [`supported`] asks and AVX-512F and AVX-512VL.
pub(crate) fn supported_avx512vl() -> bool {
    supported() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}
