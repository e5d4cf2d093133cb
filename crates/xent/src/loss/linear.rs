//! Fused linear + cross-entropy: a language-model head's loss and gradients from the hidden
//! states H, the weight W (nn.Linear's layout, one row per class) and the bias b, without
//! ever holding the rows × classes logits H·Wᵀ + b.
//!
//! The vocabulary is cut into chunks, and each chunk is a shard of it in the sense of the
//! vocabulary-parallel calls (`shard.rs`):
//!
//! 1. pass 1 computes each chunk's logits with a GEMM and folds them into per-row summaries
//!    with the shards' merge; the loss and the lse follow from the merged rows;
//! 2. pass 2 recomputes each chunk, turns it into its gradient in place with the sharded
//!    finish, and accumulates dH += G·W_c, writes dW_c = Gᵀ·H and db_c = Σ_rows G.
//!
//! The working memory is one chunk of rows × chunk classes (and the GEMM's packing
//! buffers), whatever the vocabulary size. Pass 2 runs the chunks backwards, so the last
//! chunk of pass 1 is still in the buffer and is not recomputed.
//!
//! The backward from a saved lse (an autograd wrapper's, with a per-row upstream gradient)
//! is pass 2 alone, each row's summary made of its lse.

use super::shard::{ShardRow, hard, merge_shard_rows, merged_loss, slice_grad, slice_stats};
use super::{Columns, Counts, Plan, RowTarget, check_targets, row_target};
use core::marker::PhantomData;

use half::{bf16, f16};

use crate::batch_io::BatchIo;
use crate::dispatch::{Work, on_tier};
use crate::dtype::{Logit, Route};
use crate::error::{Error, Result};
use crate::kernels::RowKernels;
use crate::matmul::{Mat, MatMut, multiply};
use crate::options::{Options, Reduction};
use crate::rows::{Rows, RowsMut, Targets};

/// The inputs of a linear layer that produces the logits: `logits = hidden·weightᵀ + bias`.
///
/// `T` is `f32`, or `bf16` / `f16` (then the GEMMs run in f32 on exactly widened values,
/// and each gradient is rounded once).
#[derive(Debug, Clone, Copy)]
pub struct LinearHead<'a, T = f32> {
    /// H: `rows × dim` hidden states.
    pub hidden: Rows<'a, T>,
    /// W: `classes × dim`, one row per class (`torch.nn.Linear`'s layout).
    pub weight: Rows<'a, T>,
    /// b: `classes` values, or none.
    pub bias: Option<&'a [T]>,
    /// `None`: row i's target is `targets[i]`. `Some(len)`: next-token prediction without a
    /// shifted copy (Cut Cross-Entropy's `shift`): the rows are sequences of `len` positions
    /// each (`rows` a multiple of `len`), the targets are the sequences' tokens, and the
    /// row of position t is scored against the token at t + 1 of its sequence; the last
    /// position of each sequence is ignored (as a target equal to `ignore_index` is: no
    /// loss, no gradient, not counted in the mean).
    pub next_token: Option<usize>,
}

/// Where the gradients of a [`LinearHead`] go; each is optional, and each given one is
/// overwritten (not accumulated into).
#[derive(Debug)]
pub struct LinearGrads<'a, T = f32> {
    /// ∂loss/∂H: `rows × dim`.
    pub hidden: Option<RowsMut<'a, T>>,
    /// ∂loss/∂W: `classes × dim`.
    pub weight: Option<RowsMut<'a, T>>,
    /// ∂loss/∂b: `classes` values.
    pub bias: Option<&'a mut [T]>,
}

impl<T> Default for LinearGrads<'_, T> {
    fn default() -> Self {
        LinearGrads {
            hidden: None,
            weight: None,
            bias: None,
        }
    }
}

/// How many classes each chunk of the vocabulary holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunking {
    /// Chosen from the number of rows (see [`Chunking::classes`]).
    #[default]
    Auto,
    /// This many classes per chunk (at least 1; the last chunk may hold fewer).
    Classes(usize),
}

/// The logits of one chunk: 2M f32 values (8 MiB), which leaves the GEMMs long rows (512
/// classes at 4096 rows) and keeps the chunk within a server's last-level cache. It does
/// not depend on the number of threads, so neither do the results (the chunks decide the
/// order of the merges and of the ∂H sums).
const CHUNK_ELEMS: usize = 1 << 21;

/// The narrowest automatic chunk: below this the GEMMs' rows get too short to run fast.
const MIN_CHUNK_CLASSES: usize = 256;

impl Chunking {
    /// The classes per chunk for `rows` rows of a `classes`-class vocabulary. `Auto` gives
    /// about 2M logits per chunk, in whole multiples of 64 classes, at least 256 classes;
    /// it depends on the shape only, so results are the same bits on any number of
    /// threads.
    ///
    /// ```
    /// use xent::Chunking;
    ///
    /// assert_eq!(Chunking::Auto.classes(4096, 128_256), 512);
    /// assert_eq!(Chunking::Auto.classes(8, 1000), 1000);
    /// assert_eq!(Chunking::Classes(100).classes(4096, 128_256), 100);
    /// ```
    pub fn classes(self, rows: usize, classes: usize) -> usize {
        let chosen = match self {
            Chunking::Auto => (CHUNK_ELEMS / rows.max(1) / 64 * 64).max(MIN_CHUNK_CLASSES),
            Chunking::Classes(n) => n.max(1),
        };
        chosen.min(classes.max(1))
    }
}

/// The loss of the logits `hidden·weightᵀ + bias` against hard targets, and the gradients
/// with respect to the hidden states, the weight and the bias that `grads` asks for, without
/// holding the logits: see [`linear_cross_entropy_chunked`], with [`Chunking::Auto`].
///
/// ```
/// use xent::{LinearGrads, LinearHead, Options, Rows, RowsMut};
///
/// // 2 rows of 3 features, 4 classes.
/// let hidden = [1.0f32, 0.0, -1.0, 0.5, 0.5, 0.5];
/// let weight = [0.1f32, 0.2, 0.3, -0.1, 0.0, 0.1, 0.5, -0.5, 0.0, 0.0, 0.0, 1.0];
/// let head = LinearHead {
///     hidden: Rows::packed(&hidden, 3)?,
///     weight: Rows::packed(&weight, 3)?,
///     bias: None,
///     next_token: None,
/// };
/// let mut loss = [0.0f32];
/// let mut grad_hidden = [0.0f32; 6];
/// let grads = LinearGrads {
///     hidden: Some(RowsMut::packed(&mut grad_hidden, 3)?),
///     ..LinearGrads::default()
/// };
/// xent::linear_cross_entropy(head, &[3i64, 0][..], &Options::default(), &mut loss, grads, None)?;
///
/// // The same as the logits first, then the cross-entropy.
/// let logits: Vec<f32> = (0..2)
///     .flat_map(|i| (0..4).map(move |c| (0..3).map(|k| hidden[i * 3 + k] * weight[c * 3 + k]).sum()))
///     .collect();
/// let mut expected = [0.0f32];
/// xent::cross_entropy(Rows::packed(&logits, 4)?, &[3i64, 0][..], &Options::default(), &mut expected, None)?;
/// assert!((loss[0] - expected[0]).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn linear_cross_entropy<'t, T: Logit<Stat = f32>>(
    head: LinearHead<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [f32],
    grads: LinearGrads<'_, T>,
    lse: Option<&mut [f32]>,
) -> Result<()> {
    linear_cross_entropy_chunked(head, targets, options, loss, grads, lse, Chunking::Auto)
}

/// [`linear_cross_entropy`] with the vocabulary cut into chunks as `chunking` says.
///
/// Every hard-target option applies (docs/semantics.md: reductions, `ignore_index`, ε, class
/// weights, z-loss, softcap, `grad_scale`), with the logits `hidden·weightᵀ + bias`; `loss`
/// holds 1 value (mean, sum) or one per row (none), `lse` each row's logsumexp. Every check
/// runs before any output is written: the shapes (`weight` has the hidden states' `dim`
/// columns, `bias` one value per class, each gradient its parameter's shape), the targets
/// (in `0..classes` or `ignore_index`) and the options, as for
/// [`cross_entropy`](crate::cross_entropy).
///
/// The working memory is one chunk of `rows × classes per chunk` f32 logits plus the
/// GEMMs' packing buffers; 16-bit heads add f32 copies of H, of ∂loss/∂H and of one chunk
/// of W and of ∂loss/∂W. The results equal the unfused composition (the logits by a GEMM,
/// then [`cross_entropy_grad_in_place`](crate::cross_entropy_grad_in_place), then the
/// gradients' GEMMs) within the GEMMs' own rounding.
pub fn linear_cross_entropy_chunked<'t, T: Logit<Stat = f32>>(
    head: LinearHead<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [f32],
    grads: LinearGrads<'_, T>,
    lse: Option<&mut [f32]>,
    chunking: Chunking,
) -> Result<()> {
    run_head(
        head,
        targets.into(),
        options,
        grads,
        Pass::Step { loss, lse },
        chunking,
    )
}

/// The gradients of a [`LinearHead`]'s loss from each row's saved logsumexp (the `lse` of
/// [`linear_cross_entropy`] on the same head and targets) and the upstream gradient
/// `dloss`: what an autograd wrapper's backward needs when the loss is used after the
/// forward, e.g. per-token losses (`Reduction::None`) weighted or masked.
///
/// `dloss` is the gradient of whatever the caller computed from `loss` with respect to it:
/// one value (mean, sum) or one per row (none). It replaces `options.grad_scale`. The
/// call recomputes each chunk of logits once (three GEMMs per chunk; the forward without
/// gradients was one), so a forward and this backward cost what [`linear_cross_entropy`]
/// with gradients does. The gradients are those of the logits from the lse, as
/// [`cross_entropy_backward`](crate::cross_entropy_backward) computes them, then through
/// the GEMMs; every check runs before any output is written.
///
/// ```
/// use xent::{LinearGrads, LinearHead, Options, Reduction, Rows, RowsMut};
///
/// // Per-token losses, then a weighted sum of them: dloss holds the weights.
/// let hidden = [1.0f32, 0.0, -1.0, 0.5, 0.5, 0.5];
/// let weight = [0.1f32, 0.2, 0.3, -0.1, 0.0, 0.1, 0.5, -0.5, 0.0, 0.0, 0.0, 1.0];
/// let head = LinearHead {
///     hidden: Rows::packed(&hidden, 3)?,
///     weight: Rows::packed(&weight, 3)?,
///     bias: None,
///     next_token: None,
/// };
/// let options = Options { reduction: Reduction::None, ..Options::default() };
/// let targets = [3i64, 0];
/// let (mut loss, mut lse) = ([0.0f32; 2], [0.0f32; 2]);
/// xent::linear_cross_entropy(head, &targets[..], &options, &mut loss, LinearGrads::default(), Some(&mut lse))?;
///
/// let dloss = [0.25f32, 2.0];
/// let mut grad_hidden = [0.0f32; 6];
/// let grads = LinearGrads {
///     hidden: Some(RowsMut::packed(&mut grad_hidden, 3)?),
///     ..LinearGrads::default()
/// };
/// xent::linear_cross_entropy_backward(head, &targets[..], &options, &lse, &dloss, grads)?;
///
/// // Row by row, ∂H is dloss times the unit gradient of that row's loss.
/// let mut unit = [0.0f32; 6];
/// let grads = LinearGrads { hidden: Some(RowsMut::packed(&mut unit, 3)?), ..LinearGrads::default() };
/// xent::linear_cross_entropy(head, &targets[..], &options, &mut loss, grads, None)?;
/// for (i, (&g, &u)) in grad_hidden.iter().zip(&unit).enumerate() {
///     assert!((g - dloss[i / 3] * u).abs() < 1e-6);
/// }
/// # Ok::<(), xent::Error>(())
/// ```
pub fn linear_cross_entropy_backward<'t, T: Logit<Stat = f32>>(
    head: LinearHead<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[f32],
    dloss: &[f32],
    grads: LinearGrads<'_, T>,
) -> Result<()> {
    linear_cross_entropy_backward_chunked(head, targets, options, lse, dloss, grads, Chunking::Auto)
}

/// [`linear_cross_entropy_backward`] with the vocabulary cut into chunks as `chunking`
/// says.
pub fn linear_cross_entropy_backward_chunked<'t, T: Logit<Stat = f32>>(
    head: LinearHead<'_, T>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    lse: &[f32],
    dloss: &[f32],
    grads: LinearGrads<'_, T>,
    chunking: Chunking,
) -> Result<()> {
    run_head(
        head,
        targets.into(),
        options,
        grads,
        Pass::Backward { lse, dloss },
        chunking,
    )
}

/// What a call computes from the head: the loss (the step; with gradients, too), or the
/// gradients from a saved lse and an upstream gradient (the backward).
enum Pass<'a> {
    Step {
        loss: &'a mut [f32],
        lse: Option<&'a mut [f32]>,
    },
    Backward {
        lse: &'a [f32],
        dloss: &'a [f32],
    },
}

impl Pass<'_> {
    /// Checks the lengths of the pass's own buffers for `rows` rows.
    fn check(&self, reduction: Reduction, rows: usize) -> Result<()> {
        match self {
            Pass::Step { loss, lse } => {
                Error::check_len("loss", loss.len(), reduction.loss_len(rows))?;
                if let Some(lse) = lse.as_deref() {
                    Error::check_len("lse", lse.len(), rows)?;
                }
            }
            Pass::Backward { lse, dloss } => {
                Error::check_len("lse", lse.len(), rows)?;
                Error::check_len("dloss", dloss.len(), reduction.loss_len(rows))?;
            }
        }
        Ok(())
    }

    /// The plan's upstream gradient g: `grad_scale` for the step, the one `dloss` of a
    /// reduced backward, 1 for a per-row one (each row's dloss multiplies its gradient).
    fn upstream(&self, options: &Options<'_>) -> f64 {
        match self {
            Pass::Step { .. } => f64::from(options.grad_scale),
            Pass::Backward { .. } if options.reduction == Reduction::None => 1.0,
            Pass::Backward { dloss, .. } => f64::from(dloss[0]),
        }
    }
}

/// Checks a call of either pass (all before any write), then runs it over the chunks.
fn run_head<T: Logit<Stat = f32>>(
    head: LinearHead<'_, T>,
    targets: Targets<'_>,
    options: &Options<'_>,
    grads: LinearGrads<'_, T>,
    pass: Pass<'_>,
    chunking: Chunking,
) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    let targets = hard(targets)?;
    let (rows, dim, classes) = check_head(&head, &grads)?;
    pass.check(options.reduction, rows)?;
    let shifted = next_token_targets(targets, head.next_token, rows, options.ignore_index)?;
    let targets = shifted.as_deref().map_or(targets, Targets::I64);
    options.validate(classes)?;
    let counts = check_targets(&targets, rows, options, classes)?;
    let plan = Plan::new(
        options,
        Columns::all(classes),
        false,
        &counts,
        pass.upstream(options),
    );
    if rows == 0 {
        // No rows: the loss of nothing, and gradients of zeros.
        if let Pass::Step { loss, lse } = pass {
            merged_loss(&plan, &counts, &targets, &[], loss, lse);
        }
        if let Some(mut out) = grads.weight {
            let zeros = vec![0.0; dim];
            for c in 0..classes {
                T::narrow(&zeros, out.row_mut(c));
            }
        }
        if let Some(out) = grads.bias {
            T::narrow(&vec![0.0; classes], out);
        }
        return Ok(());
    }
    // Each chunk is a shard of the vocabulary, with its own plan.
    let chunk = chunking.classes(rows, classes);
    let parts: Vec<Plan<'_>> = (0..classes)
        .step_by(chunk)
        .map(|offset| {
            let cols = chunk.min(classes - offset);
            let columns = Columns {
                offset,
                cols,
                total: classes,
            };
            plan.with_columns(columns, rows)
        })
        .collect();
    let route = Head32Route {
        plan: &plan,
        counts: &counts,
        parts: &parts,
        targets,
        chunk,
        rows,
        dim,
        args: PhantomData,
    };
    T::route(route, (head, grads, pass))
}

/// The targets of a head whose rows are sequences of `len` positions when `next_token` is
/// `Some(len)`: row i's is the token `targets[i + 1]`, `ignore_index` at each sequence's
/// last position. `None` without a shift.
fn next_token_targets(
    targets: Targets<'_>,
    next_token: Option<usize>,
    rows: usize,
    ignore_index: i64,
) -> Result<Option<Vec<i64>>> {
    let Some(len) = next_token else {
        return Ok(None);
    };
    Error::check_len("targets", targets.len(), rows)?;
    if len == 0 || !rows.is_multiple_of(len) {
        return Err(Error::shape(
            "next_token",
            format!("sequences of {len} positions do not tile {rows} rows"),
        ));
    }
    let token = |i: usize| targets.class(i).expect("hard targets");
    let shifted = (0..rows)
        .map(|i| {
            if (i + 1).is_multiple_of(len) {
                ignore_index
            } else {
                token(i + 1)
            }
        })
        .collect();
    Ok(Some(shifted))
}

/// What [`Head32Route`] routes: the head, its gradients and the pass.
type HeadArgs<'a, T> = (LinearHead<'a, T>, LinearGrads<'a, T>, Pass<'a>);

/// The two passes over the vocabulary's chunks (`parts`, one plan each) for a head of each
/// element type: an f32 head's matrices are borrowed, any other's widened to f32.
struct Head32Route<'p, 't, 'a> {
    /// The whole vocabulary's plan and target counts, for the loss.
    plan: &'p Plan<'p>,
    counts: &'p Counts,
    parts: &'p [Plan<'p>],
    targets: Targets<'t>,
    chunk: usize,
    rows: usize,
    dim: usize,
    args: PhantomData<HeadArgs<'a, f32>>,
}

impl<'a> Route for Head32Route<'_, '_, 'a> {
    type Of<T: Logit> = HeadArgs<'a, T>;
    type Output = Result<()>;

    fn f32(self, (head, grads, pass): HeadArgs<'a, f32>) -> Result<()> {
        let head32 = Head32 {
            hidden: Hidden32::F32(head.hidden),
            weight: Weight32::F32(head.weight),
            bias: head.bias.map(<[f32]>::to_vec),
            rows: self.rows,
            dim: self.dim,
        };
        let sinks = Sinks {
            hidden: grads.hidden.map(Sink::F32),
            weight: grads.weight.map(Sink::F32),
            bias: grads.bias,
            rows: self.rows,
            dim: self.dim,
        };
        self.run(head32, sinks, pass)
    }

    fn f64(self, args: HeadArgs<'a, f64>) -> Result<()> {
        self.widened(args)
    }

    fn bf16(self, args: HeadArgs<'a, bf16>) -> Result<()> {
        self.widened(args)
    }

    fn f16(self, args: HeadArgs<'a, f16>) -> Result<()> {
        self.widened(args)
    }
}

impl Head32Route<'_, '_, '_> {
    /// A head of another type than f32, widened.
    fn widened<T: Logit>(self, (head, grads, pass): HeadArgs<'_, T>) -> Result<()> {
        let (rows, dim) = (self.rows, self.dim);
        let head32 = Head32 {
            hidden: Hidden32::Widened(widened(head.hidden)),
            weight: Weight32::Wide(head.weight),
            bias: head.bias.map(|b| {
                let mut out = vec![0.0f32; b.len()];
                T::widen(b, &mut out);
                out
            }),
            rows,
            dim,
        };
        let sinks = Sinks {
            hidden: grads
                .hidden
                .map(|out| Sink::Wide(out, vec![0.0; rows * dim])),
            weight: grads.weight.map(|out| Sink::Wide(out, Vec::new())),
            bias: grads.bias,
            rows,
            dim,
        };
        self.run(head32, sinks, pass)
    }

    /// The step: pass 1 (the loss and lse), then pass 2 (the gradients) when any is asked
    /// for. The backward: pass 2 from summaries made of the saved lse.
    fn run<T: Logit>(
        self,
        head32: Head32<'_, T>,
        mut sinks: Sinks<'_, T>,
        pass: Pass<'_>,
    ) -> Result<()> {
        let (rows, parts, targets) = (self.rows, self.parts, self.targets);
        let mut logits = vec![0.0f32; rows * self.chunk];
        let mut weight_scratch = Vec::new();

        let (mut merged, dloss, step) = match pass {
            Pass::Step { loss, lse } => {
                // Pass 1: each chunk's logits summed up and merged into the rows' summaries.
                let mut merged = vec![ShardRow::EMPTY; rows];
                let mut summary = vec![ShardRow::EMPTY; rows];
                for part in parts {
                    let Columns { offset, cols, .. } = part.columns;
                    let w = head32.weight_rows(offset, cols, &mut weight_scratch);
                    head32.logits(w, offset, &mut logits[..rows * cols]);
                    let view = Rows::new(&logits[..rows * cols], rows, cols, cols)?;
                    slice_stats(part, view, targets, &mut summary);
                    merge_shard_rows(&summary, &mut merged)?;
                }
                merged_loss(self.plan, self.counts, &targets, &merged, loss, lse);
                (merged, None, true)
            }
            Pass::Backward { lse, dloss } => {
                // p = exp(x' − lse): a summary of max lse and sum 1. The target logits are
                // filled in chunk by chunk.
                let merged = lse
                    .iter()
                    .map(|&lse| ShardRow {
                        max: lse,
                        sumexp: 1.0,
                        ..ShardRow::EMPTY
                    })
                    .collect();
                let per_row = self.plan.options.reduction == Reduction::None;
                (merged, per_row.then_some(dloss), false)
            }
        };
        if !sinks.any() {
            return Ok(());
        }

        // Pass 2, backwards: after a pass 1, the last chunk's logits are still in the buffer.
        for (k, part) in parts.iter().rev().enumerate() {
            let Columns { offset, cols, .. } = part.columns;
            let w = head32.weight_rows(offset, cols, &mut weight_scratch);
            if k > 0 || !step {
                head32.logits(w, offset, &mut logits[..rows * cols]);
            }
            if !step {
                on_tier(TargetLogits {
                    plan: part,
                    logits: &logits[..rows * cols],
                    targets,
                    merged: &mut merged,
                });
            }
            let view = RowsMut::new(&mut logits[..rows * cols], rows, cols, cols)?;
            slice_grad(part, BatchIo::InPlace(view), targets, &merged, dloss);
            let g = Mat::row_major(&logits[..rows * cols], rows, cols, cols);
            sinks.add_chunk(g, w, head32.hidden(), offset, k == 0);
        }
        sinks.finish();
        Ok(())
    }
}

/// Sets each row's `target_logit` (x'_y, softcapped as the tier computes it) when its
/// target lies in the chunk `plan` holds: a backward's summaries have only the lse, and the
/// target's gradient entry is computed from x'_y (see `TargetProb`).
struct TargetLogits<'a> {
    plan: &'a Plan<'a>,
    /// The chunk's logits, `rows × plan.columns.cols`, packed.
    logits: &'a [f32],
    targets: Targets<'a>,
    merged: &'a mut [ShardRow],
}

impl Work for TargetLogits<'_> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        let TargetLogits {
            plan,
            logits,
            targets,
            merged,
        } = self;
        let cols = plan.columns.cols;
        for (i, row) in merged.iter_mut().enumerate() {
            let Some(RowTarget::Class(y)) = row_target(&targets, i, plan.options.ignore_index)
            else {
                continue;
            };
            if let Some(c) = plan.columns.local(y) {
                row.target_logit = k.softcap(logits[i * cols + c], plan.cap);
            }
        }
    }
}

/// Checks the head's and the gradients' shapes; returns (rows, dim, classes).
fn check_head<T>(
    head: &LinearHead<'_, T>,
    grads: &LinearGrads<'_, T>,
) -> Result<(usize, usize, usize)> {
    let (rows, dim, classes) = (head.hidden.rows(), head.hidden.cols(), head.weight.rows());
    if head.weight.cols() != dim && classes > 0 {
        return Err(Error::shape(
            "weight",
            format!(
                "has {} columns, the hidden states have {dim}",
                head.weight.cols()
            ),
        ));
    }
    if classes == 0 && rows > 0 {
        return Err(Error::shape(
            "weight",
            format!("has no classes for {rows} rows"),
        ));
    }
    if let Some(bias) = head.bias {
        Error::check_len("bias", bias.len(), classes)?;
    }
    let check = |name, view: Option<(usize, usize)>, want: (usize, usize)| match view {
        Some(shape) if shape != want => Err(Error::shape(
            name,
            format!(
                "is {}×{}, it must be {}×{}",
                shape.0, shape.1, want.0, want.1
            ),
        )),
        _ => Ok(()),
    };
    let shape = |v: &RowsMut<'_, T>| (v.rows(), v.cols());
    check("grad_hidden", grads.hidden.as_ref().map(shape), (rows, dim))?;
    check(
        "grad_weight",
        grads.weight.as_ref().map(shape),
        (classes, dim),
    )?;
    if let Some(bias) = grads.bias.as_deref() {
        Error::check_len("grad_bias", bias.len(), classes)?;
    }
    Ok((rows, dim, classes))
}

/// A packed f32 copy of `rows × cols` values of a view.
fn widened<T: Logit>(view: Rows<'_, T>) -> Vec<f32> {
    let cols = view.cols();
    let mut out = vec![0.0f32; view.rows() * cols];
    for (i, row) in out
        .chunks_exact_mut(cols.max(1))
        .enumerate()
        .take(view.rows())
    {
        T::widen(view.row(i), row);
    }
    out
}

/// H as the GEMMs read it: the caller's f32 rows, or widened to f32 once (packed).
enum Hidden32<'a> {
    F32(Rows<'a, f32>),
    Widened(Vec<f32>),
}

/// W as the GEMMs read it: the caller's f32 rows, or rows of another type, widened chunk
/// by chunk into a scratch buffer.
enum Weight32<'a, T> {
    F32(Rows<'a, f32>),
    Wide(Rows<'a, T>),
}

/// The head as f32 matrices: H whole, W chunk by chunk, b once.
struct Head32<'a, T> {
    hidden: Hidden32<'a>,
    weight: Weight32<'a, T>,
    /// b as f32 (a copy: one value per class).
    bias: Option<Vec<f32>>,
    rows: usize,
    dim: usize,
}

impl<T: Logit> Head32<'_, T> {
    /// H (`rows × dim`), `rows ≥ 1`.
    fn hidden(&self) -> Mat<'_> {
        let (rows, dim) = (self.rows, self.dim);
        match &self.hidden {
            Hidden32::F32(h) => Mat::row_major(h.span(0, rows), rows, dim, h.stride()),
            Hidden32::Widened(h) => Mat::row_major(h, rows, dim, dim),
        }
    }

    /// b's classes `start..start + n`.
    fn bias(&self, start: usize, n: usize) -> Option<&[f32]> {
        self.bias.as_ref().map(|b| &b[start..start + n])
    }

    /// W's rows `start..start + n` (`n ≥ 1`): borrowed, or widened into `scratch`.
    fn weight_rows<'s>(&'s self, start: usize, n: usize, scratch: &'s mut Vec<f32>) -> Mat<'s> {
        let dim = self.dim;
        match &self.weight {
            Weight32::F32(w) => Mat::row_major(w.span(start, n), n, dim, w.stride()),
            Weight32::Wide(w) => {
                scratch.resize(n * dim, 0.0);
                for (c, row) in scratch.chunks_exact_mut(dim).enumerate() {
                    T::widen(w.row(start + c), row);
                }
                Mat::row_major(scratch, n, dim, dim)
            }
        }
    }

    /// The logits of classes `start..start + n` (`w`, the weight's rows) into `out`
    /// (`rows × n`, packed): the bias broadcast, then H·W_cᵀ added by the GEMM.
    fn logits(&self, w: Mat<'_>, start: usize, out: &mut [f32]) {
        let (rows, n) = (self.rows, out.len() / self.rows);
        let bias = self.bias(start, n);
        if let Some(bias) = bias {
            for row in out.chunks_exact_mut(n) {
                row.copy_from_slice(bias);
            }
        }
        multiply(
            MatMut::row_major(out, rows, n, n),
            self.hidden(),
            w.t(),
            bias.is_some(),
        );
    }
}

/// Where pass 2 writes a gradient matrix: the caller's f32 rows directly, or an f32 buffer
/// rounded into the caller's rows of another type (∂loss/∂H once at the end, ∂loss/∂W
/// chunk by chunk).
enum Sink<'a, T> {
    F32(RowsMut<'a, f32>),
    Wide(RowsMut<'a, T>, Vec<f32>),
}

/// The gradients pass 2 writes.
struct Sinks<'a, T> {
    hidden: Option<Sink<'a, T>>,
    weight: Option<Sink<'a, T>>,
    bias: Option<&'a mut [T]>,
    rows: usize,
    dim: usize,
}

impl<T: Logit> Sinks<'_, T> {
    fn any(&self) -> bool {
        self.hidden.is_some() || self.weight.is_some() || self.bias.is_some()
    }

    /// Adds one chunk's share: dH (+)= G·W_c, dW_c = Gᵀ·H, db_c = Σ_rows G, for the
    /// classes `start..start + G.cols`; `first` overwrites dH.
    fn add_chunk(&mut self, g: Mat<'_>, w: Mat<'_>, hidden: Mat<'_>, start: usize, first: bool) {
        let (rows, dim, n) = (self.rows, self.dim, g.cols());
        match self.hidden.as_mut() {
            Some(Sink::F32(out)) => {
                let stride = out.stride();
                let out = MatMut::row_major(out.span_mut(0, rows), rows, dim, stride);
                multiply(out, g, w, !first);
            }
            Some(Sink::Wide(_, h32)) => {
                multiply(MatMut::row_major(h32, rows, dim, dim), g, w, !first);
            }
            None => {}
        }
        match self.weight.as_mut() {
            Some(Sink::F32(out)) => {
                let stride = out.stride();
                let out = MatMut::row_major(out.span_mut(start, n), n, dim, stride);
                multiply(out, g.t(), hidden, false);
            }
            Some(Sink::Wide(out, w32)) => {
                w32.resize(n * dim, 0.0);
                multiply(MatMut::row_major(w32, n, dim, dim), g.t(), hidden, false);
                for (c, row) in w32.chunks_exact(dim).enumerate() {
                    T::narrow(row, out.row_mut(start + c));
                }
            }
            None => {}
        }
        if let Some(out) = self.bias.as_deref_mut() {
            let sums = column_sums(g);
            T::narrow(&sums, &mut out[start..start + n]);
        }
    }

    /// Rounds ∂loss/∂H into the caller's rows when it went through f32.
    fn finish(self) {
        if let Some(Sink::Wide(mut out, h32)) = self.hidden {
            for (i, row) in h32.chunks_exact(self.dim).enumerate() {
                T::narrow(row, out.row_mut(i));
            }
        }
    }
}

/// `Σ_i g[i][j]` for every column `j` of a packed `rows × n` matrix, summed in f64.
fn column_sums(g: Mat<'_>) -> Vec<f32> {
    let mut sums = vec![0.0f64; g.cols()];
    for i in 0..g.rows() {
        for (s, &v) in sums.iter_mut().zip(g.row(i)) {
            *s += f64::from(v);
        }
    }
    sums.into_iter().map(|s| s as f32).collect()
}
