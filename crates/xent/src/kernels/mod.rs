//! The per-row passes: the only code that touches every element of a row.
//!
//! [`RowKernels`] is the whole interface between the semantics (`loss.rs`, which turns the
//! options into per-row coefficients) and the arithmetic over a row. A kernel set only
//! evaluates the expressions documented on each method; it knows nothing of targets,
//! reductions or options, so a faster set replaces the loops without touching semantics.

pub(crate) mod elem;
pub(crate) mod exp;
pub(crate) mod gemm;
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

pub(crate) use elem::Elem;
pub(crate) use gemm::GemmBlock;
pub(crate) use generic::{Simd, SimdTier};
pub(crate) use short::{
    GROUP, GROUPS_PER_CALL, Normalization, SHORT_COLS, ShortJob, ShortLoss, ShortStats,
    ShortTargets, StridedIo, StridedRows,
};

/// Where a write pass reads its input and writes its result: the same row (in place, one
/// element type), or an input row and a separate output row of the same length. The
/// element types may differ apart: 16-bit logits whose exponentials go to an f32 buffer,
/// or stored f32 exponentials turned into a 16-bit gradient.
pub(crate) enum RowIo<'r, I = f32, O = I> {
    /// Read each element, then overwrite it: `I` and `O` are one type, which the [`Same`]
    /// proves (build it with [`RowIo::in_place`]).
    InPlace(&'r mut [I], Same<I, O>),
    /// Read from the first row, write the second.
    Separate(&'r [I], &'r mut [O]),
}

/// The proof that `I` and `O` are one type, so that a row read as `I` is written as `O`:
/// only `Same<T, T>` can be built ([`Same::PROOF`]), and its conversion is the identity.
pub(crate) struct Same<I, O>(fn(&mut [I]) -> &mut [O]);

impl<I, O> Clone for Same<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for Same<I, O> {}

impl<T> Same<T, T> {
    /// The one proof: `T` is `T`.
    pub(crate) const PROOF: Self = Same(identity);
}

fn identity<T>(row: &mut [T]) -> &mut [T] {
    row
}

impl<I, O> Same<I, O> {
    /// `row` as the slice of `O` it is.
    pub(crate) fn cast(self, row: &mut [I]) -> &mut [O] {
        (self.0)(row)
    }
}

impl<'r, T> RowIo<'r, T> {
    /// A row overwritten with its result.
    pub(crate) fn in_place(row: &'r mut [T]) -> Self {
        RowIo::InPlace(row, Same::PROOF)
    }
}

impl<'r, I, O> RowIo<'r, I, O> {
    /// The input row, read-only (for a stats pass before the write pass).
    pub(crate) fn input(&self) -> &[I] {
        match self {
            RowIo::InPlace(row, _) => row,
            RowIo::Separate(x, _) => x,
        }
    }

    /// The output row, to overwrite without reading the input (ignored rows get zeros).
    pub(crate) fn output(&mut self) -> &mut [O] {
        match self {
            RowIo::InPlace(row, same) => same.cast(row),
            RowIo::Separate(_, out) => out,
        }
    }

    /// The input row, consuming the pair.
    pub(crate) fn into_input(self) -> &'r [I] {
        match self {
            RowIo::InPlace(row, _) => row,
            RowIo::Separate(x, _) => x,
        }
    }

    /// The output row, consuming the pair.
    pub(crate) fn into_output(self) -> &'r mut [O] {
        match self {
            RowIo::InPlace(row, same) => same.cast(row),
            RowIo::Separate(_, out) => out,
        }
    }

    /// (source, destination, length) for the vector passes; source and destination are the
    /// same pointer in place.
    pub(crate) fn raw_parts(self) -> (*const I, *mut O, usize) {
        match self {
            RowIo::InPlace(row, same) => {
                // Both pointers come from the one exclusive borrow (a pointer taken from
                // `row` before the cast would be invalidated by it); `I` is `O` (`same`).
                let out = same.cast(row);
                let p = out.as_mut_ptr();
                (p.cast_const().cast::<I>(), p, out.len())
            }
            RowIo::Separate(x, out) => {
                assert_eq!(x.len(), out.len(), "a row pair of two lengths");
                (x.as_ptr(), out.as_mut_ptr(), out.len())
            }
        }
    }

    /// The pair cut into blocks of `len` values (the last one shorter).
    pub(crate) fn into_blocks(self, len: usize) -> Vec<RowIo<'r, I, O>> {
        match self {
            RowIo::InPlace(row, same) => row
                .chunks_mut(len)
                .map(|block| RowIo::InPlace(block, same))
                .collect(),
            RowIo::Separate(x, out) => x
                .chunks(len)
                .zip(out.chunks_mut(len))
                .map(|(x, o)| RowIo::Separate(x, o))
                .collect(),
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
pub(crate) struct GradCoefs32<'a> {
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
    /// Two powers of two every entry is multiplied by last, before its one rounding to the
    /// output type: a row whose coefficients would overflow f32 is computed scaled down
    /// and scaled back here (exact, but where the entry itself overflows). `None` for 1.
    pub rescale: Option<(f32, f32)>,
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

/// The arithmetic over one row (or a block of one) on one instruction-set tier:
/// `generic.rs` over the tier's vectors ([`generic::Simd`]; the scalar tier's vector has
/// one lane). Every method reads exactly the values it is given (no padding) and no value
/// after writing it. Rows are of any [`Elem`]: 16-bit values are widened as they are
/// loaded and every output is rounded once as it is stored.
///
/// A tier is a zero-sized type, and the row driver is generic over it (see
/// `dispatch::Work`): the driver is compiled once per tier and calls each kernel directly,
/// never through a pointer.
pub(crate) trait RowKernels: Copy + Send + Sync {
    /// max_c x'_c. Need not see NaN: a NaN in the row makes the exp sums NaN.
    fn row_max<E: Elem>(&self, x: &[E], cap: f32) -> f32;

    /// Σ_c exp(x'_c − shift), with the hard target's term apart (see [`ExpSums`]). NaN
    /// when any x'_c − shift is NaN (a NaN logit, +∞, or a row of only −∞ with
    /// shift = −∞).
    fn sum_exp<E: Elem>(&self, x: &[E], shift: f32, cap: f32, target: Option<usize>) -> ExpSums;

    /// out_c = exp(x_c − shift) in f32 (no softcap), returning their sums as
    /// [`RowKernels::sum_exp`]: the one exp per element that [`RowKernels::scale_exp`] later
    /// turns into the gradient.
    fn exp_store_sum<E: Elem>(
        &self,
        io: RowIo<'_, E, f32>,
        shift: f32,
        target: Option<usize>,
    ) -> ExpSums;

    /// Σ_c w_c·(x'_c − shift), with IEEE semantics (0·−∞ is NaN): summed over the scaled
    /// weights and returned unscaled (see [`ClassWeights`]).
    fn weighted_shifted_sum<E: Elem>(
        &self,
        x: &[E],
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> f64;

    /// With t'_c from `targets`: (Σ_{t'_c ≠ 0} w_c·t'_c·(x'_c − shift), Σ_c w_c·t'_c).
    /// Terms whose t'_c is 0 are skipped, so a zero target against a −∞ logit adds 0.
    /// Summed over the scaled weights and returned unscaled (see [`ClassWeights`]).
    fn soft_target_sums<E: Elem>(
        &self,
        x: &[E],
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
    fn short_rows<E: Elem>(
        &self,
        rows: StridedRows<'_, E>,
        job: &ShortJob<'_>,
        stats: &mut [ShortStats],
    );

    /// dst_c = src_c converted (widened exactly, or rounded to nearest with ties to even:
    /// ±∞ on overflow, NaN for NaN).
    fn convert<I: Elem, O: Elem>(&self, src: &[I], dst: &mut [O]);

    /// Writes the gradient or probability row described by `coef` (see [`GradCoefs32`]),
    /// computing exp(x'_c − coef.shift) from the logits.
    fn write_grad<E: Elem>(&self, io: RowIo<'_, E>, coef: &GradCoefs32<'_>);

    /// Turns stored exponentials e_c into the gradient: out_c = coef.scale·e_c − terms_c
    /// (the terms of [`GradCoefs32`]; `coef.shift` and `coef.cap` are not used).
    fn scale_exp<O: Elem>(&self, io: RowIo<'_, f32, O>, coef: &GradCoefs32<'_>);

    /// Writes (x_c − max) − ln_sum (log-softmax), with no softcap: subtracting the max
    /// first keeps the low bits of large logits.
    fn write_log_probs<E: Elem>(&self, io: RowIo<'_, E>, max: f32, ln_sum: f32);

    /// x' = c·tanh(x/c) of one logit for c > 0 (±∞ map to ±c), x itself for c = 0: the
    /// bits every pass of this tier computes for that logit, so that a value taken out of a
    /// row (the target's x'_y) is the one its row's sums were made of.
    fn softcap(&self, x: f32, cap: f32) -> f32;

    /// The (rows, columns) of the tier's matrix-product micro-tile: the widths of the
    /// panels [`RowKernels::gemm_block`] takes its packed operands in.
    fn gemm_tile(&self) -> (usize, usize);

    /// C (+)= A·B over one block of packed panels (see [`GemmBlock`]).
    fn gemm_block(&self, block: GemmBlock<'_>);
}
