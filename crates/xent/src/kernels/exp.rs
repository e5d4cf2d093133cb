//! exp and tanh over any [`F32Vector`], accurate to a couple of ulp.
//!
//! exp: x = n·ln2 + r with n = round(x·log2 e) and |r| ≤ ln2/2, e^r by a degree-6 minimax
//! polynomial, 2^n built directly in the exponent bits. The polynomial's coefficients were
//! fitted for this crate by a Remez exchange on the relative error (1 and 1 fixed for the
//! first two terms, so exp(0) = 1 exactly); its own error is 2.5e-8 relative, below ¼ ulp.
//!
//! tanh: an odd minimax polynomial below 0.625 (relative error 4.4e-9), and
//! (1 − e)/(1 + e) with e = exp(−2|y|) above, where neither numerator nor denominator
//! cancels.

use super::vector::F32Vector;

/// exp(x) is 0 in f32 below this (the clamp makes 2^n = 0 for these x).
const EXP_LO: f32 = -88.0;
/// Above this exp(x) would overflow the exponent trick; x − shift never gets there.
const EXP_HI: f32 = 88.0;
const LOG2_E: f32 = core::f32::consts::LOG2_E;
/// ln 2 split so that n·LN2_HI is exact for |n| < 2^8 (0.693145751953125 has 16
/// significant bits).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2^23 + 127: adding it rounds to an integer and leaves n + 127 in the low bits.
const ROUND_BIAS: f32 = 12_582_912.0 + 127.0;
const EXP_C2: f32 = 0.499_999_85;
const EXP_C3: f32 = 0.166_666;
const EXP_C4: f32 = 0.041_673_71;
const EXP_C5: f32 = 0.008_359_227;
const EXP_C6: f32 = 0.001_334_455;

/// e^x, lane-wise: within 2 ulp on [−87.33, 0] (the range the passes use, where x is a
/// logit minus the row max), 0 below −88 and for −∞, NaN for NaN. Inputs above 0 stay
/// finite: values up to 88 are approximate, larger ones are clamped.
#[inline(always)]
pub(crate) unsafe fn exp<V: F32Vector>(x: V) -> V {
    // SAFETY: the caller runs on a CPU with V's features (the trait's contract).
    unsafe { exp_n([x])[0] }
}

/// [`exp`] of `N` vectors at once, each step applied to all of them before the next: the
/// `N` dependency chains interleave in program order, so the CPU's scheduler finds
/// independent work within a short window (one chain is ~40 cycles of latency).
#[inline(always)]
pub(crate) unsafe fn exp_n<V: F32Vector, const N: usize>(x: [V; N]) -> [V; N] {
    // SAFETY: the caller runs on a CPU with V's features (the trait's contract).
    unsafe {
        let (lo, hi) = (V::splat(EXP_LO), V::splat(EXP_HI));
        let (log2e, bias) = (V::splat(LOG2_E), V::splat(ROUND_BIAS));
        let (ln2_hi, ln2_lo) = (V::splat(-LN2_HI), V::splat(-LN2_LO));
        // (Loops, not closures: a closure would be compiled without V's target features.)
        let (mut x, mut biased, mut r, mut r2) = (x, x, x, x);
        for v in x.iter_mut() {
            // max/min keep a NaN in their second operand, so NaN flows through.
            *v = lo.max(hi.min(*v));
        }
        for k in 0..N {
            biased[k] = x[k].mul_add(log2e, bias);
        }
        for k in 0..N {
            let n = biased[k].sub(bias);
            r[k] = n.mul_add(ln2_lo, n.mul_add(ln2_hi, x[k]));
        }
        for k in 0..N {
            r2[k] = r[k].mul(r[k]);
        }
        // p(r) = 1 + r + r²·((c2 + c3·r) + r²·((c4 + c5·r) + c6·r²)), Estrin's scheme:
        // a shorter dependency chain than Horner's for the same coefficients.
        let mut p = r;
        for k in 0..N {
            let a = V::splat(EXP_C3).mul_add(r[k], V::splat(EXP_C2));
            let b = V::splat(EXP_C5).mul_add(r[k], V::splat(EXP_C4));
            let one_r = r[k].add(V::splat(1.0));
            let q = V::splat(EXP_C6).mul_add(r2[k], b);
            let t = q.mul_add(r2[k], a);
            p[k] = t.mul_add(r2[k], one_r);
        }
        // n ∈ [−127, 127]: n + 127 sits in the low 8 bits of `biased`; shifted into the
        // exponent field it is 2^n, and exactly 0 for n = −127.
        for k in 0..N {
            p[k] = p[k].mul(biased[k].shl23());
        }
        p
    }
}

/// ln x for x in [1, 16] — the sum of at most [`super::SHORT_COLS`] exponentials one of
/// which is exp(0) = 1 — within about 2 ulp; NaN for NaN.
///
/// x = 2^k·f with f in [√½, √2) and k ≤ 4 (an exact scaling; no exponent-bit tricks
/// needed over this range), then ln f = 2·atanh(s) with s = (f − 1)/(f + 1), |s| ≤ 0.172:
/// the odd series to s⁹ leaves 2·s¹¹/11 < 1e-9.
#[inline(always)]
pub(crate) unsafe fn ln_short_sum<V: F32Vector>(x: V) -> V {
    // SAFETY: the caller runs on a CPU with V's features (the trait's contract).
    unsafe {
        // k = the number of thresholds √2·2^j below x, compared at once (a chain of
        // halvings would be the longest latency in a short group); a NaN compares false
        // and stays as it is.
        let one = V::splat(1.0);
        let (mut k, mut scale) = (V::splat(0.0), one);
        for j in 0..4 {
            let above = V::splat(core::f32::consts::SQRT_2 * (1 << j) as f32).lt(x);
            k = V::select(above, V::splat((j + 1) as f32), k);
            scale = V::select(above, V::splat(1.0 / (2 << j) as f32), scale);
        }
        let f = x.mul(scale);
        // ln(1 + u) = 2·atanh(s) = 2s + s·R(s²) with s = u/(2 + u), rewritten as
        // u − (u²/2 − s·(u²/2 + R)) (2s = u − s·u and s·u = (u²/2)(1 − s)): u is exact,
        // so the rounding errors sit in a correction below u²/2.
        let u = f.sub(one);
        let s = u.div(u.add(V::splat(2.0)));
        let z = s.mul(s);
        let r = V::splat(2.0 / 9.0)
            .mul_add(z, V::splat(2.0 / 7.0))
            .mul_add(z, V::splat(2.0 / 5.0))
            .mul_add(z, V::splat(2.0 / 3.0))
            .mul(z);
        let half_u2 = V::splat(0.5).mul(u).mul(u);
        let correction = half_u2.sub(s.mul_add(half_u2.add(r), k.mul(V::splat(LN2_LO))));
        // k·LN2_HI is exact for k ≤ 4.
        k.mul_add(V::splat(LN2_HI), u.sub(correction))
    }
}

/// Below this |y| tanh uses the odd polynomial.
const TANH_SMALL: f32 = 0.625;
const TANH_D0: f32 = -0.333_332_8;
const TANH_D1: f32 = 0.133_314_42;
const TANH_D2: f32 = -0.053_739_715;
const TANH_D3: f32 = 0.020_639_088;
const TANH_D4: f32 = -0.005_704_988;

/// tanh(y), lane-wise, within a few ulp everywhere; ±1 at ±∞, NaN for NaN.
#[inline(always)]
pub(crate) unsafe fn tanh<V: F32Vector>(y: V) -> V {
    // SAFETY: the caller runs on a CPU with V's features (the trait's contract).
    unsafe {
        let a = y.abs();
        let a2 = a.mul(a);
        let q = V::splat(TANH_D4).mul_add(a2, V::splat(TANH_D3));
        let q = q.mul_add(a2, V::splat(TANH_D2));
        let q = q.mul_add(a2, V::splat(TANH_D1));
        let q = q.mul_add(a2, V::splat(TANH_D0));
        let small = q.mul(a2).mul_add(a, a);
        let e = exp(V::splat(-2.0).mul(a));
        let one = V::splat(1.0);
        let large = one.sub(e).div(one.add(e));
        // `a < TANH_SMALL` is false for NaN, and `large` is NaN there.
        V::select(a.lt(V::splat(TANH_SMALL)), small, large).with_sign_of(y)
    }
}

/// c·tanh(x/c), lane-wise, for c > 0.
#[inline(always)]
pub(crate) unsafe fn softcap<V: F32Vector>(x: V, cap: V, inv_cap: V) -> V {
    // SAFETY: the caller runs on a CPU with V's features (the trait's contract).
    unsafe { cap.mul(tanh(x.mul(inv_cap))) }
}

#[cfg(test)]
mod tests {
    //! exp and tanh of every vector tier against f64, in ulp of the f32 result.

    use super::super::vector::F32Vector;
    use rayon::prelude::*;

    /// The distance from `got` to the exact `want` in units of the f32 spacing at `want`.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let spacing = f64::from(f32::from_bits(w.abs().to_bits() + 1) - w.abs());
        (f64::from(got) - want).abs() / spacing
    }

    /// Applies `f` to `xs` in vectors of `V` (a last, partial one through the masked
    /// load and store).
    fn map<V: F32Vector>(xs: &[f32], out: &mut [f32], f: unsafe fn(V) -> V) {
        for (x, o) in xs.chunks(V::LANES).zip(out.chunks_mut(V::LANES)) {
            // SAFETY: the test calls this only for tiers the CPU has; `x` and `o` hold
            // `x.len()` values.
            unsafe {
                if x.len() == V::LANES {
                    f(V::load(x.as_ptr())).store(o.as_mut_ptr());
                } else {
                    f(V::load_partial(x.as_ptr(), x.len(), 0.0))
                        .store_partial(o.as_mut_ptr(), x.len());
                }
            }
        }
    }

    /// The worst error of `f` over every `step`-th f32 whose bits lie in `bits`, in ulp.
    /// Under Miri, which interprets each operation about a million times slower, about 2000
    /// values spread over the range in one chunk instead (an odd step, so that the low bits
    /// vary too).
    fn sweep(
        bits: std::ops::Range<u32>,
        step: usize,
        f: fn(&[f32], &mut [f32]),
        exact: fn(f64) -> f64,
    ) -> (f64, f32) {
        let (chunk, step) = if cfg!(miri) {
            (u32::MAX, (bits.len() / 2000).max(step) | 1)
        } else {
            (1 << 20, step)
        };
        let chunks: Vec<u32> = bits.clone().step_by(chunk as usize).collect();
        chunks
            .into_par_iter()
            .map(|start| {
                let end = start.saturating_add(chunk).min(bits.end);
                let xs: Vec<f32> = (start..end).step_by(step).map(f32::from_bits).collect();
                let mut out = vec![0.0f32; xs.len()];
                f(&xs, &mut out);
                xs.iter()
                    .zip(&out)
                    .map(|(&x, &y)| (ulps(y, exact(f64::from(x))), x))
                    .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
            })
            .reduce(|| (0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// A lane-wise function applied over a slice.
    type Map = fn(&[f32], &mut [f32]);

    /// One vector tier's lane-wise functions, over slices.
    struct Tier {
        name: &'static str,
        exp: Map,
        tanh: Map,
        ln: Map,
    }

    /// Instantiates [`Tier`] for a vector type inside functions compiled with `$features`.
    macro_rules! tier {
        ($name:literal, $V:ty $(, $features:literal)?) => {{
            $(#[target_feature(enable = $features)])?
            fn exp(x: &[f32], o: &mut [f32]) {
                map::<$V>(x, o, super::exp);
            }
            $(#[target_feature(enable = $features)])?
            fn tanh(x: &[f32], o: &mut [f32]) {
                map::<$V>(x, o, super::tanh);
            }
            $(#[target_feature(enable = $features)])?
            fn ln(x: &[f32], o: &mut [f32]) {
                map::<$V>(x, o, super::ln_short_sum);
            }
            #[allow(unused_unsafe, reason = "the portable tier's functions are safe")]
            Tier {
                name: $name,
                // SAFETY: the caller detected the tier's features first.
                exp: |x, o| unsafe { exp(x, o) },
                // SAFETY: as above.
                tanh: |x, o| unsafe { tanh(x, o) },
                // SAFETY: as above.
                ln: |x, o| unsafe { ln(x, o) },
            }
        }};
    }

    /// Every tier this CPU has.
    fn tiers() -> Vec<Tier> {
        let mut tiers = vec![
            tier!("portable", crate::kernels::portable::Wide),
            tier!("scalar", crate::kernels::scalar::One),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::kernels::avx2::{F32x8, supported, supported_avx512vl};
            use crate::kernels::avx512::F32x16;
            if supported_avx512vl() {
                tiers.push(tier!("avx512", F32x16, "avx512f"));
                tiers.push(tier!("avx512vl", F32x8, "avx2,fma,avx512f,avx512vl"));
            }
            if supported() {
                tiers.push(tier!("avx2", F32x8, "avx2,fma"));
            }
        }
        tiers
    }

    /// Every f32 in [−87.33, 0]: the exp the passes use is within 2 ulp of f64's.
    #[test]
    fn exp_is_within_2_ulp_on_every_f32_in_range() {
        let lo = (-87.33f32).to_bits();
        for Tier { name, exp, .. } in tiers() {
            // Negative floats: bits from −0.0 (0x8000_0000) up to −87.33 grow with |x|.
            let (worst, at) = sweep(0x8000_0000..lo + 1, 1, exp, f64::exp);
            println!("exp, {name} tier: max error {worst:.3} ulp (at x = {at}) over [-87.33, 0]");
            assert!(worst <= 2.0, "{name}: {worst} ulp at {at}");
        }
    }

    /// exp's special values on every tier.
    #[test]
    fn exp_special_values() {
        for Tier { name, exp, .. } in tiers() {
            let xs = [
                f32::NEG_INFINITY,
                -1000.0,
                -88.5,
                f32::NAN,
                0.0,
                -0.0,
                -1e-30,
                -103.0,
            ];
            let mut out = [1.0f32; 8];
            exp(&xs, &mut out);
            assert_eq!(&out[..3], &[0.0, 0.0, 0.0], "{name}");
            assert!(out[3].is_nan(), "{name}");
            assert_eq!(&out[4..7], &[1.0, 1.0, 1.0], "{name}");
            assert!(out[7] == 0.0, "{name}");
        }
    }

    /// tanh over every 61st f32 in [0, 20] and their negatives, and its special values.
    #[test]
    fn tanh_is_accurate() {
        for Tier { name, tanh, .. } in tiers() {
            let hi = 20f32.to_bits();
            let (worst, at) = sweep(0..hi, 61, tanh, f64::tanh);
            let (worst_neg, at_neg) = sweep(0x8000_0000..0x8000_0000 + hi, 61, tanh, f64::tanh);
            println!(
                "tanh, {name} tier: max error {worst:.3} ulp (at {at}), {worst_neg:.3} (at {at_neg})"
            );
            assert!(
                worst <= 4.0 && worst_neg <= 4.0,
                "{name}: {worst} at {at}, {worst_neg} at {at_neg}"
            );
            let xs = [
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                0.0,
                -0.0,
                1e-30,
                30.0,
                -30.0,
            ];
            let mut out = [0.0f32; 8];
            tanh(&xs, &mut out);
            assert_eq!((out[0], out[1]), (1.0, -1.0), "{name}");
            assert!(out[2].is_nan(), "{name}");
            assert_eq!(out[3].to_bits(), 0.0f32.to_bits(), "{name}");
            assert_eq!(out[4].to_bits(), (-0.0f32).to_bits(), "{name}");
            assert_eq!((out[5], out[6], out[7]), (1e-30, 1.0, -1.0), "{name}");
        }
    }

    /// Every f32 in [1, 16] (the sums of short rows): ln within 2 ulp of f64's, and NaN
    /// for NaN.
    #[test]
    fn ln_short_sum_is_within_2_ulp_on_every_f32_in_range() {
        for Tier { name, ln, .. } in tiers() {
            let (worst, at) = sweep(1f32.to_bits()..16f32.to_bits() + 1, 1, ln, f64::ln);
            println!("ln, {name} tier: max error {worst:.3} ulp (at x = {at}) over [1, 16]");
            assert!(worst <= 2.0, "{name}: {worst} ulp at {at}");
            let mut out = [0.0f32; 8];
            ln(&[f32::NAN, 1.0, 2.0, 16.0, 1.5, 3.0, 5.0, 9.0], &mut out);
            assert!(out[0].is_nan(), "{name}");
            assert_eq!(out[1], 0.0, "{name}");
        }
    }
}
