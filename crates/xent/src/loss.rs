//! The semantics (the formulas of docs/semantics.md): the validation of targets, the per-call plan,
//! the per-row coefficients handed to the kernels, each row's loss terms and the
//! reductions. Data flows one way: validate → plan → per-row passes (`driver.rs`) →
//! reduce; the public functions are in `api.rs`.

use crate::batch_io::BatchIo;
use crate::dtype::{Logit, Stat};
use crate::error::{Error, Result};
use crate::kernels::{ClassWeights, SHORT_COLS, SmoothedTargets};
use crate::options::{Options, Reduction};
use crate::row::{Gather, GradCoefs, MAX_BLOCKS, RowStats, block_weight_sums};
use crate::rows::Targets;
use crate::schedule::split_rows;

mod api;
mod driver;
pub(crate) mod f64_rows;
pub(crate) mod linear;
pub(crate) mod shard;

pub use api::{
    cross_entropy, cross_entropy_backward, cross_entropy_backward_in_place, cross_entropy_grad,
    cross_entropy_grad_in_place,
};
use driver::Chunk;

/// The columns a call holds: a whole row, or a shard's slice of a vocabulary split across
/// processes (see `shard.rs`).
#[derive(Clone, Copy)]
struct Columns {
    /// The global class of the first column.
    offset: usize,
    /// How many columns the call holds.
    cols: usize,
    /// C, the number of classes of the whole row.
    total: usize,
}

impl Columns {
    fn all(cols: usize) -> Self {
        Columns {
            offset: 0,
            cols,
            total: cols,
        }
    }

    /// The column of global class `y`, when the call holds it.
    fn local(&self, y: usize) -> Option<usize> {
        y.checked_sub(self.offset).filter(|&c| c < self.cols)
    }
}

/// The weights of `columns`, scaled for the kernels by the largest weight of the whole
/// vocabulary (so that every slice of it gets the same scale).
fn held_weights<'o>(options: &Options<'o>, columns: Columns) -> Option<ClassWeights<'o>> {
    options.class_weights.map(|w| {
        let max = w.iter().fold(0.0f32, |m, &v| m.max(v));
        ClassWeights::new(w, max).slice(columns.offset..columns.offset + columns.cols)
    })
}

/// The per-call constants of the formulas, derived once from the validated options.
#[derive(Clone)]
struct Plan<'o> {
    options: &'o Options<'o>,
    columns: Columns,
    /// The weights of the columns held (all of `options.class_weights`, or a shard's slice),
    /// with the scale of the whole vocabulary's largest weight.
    weights: Option<ClassWeights<'o>>,
    /// 1 − ε.
    keep: f64,
    /// ε / C.
    uniform: f64,
    /// Σ_c w_c.
    weight_sum: f64,
    z: f64,
    cap: f32,
    /// s for the ce part: g/W (hard, mean), g/R (soft, mean), g otherwise.
    ce_scale: f64,
    /// s for the z part: g/N (hard, mean), g/R (soft, mean), g otherwise.
    z_scale: f64,
    /// Mean over nothing (W = 0): the loss is NaN and the whole gradient zeros.
    zero_grad: bool,
    /// Σ_c w_c per column block, for the smoothing sum (see `row.rs`).
    block_weights: [f64; MAX_BLOCKS],
    /// Run each row's column blocks in parallel: fewer rows than threads.
    split_rows: bool,
    /// Run rows in groups through the short-row kernel: rows of at most `SHORT_COLS`
    /// values, hard targets, no smoothing and no softcap (nothing but max and Σ exp).
    short_rows: bool,
}

/// A row's phase-1 sums as the loss needs them, in f64 and relative to the row max m
/// (see [`RowStats`]; the f64 path builds them itself).
struct RowSums {
    max: f64,
    sum: f64,
    target_exp: f64,
    rest: f64,
    weighted: f64,
    dot: f64,
    t_total: f64,
}

impl From<&RowStats> for RowSums {
    fn from(stats: &RowStats) -> Self {
        RowSums {
            max: f64::from(stats.max),
            sum: stats.sum,
            target_exp: stats.target_exp,
            rest: stats.rest,
            weighted: stats.weighted,
            dot: stats.dot,
            t_total: stats.t_total,
        }
    }
}

/// A hard target's probability p_y and 1 − p_y, each computed without cancellation, and
/// its softcapped logit x'_y (for the softcap's factor).
#[derive(Clone, Copy)]
struct TargetProb {
    p: f64,
    rest: f64,
    capped_logit: f64,
}

impl TargetProb {
    /// From phase 1's sums: exp(x'_y − m)/S and (S − exp(x'_y − m))/S, the second summed
    /// without the target (see [`RowStats::rest`]).
    fn from_sums(sums: &RowSums, capped_logit: f64) -> Self {
        TargetProb {
            p: sums.target_exp / sums.sum,
            rest: sums.rest / sums.sum,
            capped_logit,
        }
    }

    /// From a row's sum of exponentials in its two parts (the target's term, the others'):
    /// target/S and rest/S.
    fn from_parts(target: f64, rest: f64, capped_logit: f64) -> Self {
        let sum = target + rest;
        TargetProb {
            p: target / sum,
            rest: rest / sum,
            capped_logit,
        }
    }

    /// From a saved lse: exp(d) and −expm1(d) with d = x'_y − lse.
    fn from_lse(capped_logit: f64, lse: f64) -> Self {
        let d = capped_logit - lse;
        TargetProb {
            p: d.exp(),
            rest: -d.exp_m1(),
            capped_logit,
        }
    }

    /// For rows without a hard target.
    const NONE: TargetProb = TargetProb {
        p: 0.0,
        rest: 0.0,
        capped_logit: 0.0,
    };
}

/// Sums over a chunk's counted rows, in f64, combined in row order.
#[derive(Default, Clone, Copy)]
struct Partial {
    ce: f64,
    zl: f64,
}

/// The row totals that turn sums into means: W = Σ v_i·w_{y_i} and N = Σ v_i.
struct Counts {
    rows: usize,
    total_weight: f64,
    counted: usize,
}

/// Checks every hard target (in `0..cols` or `ignore_index`) and counts W and N; for soft
/// targets checks the shape and counts every row with weight 1.
fn check_targets(
    targets: &Targets<'_>,
    rows: usize,
    options: &Options<'_>,
    cols: usize,
) -> Result<Counts> {
    if targets.len() != rows {
        return Err(Error::shape(
            "targets",
            format!("describe {} rows, the logits have {rows}", targets.len()),
        ));
    }
    if let Targets::Soft(t) = targets {
        if t.cols() != cols {
            return Err(Error::shape(
                "targets",
                format!("have {} columns, the logits have {cols}", t.cols()),
            ));
        }
        return Ok(Counts {
            rows,
            total_weight: rows as f64,
            counted: rows,
        });
    }
    let mut counts = Counts {
        rows,
        total_weight: 0.0,
        counted: 0,
    };
    for row in 0..rows {
        let Some(y) = targets.class(row) else {
            unreachable!("soft targets returned above")
        };
        if y == options.ignore_index {
            continue;
        }
        match usize::try_from(y) {
            Ok(c) if c < cols => {
                counts.total_weight += f64::from(options.weight(c));
                counts.counted += 1;
            }
            _ => {
                return Err(Error::TargetOutOfRange {
                    row,
                    target: y,
                    cols,
                    ignore_index: options.ignore_index,
                });
            }
        }
    }
    Ok(counts)
}

impl<'o> Plan<'o> {
    /// Validates what the options and targets alone decide, and derives the constants.
    /// `upstream` is g: `grad_scale` for the fused call, `dloss[0]` for a scalar backward,
    /// 1 for a per-row backward (the row's dloss multiplies later).
    /// `columns.total` is C (for ε/C and Σ_c w_c); the kernels' blocks are cut over the
    /// columns held.
    fn new(
        options: &'o Options<'o>,
        columns: Columns,
        soft: bool,
        counts: &Counts,
        upstream: f64,
    ) -> Self {
        let eps = f64::from(options.label_smoothing);
        let cols = columns.cols;
        let weights = held_weights(options, columns);
        let weight_sum = options.class_weights.map_or(columns.total as f64, |w| {
            w.iter().map(|&w| f64::from(w)).sum()
        });
        let (ce_div, z_div) = match (options.reduction, soft) {
            (Reduction::Mean, false) => (counts.total_weight, counts.counted as f64),
            (Reduction::Mean, true) => (counts.total_weight, counts.total_weight),
            _ => (1.0, 1.0),
        };
        let mut plan = Plan {
            options,
            columns,
            weights,
            keep: 1.0 - eps,
            uniform: eps / columns.total as f64,
            weight_sum,
            z: f64::from(options.z_loss),
            cap: options.softcap,
            ce_scale: upstream / ce_div,
            z_scale: upstream / z_div,
            zero_grad: options.reduction == Reduction::Mean && ce_div == 0.0,
            block_weights: block_weight_sums(cols, weights),
            split_rows: split_rows(counts.rows, cols),
            short_rows: false,
        };
        plan.short_rows = cols <= SHORT_COLS
            && cols == columns.total
            && !soft
            && eps == 0.0
            && options.softcap == 0.0
            && plan.short_coefficients_fit();
        plan
    }

    /// 2·z·s_z, the short-row kernel's z-loss factor of lse (0 without z-loss).
    fn short_z_grad(&self) -> f64 {
        2.0 * self.z * self.z_scale
    }

    /// Whether the short-row kernel's f32 coefficients hold this call: every row's
    /// B = s·w_y at most 2^100, and 2·z·s_z at most 1, so that no product of them with a
    /// row's values overflows f32 where the result does not (see `ShortLoss`). Scales
    /// beyond (a `grad_scale` of 1e38) take the row-by-row path, whose coefficients are
    /// f64 until their last rounding.
    fn short_coefficients_fit(&self) -> bool {
        let max_weight = self
            .options
            .class_weights
            .map_or(1.0, |w| w.iter().fold(0.0f64, |m, &v| m.max(f64::from(v))));
        (self.ce_scale * max_weight).abs() <= (1u128 << 100) as f64
            && self.short_z_grad().abs() <= 1.0
    }

    /// The same plan over other columns of the same vocabulary (`columns.total` unchanged),
    /// for a batch of `rows` rows: what a chunk of the vocabulary needs.
    fn with_columns(&self, columns: Columns, rows: usize) -> Plan<'o> {
        debug_assert_eq!(columns.total, self.columns.total);
        // The same scale as this plan's (the vocabulary's largest weight).
        let weights = self
            .options
            .class_weights
            .zip(self.weights)
            .map(|(all, held)| {
                ClassWeights {
                    values: all,
                    ..held
                }
                .slice(columns.offset..columns.offset + columns.cols)
            });
        Plan {
            columns,
            weights,
            block_weights: block_weight_sums(columns.cols, weights),
            split_rows: split_rows(rows, columns.cols),
            short_rows: false,
            ..self.clone()
        }
    }

    /// Whether the chunk's rows get a gradient (else an output, if any, gets zeros).
    fn writes<T: Logit, S: Stat>(&self, chunk: &Chunk<'_, T, S>) -> bool {
        !matches!(chunk.pass, BatchIo::Forward(_)) && !self.zero_grad
    }

    /// The reduced loss from the chunks' sums.
    fn reduce(&self, sum: Partial, soft: bool, counts: &Counts) -> f64 {
        match self.options.reduction {
            Reduction::Sum | Reduction::None => sum.ce + sum.zl,
            Reduction::Mean if soft => (sum.ce + sum.zl) / counts.total_weight,
            Reduction::Mean if counts.total_weight == 0.0 => f64::NAN,
            Reduction::Mean => {
                let zl = if self.z > 0.0 {
                    sum.zl / counts.counted as f64
                } else {
                    0.0
                };
                sum.ce / counts.total_weight + zl
            }
        }
    }

    /// Soft targets with label smoothing, times `scale`: scale·t'_c.
    fn smoothed<'t>(&self, probs: &'t [f32], scale: f64) -> SmoothedTargets<'t, f64> {
        SmoothedTargets {
            probs,
            keep: scale * self.keep,
            uniform: scale * self.uniform,
        }
    }

    /// The weights of the columns held.
    fn weights(&self) -> Option<ClassWeights<'o>> {
        self.weights
    }

    /// The weight of column `c` (of the columns held).
    fn column_weight(&self, c: usize) -> f64 {
        self.weights.map_or(1.0, |w| f64::from(w.values[c]))
    }

    /// The z-loss term of A: s_z·2z·lse (0 without z-loss, even for a NaN lse).
    fn z_grad(&self, z_scale: f64, lse: f64) -> f64 {
        if self.z > 0.0 {
            z_scale * 2.0 * self.z * lse
        } else {
            0.0
        }
    }

    /// The gradient coefficients of a counted row whose p_c is exp(x'_c − m)/`sum`, for an
    /// upstream gradient `upstream` (times the plan's scales). `p_y` describes a hard
    /// target's probability (unused for soft targets).
    fn grad_row<'t>(
        &self,
        target: RowTarget<'t>,
        t_total: f64,
        sum: f64,
        lse: f64,
        upstream: f64,
        p_y: TargetProb,
    ) -> GradCoefs<'t>
    where
        'o: 't,
    {
        let ce_s = self.ce_scale * upstream;
        let z_s = self.z_scale * upstream;
        let z_term = self.z_grad(z_s, lse);
        let (a, smooth, hard, soft) = match target {
            RowTarget::Class(y) => {
                let w_y = f64::from(self.options.weight(y));
                let a = ce_s * (self.keep * w_y + self.uniform * self.weight_sum) + z_term;
                // The target's entry A·p_y − B (B: what the one-hot and smoothing subtract
                // there) as (A − B)·p_y − B·(1 − p_y): with p_y ≈ 1, A·p_y − B would cancel
                // down to the rounding error of p_y, and a 16-bit gradient round it to 0.
                let b = ce_s * (self.keep + self.uniform) * w_y;
                let a_minus_b = ce_s * self.uniform * (self.weight_sum - w_y) + z_term;
                let mut value = a_minus_b * p_y.p - b * p_y.rest;
                if self.cap > 0.0 {
                    let r = p_y.capped_logit / f64::from(self.cap);
                    value *= 1.0 - r * r;
                }
                let hard = self.columns.local(y).map(|c| (c, value));
                (a, ce_s * self.uniform, hard, None)
            }
            RowTarget::Soft(t) => (
                ce_s * t_total + z_term,
                0.0,
                None,
                Some(self.smoothed(t, ce_s)),
            ),
        };
        GradCoefs {
            scale: a / sum,
            smooth,
            target: hard,
            soft,
            weights: self.weights(),
            cap: self.cap,
        }
    }

    /// What phase 1 gathers for a row with this target.
    fn gather<'t>(&'t self, target: Option<RowTarget<'t>>) -> Gather<'t> {
        let hard = matches!(target, Some(RowTarget::Class(_)));
        Gather {
            cap: self.cap,
            smoothing: hard && self.uniform > 0.0,
            weights: self.weights(),
            soft: match target {
                Some(RowTarget::Soft(t)) => Some(self.smoothed(t, 1.0).to_f32(0..t.len())),
                _ => None,
            },
            block_weights: &self.block_weights,
            target: match target {
                Some(RowTarget::Class(y)) => self.columns.local(y),
                _ => None,
            },
        }
    }
}

/// A counted row's target.
#[derive(Clone, Copy)]
enum RowTarget<'t> {
    Class(usize),
    Soft(&'t [f32]),
}

/// Row `i`'s target, `None` when the row is ignored.
fn row_target<'t>(targets: &Targets<'t>, i: usize, ignore_index: i64) -> Option<RowTarget<'t>> {
    match targets {
        Targets::Soft(t) => Some(RowTarget::Soft(t.row(i))),
        _ => {
            let y = targets.class(i).expect("hard targets");
            // Validated: not ignore_index means within 0..cols.
            (y != ignore_index).then_some(RowTarget::Class(y as usize))
        }
    }
}

/// A counted row's loss terms and lse.
struct RowLoss {
    ce: f64,
    zl: f64,
    lse: f64,
}

/// The ce and zl terms of a counted row from its statistics, added to `partial`.
fn row_loss(
    plan: &Plan<'_>,
    target: RowTarget<'_>,
    x_y: f64,
    stats: &RowSums,
    partial: &mut Partial,
) -> RowLoss {
    let m = stats.max;
    let ln_sum = stats.sum.ln();
    let lse = m + ln_sum;
    // Rewritten around the max for accuracy: −lp_c = lse − x'_c = ln S − (x'_c − m).
    let ce = match target {
        RowTarget::Class(y) => {
            let w_y = f64::from(plan.options.weight(y));
            let mut ce = plan.keep * w_y * ((m - x_y) + ln_sum);
            if plan.uniform > 0.0 {
                ce += plan.uniform * (plan.weight_sum * ln_sum - stats.weighted);
            }
            ce
        }
        RowTarget::Soft(_) => stats.t_total * ln_sum - stats.dot,
    };
    let zl = if plan.z > 0.0 {
        plan.z * lse * lse
    } else {
        0.0
    };
    partial.ce += ce;
    partial.zl += zl;
    RowLoss { ce, zl, lse }
}
