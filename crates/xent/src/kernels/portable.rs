//! The portable tier: `generic.rs` over `wide::f32x8`, whose instructions are chosen at
//! compile time (SSE2 on a default x86-64 build, NEON on aarch64).

use wide::{f32x8, i32x8};

use super::generic::gemm_entry;
use super::vector::F32Vector;

/// Eight f32 lanes in whatever registers `wide` compiles them to.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct Wide(f32x8);

// SAFETY: `wide` only emits instructions the compilation target has, so every method is
// safe to call on any CPU this build runs on.
unsafe impl F32Vector for Wide {
    const LANES: usize = 8;
    type Mask = Self;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Wide(f32x8::splat(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable values at `p`.
        Wide(f32x8::from(unsafe {
            p.cast::<[f32; 8]>().read_unaligned()
        }))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable values at `p`.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Wide(self.0 + o.0)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Wide(self.0 - o.0)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Wide(self.0 * o.0)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Wide(self.0 / o.0)
    }
    #[inline(always)]
    unsafe fn mul_add(self, m: Self, a: Self) -> Self {
        Wide(self.0.mul_add(m.0, a.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // `fast_max` is the raw instruction: SSE's maxps returns its second operand when
        // either is NaN, NEON's fmax returns NaN; both keep a NaN in `o`.
        Wide(self.0.fast_max(o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        // As for `max`: a NaN in `o` survives.
        Wide(self.0.fast_min(o.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Wide(self.0.abs())
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> Self {
        Wide(self.0.simd_lt(o.0))
    }
    #[inline(always)]
    unsafe fn eq(self, o: Self) -> Self {
        Wide(self.0.simd_eq(o.0))
    }
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> Self {
        Wide(LANE_INDEX.simd_lt(f32x8::splat(n as f32)))
    }
    #[inline(always)]
    unsafe fn lane(k: usize) -> Self {
        Wide(LANE_INDEX.simd_eq(f32x8::splat(k as f32)))
    }
    #[inline(always)]
    unsafe fn select(mask: Self, a: Self, b: Self) -> Self {
        Wide(mask.0.select(a.0, b.0))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        let bits: i32x8 = wide::bytemuck::cast(self.0);
        Wide(wide::bytemuck::cast(bits << 23u32))
    }
    #[inline(always)]
    unsafe fn with_sign_of(self, sign: Self) -> Self {
        let sign_bit = f32x8::splat(-0.0);
        Wide((self.0 & !sign_bit) | (sign.0 & sign_bit))
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        self.0.reduce_add()
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        self.0
            .to_array()
            .into_iter()
            .fold(f32::NEG_INFINITY, f32::max)
    }
}

super::vector::row_groups_of_8!(Wide);

/// The 8×8 transpose of eight vectors: lane `j` of result `i` is lane `i` of input `j`.
#[inline(always)]
unsafe fn transpose8(rows: [Wide; 8]) -> [Wide; 8] {
    let [a, b, c, d, e, f, g, h] = rows;
    f32x8::transpose([a.0, b.0, c.0, d.0, e.0, f.0, g.0, h.0]).map(Wide)
}

/// Each lane's index, for lane masks.
const LANE_INDEX: f32x8 = f32x8::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);

/// The portable tier; available on every CPU the build runs on.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

// SAFETY: `Wide` uses only the compilation target's instructions.
unsafe impl super::SimdTier for Portable {
    type Vector = Wide;

    #[inline(always)]
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    // 8 accumulators of 8 lanes (16 SSE2 registers on x86-64, half of NEON's 32).
    gemm_entry!(Wide, 4);
}
