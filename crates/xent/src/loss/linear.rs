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

use super::shard::{ShardRow, hard, merged_loss, slice_grad, slice_stats};
use super::{Columns, Plan, check_targets};
use crate::error::{Error, Result};
use crate::matmul::{Mat, MatMut, matmul};
use crate::options::Options;
use crate::pass::Pass;
use crate::rows::{Rows, RowsMut, Targets};

/// The inputs of a linear layer that produces the logits: `logits = hidden·weightᵀ + bias`.
#[derive(Debug, Clone, Copy)]
pub struct LinearHead<'a> {
    /// H: `rows × dim` hidden states.
    pub hidden: Rows<'a>,
    /// W: `classes × dim`, one row per class (`torch.nn.Linear`'s layout).
    pub weight: Rows<'a>,
    /// b: `classes` values, or none.
    pub bias: Option<&'a [f32]>,
}

/// Where the gradients of a [`LinearHead`] go; each is optional, and each given one is
/// overwritten (not accumulated into).
#[derive(Debug, Default)]
pub struct LinearGrads<'a> {
    /// ∂loss/∂H: `rows × dim`.
    pub hidden: Option<RowsMut<'a>>,
    /// ∂loss/∂W: `classes × dim`.
    pub weight: Option<RowsMut<'a>>,
    /// ∂loss/∂b: `classes` values.
    pub bias: Option<&'a mut [f32]>,
}

impl LinearGrads<'_> {
    fn any(&self) -> bool {
        self.hidden.is_some() || self.weight.is_some() || self.bias.is_some()
    }
}

/// How many classes each chunk of the vocabulary holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunking {
    /// Chosen from the number of rows and threads (see [`Chunking::classes`]).
    #[default]
    Auto,
    /// This many classes per chunk (at least 1; the last chunk may hold fewer).
    Classes(usize),
}

/// The logits of one chunk per thread, in f32 values: 4 MiB, which leaves the GEMMs long
/// enough rows (≥ 256 classes up to 4096 rows per thread) and keeps the chunk in a
/// server's last-level cache share.
const CHUNK_ELEMS_PER_THREAD: usize = 1 << 20;

/// The narrowest automatic chunk: below this the GEMMs' rows get too short to run fast.
const MIN_CHUNK_CLASSES: usize = 256;

impl Chunking {
    /// The classes per chunk for `rows` rows of a `classes`-class vocabulary on `threads`
    /// threads. `Auto` gives about 1M logits per thread, in whole multiples of 64 classes,
    /// at least 256 classes.
    ///
    /// ```
    /// use xent::Chunking;
    ///
    /// assert_eq!(Chunking::Auto.classes(4096, 128_256, 2), 512);
    /// assert_eq!(Chunking::Auto.classes(8, 1000, 2), 1000);
    /// assert_eq!(Chunking::Classes(100).classes(4096, 128_256, 2), 100);
    /// ```
    pub fn classes(self, rows: usize, classes: usize, threads: usize) -> usize {
        let chosen = match self {
            Chunking::Auto => {
                let budget = CHUNK_ELEMS_PER_THREAD * threads.max(1);
                (budget / rows.max(1) / 64 * 64).max(MIN_CHUNK_CLASSES)
            }
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
pub fn linear_cross_entropy<'t>(
    head: LinearHead<'_>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [f32],
    grads: LinearGrads<'_>,
    lse: Option<&mut [f32]>,
) -> Result<()> {
    linear_cross_entropy_chunked(head, targets, options, loss, grads, lse, Chunking::Auto)
}

/// [`linear_cross_entropy`] with the vocabulary cut into chunks as `chunking` says.
///
/// Every hard-target option applies (SPEC §2: reductions, `ignore_index`, ε, class
/// weights, z-loss, softcap, `grad_scale`), with the logits `hidden·weightᵀ + bias`; `loss`
/// holds 1 value (mean, sum) or one per row (none), `lse` each row's logsumexp. Every check
/// runs before any output is written: the shapes (`weight` has the hidden states' `dim`
/// columns, `bias` one value per class, each gradient its parameter's shape), the targets
/// (in `0..classes` or `ignore_index`) and the options, as for
/// [`cross_entropy`](crate::cross_entropy).
///
/// The working memory is one chunk of `rows × classes per chunk` logits plus the GEMMs'
/// packing buffers. The results equal the unfused composition (the logits by a GEMM, then
/// [`cross_entropy_grad_in_place`](crate::cross_entropy_grad_in_place), then the
/// gradients' GEMMs) within the GEMMs' own rounding.
pub fn linear_cross_entropy_chunked<'t>(
    head: LinearHead<'_>,
    targets: impl Into<Targets<'t>>,
    options: &Options<'_>,
    loss: &mut [f32],
    grads: LinearGrads<'_>,
    lse: Option<&mut [f32]>,
    chunking: Chunking,
) -> Result<()> {
    let targets = hard(targets.into())?;
    let (rows, dim, classes) = check_head(&head, &grads)?;
    Error::check_len("loss", loss.len(), options.reduction.loss_len(rows))?;
    if let Some(lse) = lse.as_deref() {
        Error::check_len("lse", lse.len(), rows)?;
    }
    options.validate(classes)?;
    let counts = check_targets(&targets, rows, options, classes)?;
    let upstream = f64::from(options.grad_scale);
    let plan = Plan::new(options, Columns::all(classes), false, &counts, upstream);

    if rows == 0 {
        // No rows: the loss of nothing, and gradients of zeros.
        merged_loss(&plan, &counts, &targets, &[], loss, lse);
        if let Some(out) = grads.weight {
            zero(out);
        }
        if let Some(out) = grads.bias {
            out.fill(0.0);
        }
        return Ok(());
    }
    let chunk = chunking.classes(rows, classes, rayon::current_num_threads());
    let chunks: Vec<(usize, usize)> = (0..classes)
        .step_by(chunk)
        .map(|start| (start, chunk.min(classes - start)))
        .collect();
    let mut logits = vec![0.0f32; rows * chunk];
    let hidden = Mat::rows(head.hidden.span(0, rows), rows, dim, head.hidden.stride());

    // Pass 1: each chunk's logits summed up and merged into the rows' summaries.
    let mut merged = vec![ShardRow::EMPTY; rows];
    let mut summary = vec![ShardRow::EMPTY; rows];
    for &(start, n) in &chunks {
        let part = Columns {
            offset: start,
            cols: n,
            total: classes,
        };
        chunk_logits(&head, hidden, start, n, &mut logits[..rows * n]);
        let view = Rows::new(&logits[..rows * n], rows, n, n)?;
        slice_stats(&plan.with_columns(part, rows), view, targets, &mut summary);
        for (acc, row) in merged.iter_mut().zip(&summary) {
            *acc = row.merge(acc);
        }
    }
    merged_loss(&plan, &counts, &targets, &merged, loss, lse);
    if !grads.any() {
        return Ok(());
    }

    // Pass 2, backwards: the last chunk's logits are still in the buffer.
    let LinearGrads {
        hidden: mut grad_hidden,
        weight: mut grad_weight,
        bias: mut grad_bias,
    } = grads;
    for (k, &(start, n)) in chunks.iter().rev().enumerate() {
        if k > 0 {
            chunk_logits(&head, hidden, start, n, &mut logits[..rows * n]);
        }
        let part = Columns {
            offset: start,
            cols: n,
            total: classes,
        };
        let view = RowsMut::new(&mut logits[..rows * n], rows, n, n)?;
        slice_grad(
            &plan.with_columns(part, rows),
            Pass::InPlace(view),
            targets,
            &merged,
        );
        let g = Mat::rows(&logits[..rows * n], rows, n, n);
        if let Some(out) = grad_hidden.as_mut() {
            let stride = out.stride();
            let dst = MatMut::rows(out.span_mut(0, rows), rows, dim, stride);
            matmul(dst, g, weight_rows(&head, start, n), k > 0);
        }
        if let Some(out) = grad_weight.as_mut() {
            let stride = out.stride();
            let dst = MatMut::rows(out.span_mut(start, n), n, dim, stride);
            matmul(dst, g.t(), hidden, false);
        }
        if let Some(out) = grad_bias.as_deref_mut() {
            column_sums(&logits[..rows * n], rows, n, &mut out[start..start + n]);
        }
    }
    Ok(())
}

/// Checks the head's and the gradients' shapes; returns (rows, dim, classes).
fn check_head(head: &LinearHead<'_>, grads: &LinearGrads<'_>) -> Result<(usize, usize, usize)> {
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
    let check = |name, view: Option<&RowsMut<'_>>, want: (usize, usize)| match view {
        Some(v) if (v.rows(), v.cols()) != want => Err(Error::shape(
            name,
            format!(
                "is {}×{}, it must be {}×{}",
                v.rows(),
                v.cols(),
                want.0,
                want.1
            ),
        )),
        _ => Ok(()),
    };
    check("grad_hidden", grads.hidden.as_ref(), (rows, dim))?;
    check("grad_weight", grads.weight.as_ref(), (classes, dim))?;
    if let Some(bias) = grads.bias.as_deref() {
        Error::check_len("grad_bias", bias.len(), classes)?;
    }
    Ok((rows, dim, classes))
}

/// The logits of classes `start..start + n` into `out` (`rows × n`, packed): the bias
/// broadcast, then H·W_cᵀ added by the GEMM.
fn chunk_logits(head: &LinearHead<'_>, hidden: Mat<'_>, start: usize, n: usize, out: &mut [f32]) {
    let rows = head.hidden.rows();
    let w = weight_rows(head, start, n);
    if let Some(bias) = head.bias {
        for row in out.chunks_exact_mut(n) {
            row.copy_from_slice(&bias[start..start + n]);
        }
    }
    matmul(
        MatMut::rows(out, rows, n, n),
        hidden,
        w.t(),
        head.bias.is_some(),
    );
}

/// The weight's rows `start..start + n` (classes), `n ≥ 1`.
fn weight_rows<'a>(head: &LinearHead<'a>, start: usize, n: usize) -> Mat<'a> {
    let (dim, stride) = (head.weight.cols(), head.weight.stride());
    Mat::rows(head.weight.span(start, n), n, dim, stride)
}

/// Writes zeros over every value of a view (its padding untouched).
fn zero(mut out: RowsMut<'_>) {
    for i in 0..out.rows() {
        out.row_mut(i).fill(0.0);
    }
}

/// `out[j] = Σ_i g[i][j]` over `rows × n` packed values, summed in f64.
fn column_sums(g: &[f32], rows: usize, n: usize, out: &mut [f32]) {
    let mut sums = vec![0.0f64; n];
    for row in g.chunks_exact(n).take(rows) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    for (o, s) in out.iter_mut().zip(sums) {
        *o = s as f32;
    }
}
