//! The row driver of a call: its chunks, each row through phase 1 (statistics) and
//! phase 2 (the output) on the active kernel tier, short rows in groups, and the
//! forward and backward calls that run them.

use core::marker::PhantomData;

use half::{bf16, f16};

use crate::batch_io::BatchIo;
use crate::dispatch::{Work, on_tier};
use crate::dtype::{ExpBuffers, Logit, Route, Stat};
use crate::error::{Error, Result};
use crate::kernels::{
    Elem, GROUP, GROUPS_PER_CALL, RowKernels, ShortJob, ShortLoss, ShortStats, ShortTargets,
};
use crate::options::{Options, Reduction};
use crate::row::{Exps, RowSrc, RowStats, exp_store, row_stats, write_row};
use crate::rows::Targets;
use crate::schedule::{SplitAtRow, SplitRows, for_each_chunk, split_fields};

use super::f64_rows;
use super::{
    Columns, Partial, Plan, RowSums, RowTarget, TargetProb, check_targets, row_loss, row_target,
};

/// One chunk's share of a cross-entropy call: its rows and every per-row buffer.
pub(super) struct Chunk<'a, T = f32, S = f32> {
    pub(super) pass: BatchIo<'a, T>,
    pub(super) targets: Targets<'a>,
    /// Per-row losses (reduction `none`, forward only).
    pub(super) loss: Option<&'a mut [S]>,
    /// Per-row lse: written by the forward, read by the backward.
    pub(super) lse_out: Option<&'a mut [S]>,
    pub(super) lse_in: Option<&'a [S]>,
    /// Per-row upstream gradient (backward with reduction `none`).
    pub(super) dloss: Option<&'a [S]>,
}

impl<T: Logit, S: Stat> SplitAtRow for Chunk<'_, T, S> {
    split_fields!(Chunk {
        pass,
        targets,
        loss,
        lse_out,
        lse_in,
        dloss
    });
}

impl<T: Logit, S: Stat> SplitRows for Chunk<'_, T, S> {
    fn rows(&self) -> usize {
        self.pass.rows()
    }
}

/// [`forward_chunk`] for a chunk of each element type: f64 logits (with f64 statistics)
/// take the f64 path, every other type the tier's kernels with f32 statistics and
/// `buffers` for a 16-bit row's exponentials. Its methods are not generic, so that the
/// driver's instances are compiled once, in this crate, not in every crate that calls the
/// generic public functions.
struct ForwardChunk<'p, 'c> {
    plan: &'p Plan<'p>,
    buffers: &'p ExpBuffers,
    chunk: PhantomData<Chunk<'c>>,
}

impl<'c> ForwardChunk<'_, 'c> {
    fn on_tier<E: Logit + Elem>(self, chunk: Chunk<'c, E>) -> Partial {
        let plan = self.plan;
        self.buffers.with(|buffer| {
            on_tier(Forward {
                plan,
                chunk,
                buffer,
            })
        })
    }
}

impl<'c> Route for ForwardChunk<'_, 'c> {
    type Of<T: Logit> = Chunk<'c, T, T::Stat>;
    type Output = Partial;

    fn f32(self, chunk: Chunk<'c, f32>) -> Partial {
        self.on_tier(chunk)
    }

    fn f64(self, chunk: Chunk<'c, f64, f64>) -> Partial {
        f64_rows::forward_chunk(self.plan, chunk)
    }

    fn bf16(self, chunk: Chunk<'c, bf16>) -> Partial {
        self.on_tier(chunk)
    }

    fn f16(self, chunk: Chunk<'c, f16>) -> Partial {
        self.on_tier(chunk)
    }
}

/// [`backward_chunk`] for a chunk of each element type, as [`ForwardChunk`].
struct BackwardChunk<'p, 'c> {
    plan: &'p Plan<'p>,
    chunk: PhantomData<Chunk<'c>>,
}

impl<'c> Route for BackwardChunk<'_, 'c> {
    type Of<T: Logit> = Chunk<'c, T, T::Stat>;
    type Output = ();

    fn f32(self, chunk: Chunk<'c, f32>) {
        on_tier(Backward {
            plan: self.plan,
            chunk,
        })
    }

    fn f64(self, chunk: Chunk<'c, f64, f64>) {
        f64_rows::backward_chunk(self.plan, chunk)
    }

    fn bf16(self, chunk: Chunk<'c, bf16>) {
        on_tier(Backward {
            plan: self.plan,
            chunk,
        })
    }

    fn f16(self, chunk: Chunk<'c, f16>) {
        on_tier(Backward {
            plan: self.plan,
            chunk,
        })
    }
}

/// [`forward_chunk`] with its arguments, for [`on_tier`].
struct Forward<'p, 'c, E> {
    plan: &'p Plan<'p>,
    chunk: Chunk<'c, E>,
    buffer: Option<&'c mut [f32]>,
}

impl<E: Logit + Elem> Work for Forward<'_, '_, E> {
    type Output = Partial;

    fn run<K: RowKernels>(self, k: K) -> Partial {
        forward_chunk(k, self.plan, self.chunk, self.buffer)
    }
}

/// [`backward_chunk`] with its arguments, for [`on_tier`].
struct Backward<'p, 'c, E> {
    plan: &'p Plan<'p>,
    chunk: Chunk<'c, E>,
}

impl<E: Logit + Elem> Work for Backward<'_, '_, E> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        backward_chunk(k, self.plan, self.chunk)
    }
}

/// The forward (and fused gradient) of one chunk: short rows in groups where the options
/// allow it, every other row on its own.
fn forward_chunk<K: RowKernels, E: Logit + Elem>(
    k: K,
    plan: &Plan<'_>,
    mut chunk: Chunk<'_, E>,
    mut buffer: Option<&mut [f32]>,
) -> Partial {
    let mut partial = Partial::default();
    let rows = chunk.pass.rows();
    let mut i = 0;
    while i < rows {
        if plan.short_rows && rows - i >= GROUP {
            let groups = ((rows - i) / GROUP).min(GROUPS_PER_CALL);
            forward_groups(k, plan, &mut chunk, i, groups, &mut partial);
            i += groups * GROUP;
        } else {
            forward_row(k, plan, &mut chunk, i, &mut partial, buffer.as_deref_mut());
            i += 1;
        }
    }
    partial
}

/// Row `i` on its own: phase 1 in column blocks, then the loss and phase 2 (`buffer` keeps
/// a 16-bit row's exponentials between them).
fn forward_row<K: RowKernels, E: Logit + Elem>(
    k: K,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_, E>,
    i: usize,
    partial: &mut Partial,
    mut buffer: Option<&mut [f32]>,
) {
    let Some(target) = row_target(&chunk.targets, i, plan.options.ignore_index) else {
        // The lse of an ignored row costs a pass only when it is asked for.
        let stats = chunk.lse_out.is_some().then(|| {
            let src = RowSrc::Read(chunk.pass.input(i));
            row_stats(k, src, &plan.gather(None), plan.split_rows)
        });
        ignored_row(chunk, i, stats.as_ref());
        return;
    };
    let x_y = target_logit(k, plan, chunk, i, target);
    // Without a softcap phase 1 stores exp(x − m) and phase 2 only scales it: one exp per
    // element. With one, phase 2 needs x' itself, so it recomputes from the logits (as
    // does a 16-bit row without a buffer for its exponentials).
    let store = plan.writes(chunk) && plan.cap == 0.0;
    let exps = match store {
        true => exp_store(
            chunk.pass.io(i).expect("has an output"),
            buffer.as_deref_mut(),
        ),
        false => None,
    };
    let stored = exps.as_ref().map(|&(_, stored)| stored);
    let src = match exps {
        Some((io, _)) => RowSrc::Store(io),
        None => RowSrc::Read(chunk.pass.input(i)),
    };
    let stats = row_stats(k, src, &plan.gather(Some(target)), plan.split_rows);
    let exps = Exps::after(&stats, stored, buffer.as_deref());
    counted_row(k, plan, chunk, i, target, x_y, &stats, exps, partial);
}

/// Rows `first..first + GROUP·groups`, all short, hard targets, no smoothing, no softcap:
/// one kernel call computes every row's terms and gradient lane-wise.
fn forward_groups<K: RowKernels, E: Logit + Elem>(
    k: K,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_, E>,
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
fn target_logit<K: RowKernels, E: Logit + Elem>(
    k: K,
    plan: &Plan<'_>,
    chunk: &Chunk<'_, E>,
    i: usize,
    target: RowTarget<'_>,
) -> f64 {
    match target {
        RowTarget::Class(y) => f64::from(k.softcap(chunk.pass.input(i)[y].to_f32(), plan.cap)),
        RowTarget::Soft(_) => 0.0,
    }
}

/// An ignored row: loss 0 and gradient 0 whatever the logits hold; the lse is still the
/// row's true logsumexp when asked for (`stats` is there then).
fn ignored_row<E: Logit + Elem>(chunk: &mut Chunk<'_, E>, i: usize, stats: Option<&RowStats>) {
    if let (Some(lse), Some(stats)) = (chunk.lse_out.as_deref_mut(), stats) {
        lse[i] = (f64::from(stats.max) + stats.sum.ln()) as f32;
    }
    if let Some(loss) = chunk.loss.as_deref_mut() {
        loss[i] = 0.0;
    }
    if let Some(mut io) = chunk.pass.io(i) {
        io.output().fill(E::from_f32(0.0));
    }
}

/// A counted row after phase 1: its loss, lse and gradient (phase 2, from `exps`).
#[allow(
    clippy::too_many_arguments,
    reason = "one row's whole state, used in two places"
)]
fn counted_row<K: RowKernels, E: Logit + Elem>(
    k: K,
    plan: &Plan<'_>,
    chunk: &mut Chunk<'_, E>,
    i: usize,
    target: RowTarget<'_>,
    x_y: f64,
    stats: &RowStats,
    exps: Exps<'_>,
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
            write_row(k, io, &grad, exps, plan.split_rows);
        } else {
            io.output().fill(E::from_f32(0.0));
        }
    }
}

/// The gradient of one chunk from its saved lse: p = exp(x' − lse)/Σ_c exp(x'_c − lse),
/// two passes. The saved lse is rounded (to f32: |lse|·2⁻²⁴ relative), and that error
/// would reach every exp(x' − lse) alike (at |lse| = 1e5 a p_y of 1 − 9e−5 comes out 1);
/// dividing by the row's own sum cancels it, and the lse is only the shift.
fn backward_chunk<K: RowKernels, E: Logit + Elem>(k: K, plan: &Plan<'_>, mut chunk: Chunk<'_, E>) {
    let lse_in = chunk.lse_in.expect("backward reads the saved lse");
    for i in 0..chunk.pass.rows() {
        let target = row_target(&chunk.targets, i, plan.options.ignore_index);
        let Some(mut io) = chunk.pass.io(i) else {
            unreachable!("backward always writes a gradient")
        };
        let Some(target) = target.filter(|_| !plan.zero_grad) else {
            io.output().fill(E::from_f32(0.0));
            continue;
        };
        let lse = lse_in[i];
        let column = match target {
            RowTarget::Class(y) => Some(y),
            RowTarget::Soft(_) => None,
        };
        let sums = k.sum_exp(io.input(), lse, plan.cap, column);
        let sum = sums.rest + sums.target;
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
                let x_y = k.softcap(io.input()[y].to_f32(), plan.cap);
                TargetProb::from_parts(sums.target, sums.rest, f64::from(x_y))
            }
            RowTarget::Soft(_) => TargetProb::NONE,
        };
        // The row's lse (for the z-loss term), the saved one corrected by the sum.
        let row_lse = f64::from(lse) + sum.ln();
        let grad = plan.grad_row(target, t_total, sum, row_lse, upstream, p_y);
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
pub(super) fn run_forward<T: Logit>(
    pass: BatchIo<'_, T>,
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
    let buffers = ExpBuffers::new::<T>(cols);
    let partials = for_each_chunk(chunk, cols, |c| {
        let route = ForwardChunk {
            plan: &plan,
            buffers: &buffers,
            chunk: PhantomData,
        };
        T::route(route, c)
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
pub(super) fn run_backward<T: Logit>(
    pass: BatchIo<'_, T>,
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
    let upstream = if per_row { 1.0 } else { dloss[0].to_f64() };
    let plan = Plan::new(options, Columns::all(cols), soft, &counts, upstream);
    let chunk = Chunk {
        pass,
        targets,
        loss: None,
        lse_out: None,
        lse_in: Some(lse),
        dloss: if per_row { Some(dloss) } else { None },
    };
    for_each_chunk(chunk, cols, |c| {
        let route = BackwardChunk {
            plan: &plan,
            chunk: PhantomData,
        };
        T::route(route, c)
    });
    Ok(())
}
