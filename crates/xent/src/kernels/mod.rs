//! The per-row passes: the only code that touches every element of a row.
//!
//! [`RowKernels`] is the whole interface between the semantics (`loss.rs`, which turns the
//! options into per-row coefficients) and the arithmetic over a row. A kernel set only
//! evaluates the expressions documented on each method; it knows nothing of targets,
//! reductions or options, so a faster set replaces the loops without touching semantics.

pub(crate) mod scalar;

/// Where a write pass reads its logits and writes its result: the same row (in place), or a
/// logits row and a separate output row of the same length.
pub(crate) enum RowIo<'r> {
    /// Read each element, then overwrite it.
    InPlace(&'r mut [f32]),
    /// Read from the first row, write the second.
    Separate(&'r [f32], &'r mut [f32]),
}

impl RowIo<'_> {
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
}

/// The coefficients of one gradient or probability row. With x' the softcapped logit,
/// w_c the class weight (1 without weights) and t_c the soft target (0 without them):
///
/// out_c = (scale·exp(x'_c − shift) − smooth·w_c − w_c·t'_c − [c = y]·target_coef)
///         · (1 − (x'_c / cap)²)
///
/// where the last factor is 1 when `cap == 0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradRow<'a> {
    /// Subtracted from x' before exp: the row max (fused) or the lse (backward).
    pub shift: f32,
    /// Multiplies exp(x' − shift).
    pub scale: f32,
    /// Multiplies w_c for every class (label smoothing's uniform part).
    pub smooth: f32,
    /// The hard target class and the coefficient subtracted there.
    pub target: Option<(usize, f32)>,
    /// The soft targets t' (already multiplied by the upstream scale).
    pub soft: Option<SmoothedTargets<'a>>,
    /// Class weights, `None` for all 1.
    pub weights: Option<&'a [f32]>,
    /// The softcap c, 0 for off.
    pub cap: f32,
}

/// A soft target row with label smoothing: t'_c = keep·t_c + uniform.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SmoothedTargets<'a> {
    pub probs: &'a [f32],
    /// 1 − ε.
    pub keep: f32,
    /// ε / C.
    pub uniform: f32,
}

impl SmoothedTargets<'_> {
    /// t'_c.
    #[inline(always)]
    pub(crate) fn at(&self, c: usize) -> f32 {
        self.keep * self.probs[c] + self.uniform
    }
}

/// The arithmetic over one row, written once per instruction-set tier. Every method reads
/// exactly the `cols` elements it is given (no padding) and no element twice after writing it.
pub(crate) trait RowKernels: Sync {
    /// max_c x'_c. Need not see NaN: a NaN in the row makes [`RowKernels::sum_exp`] NaN.
    fn row_max(&self, x: &[f32], cap: f32) -> f32;

    /// Σ_c exp(x'_c − shift). NaN when any x'_c − shift is NaN (a NaN logit, +∞, or a row
    /// of only −∞ with shift = −∞).
    fn sum_exp(&self, x: &[f32], shift: f32, cap: f32) -> f64;

    /// Σ_c w_c·(x'_c − shift), with IEEE semantics (0·−∞ is NaN).
    fn weighted_shifted_sum(&self, x: &[f32], weights: Option<&[f32]>, shift: f32, cap: f32)
    -> f64;

    /// With t'_c from `targets`: (Σ_{t'_c ≠ 0} w_c·t'_c·(x'_c − shift), Σ_c w_c·t'_c).
    /// Terms whose t'_c is 0 are skipped, so a zero target against a −∞ logit adds 0.
    fn soft_target_sums(
        &self,
        x: &[f32],
        targets: SmoothedTargets<'_>,
        weights: Option<&[f32]>,
        shift: f32,
        cap: f32,
    ) -> (f64, f64);

    /// Writes the gradient or probability row described by `coef` (see [`GradRow`]).
    fn write_grad(&self, io: RowIo<'_>, coef: &GradRow<'_>);

    /// Writes (x_c − max) − ln_sum (log-softmax), with no softcap: subtracting the max
    /// first keeps the low bits of large logits.
    fn write_log_probs(&self, io: RowIo<'_>, max: f32, ln_sum: f32);
}

/// x' = c·tanh(x/c) for c > 0, x itself for c = 0 (±∞ map to ±c).
#[inline(always)]
pub(crate) fn softcap(x: f32, cap: f32) -> f32 {
    if cap > 0.0 { cap * (x / cap).tanh() } else { x }
}
