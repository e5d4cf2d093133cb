//! Vocabulary-parallel cross-entropy (Megatron-LM's tensor parallelism): every process
//! holds the same rows but only a slice of the columns. Three calls make the loss and the
//! gradient:
//!
//! 1. [`shard_stats`] sums up each row of the slice in a [`ShardRow`];
//! 2. a collective merges the summaries of every process with [`merge_shard_rows`] (one
//!    all-reduce: the merge is associative and commutative);
//! 3. [`shard_finish`] (or its `_grad` forms) turns the merged rows into the loss, the lse
//!    and this slice's gradient.
//!
//! The loss and the lse depend on the merged rows and the targets only, and are summed in
//! row order, so every process computes the same bits. The gradient of a slice needs its
//! logits again: p_c = exp(x'_c − M)/S with the merged max M and sum S.

use super::{
    Columns, Counts, Partial, Plan, RowSums, RowTarget, TargetProb, check_targets, row_loss,
    row_target,
};
use crate::batch_io::BatchIo;
use crate::dispatch::{Work, on_tier};
use crate::error::{Error, Result};
use crate::kernels::RowKernels;
use crate::options::{Options, Reduction};
use crate::row::{Exps, Gather, RowSrc, row_stats, write_row};
use crate::rows::{Rows, RowsMut, Targets};
use crate::schedule::{SplitAtRow, SplitRows, for_each_chunk, split_fields};

/// Where a shard's columns lie in the whole vocabulary: its columns are the global classes
/// `class_offset..class_offset + cols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// The global class of the shard's first column.
    pub class_offset: usize,
    /// C, the number of classes of the whole vocabulary.
    pub total_cols: usize,
}

/// One row's summary over a slice of the columns, or over several merged ones
/// (`xent_shard_row` in C: four `float`s in this order).
///
/// x' are the softcapped logits (the logits themselves without a softcap).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardRow {
    /// max_c x'_c over the columns summed up: −∞ when they are all −∞, NaN when one is NaN
    /// or +∞ (the row's loss and gradient are NaN then, on every shard).
    pub max: f32,
    /// Σ_c exp(x'_c − max): 0 when every column is −∞, NaN with a NaN `max`.
    pub sumexp: f32,
    /// x'_y when the row's target y lies in these columns, else 0 (so the merged row holds
    /// x'_y exactly).
    pub target_logit: f32,
    /// Σ_c w_c·x'_c over these columns with label smoothing (ε > 0), else 0.
    pub smooth_sum: f32,
}

impl ShardRow {
    /// The summary of no columns, the merge's identity: what a process holding none of a
    /// vocabulary's classes contributes.
    pub const EMPTY: ShardRow = ShardRow {
        max: f32::NEG_INFINITY,
        sumexp: 0.0,
        target_logit: 0.0,
        smooth_sum: 0.0,
    };

    /// The summary of both rows' columns: the larger max, each sum moved to it (in f64),
    /// and the sums of the other two fields.
    ///
    /// The result does not depend on the order of the two rows, bit for bit (a zero max
    /// prefers +0), so every process of an all-reduce that merges the same pairs gets the
    /// same bits whatever side each row came from.
    ///
    /// ```
    /// use xent::ShardRow;
    ///
    /// let a = ShardRow { max: 2.0, sumexp: 1.5, target_logit: 2.0, smooth_sum: 0.0 };
    /// let b = ShardRow { max: f32::NEG_INFINITY, sumexp: 0.0, target_logit: 0.0, smooth_sum: 0.0 };
    /// assert_eq!(a.merge(&b), a); // an all-masked shard adds nothing
    /// assert_eq!(a.merge(&ShardRow::EMPTY), ShardRow::EMPTY.merge(&a));
    /// ```
    #[must_use]
    pub fn merge(&self, other: &ShardRow) -> ShardRow {
        let _fp = crate::fpenv::enter();
        self.merged(other)
    }

    /// [`ShardRow::merge`] in the environment already set.
    fn merged(&self, other: &ShardRow) -> ShardRow {
        let (a, b) = (self.max, other.max);
        let max = if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if a > b || (a == b && a.is_sign_positive()) {
            a
        } else {
            b
        };
        let m = f64::from(max);
        // A shard without a finite value (sum 0) adds nothing, also when both maxes are −∞
        // (−∞ − (−∞) would be NaN); a NaN sum stays NaN (NaN·exp(…) is NaN).
        let moved = |r: &ShardRow| {
            let s = f64::from(r.sumexp);
            if s == 0.0 {
                0.0
            } else {
                s * (f64::from(r.max) - m).exp()
            }
        };
        // A NaN keeps the payload of one operand, chosen by operand order on x86: every
        // NaN becomes the one quiet NaN, so that merge(a, b) and merge(b, a) stay the same
        // bits (found by the fuzzer with two NaN smoothing sums).
        let canonical = |v: f32| if v.is_nan() { f32::NAN } else { v };
        ShardRow {
            max,
            sumexp: canonical((moved(self) + moved(other)) as f32),
            target_logit: canonical(self.target_logit + other.target_logit),
            smooth_sum: canonical(self.smooth_sum + other.smooth_sum),
        }
    }
}

/// Merges `input[i]` into `inout[i]` for every row: the body of the all-reduce that combines
/// the shards (an `MPI_User_function` in C, which has exactly this shape).
///
/// ```
/// use xent::{ShardRow, merge_shard_rows};
///
/// let shard_a = [ShardRow { max: 1.0, sumexp: 1.0, target_logit: 1.0, smooth_sum: 0.0 }];
/// let mut shard_b = [ShardRow { max: 1.0, sumexp: 1.0, target_logit: 0.0, smooth_sum: 0.0 }];
/// merge_shard_rows(&shard_a, &mut shard_b)?;
/// assert_eq!(shard_b[0].sumexp, 2.0);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn merge_shard_rows(input: &[ShardRow], inout: &mut [ShardRow]) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    Error::check_len("inout", inout.len(), input.len())?;
    for (acc, row) in inout.iter_mut().zip(input) {
        *acc = row.merged(acc);
    }
    Ok(())
}

/// The hard targets of a sharded call (soft targets are refused: their sums need a summary of
/// their own).
pub(super) fn hard<'t>(targets: Targets<'t>) -> Result<Targets<'t>> {
    match targets {
        Targets::Soft(_) => Err(Error::shape(
            "targets",
            "are soft target rows; sharded calls take class indices",
        )),
        hard => Ok(hard),
    }
}

/// Checks what every sharded call shares — the shard's place, the options for the whole
/// vocabulary, the targets as global classes — and plans the call with upstream gradient
/// `upstream` (g; the summaries do not use it).
pub(super) fn plan_shard<'o>(
    options: &'o Options<'o>,
    cols: usize,
    shard: Shard,
    targets: &Targets<'_>,
    rows: usize,
    upstream: f64,
) -> Result<(Plan<'o>, Counts)> {
    let Shard {
        class_offset,
        total_cols,
    } = shard;
    if class_offset
        .checked_add(cols)
        .is_none_or(|end| end > total_cols)
    {
        return Err(Error::shape(
            "shard",
            format!(
                "columns {class_offset}..{class_offset}+{cols} exceed the {total_cols} classes"
            ),
        ));
    }
    options.validate(total_cols)?;
    let counts = check_targets(targets, rows, options, total_cols)?;
    let columns = Columns {
        offset: class_offset,
        cols,
        total: total_cols,
    };
    let plan = Plan::new(options, columns, false, &counts, upstream);
    Ok((plan, counts))
}

/// A chunk of rows of [`shard_stats`].
struct StatsChunk<'a> {
    logits: Rows<'a>,
    targets: Targets<'a>,
    out: &'a mut [ShardRow],
}

impl SplitAtRow for StatsChunk<'_> {
    split_fields!(StatsChunk {
        logits,
        targets,
        out
    });
}

impl SplitRows for StatsChunk<'_> {
    fn rows(&self) -> usize {
        self.logits.rows()
    }
}

/// Each row of this shard's slice of the logits summed up for the merge: `out[i]` receives
/// row `i`'s [`ShardRow`].
///
/// `logits` holds the columns `shard.class_offset..shard.class_offset + cols` of every row;
/// `targets` are global classes (in `0..shard.total_cols`, or `ignore_index`);
/// `options.class_weights` holds the `total_cols` weights of the whole vocabulary. Checks as
/// [`cross_entropy`](crate::cross_entropy), and a shard that does not fit in `total_cols` is
/// refused with [`Error::InvalidShape`]; nothing is written then.
///
/// ```
/// use xent::{Options, Rows, Shard, ShardRow};
///
/// // One row of 4 classes; this process holds classes 2 and 3.
/// let slice = [0.5f32, 1.5];
/// let mut summary = [ShardRow::EMPTY];
/// let shard = Shard { class_offset: 2, total_cols: 4 };
/// xent::shard_stats(Rows::packed(&slice, 2)?, shard, &[3i64][..], &Options::default(), &mut summary)?;
/// assert_eq!(summary[0].max, 1.5);
/// assert_eq!(summary[0].target_logit, 1.5);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn shard_stats<'t>(
    logits: Rows<'_>,
    shard: Shard,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    out: &mut [ShardRow],
) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    let targets = hard(targets.into())?;
    let rows = logits.rows();
    Error::check_len("out", out.len(), rows)?;
    let (plan, _) = plan_shard(options, logits.cols(), shard, &targets, rows, 1.0)?;
    slice_stats(&plan, logits, targets, out);
    Ok(())
}

/// [`shard_stats`] after its checks: `plan` holds the slice's columns.
pub(super) fn slice_stats(
    plan: &Plan<'_>,
    logits: Rows<'_>,
    targets: Targets<'_>,
    out: &mut [ShardRow],
) {
    // Σ_c w_c over the slice, which moves the smoothing sum from the row max to 0.
    let slice_weight: f64 = match plan.weights() {
        Some(w) => w.values.iter().map(|&w| f64::from(w)).sum(),
        None => logits.cols() as f64,
    };
    let chunk = StatsChunk {
        logits,
        targets,
        out,
    };
    for_each_chunk(chunk, plan.columns.cols, |chunk| {
        on_tier(SliceRows {
            plan,
            chunk,
            slice_weight,
        })
    });
}

/// The rows of a chunk of a slice summed up, on the tier in force.
struct SliceRows<'p, 'c> {
    plan: &'p Plan<'p>,
    chunk: StatsChunk<'c>,
    slice_weight: f64,
}

impl Work for SliceRows<'_, '_> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        let SliceRows {
            plan,
            chunk: c,
            slice_weight,
        } = self;
        for i in 0..c.logits.rows() {
            let target = row_target(&c.targets, i, plan.options.ignore_index);
            c.out[i] = slice_row(k, plan, c.logits.row(i), target, slice_weight);
        }
    }
}

/// One row of a slice summed up.
fn slice_row<K: RowKernels>(
    k: K,
    plan: &Plan<'_>,
    x: &[f32],
    target: Option<RowTarget<'_>>,
    slice_weight: f64,
) -> ShardRow {
    let smoothing = plan.uniform > 0.0;
    let gather = Gather {
        cap: plan.cap,
        smoothing,
        weights: plan.weights(),
        soft: None,
        block_weights: &plan.block_weights,
        target: None,
    };
    let stats = row_stats(k, RowSrc::Read(x), &gather, plan.split_rows);
    let all_masked = stats.max == f32::NEG_INFINITY;
    // The kernels' max may skip a NaN; the sum never does. A row of only −∞ has sum NaN in
    // the row statistics (it has no softmax), but a slice of only −∞ is common (a masked
    // part of the vocabulary) and must merge as "nothing": it is NaN only if it holds one.
    let (max, sumexp) = if all_masked && !x.iter().any(|v| v.is_nan()) {
        (f32::NEG_INFINITY, 0.0)
    } else if all_masked || stats.sum.is_nan() {
        (f32::NAN, f32::NAN)
    } else {
        (stats.max, stats.sum as f32)
    };
    let target_logit = match target {
        Some(RowTarget::Class(y)) => plan
            .columns
            .local(y)
            .map_or(0.0, |c| k.softcap(x[c], plan.cap)),
        _ => 0.0,
    };
    let smooth_sum = if !smoothing {
        0.0
    } else if all_masked {
        // Σ w·(−∞): −∞, or NaN with a zero weight, as the unsharded row's sum gives.
        k.weighted_shifted_sum(x, plan.weights(), 0.0, plan.cap) as f32
    } else {
        (stats.weighted + f64::from(stats.max) * slice_weight) as f32
    };
    ShardRow {
        max,
        sumexp,
        target_logit,
        smooth_sum,
    }
}

/// A merged row's max, Σ exp and lse in f64. A row of only −∞ has no softmax: its sum and
/// lse are NaN, as in the unsharded call.
fn merged_sums(row: &ShardRow) -> (f64, f64, f64) {
    let max = f64::from(row.max);
    let sum = if row.sumexp == 0.0 {
        f64::NAN
    } else {
        f64::from(row.sumexp)
    };
    (max, sum, max + sum.ln())
}

/// A chunk of rows of a gradient from merged rows.
struct GradChunk<'a> {
    pass: BatchIo<'a>,
    targets: Targets<'a>,
    merged: &'a [ShardRow],
    /// Each row's upstream gradient (a backward with reduction `none`), or none: 1.
    dloss: Option<&'a [f32]>,
}

impl SplitAtRow for GradChunk<'_> {
    split_fields!(GradChunk {
        pass,
        targets,
        merged,
        dloss
    });
}

impl SplitRows for GradChunk<'_> {
    fn rows(&self) -> usize {
        self.pass.rows()
    }
}

/// The loss, lse and (for a pass with an output) this slice's gradient from merged rows.
fn finish(
    pass: BatchIo<'_>,
    shard: Shard,
    targets: Targets<'_>,
    options: &Options<'_>,
    merged: &[ShardRow],
    loss: &mut [f32],
    lse: Option<&mut [f32]>,
) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    let targets = hard(targets)?;
    let rows = pass.rows();
    let upstream = f64::from(options.grad_scale);
    pass.check("grad")?;
    Error::check_len("merged", merged.len(), rows)?;
    Error::check_len("loss", loss.len(), options.reduction.loss_len(rows))?;
    if let Some(lse) = lse.as_deref() {
        Error::check_len("lse", lse.len(), rows)?;
    }
    let (plan, counts) = plan_shard(options, pass.cols(), shard, &targets, rows, upstream)?;

    merged_loss(&plan, &counts, &targets, merged, loss, lse);
    if !matches!(pass, BatchIo::Forward(_)) {
        slice_grad(&plan, pass, targets, merged, None);
    }
    Ok(())
}

/// The loss (and with `lse` each row's lse) from the merged rows alone, summed in row order:
/// the same bits on every shard. `plan` may hold any slice of the columns.
pub(super) fn merged_loss(
    plan: &Plan<'_>,
    counts: &Counts,
    targets: &Targets<'_>,
    merged: &[ShardRow],
    loss: &mut [f32],
    mut lse: Option<&mut [f32]>,
) {
    let per_row = plan.options.reduction == Reduction::None;
    let mut total = Partial::default();
    for (i, row) in merged.iter().enumerate() {
        let (max, sum, row_lse) = merged_sums(row);
        if let Some(lse) = lse.as_deref_mut() {
            lse[i] = row_lse as f32;
        }
        let row_total = match row_target(targets, i, plan.options.ignore_index) {
            None => 0.0,
            Some(target) => {
                let sums = RowSums {
                    max,
                    sum,
                    target_exp: 0.0,
                    rest: 0.0,
                    // Σ w_c·(x'_c − M) for the smoothing term.
                    weighted: f64::from(row.smooth_sum) - plan.weight_sum * max,
                    dot: 0.0,
                    t_total: 0.0,
                };
                let x_y = f64::from(row.target_logit);
                let terms = row_loss(plan, target, x_y, &sums, &mut total);
                terms.ce + terms.zl
            }
        };
        if per_row {
            loss[i] = row_total as f32;
        }
    }
    if !per_row {
        loss[0] = plan.reduce(total, false, counts) as f32;
    }
}

/// The gradient of the slice `plan` holds, from the merged rows, into the batch's output;
/// `dloss`, when given, multiplies each row's (the plan's upstream gradient is then 1).
pub(super) fn slice_grad(
    plan: &Plan<'_>,
    pass: BatchIo<'_>,
    targets: Targets<'_>,
    merged: &[ShardRow],
    dloss: Option<&[f32]>,
) {
    let chunk = GradChunk {
        pass,
        targets,
        merged,
        dloss,
    };
    for_each_chunk(chunk, plan.columns.cols, |chunk| {
        on_tier(SliceGrad { plan, chunk })
    });
}

/// The gradient of a chunk of a slice's rows, on the tier in force.
struct SliceGrad<'p, 'c> {
    plan: &'p Plan<'p>,
    chunk: GradChunk<'c>,
}

impl Work for SliceGrad<'_, '_> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        let SliceGrad { plan, chunk: mut c } = self;
        for i in 0..c.pass.rows() {
            let target = row_target(&c.targets, i, plan.options.ignore_index);
            let Some(mut io) = c.pass.io(i) else {
                unreachable!("a gradient pass has an output")
            };
            let Some(target) = target.filter(|_| !plan.zero_grad) else {
                io.output().fill(0.0);
                continue;
            };
            let row = &c.merged[i];
            let (_, sum, row_lse) = merged_sums(row);
            let p_y = match target {
                RowTarget::Class(y) if plan.columns.local(y).is_some() => {
                    TargetProb::from_lse(f64::from(row.target_logit), row_lse)
                }
                _ => TargetProb::NONE,
            };
            let upstream = c.dloss.map_or(1.0, |d| f64::from(d[i]));
            let grad = plan.grad_row(target, 0.0, sum, row_lse, upstream, p_y);
            let exps = Exps::FromLogits { shift: row.max };
            write_row(k, io, &grad, exps, plan.split_rows);
        }
    }
}

/// The loss (and each row's lse) of a sharded batch from its merged rows, without a
/// gradient: the same values on every shard, equal to
/// [`cross_entropy`](crate::cross_entropy) on the whole rows within docs/semantics.md's tolerances.
///
/// `merged` holds each row's [`ShardRow`] merged over every shard of the vocabulary; the
/// other arguments are [`shard_stats`]'s and [`cross_entropy`](crate::cross_entropy)'s
/// (`loss`: 1 value, or one per row for [`Reduction::None`]).
///
/// ```
/// use xent::{Options, Rows, Shard, ShardRow};
///
/// // Two processes, each with two of a row's four classes (here in one process).
/// let (left, right) = ([0.0f32, 1.0], [2.0f32, 3.0]);
/// let (options, targets) = (Options::default(), [1i64]);
/// let mut a = [ShardRow::EMPTY];
/// let mut b = [ShardRow::EMPTY];
/// xent::shard_stats(Rows::packed(&left, 2)?, Shard { class_offset: 0, total_cols: 4 }, &targets[..], &options, &mut a)?;
/// xent::shard_stats(Rows::packed(&right, 2)?, Shard { class_offset: 2, total_cols: 4 }, &targets[..], &options, &mut b)?;
/// xent::merge_shard_rows(&a, &mut b)?; // what the all-reduce does
///
/// let mut loss = [0.0f32];
/// let shard = Shard { class_offset: 0, total_cols: 4 };
/// xent::shard_finish(Rows::packed(&left, 2)?, shard, &targets[..], &options, &b, &mut loss, None)?;
///
/// let whole = [0.0f32, 1.0, 2.0, 3.0];
/// let mut expected = [0.0f32];
/// xent::cross_entropy(Rows::packed(&whole, 4)?, &targets[..], &options, &mut expected, None)?;
/// assert!((loss[0] - expected[0]).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn shard_finish<'t>(
    logits: Rows<'_>,
    shard: Shard,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    merged: &[ShardRow],
    loss: &mut [f32],
    lse: Option<&mut [f32]>,
) -> Result<()> {
    let pass = BatchIo::Forward(logits);
    finish(pass, shard, targets.into(), options, merged, loss, lse)
}

/// [`shard_finish`], and this slice's gradient written into `grad` (the slice's shape, any
/// stride): its columns of the gradient of the whole rows.
#[allow(
    clippy::too_many_arguments,
    reason = "shard_finish's arguments and the gradient"
)]
pub fn shard_finish_grad<'t>(
    logits: Rows<'_>,
    shard: Shard,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    merged: &[ShardRow],
    loss: &mut [f32],
    grad: RowsMut<'_>,
    lse: Option<&mut [f32]>,
) -> Result<()> {
    let pass = BatchIo::Separate(logits, grad);
    finish(pass, shard, targets.into(), options, merged, loss, lse)
}

/// [`shard_finish`], with the slice's logits overwritten by their gradient (padding
/// untouched). On error the logits are unchanged.
pub fn shard_finish_grad_in_place<'t>(
    logits: RowsMut<'_>,
    shard: Shard,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    merged: &[ShardRow],
    loss: &mut [f32],
    lse: Option<&mut [f32]>,
) -> Result<()> {
    let pass = BatchIo::InPlace(logits);
    finish(pass, shard, targets.into(), options, merged, loss, lse)
}
