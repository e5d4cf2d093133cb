//! The semantics of SPEC §2: validation, the per-row coefficients handed to the kernels,
//! and the reductions. Data flows one way: validate → plan → per-row passes → reduce.

use crate::dispatch::kernels;
use crate::dtype::{self, Logit, Stat};
use crate::error::{Error, Result};
use crate::kernels::{
    ClassWeights, GROUP, GROUPS_PER_CALL, RowKernels, SHORT_COLS, ShortJob, ShortLoss, ShortStats,
    ShortTargets, SmoothedTargets, softcap,
};
use crate::options::{Options, Reduction};
use crate::pass::Pass;
use crate::row::{
    Exps, Gather, MAX_BLOCKS, RowGrad, RowSrc, RowStats, block_weight_sums, row_stats, write_row,
};
use crate::rows::{Rows, RowsMut, Targets};
use crate::schedule::{SplitRows, for_each_chunk, split_opt, split_opt_mut, split_rows};

pub(crate) mod f64_rows;
pub(crate) mod linear;
pub(crate) mod shard;

/// One chunk's share of a cross-entropy call: its rows and every per-row buffer.
struct Chunk<'a, T = f32, S = f32> {
    pass: Pass<'a, T>,
    targets: Targets<'a>,
    /// Per-row losses (reduction `none`, forward only).
    loss: Option<&'a mut [S]>,
    /// Per-row lse: written by the forward, read by the backward.
    lse_out: Option<&'a mut [S]>,
    lse_in: Option<&'a [S]>,
    /// Per-row upstream gradient (backward with reduction `none`).
    dloss: Option<&'a [S]>,
}

impl<T: Logit, S: Stat> SplitRows for Chunk<'_, T, S> {
    fn rows(&self) -> usize {
        self.pass.rows()
    }

    fn split_at_row(self, at: usize) -> (Self, Self) {
        let (pass_a, pass_b) = self.pass.split_at_row(at);
        let (targets_a, targets_b) = self.targets.split_at_row(at);
        let (loss_a, loss_b) = split_opt_mut(self.loss, at);
        let (lse_out_a, lse_out_b) = split_opt_mut(self.lse_out, at);
        let (lse_in_a, lse_in_b) = split_opt(self.lse_in, at);
        let (dloss_a, dloss_b) = split_opt(self.dloss, at);
        (
            Chunk {
                pass: pass_a,
                targets: targets_a,
                loss: loss_a,
                lse_out: lse_out_a,
                lse_in: lse_in_a,
                dloss: dloss_a,
            },
            Chunk {
                pass: pass_b,
                targets: targets_b,
                loss: loss_b,
                lse_out: lse_out_b,
                lse_in: lse_in_b,
                dloss: dloss_b,
            },
        )
    }
}

/// A chunk by path: f64 logits (with f64 statistics) take the f64 path, every other type
/// the f32 kernels with f32 statistics.
enum ChunkKind<'a, T> {
    F64(Chunk<'a, f64, f64>),
    F32(Chunk<'a, T, f32>),
}

impl<'a, T: Logit, S: Stat> Chunk<'a, T, S> {
    fn into_kind(self) -> ChunkKind<'a, T> {
        // A Logit's Stat is f64 exactly when the logits are (see dtype.rs).
        fn f64s<A, B>(values: Option<core::result::Result<A, B>>) -> Option<B> {
            values.map(|v| v.err().expect("f64 logits have f64 statistics"))
        }
        fn f32s<A, B>(values: Option<core::result::Result<A, B>>) -> Option<A> {
            values.map(|v| v.ok().expect("f32 and 16-bit logits have f32 statistics"))
        }
        let Chunk {
            pass,
            targets,
            loss,
            lse_out,
            lse_in,
            dloss,
        } = self;
        let (loss, lse_out) = (loss.map(S::f32s_mut), lse_out.map(S::f32s_mut));
        let (lse_in, dloss) = (lse_in.map(S::f32s), dloss.map(S::f32s));
        match pass.into_f64() {
            Ok(pass) => ChunkKind::F64(Chunk {
                pass,
                targets,
                loss: f64s(loss),
                lse_out: f64s(lse_out),
                lse_in: f64s(lse_in),
                dloss: f64s(dloss),
            }),
            Err(pass) => ChunkKind::F32(Chunk {
                pass,
                targets,
                loss: f32s(loss),
                lse_out: f32s(lse_out),
                lse_in: f32s(lse_in),
                dloss: f32s(dloss),
            }),
        }
    }
}

impl<T: Logit> Chunk<'_, T> {
    /// Runs `f` on this chunk with f32 rows (a widened copy for 16-bit logits, see
    /// `dtype.rs`).
    fn run_as_f32<R>(self, f: impl FnOnce(Chunk<'_, f32>) -> R) -> R {
        let Chunk {
            pass,
            targets,
            loss,
            lse_out,
            lse_in,
            dloss,
        } = self;
        dtype::run_as_f32(pass, |pass| {
            f(Chunk {
                pass,
                targets,
                loss,
                lse_out,
                lse_in,
                dloss,
            })
        })
    }
}

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

/// The per-call constants of SPEC §2's formulas, derived once from the validated options.
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
        !matches!(chunk.pass, Pass::Forward(_)) && !self.zero_grad
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
    ) -> RowGrad<'t>
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
        RowGrad {
            scale: a / sum,
            smooth,
            target: hard,
            soft,
            weights: self.weights(),
            cap: self.cap,
        }
    }

    /// What phase 1 gathers for a row with this target.
    fn gather<'t>(&'t self, target: Option<RowTarget<'t>>, store: bool) -> Gather<'t> {
        let hard = matches!(target, Some(RowTarget::Class(_)));
        Gather {
            cap: self.cap,
            store,
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

/// The forward (and fused gradient) of one chunk: short rows in groups where the options
/// allow it, every other row on its own.
fn forward_chunk(k: &dyn RowKernels, plan: &Plan<'_>, mut chunk: Chunk<'_>) -> Partial {
    let mut partial = Partial::default();
    let rows = chunk.pass.rows();
    let mut i = 0;
    while i < rows {
        if plan.short_rows && rows - i >= GROUP {
            let groups = ((rows - i) / GROUP).min(GROUPS_PER_CALL);
            forward_groups(k, plan, &mut chunk, i, groups, &mut partial);
            i += groups * GROUP;
        } else {
            forward_row(k, plan, &mut chunk, i, &mut partial);
            i += 1;
        }
    }
    partial
}

/// Row `i` on its own: phase 1 in column blocks, then the loss and phase 2.
fn forward_row(
    k: &dyn RowKernels,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_>,
    i: usize,
    partial: &mut Partial,
) {
    let Some(target) = row_target(&chunk.targets, i, plan.options.ignore_index) else {
        // The lse of an ignored row costs a pass only when it is asked for.
        let stats = chunk.lse_out.is_some().then(|| {
            let src = RowSrc::Read(chunk.pass.input(i));
            row_stats(k, src, &plan.gather(None, false), plan.split_rows)
        });
        ignored_row(chunk, i, stats.as_ref());
        return;
    };
    let x_y = target_logit(plan, chunk, i, target);
    // Without a softcap phase 1 stores exp(x − m) and phase 2 only scales it: one exp per
    // element. With one, phase 2 needs x' itself, so it recomputes from the logits.
    let store = plan.writes(chunk) && plan.cap == 0.0;
    let src = if store {
        RowSrc::Io(chunk.pass.io(i).expect("has an output"))
    } else {
        RowSrc::Read(chunk.pass.input(i))
    };
    let stats = row_stats(k, src, &plan.gather(Some(target), store), plan.split_rows);
    counted_row(k, plan, chunk, i, target, x_y, &stats, store, partial);
}

/// Rows `first..first + GROUP·groups`, all short, hard targets, no smoothing, no softcap:
/// one kernel call computes every row's terms and gradient lane-wise.
fn forward_groups(
    k: &dyn RowKernels,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_>,
    first: usize,
    groups: usize,
    partial: &mut Partial,
) {
    let mut targets = [ShortTargets::default(); GROUPS_PER_CALL];
    let targets = &mut targets[..groups];
    let scale = plan.ce_scale;
    match chunk.targets {
        Targets::I64(t) => short_targets(&t[first..], plan.options, scale, targets),
        Targets::I32(t) => short_targets(&t[first..], plan.options, scale, targets),
        Targets::U32(t) => short_targets(&t[first..], plan.options, scale, targets),
        Targets::Soft(_) => unreachable!("short-row groups take hard targets"),
    }
    let job = ShortJob::Loss(
        ShortLoss {
            z_grad: plan.short_z_grad() as f32,
            write: plan.writes(chunk),
        },
        targets,
    );
    let mut stats = [ShortStats::default(); GROUPS_PER_CALL];
    let stats = &mut stats[..groups];
    k.short_rows(chunk.pass.groups(first, groups), &job, stats);
    // Each row's terms in f64, where w_y·nll and z·lse² cannot overflow; a sum per lane,
    // then across lanes: one running f64 sum would be a chain of dependent adds as long
    // as the rows, the slowest part of this loop.
    // (An ignored row has nll and weight 0.)
    let (mut ce, mut zl) = ([0.0f64; GROUP], [0.0f64; GROUP]);
    let row_ce =
        |s: &ShortStats, t: &ShortTargets, r: usize| f64::from(t.weight[r]) * f64::from(s.nll[r]);
    let row_zl = |s: &ShortStats, t: &ShortTargets, r: usize| {
        let lse = f64::from(s.lse[r]);
        if t.class[r] >= 0.0 {
            plan.z * lse * lse
        } else {
            0.0
        }
    };
    for (s, t) in stats.iter().zip(targets.iter()) {
        for (r, ce) in ce.iter_mut().enumerate() {
            *ce += row_ce(s, t, r);
        }
    }
    if plan.z > 0.0 {
        for (s, t) in stats.iter().zip(targets.iter()) {
            for (r, zl) in zl.iter_mut().enumerate() {
                *zl += row_zl(s, t, r);
            }
        }
    }
    partial.ce += ce.iter().sum::<f64>();
    partial.zl += zl.iter().sum::<f64>();
    let rows = first..first + GROUP * groups;
    if let Some(loss) = chunk.loss.as_deref_mut() {
        let groups = loss[rows.clone()].chunks_exact_mut(GROUP);
        for (l, (s, t)) in groups.zip(stats.iter().zip(targets.iter())) {
            for (r, l) in l.iter_mut().enumerate() {
                let term = row_ce(s, t, r) + if plan.z > 0.0 { row_zl(s, t, r) } else { 0.0 };
                *l = term as f32;
            }
        }
    }
    if let Some(lse) = chunk.lse_out.as_deref_mut() {
        for (l, s) in lse[rows].chunks_exact_mut(GROUP).zip(stats.iter()) {
            l.copy_from_slice(&s.lse);
        }
    }
}

/// Each group's target lanes from its rows' validated classes (in `0..cols`, or
/// `ignore_index`).
/// `ce_scale` is s, which with w_y gives each row's B.
fn short_targets<T: Copy + Into<i64>>(
    classes: &[T],
    options: &Options<'_>,
    ce_scale: f64,
    out: &mut [ShortTargets],
) {
    // Without weights every row's B is s, rounded once for the call.
    let unweighted = ce_scale as f32;
    for (lanes, classes) in out.iter_mut().zip(classes.chunks_exact(GROUP)) {
        for (r, &y) in classes.iter().enumerate() {
            let y: i64 = y.into();
            if y != options.ignore_index {
                // y < cols ≤ SHORT_COLS: exact in f32.
                lanes.class[r] = y as f32;
                (lanes.weight[r], lanes.scale[r]) = match options.class_weights {
                    None => (1.0, unweighted),
                    Some(w) => (w[y as usize], (ce_scale * f64::from(w[y as usize])) as f32),
                };
            }
        }
    }
}

/// x'_y of a counted row with a hard target (0 for soft targets), read before phase 1.
fn target_logit(plan: &Plan<'_>, chunk: &Chunk<'_>, i: usize, target: RowTarget<'_>) -> f64 {
    match target {
        RowTarget::Class(y) => f64::from(softcap(chunk.pass.input(i)[y], plan.cap)),
        RowTarget::Soft(_) => 0.0,
    }
}

/// An ignored row: loss 0 and gradient 0 whatever the logits hold; the lse is still the
/// row's true logsumexp when asked for (`stats` is there then).
fn ignored_row(chunk: &mut Chunk<'_>, i: usize, stats: Option<&RowStats>) {
    if let (Some(lse), Some(stats)) = (chunk.lse_out.as_deref_mut(), stats) {
        lse[i] = (f64::from(stats.max) + stats.sum.ln()) as f32;
    }
    if let Some(loss) = chunk.loss.as_deref_mut() {
        loss[i] = 0.0;
    }
    if let Some(mut io) = chunk.pass.io(i) {
        io.output().fill(0.0);
    }
}

/// A counted row's loss terms and lse.
struct RowLoss {
    ce: f64,
    zl: f64,
    lse: f64,
}

/// SPEC §2's ce and zl of a counted row from its statistics, added to `partial`.
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

/// A counted row after phase 1: its loss, lse and gradient (phase 2, from the stored
/// exponentials when `stored`).
#[allow(
    clippy::too_many_arguments,
    reason = "one row's whole state, used in two places"
)]
fn counted_row(
    k: &dyn RowKernels,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_>,
    i: usize,
    target: RowTarget<'_>,
    x_y: f64,
    stats: &RowStats,
    stored: bool,
    partial: &mut Partial,
) {
    let sums = RowSums::from(stats);
    let row = row_loss(plan, target, x_y, &sums, partial);
    if let Some(loss) = chunk.loss.as_deref_mut() {
        loss[i] = (row.ce + row.zl) as f32;
    }
    if let Some(lse_out) = chunk.lse_out.as_deref_mut() {
        lse_out[i] = row.lse as f32;
    }
    let lse = row.lse;
    let write = plan.writes(chunk);
    if let Some(mut io) = chunk.pass.io(i) {
        if write {
            let p_y = TargetProb::from_sums(&sums, x_y);
            let grad = plan.grad_row(target, stats.t_total, stats.sum, lse, 1.0, p_y);
            let exps = if stored {
                Exps::Stored(stats)
            } else {
                Exps::FromLogits { shift: stats.max }
            };
            write_row(k, io, &grad, exps, plan.split_rows);
        } else {
            io.output().fill(0.0);
        }
    }
}

/// The gradient of one chunk from its saved lse: p = exp(x' − lse), one pass.
fn backward_chunk(k: &dyn RowKernels, plan: &Plan<'_>, mut chunk: Chunk<'_>) {
    let lse_in = chunk.lse_in.expect("backward reads the saved lse");
    for i in 0..chunk.pass.rows() {
        let target = row_target(&chunk.targets, i, plan.options.ignore_index);
        let Some(mut io) = chunk.pass.io(i) else {
            unreachable!("backward always writes a gradient")
        };
        let Some(target) = target.filter(|_| !plan.zero_grad) else {
            io.output().fill(0.0);
            continue;
        };
        let lse = lse_in[i];
        let t_total = match target {
            RowTarget::Class(_) => 0.0,
            RowTarget::Soft(t) => {
                k.soft_target_sums(
                    io.input(),
                    plan.smoothed(t, 1.0).to_f32(0..t.len()),
                    plan.weights(),
                    lse,
                    plan.cap,
                )
                .1
            }
        };
        let upstream = chunk.dloss.map_or(1.0, |d| f64::from(d[i]));
        let p_y = match target {
            RowTarget::Class(y) => {
                TargetProb::from_lse(f64::from(softcap(io.input()[y], plan.cap)), f64::from(lse))
            }
            RowTarget::Soft(_) => TargetProb::NONE,
        };
        let grad = plan.grad_row(target, t_total, 1.0, f64::from(lse), upstream, p_y);
        write_row(
            k,
            io,
            &grad,
            Exps::FromLogits { shift: lse },
            plan.split_rows,
        );
    }
}

/// Runs a validated forward call: f64 logits on the f64 path, others on the active kernel
/// tier.
fn run_forward<T: Logit>(
    pass: Pass<'_, T>,
    targets: Targets<'_>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    let rows = pass.rows();
    let cols = pass.cols();
    pass.check("grad")?;
    Error::check_len("loss", loss.len(), options.reduction.loss_len(rows))?;
    if let Some(lse) = lse.as_deref() {
        Error::check_len("lse", lse.len(), rows)?;
    }
    options.validate(cols)?;
    let counts = check_targets(&targets, rows, options, cols)?;
    let soft = matches!(targets, Targets::Soft(_));
    let plan = Plan::new(
        options,
        Columns::all(cols),
        soft,
        &counts,
        f64::from(options.grad_scale),
    );

    let per_row = options.reduction == Reduction::None;
    let chunk = Chunk {
        pass,
        targets,
        loss: if per_row { Some(&mut *loss) } else { None },
        lse_out: lse,
        lse_in: None,
        dloss: None,
    };
    let k = kernels();
    let partials = for_each_chunk(chunk, cols, |c| match c.into_kind() {
        ChunkKind::F64(c) => f64_rows::forward_chunk(&plan, c),
        ChunkKind::F32(c) => c.run_as_f32(|c| forward_chunk(k, &plan, c)),
    });
    if !per_row {
        let total = partials.iter().fold(Partial::default(), |acc, p| Partial {
            ce: acc.ce + p.ce,
            zl: acc.zl + p.zl,
        });
        loss[0] = T::Stat::from_f64(plan.reduce(total, soft, &counts));
    }
    Ok(())
}

/// Runs a validated backward call: f64 logits on the f64 path, others on the active
/// kernel tier.
fn run_backward<T: Logit>(
    pass: Pass<'_, T>,
    targets: Targets<'_>,
    options: &Options<'_>,
    lse: &[T::Stat],
    dloss: &[T::Stat],
) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    let rows = pass.rows();
    let cols = pass.cols();
    pass.check("grad")?;
    Error::check_len("lse", lse.len(), rows)?;
    Error::check_len("dloss", dloss.len(), options.reduction.loss_len(rows))?;
    options.validate(cols)?;
    let counts = check_targets(&targets, rows, options, cols)?;
    let soft = matches!(targets, Targets::Soft(_));
    let per_row = options.reduction == Reduction::None;
    let upstream = if per_row {
        1.0
    } else {
        match T::Stat::f32s(dloss) {
            Ok(d) => f64::from(d[0]),
            Err(d) => d[0],
        }
    };
    let plan = Plan::new(options, Columns::all(cols), soft, &counts, upstream);
    let chunk = Chunk {
        pass,
        targets,
        loss: None,
        lse_out: None,
        lse_in: Some(lse),
        dloss: if per_row { Some(dloss) } else { None },
    };
    let k = kernels();
    for_each_chunk(chunk, cols, |c| match c.into_kind() {
        ChunkKind::F64(c) => f64_rows::backward_chunk(&plan, c),
        ChunkKind::F32(c) => c.run_as_f32(|c| backward_chunk(k, &plan, c)),
    });
    Ok(())
}

/// The loss of a batch, without a gradient.
///
/// `loss` holds 1 value (reduction mean or sum) or one per row (none); `lse`, when given,
/// receives every row's logsumexp (ignored rows included). Every check runs before any
/// output is written.
///
/// ```
/// use xent::{Options, Rows};
///
/// let logits = [2.0f32, 1.0, 0.1, 0.5, 2.5, -1.0];
/// let batch = Rows::packed(&logits, 3)?;
/// let mut loss = [0.0f32];
/// let mut lse = [0.0f32; 2];
/// xent::cross_entropy(batch, &[0i64, 1][..], &Options::default(), &mut loss, Some(&mut lse))?;
/// let expected = ((lse[0] - 2.0) + (lse[1] - 2.5)) / 2.0;
/// assert!((loss[0] - expected).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(Pass::Forward(logits), targets.into(), options, loss, lse)
}

/// The loss of a batch and its gradient with respect to the logits, in one sweep, with the
/// gradient written into `grad` (the logits' shape, any stride).
///
/// ```
/// use xent::{Options, Rows, RowsMut};
///
/// let logits = [1.0f32, 2.0, 3.0];
/// let mut grad = [0.0f32; 3];
/// let mut loss = [0.0f32];
/// xent::cross_entropy_grad(
///     Rows::packed(&logits, 3)?,
///     &[2i64][..],
///     &Options::default(),
///     &mut loss,
///     RowsMut::packed(&mut grad, 3)?,
///     None,
/// )?;
/// // The gradient is softmax minus the one-hot target: its entries sum to 0.
/// assert!(grad.iter().sum::<f32>().abs() < 1e-6);
/// assert!(grad[2] < 0.0 && grad[0] > 0.0);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_grad<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    grad: RowsMut<'_, T>,
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(
        Pass::Separate(logits, grad),
        targets.into(),
        options,
        loss,
        lse,
    )
}

/// The loss of a batch, with the logits overwritten by their gradient (padding untouched).
/// On error the logits are unchanged.
///
/// ```
/// use xent::{Options, RowsMut};
///
/// let mut logits = vec![0.0f32; 4]; // one row, uniform
/// let mut loss = [0.0f32];
/// xent::cross_entropy_grad_in_place(
///     RowsMut::packed(&mut logits, 4)?,
///     &[1i64][..],
///     &Options::default(),
///     &mut loss,
///     None,
/// )?;
/// assert!((loss[0] - 4f32.ln()).abs() < 1e-6);
/// assert_eq!(logits, [0.25, -0.75, 0.25, 0.25]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_grad_in_place<'t, T: Logit>(
    logits: RowsMut<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [T::Stat],
    lse: Option<&mut [T::Stat]>,
) -> Result<()> {
    run_forward(Pass::InPlace(logits), targets.into(), options, loss, lse)
}

/// The gradient with respect to the logits from the `lse` a forward call saved, written
/// into `grad`. `dloss` is the upstream gradient and replaces `options.grad_scale`: 1 value
/// for reduction mean or sum, one per row for none.
///
/// ```
/// use xent::{Options, Rows, RowsMut};
///
/// let logits = [0.5f32, -1.0, 2.0, 0.0];
/// let batch = Rows::packed(&logits, 2)?;
/// let targets = [1i64, 0];
/// let (mut loss, mut lse) = ([0.0f32], [0.0f32; 2]);
/// xent::cross_entropy(batch, &targets[..], &Options::default(), &mut loss, Some(&mut lse))?;
///
/// let mut grad = [0.0f32; 4];
/// xent::cross_entropy_backward(
///     batch, &targets[..], &Options::default(), &lse, &[1.0], RowsMut::packed(&mut grad, 2)?,
/// )?;
/// assert!((grad[0] + grad[1]).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_backward<'t, T: Logit>(
    logits: Rows<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[T::Stat],
    dloss: &[T::Stat],
    grad: RowsMut<'_, T>,
) -> Result<()> {
    run_backward(
        Pass::Separate(logits, grad),
        targets.into(),
        options,
        lse,
        dloss,
    )
}

/// [`cross_entropy_backward`] with the logits overwritten by their gradient.
///
/// ```
/// use xent::{Options, Reduction, RowsMut};
///
/// let mut logits = [0.0f32, 0.0];
/// let lse = [2f32.ln()];
/// let options = Options { reduction: Reduction::None, ..Options::default() };
/// xent::cross_entropy_backward_in_place(
///     RowsMut::packed(&mut logits, 2)?, &[0i64][..], &options, &lse, &[2.0],
/// )?;
/// assert_eq!(logits, [-1.0, 1.0]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn cross_entropy_backward_in_place<'t, T: Logit>(
    logits: RowsMut<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[T::Stat],
    dloss: &[T::Stat],
) -> Result<()> {
    run_backward(Pass::InPlace(logits), targets.into(), options, lse, dloss)
}
