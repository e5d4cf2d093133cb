//! The per-row passes: the only code that touches every element of a row.
//!
//! [`RowKernels`] is the whole interface between the semantics (`loss.rs`, which turns the
//! options into per-row coefficients) and the arithmetic over a row. A kernel set only
//! evaluates the expressions documented on each method; it knows nothing of targets,
//! reductions or options, so a faster set replaces the loops without touching semantics.

pub(crate) mod exp;
pub(crate) mod generic;
pub(crate) mod portable;
pub(crate) mod scalar;
pub(crate) mod short;
pub(crate) mod vector;

#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

pub(crate) use generic::{Simd, SimdTier};
pub(crate) use short::{
    GROUP, GROUPS_PER_CALL, SHORT_COLS, ShortJob, ShortLoss, ShortStats, ShortTargets, StridedIo,
    StridedRows,
};

/// Where a write pass reads its logits and writes its result: the same row (in place), or a
/// logits row and a separate output row of the same length.
pub(crate) enum RowIo<'r> {
    /// Read each element, then overwrite it.
    InPlace(&'r mut [f32]),
    /// Read from the first row, write the second.
    Separate(&'r [f32], &'r mut [f32]),
}

impl<'r> RowIo<'r> {
    /// The logits row, read-only (for a stats pass before the write pass).
    pub(crate) fn input(&self) -> &[f32] {
        match self {
            RowIo::InPlace(row) => row,
            RowIo::Separate(x, _) => x,
        }
    }

    /// The output row, to overwrite without reading the logits (ignored rows get zeros).
    pub(crate) fn output(&mut self) -> &mut [f32] {
        match self {
            RowIo::InPlace(row) => row,
            RowIo::Separate(_, out) => out,
        }
    }

    /// The logits row, consuming the pair.
    pub(crate) fn into_input(self) -> &'r [f32] {
        match self {
            RowIo::InPlace(row) => row,
            RowIo::Separate(x, _) => x,
        }
    }

    /// The output row, consuming the pair.
    pub(crate) fn into_output(self) -> &'r mut [f32] {
        match self {
            RowIo::InPlace(row) => row,
            RowIo::Separate(_, out) => out,
        }
    }

    /// (source, destination, length) for the vector passes; source and destination are the
    /// same pointer in place.
    pub(crate) fn raw_parts(self) -> (*const f32, *mut f32, usize) {
        match self {
            RowIo::InPlace(row) => {
                let p = row.as_mut_ptr();
                (p.cast_const(), p, row.len())
            }
            RowIo::Separate(x, out) => {
                assert_eq!(x.len(), out.len(), "a row pair of two lengths");
                (x.as_ptr(), out.as_mut_ptr(), out.len())
            }
        }
    }

    /// Sub-rows `start..start + len` of both rows.
    pub(crate) fn slice(&mut self, start: usize, len: usize) -> RowIo<'_> {
        match self {
            RowIo::InPlace(row) => RowIo::InPlace(&mut row[start..start + len]),
            RowIo::Separate(x, out) => {
                RowIo::Separate(&x[start..start + len], &mut out[start..start + len])
            }
        }
    }
}

/// The smallest positive f32, 2^−149.
pub(crate) const SMALLEST_SUBNORMAL: f32 = f32::from_bits(1);

/// Class weights as the kernels use them: w_c·`scale`, with `scale` a power of two that
/// brings the largest weight near 1 (exact, but for weights that end up below f32's
/// subnormals, which are then negligible next to the largest: a non-zero one becomes the
/// smallest subnormal, never 0, so that it still meets a −∞ logit as ±∞). Products of a weight and a
/// coefficient (smoothing, soft targets, a weighted sum of logits) then stay in f32's range
/// wherever their true value does: with weights of 1e38, Σ_c w_c·x_c would overflow f32 in
/// a vector's lanes; with weights of 1e-45, the coefficient g/W multiplying them would.
/// Coefficients that multiply the weights come pre-multiplied by 1/`scale` (in f64, rounded
/// once), and sums of weighted terms come back divided by it (in f64, exact).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassWeights<'a> {
    /// The weights as given, w_c.
    pub values: &'a [f32],
    /// 2^−e, with e chosen from the largest weight.
    pub scale: f32,
}

impl<'a> ClassWeights<'a> {
    /// The weights with the scale that suits them: 2^−e with 2^(e−1) ≤ max w < 2^e, e kept
    /// within −126..=128 so that the scale stays an f32 (at worst a subnormal power of two,
    /// still exact); 1 for weights that are all 0.
    pub(crate) fn new(values: &'a [f32], max: f32) -> Self {
        let e = if max > 0.0 {
            (f64::from(max).log2().floor() as i32 + 1).clamp(-126, 128)
        } else {
            0
        };
        ClassWeights {
            values,
            scale: 2f64.powi(-e) as f32,
        }
    }

    /// 1/`scale`, exactly: what a sum over scaled weights is multiplied by, and what a
    /// coefficient of the weights is multiplied by before its rounding to f32.
    #[inline(always)]
    pub(crate) fn unscale(&self) -> f64 {
        1.0 / f64::from(self.scale)
    }

    /// Weights `range` of these.
    pub(crate) fn slice(self, range: core::ops::Range<usize>) -> Self {
        ClassWeights {
            values: &self.values[range],
            ..self
        }
    }

    /// w_c·scale, at least the smallest subnormal for a non-zero w_c.
    #[inline(always)]
    pub(crate) fn scaled(&self, c: usize) -> f32 {
        let w = self.values[c];
        (w * self.scale).max(w.min(SMALLEST_SUBNORMAL))
    }
}

/// The coefficients of one gradient or probability row. With x' the softcapped logit,
/// w_c the class weight (1 without weights) and t_c the soft target (0 without them):
///
/// out_c = (scale·exp(x'_c − shift) − smooth·w_c − w_c·t'_c) · (1 − (x'_c / cap)²)
///
/// where the last factor is 1 when `cap == 0`, and out_y = `target`'s value at a hard
/// target y (computed by the caller in f64, where the one-hot's subtraction would cancel).
/// With weights, w_c is the scaled weight of [`ClassWeights`] and `smooth` and `soft`
/// are the caller's coefficients times [`ClassWeights::unscale`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradRow<'a> {
    /// Subtracted from x' before exp: the row max (fused) or the lse (backward).
    pub shift: f32,
    /// Multiplies exp(x' − shift).
    pub scale: f32,
    /// Multiplies w_c for every class (label smoothing's uniform part).
    pub smooth: f32,
    /// The hard target class and its entry's exact value.
    pub target: Option<(usize, f32)>,
    /// The soft targets t' (already multiplied by the upstream scale).
    pub soft: Option<SmoothedTargets<'a>>,
    /// Class weights, `None` for all 1.
    pub weights: Option<ClassWeights<'a>>,
    /// The softcap c, 0 for off.
    pub cap: f32,
}

/// A 16-bit float format the kernels widen to f32 and narrow back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HalfKind {
    /// bfloat16: the high half of an f32.
    Bf16,
    /// IEEE 754 binary16.
    F16,
}

/// A soft target row with label smoothing: t'_c = keep·t_c + uniform (both possibly
/// times a scale). The kernels take f32 coefficients; the row layer keeps f64 ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SmoothedTargets<'a, F = f32> {
    pub probs: &'a [f32],
    /// 1 − ε.
    pub keep: F,
    /// ε / C.
    pub uniform: F,
}

impl<'a> SmoothedTargets<'a, f64> {
    /// The kernels' form, `probs[range]` with f32 coefficients.
    pub(crate) fn to_f32(self, range: core::ops::Range<usize>) -> SmoothedTargets<'a> {
        SmoothedTargets {
            probs: &self.probs[range],
            keep: self.keep as f32,
            uniform: self.uniform as f32,
        }
    }
}

impl SmoothedTargets<'_> {
    /// t'_c.
    #[inline(always)]
    pub(crate) fn at(&self, c: usize) -> f32 {
        self.keep * self.probs[c] + self.uniform
    }
}

impl GradRow<'_> {
    /// out_c = `factor`·out_c, for [`RowKernels::scale_exp`].
    pub(crate) fn times(factor: f32) -> Self {
        GradRow {
            shift: 0.0,
            scale: factor,
            smooth: 0.0,
            target: None,
            soft: None,
            weights: None,
            cap: 0.0,
        }
    }

    /// What class `c` subtracts from its scaled exponential, one element at a time (the
    /// scalar tier's form of `generic::class_terms`): smooth·w_c + w_c·t'_c.
    #[inline(always)]
    pub(crate) fn class_term(&self, c: usize) -> f32 {
        let w = self.weights.map_or(1.0, |w| w.scaled(c));
        let mut term = self.smooth * w;
        if let Some(t) = self.soft {
            term += w * t.at(c);
        }
        term
    }

    /// The value of entry `c` when it is the hard target's.
    #[inline(always)]
    pub(crate) fn target_value(&self, c: usize) -> Option<f32> {
        self.target.filter(|&(y, _)| y == c).map(|(_, v)| v)
    }
}

/// A row's sum of exponentials in two parts: the hard target's term and the others'. When
/// p_y ≈ 1, `rest` keeps its own accuracy, where the whole sum minus the target's term would
/// keep only the whole sum's rounding error.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ExpSums {
    /// Σ_{c ≠ y} of the terms (all of them without a target in the row).
    pub rest: f64,
    /// The target's term, 0 without a target in the row.
    pub target: f64,
}

impl ExpSums {
    /// Both parts together.
    pub(crate) fn total(self) -> f64 {
        self.rest + self.target
    }
}

/// The arithmetic over one row (or a block of one) on one instruction-set tier: the scalar
/// tier's loops, or `generic.rs` over a tier's vectors ([`generic::Simd`]). Every method
/// reads exactly the values it is given (no padding) and no value after writing it.
///
/// A tier is a zero-sized type, and the row driver is generic over it (see
/// `dispatch::Work`): the driver is compiled once per tier and calls each kernel directly,
/// never through a pointer.
pub(crate) trait RowKernels: Copy + Send + Sync {
    /// max_c x'_c. Need not see NaN: a NaN in the row makes the exp sums NaN.
    fn row_max(&self, x: &[f32], cap: f32) -> f32;

    /// Σ_c exp(x'_c − shift), with the hard target's term apart (see [`ExpSums`]). NaN
    /// when any x'_c − shift is NaN (a NaN logit, +∞, or a row of only −∞ with
    /// shift = −∞).
    fn sum_exp(&self, x: &[f32], shift: f32, cap: f32, target: Option<usize>) -> ExpSums;

    /// out_c = exp(x_c − shift) (no softcap), returning their sums as [`RowKernels::sum_exp`]:
    /// the one exp per element that [`RowKernels::scale_exp`] later turns into the gradient.
    fn exp_store_sum(&self, io: RowIo<'_>, shift: f32, target: Option<usize>) -> ExpSums;

    /// Σ_c w_c·(x'_c − shift), with IEEE semantics (0·−∞ is NaN): summed over the scaled
    /// weights and returned unscaled (see [`ClassWeights`]).
    fn weighted_shifted_sum(
        &self,
        x: &[f32],
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> f64;

    /// With t'_c from `targets`: (Σ_{t'_c ≠ 0} w_c·t'_c·(x'_c − shift), Σ_c w_c·t'_c).
    /// Terms whose t'_c is 0 are skipped, so a zero target against a −∞ logit adds 0.
    /// Summed over the scaled weights and returned unscaled (see [`ClassWeights`]).
    fn soft_target_sums(
        &self,
        x: &[f32],
        targets: SmoothedTargets<'_>,
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> (f64, f64);

    /// Runs of [`GROUP`] short rows (at most [`SHORT_COLS`] values each): reads each value
    /// once, writes what `job` says for every row (nothing in a read-only run) and puts
    /// group g's loss terms and lse in `stats[g]` (`stats.len() == rows.groups()`). Rows
    /// this short would spend more on per-row work than on the row: the vector tiers
    /// transpose each group in registers so that each lane is a row, and compute every
    /// per-row term lane-wise too.
    fn short_rows(&self, rows: StridedRows<'_>, job: &ShortJob<'_>, stats: &mut [ShortStats]);

    /// dst_c = src_c widened to f32 (exact); `src` holds the bits of `kind` values.
    fn widen(&self, kind: HalfKind, src: &[u16], dst: &mut [f32]);

    /// dst_c = src_c rounded to `kind`, nearest with ties to even (±∞ on overflow, NaN
    /// for NaN), as bits.
    fn narrow(&self, kind: HalfKind, src: &[f32], dst: &mut [u16]);

    /// Writes the gradient or probability row described by `coef` (see [`GradRow`]),
    /// computing exp(x'_c − coef.shift) from the logits.
    fn write_grad(&self, io: RowIo<'_>, coef: &GradRow<'_>);

    /// Turns stored exponentials e_c into the gradient: out_c = coef.scale·e_c − terms_c
    /// (the terms of [`GradRow`]; `coef.shift` and `coef.cap` are not used).
    fn scale_exp(&self, out: &mut [f32], coef: &GradRow<'_>);

    /// Writes (x_c − max) − ln_sum (log-softmax), with no softcap: subtracting the max
    /// first keeps the low bits of large logits.
    fn write_log_probs(&self, io: RowIo<'_>, max: f32, ln_sum: f32);
}

/// x' = c·tanh(x/c) for c > 0, x itself for c = 0 (±∞ map to ±c).
#[inline(always)]
pub(crate) fn softcap(x: f32, cap: f32) -> f32 {
    if cap > 0.0 { cap * (x / cap).tanh() } else { x }
}
