//! One row, in column blocks: the row statistics (max, Σ exp and the sums the loss needs)
//! and the write of its output, block by block.
//!
//! The block length depends on the row length only, and blocks are combined in order, so a
//! row gives the same bits whether its blocks run on one thread or on several (which is how
//! a batch of fewer rows than threads still uses every core).
//!
//! Phase 1 reads each block twice while it sits in L1 (its max, then exp(x − max) with the
//! sums), storing the exponentials in f32 when there is an output: over an f32 output row,
//! or in an f32 buffer for a 16-bit row (whose output would round them). One exp per
//! element. Phase 2 turns them into the output with one multiply-subtract per element,
//! using a per-block factor exp(max_b − max) that reconciles the blocks' shifts.

use rayon::prelude::*;

use crate::kernels::{ClassWeights, Elem, GradCoefs32, RowIo, RowKernels, SmoothedTargets};

/// At most this many blocks per row (their statistics live on the stack).
pub(crate) const MAX_BLOCKS: usize = 64;
/// The shortest block: 16 KiB of f32, half an L1 data cache.
const MIN_BLOCK: usize = 4096;

/// The block length for rows of `cols` values.
pub(crate) fn block_len(cols: usize) -> usize {
    cols.div_ceil(MAX_BLOCKS)
        .next_multiple_of(64)
        .max(MIN_BLOCK)
}

/// Where a row's logits come from: read-only, or read with their exponentials stored in
/// f32 (see [`exp_store`]).
pub(crate) enum RowSrc<'r, E = f32> {
    Read(&'r [E]),
    Store(RowIo<'r, E, f32>),
}

impl<'r, E: Elem> RowSrc<'r, E> {
    pub(crate) fn input(&self) -> &[E] {
        match self {
            RowSrc::Read(x) => x,
            RowSrc::Store(io) => io.input(),
        }
    }

    fn len(&self) -> usize {
        self.input().len()
    }

    /// The row cut into blocks of `len` values, with their offsets.
    fn into_blocks(self, len: usize) -> Vec<(usize, RowSrc<'r, E>)> {
        match self {
            RowSrc::Read(x) => x
                .chunks(len)
                .enumerate()
                .map(|(b, x)| (b * len, RowSrc::Read(x)))
                .collect(),
            RowSrc::Store(io) => io
                .into_blocks(len)
                .into_iter()
                .enumerate()
                .map(|(b, io)| (b * len, RowSrc::Store(io)))
                .collect(),
        }
    }
}

/// Where phase 1 stored a row's exponentials (see [`exp_store`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredIn {
    /// Over the row's f32 output.
    Output,
    /// In the call's f32 buffer (a 16-bit row).
    Buffer,
}

/// Where phase 1 stores the exponentials of a row with output `io`: over the f32 output
/// itself, or for a 16-bit row in `buffer` (its length), `None` without one.
pub(crate) fn exp_store<'r, E: Elem>(
    io: RowIo<'r, E>,
    buffer: Option<&'r mut [f32]>,
) -> Option<(RowIo<'r, E, f32>, StoredIn)> {
    match E::f32_output(io) {
        Ok(io) => Some((io, StoredIn::Output)),
        Err(io) => buffer.map(|b| (RowIo::Separate(io.into_input(), b), StoredIn::Buffer)),
    }
}

/// What phase 1 gathers besides the max and Σ exp.
#[derive(Clone, Copy)]
pub(crate) struct Gather<'a> {
    /// The softcap c (0: off).
    pub cap: f32,
    /// Gather Σ_c w_c·(x'_c − max) for label smoothing.
    pub smoothing: bool,
    /// The class weights of the whole row.
    pub weights: Option<ClassWeights<'a>>,
    /// Soft targets of the whole row, for Σ w·t'·(x' − max) and Σ w·t'.
    pub soft: Option<SmoothedTargets<'a>>,
    /// Σ_c w_c of each block (for label smoothing), see [`block_weight_sums`].
    pub block_weights: &'a [f64; MAX_BLOCKS],
    /// The row's hard target: its exp is summed apart from the others (see
    /// [`RowStats::rest`]).
    pub target: Option<usize>,
}

/// Σ_c w_c over each block of a row of `cols` values (the block length for the whole
/// call), so that phase 1 can move the weighted sums from the block's shift to the row's.
pub(crate) fn block_weight_sums(
    cols: usize,
    weights: Option<ClassWeights<'_>>,
) -> [f64; MAX_BLOCKS] {
    let len = block_len(cols);
    let mut sums = [0.0; MAX_BLOCKS];
    for (b, sum) in sums.iter_mut().enumerate().take(cols.div_ceil(len)) {
        // `b·len < cols` here, but `(b + 1)·len` overflows for a call of no rows and
        // near-usize::MAX columns, which is valid (found by the fuzzer).
        let start = b * len;
        let range = start..start.saturating_add(len).min(cols);
        *sum = match weights {
            Some(w) => w.values[range].iter().map(|&w| f64::from(w)).sum(),
            None => range.len() as f64,
        };
    }
    sums
}

/// Phase 1's result for one block, every sum taken relative to `shift`.
#[derive(Clone, Copy, Default)]
struct BlockStats {
    /// max_c x'_c over the block.
    max: f32,
    /// The shift the sums use: the max, or 0 for a block of only −∞ (whose exps are 0).
    shift: f32,
    sum: f64,
    weighted: f64,
    dot: f64,
    t_total: f64,
    /// exp(x'_y − shift) when the target y lies in the block (then not in `sum`), else 0.
    target_exp: f64,
}

/// The statistics of a whole row, every sum relative to its max.
#[derive(Clone)]
pub(crate) struct RowStats {
    /// m = max_c x'_c.
    pub max: f32,
    /// S = Σ_c exp(x'_c − m); NaN for a row of only −∞.
    pub sum: f64,
    /// exp(x'_y − m) for the row's hard target y (0 without one).
    pub target_exp: f64,
    /// S − exp(x'_y − m), summed without the target: accurate to its own size even when
    /// p_y ≈ 1, where S − exp(x'_y − m) would keep only S's rounding error. It makes the
    /// target's gradient entry A·p_y − B accurate (see `loss.rs`).
    pub rest: f64,
    /// Σ_c w_c·(x'_c − m), when gathered.
    pub weighted: f64,
    /// Σ_{t' ≠ 0} w_c·t'_c·(x'_c − m), when gathered.
    pub dot: f64,
    /// Σ_c w_c·t'_c, when gathered.
    pub t_total: f64,
    /// Per block, exp(shift_b − m): what turns stored exp(x − shift_b) into exp(x − m).
    /// (A row of one block, the common case, allocates nothing.)
    factors: Factors,
}

/// The per-block factors of a row: one, or one per block.
#[derive(Clone)]
enum Factors {
    One(f64),
    Blocks(Vec<f64>),
}

impl Factors {
    fn get(&self, block: usize) -> f64 {
        match self {
            Factors::One(f) => *f,
            Factors::Blocks(f) => f[block],
        }
    }
}

fn block_stats<K: RowKernels, E: Elem>(
    k: K,
    offset: usize,
    src: RowSrc<'_, E>,
    g: &Gather<'_>,
) -> BlockStats {
    let x = src.input();
    let len = x.len();
    let max = k.row_max(x, g.cap);
    let shift = if max == f32::NEG_INFINITY { 0.0 } else { max };
    let weights = g.weights.map(|w| w.slice(offset..offset + len));
    let mut stats = BlockStats {
        max,
        shift,
        sum: 0.0,
        weighted: 0.0,
        dot: 0.0,
        t_total: 0.0,
        target_exp: 0.0,
    };
    // Everything that reads the logits runs before the exps may overwrite them.
    if g.smoothing {
        stats.weighted = k.weighted_shifted_sum(x, weights, shift, g.cap);
    }
    if let Some(t) = g.soft {
        let t = SmoothedTargets {
            probs: &t.probs[offset..offset + len],
            ..t
        };
        (stats.dot, stats.t_total) = k.soft_target_sums(x, t, weights, shift, g.cap);
    }
    // The target's exp apart: the rest sums values that are all small when p_y ≈ 1.
    let target = g
        .target
        .filter(|y| (offset..offset + len).contains(y))
        .map(|y| y - offset);
    let sums = match src {
        RowSrc::Store(io) => k.exp_store_sum(io, shift, target),
        part => k.sum_exp(part.input(), shift, g.cap, target),
    };
    stats.sum = sums.rest;
    stats.target_exp = sums.target;
    stats
}

/// Phase 1 over a row: its statistics, and for [`RowSrc::Store`] the exps where it says.
/// `parallel`: run the blocks on the current rayon pool (same bits as serial).
pub(crate) fn row_stats<K: RowKernels, E: Elem>(
    k: K,
    src: RowSrc<'_, E>,
    g: &Gather<'_>,
    parallel: bool,
) -> RowStats {
    let len = block_len(src.len());
    if src.len() <= len {
        let stats = block_stats(k, 0, src, g);
        return combine(core::slice::from_ref(&stats), g.block_weights);
    }
    let parts = src.into_blocks(len);
    let stats: Vec<BlockStats> = if parallel {
        parts
            .into_par_iter()
            .map(|(offset, part)| crate::fpenv::run(|| block_stats(k, offset, part, g)))
            .collect()
    } else {
        parts
            .into_iter()
            .map(|(offset, part)| block_stats(k, offset, part, g))
            .collect()
    };
    combine(&stats, g.block_weights)
}

/// Moves every block's sums to the row max, in block order.
fn combine(blocks: &[BlockStats], block_weights: &[f64; MAX_BLOCKS]) -> RowStats {
    let max = blocks.iter().fold(f32::NEG_INFINITY, |m, b| m.max(b.max));
    let m = f64::from(max);
    let mut row = RowStats {
        max,
        sum: 0.0,
        target_exp: 0.0,
        rest: 0.0,
        weighted: 0.0,
        dot: 0.0,
        t_total: 0.0,
        factors: Factors::One(0.0),
    };
    let mut factors = Vec::with_capacity(if blocks.len() > 1 { blocks.len() } else { 0 });
    for (b, block) in blocks.iter().enumerate() {
        let delta = f64::from(block.shift) - m;
        // A block of only −∞ stored zeros (or NaN, which must stay NaN: 0·NaN is NaN).
        let factor = if block.max == f32::NEG_INFINITY {
            0.0
        } else if delta == 0.0 {
            // The block holding the max (every one-block row): no exp call.
            1.0
        } else {
            delta.exp()
        };
        if blocks.len() == 1 {
            row.factors = Factors::One(factor);
        } else {
            factors.push(factor);
        }
        // A zero sum stays 0 whatever the factor.
        let scaled = |sum: f64| if sum == 0.0 { 0.0 } else { sum * factor };
        row.rest += scaled(block.sum);
        row.target_exp += scaled(block.target_exp);
        row.weighted += block.weighted + delta * block_weights[b];
        row.dot += block.dot + delta * block.t_total;
        row.t_total += block.t_total;
    }
    if blocks.len() > 1 {
        row.factors = Factors::Blocks(factors);
    }
    row.sum = row.rest + row.target_exp;
    if max == f32::NEG_INFINITY {
        // A row of only −∞ has no softmax.
        row.sum = f64::NAN;
        row.rest = f64::NAN;
    }
    row
}

/// The coefficients of a gradient (or probability) row before the per-block parts: the
/// scale applies to exp(x' − m)/S, i.e. it is A/S.
/// Kept in f64 (the kernels get them rounded to f32 per block; the f64 path uses them as
/// they are).
#[derive(Clone, Copy)]
pub(crate) struct GradCoefs<'a> {
    pub scale: f64,
    pub smooth: f64,
    pub target: Option<(usize, f64)>,
    pub soft: Option<SmoothedTargets<'a, f64>>,
    pub weights: Option<ClassWeights<'a>>,
    pub cap: f32,
}

/// The largest coefficient the kernels get as is: a row's output sums a few products of
/// coefficients with values of at most about 1, which stay finite below this.
const MAX_COEF: f64 = (1u128 << 100) as f64;

impl<'a> GradCoefs<'a> {
    /// The coefficients for block `offset..offset + len` with the given exp scale and shift,
    /// all times 2^−fit (see [`GradCoefs::fit`]), each rounded once to f32, with the factors
    /// that scale the entries back up.
    fn block(
        &self,
        offset: usize,
        len: usize,
        scale: f64,
        shift: f32,
        fit: i32,
    ) -> GradCoefs32<'a> {
        let down = 2f64.powi(-fit);
        let unscale = self.weights.map_or(1.0, |w| w.unscale()) * down;
        // Powers of two of at most 2^127 each, so both are f32 (fit ≤ 254).
        let up = fit.min(127);
        GradCoefs32 {
            shift,
            scale: (scale * down) as f32,
            smooth: (self.smooth * unscale) as f32,
            target: self
                .target
                .filter(|&(y, _)| (offset..offset + len).contains(&y))
                .map(|(y, value)| (y - offset, (value * down) as f32)),
            soft: self.soft.map(|t| {
                SmoothedTargets {
                    keep: t.keep * unscale,
                    uniform: t.uniform * unscale,
                    ..t
                }
                .to_f32(offset..offset + len)
            }),
            weights: self.weights.map(|w| w.slice(offset..offset + len)),
            cap: self.cap,
            rescale: (fit > 0).then(|| (2f32.powi(up), 2f32.powi(fit - up))),
        }
    }

    /// The power of two k ≥ 0 such that every coefficient times 2^−k is at most
    /// [`MAX_COEF`]: 0 but for scales beyond f32's range (a `grad_scale` of 1e38 times a
    /// weight of 10), whose rows are written scaled down by 2^k and then scaled back up,
    /// both exact: so an entry whose true value is finite in f32 comes back finite, where
    /// a coefficient rounded to f32 as is would be +∞ (and 0·∞ NaN).
    fn fit(&self) -> i32 {
        let unscale = self.weights.map_or(1.0, |w| w.unscale());
        let soft = self
            .soft
            .map_or(0.0, |t| (t.keep.abs() + t.uniform.abs()) * unscale);
        let largest = [
            self.scale.abs(),
            self.smooth.abs() * unscale,
            soft,
            self.target.map_or(0.0, |(_, v)| v.abs()),
        ]
        .into_iter()
        .fold(0.0f64, |m, v| if v.is_finite() { m.max(v) } else { m });
        if largest <= MAX_COEF {
            0
        } else {
            // Two factors of at most 2^127 undo it (see `GradCoefs::block`).
            (largest.log2().ceil() as i32 - 100).min(254)
        }
    }
}

/// Where phase 2 finds exp(x' − m).
#[derive(Clone, Copy)]
pub(crate) enum Exps<'s> {
    /// Phase 1 left exp(x − shift_b) in the output, or in `buffer` (a 16-bit row's, see
    /// [`exp_store`]); the row statistics reconcile the shifts.
    Stored {
        stats: &'s RowStats,
        buffer: Option<&'s [f32]>,
    },
    /// Computed from the logits: exp(x' − shift) (a softcap, a backward from the lse, or a
    /// 16-bit row without a buffer).
    FromLogits { shift: f32 },
}

impl<'s> Exps<'s> {
    /// Where phase 2 finds the exponentials of a row whose phase 1 gave `stats`: where
    /// [`exp_store`] put them (`buffer` is the one it was given), else from the logits.
    pub(crate) fn after(
        stats: &'s RowStats,
        stored: Option<StoredIn>,
        buffer: Option<&'s [f32]>,
    ) -> Self {
        match stored {
            Some(StoredIn::Output) => Exps::Stored {
                stats,
                buffer: None,
            },
            Some(StoredIn::Buffer) => Exps::Stored {
                stats,
                buffer: Some(buffer.expect("phase 1 stored into the buffer")),
            },
            None => Exps::FromLogits { shift: stats.max },
        }
    }
}

/// Phase 2 over a row: writes the output described by `grad`, scale·exp(x' − m) − terms.
/// `parallel` as in [`row_stats`].
pub(crate) fn write_row<K: RowKernels, E: Elem>(
    k: K,
    io: RowIo<'_, E>,
    grad: &GradCoefs<'_>,
    exps: Exps<'_>,
    parallel: bool,
) {
    let fit = grad.fit();
    let write = |offset: usize, io: RowIo<'_, E>, b: usize| {
        let len = io.input().len();
        match exps {
            Exps::Stored { stats, buffer } => {
                let coef = grad.block(offset, len, grad.scale * stats.factors.get(b), 0.0, fit);
                match buffer {
                    Some(buffer) => {
                        let exps = &buffer[offset..offset + len];
                        k.scale_exp(RowIo::Separate(exps, io.into_output()), &coef);
                    }
                    // Stored over the output itself, read back and overwritten.
                    None => match E::f32_output(io) {
                        Ok(io) => k.scale_exp(RowIo::in_place(io.into_output()), &coef),
                        // Only f32 rows store over their output (`exp_store`); a row of
                        // another type without a buffer computes from its logits, as it
                        // then does.
                        Err(io) => {
                            let coef = grad.block(offset, len, grad.scale, stats.max, fit);
                            k.write_grad(io, &coef);
                        }
                    },
                }
            }
            Exps::FromLogits { shift } => {
                k.write_grad(io, &grad.block(offset, len, grad.scale, shift, fit));
            }
        }
    };
    let n = io.input().len();
    let len = block_len(n);
    if n <= len {
        write(0, io, 0);
    } else {
        let parts = io.into_blocks(len);
        if parallel {
            parts
                .into_par_iter()
                .enumerate()
                .for_each(|(b, part)| crate::fpenv::run(|| write(b * len, part, b)));
        } else {
            for (b, part) in parts.into_iter().enumerate() {
                write(b * len, part, b);
            }
        }
    }
}
