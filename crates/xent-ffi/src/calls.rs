//! The checks of every kind of call, written once over the element type.
//!
//! A call checks its arguments in order — each for NULL, then shape, size and alignment; the
//! options for their reduction and class-weight pointer — then that no output overlaps
//! another buffer, and only then creates the core crate's views and calls it on the
//! thread setting in force. The core crate checks the option values and the targets before
//! it writes anything, so a refused call never writes.

use core::ops::Range;

use xent_core::{LinearGrads, LinearHead, Logit, Shard, ShardRow};

use crate::dtype::{Dtype, Normalization, TargetRows, Write};
use crate::options::{CallOptions, XentOptions};
use crate::raw::{Buffer, StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

/// A batch of rows as C passed it: `rows` rows of `cols` elements, row `i` at `i * stride`.
pub(crate) struct Batch<T> {
    pub(crate) ptr: *const T,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) stride: usize,
}

/// Where C asked for a batch's rows to be written: a pointer (NULL for none) and its stride.
pub(crate) struct Out<T> {
    pub(crate) ptr: *mut T,
    pub(crate) stride: usize,
}

/// The targets as C passed them.
pub(crate) enum TargetsArg<S> {
    /// `rows` class indices.
    Hard(*const i64),
    /// `rows` rows of `cols` probabilities, row `i` at `i * stride`.
    Soft { ptr: *const S, stride: usize },
}

/// A fused forward call (the gradient too when `grad.ptr` is not NULL).
pub(crate) struct ForwardCall<D: Dtype> {
    pub(crate) logits: Batch<D>,
    pub(crate) targets: TargetsArg<D::Soft>,
    pub(crate) options: *const XentOptions,
    pub(crate) loss: *mut D::Stat,
    pub(crate) grad: Out<D>,
    pub(crate) lse: *mut D::Stat,
}

/// A backward call from a saved logsumexp.
pub(crate) struct BackwardCall<D: Dtype> {
    pub(crate) logits: Batch<D>,
    pub(crate) targets: TargetsArg<D::Soft>,
    pub(crate) options: *const XentOptions,
    pub(crate) lse: *const D::Stat,
    pub(crate) dloss: *const D::Stat,
    pub(crate) grad: Out<D>,
}

/// A standalone softmax or log_softmax call.
pub(crate) struct NormalizeCall<D> {
    pub(crate) x: Batch<D>,
    pub(crate) y: Out<D>,
    pub(crate) normalization: Normalization,
}

/// The targets, checked.
enum CheckedTargets<S> {
    Hard(Buffer<i64>),
    Soft(StridedBuffer<S>),
}

impl<S> CheckedTargets<S> {
    fn new(targets: TargetsArg<S>, rows: usize, cols: usize) -> Result<Self, XentStatus> {
        Ok(match targets {
            TargetsArg::Hard(ptr) => CheckedTargets::Hard(Buffer::new(ptr, rows)?),
            TargetsArg::Soft { ptr, stride } => {
                CheckedTargets::Soft(StridedBuffer::new(ptr, rows, cols, stride)?)
            }
        })
    }

    fn bytes(&self) -> Range<usize> {
        match self {
            CheckedTargets::Hard(classes) => classes.bytes(),
            CheckedTargets::Soft(probs) => probs.bytes(),
        }
    }

    /// # Safety
    ///
    /// As [`Buffer::as_slice`].
    unsafe fn view<'a>(&self) -> Result<TargetRows<'a, S>, XentStatus> {
        // SAFETY: forwarded to the caller.
        Ok(unsafe {
            match self {
                CheckedTargets::Hard(classes) => TargetRows::Hard(classes.as_slice()),
                CheckedTargets::Soft(probs) => TargetRows::Soft(probs.as_rows()?),
            }
        })
    }
}

/// Where a call writes its rows, checked: over its input exactly (same pointer, same
/// stride), or a separate buffer, which must then not overlap the input.
enum Destination<T> {
    Separate(StridedBuffer<T>),
    InPlace(StridedBuffer<T>),
}

impl<T> Destination<T> {
    /// `out` as the destination of the rows of `input` (`rows × cols`).
    fn new(
        input: &StridedBuffer<T>,
        out: Out<T>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, XentStatus> {
        let buffer = StridedBuffer::new(out.ptr, rows, cols, out.stride)?;
        if !out.ptr.is_null() && input.is_exactly(out.ptr, out.stride) {
            Ok(Destination::InPlace(buffer))
        } else {
            Ok(Destination::Separate(buffer))
        }
    }

    /// The bytes written.
    fn bytes(&self) -> Range<usize> {
        match self {
            Destination::Separate(out) | Destination::InPlace(out) => out.bytes(),
        }
    }

    /// The bytes of `input` as an input of the call: none when it is the output.
    fn input_bytes(&self, input: &StridedBuffer<T>) -> Option<Range<usize>> {
        match self {
            Destination::Separate(_) => Some(input.bytes()),
            Destination::InPlace(_) => None,
        }
    }

    /// The core crate's views.
    ///
    /// # Safety
    ///
    /// `input` is readable and the destination writable for `'a`; no other reference
    /// reaches the destination meanwhile.
    unsafe fn views<'a>(&self, input: &StridedBuffer<T>) -> Result<Write<'a, T>, XentStatus> {
        // SAFETY: forwarded to the caller.
        Ok(unsafe {
            match self {
                Destination::Separate(out) => Write::Separate(input.as_rows()?, out.as_rows_mut()?),
                Destination::InPlace(out) => Write::InPlace(out.as_rows_mut()?),
            }
        })
    }
}

/// A fused forward call.
///
/// # Safety
///
/// The C contract of the exported functions: every non-NULL pointer points to memory valid
/// for the elements its arguments describe (reads for inputs, writes for outputs) for the
/// duration of the call, and no other thread writes any of it meanwhile.
pub(crate) unsafe fn forward<D: Dtype>(call: ForwardCall<D>) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols,
        stride,
    } = call.logits;
    let logits = StridedBuffer::new(ptr, rows, cols, stride)?;
    let targets = CheckedTargets::new(call.targets, rows, cols)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(call.options, cols) }?;
    let loss = Buffer::required(call.loss, options.reduction.loss_len(rows))?;
    let grad = if call.grad.ptr.is_null() {
        None
    } else {
        Some(Destination::new(&logits, call.grad, rows, cols)?)
    };
    let lse = Buffer::optional(call.lse, rows)?;
    let logits_input = match &grad {
        Some(grad) => grad.input_bytes(&logits),
        None => Some(logits.bytes()),
    };
    check_disjoint(
        &[
            Some(loss.bytes()),
            grad.as_ref().map(Destination::bytes),
            lse.as_ref().map(Buffer::bytes),
        ],
        &[logits_input, Some(targets.bytes()), options.weight_bytes()],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the outputs (loss, grad,
    // lse) were just checked disjoint from each other and from every input, so each
    // exclusive slice is the only reference to its memory.
    let (targets, options, loss, lse) = unsafe {
        (
            targets.view()?,
            options.to_core(),
            loss.as_mut_slice(),
            lse.map(|lse| lse.as_mut_slice()),
        )
    };
    match grad {
        None => {
            // SAFETY: as above; the logits are only read.
            let logits = unsafe { logits.as_rows() }?;
            threads::run(|| D::forward(logits, targets, &options, loss, lse))?;
        }
        Some(grad) => {
            // SAFETY: as above; the gradient is disjoint from everything but, in place, the
            // logits it replaces, which then have no other view.
            let write = unsafe { grad.views(&logits) }?;
            threads::run(|| D::forward_grad(write, targets, &options, loss, lse))?;
        }
    }
    Ok(())
}

/// A backward call.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn backward<D: Dtype>(call: BackwardCall<D>) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols,
        stride,
    } = call.logits;
    let logits = StridedBuffer::new(ptr, rows, cols, stride)?;
    let targets = CheckedTargets::new(call.targets, rows, cols)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(call.options, cols) }?;
    let lse = Buffer::new(call.lse, rows)?;
    let dloss = Buffer::new(call.dloss, options.reduction.loss_len(rows))?;
    let grad = Destination::new(&logits, call.grad, rows, cols)?;
    check_disjoint(
        &[Some(grad.bytes())],
        &[
            grad.input_bytes(&logits),
            Some(targets.bytes()),
            Some(lse.bytes()),
            Some(dloss.bytes()),
            options.weight_bytes(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the gradient, the only
    // output, was just checked disjoint from every input (in place, the logits it
    // replaces have no other view).
    let (write, targets, options, lse, dloss) = unsafe {
        (
            grad.views(&logits)?,
            targets.view()?,
            options.to_core(),
            lse.as_slice(),
            dloss.as_slice(),
        )
    };
    threads::run(|| D::backward(write, targets, &options, lse, dloss))?;
    Ok(())
}

/// A softmax or log_softmax call.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn normalize<D: Dtype>(call: NormalizeCall<D>) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols,
        stride,
    } = call.x;
    let x = StridedBuffer::new(ptr, rows, cols, stride)?;
    let y = Destination::new(&x, call.y, rows, cols)?;
    check_disjoint(&[Some(y.bytes())], &[y.input_bytes(&x)])?;
    // SAFETY: C's contract makes both buffers valid for this call; y was just checked
    // disjoint from x, or is x exactly (in place) with no other view.
    let write = unsafe { y.views(&x) }?;
    threads::run(|| D::normalize(write, call.normalization))?;
    Ok(())
}

/// Where a shard's columns lie in the vocabulary, as C passed it.
pub(crate) struct ShardArg {
    pub(crate) class_offset: usize,
    pub(crate) total_cols: usize,
}

impl ShardArg {
    /// Refuses (INVALID_SHAPE) a slice of `cols` columns that does not fit in the
    /// vocabulary: a shape check, so it runs with the others, before the overlap checks.
    fn check(&self, cols: usize) -> Result<(), XentStatus> {
        match self.class_offset.checked_add(cols) {
            Some(end) if end <= self.total_cols => Ok(()),
            _ => Err(XentStatus::InvalidShape),
        }
    }

    fn to_core(&self) -> Shard {
        Shard {
            class_offset: self.class_offset,
            total_cols: self.total_cols,
        }
    }
}

/// A shard's summary call.
pub(crate) struct ShardStatsCall {
    pub(crate) logits: Batch<f32>,
    pub(crate) shard: ShardArg,
    pub(crate) targets: *const i64,
    pub(crate) options: *const XentOptions,
    pub(crate) out: *mut ShardRow,
}

/// A shard's finishing call from the merged rows (the gradient too when `grad.ptr` is not
/// NULL).
pub(crate) struct ShardFinishCall {
    pub(crate) logits: Batch<f32>,
    pub(crate) shard: ShardArg,
    pub(crate) targets: *const i64,
    pub(crate) options: *const XentOptions,
    pub(crate) merged: *const ShardRow,
    pub(crate) loss: *mut f32,
    pub(crate) grad: Out<f32>,
    pub(crate) lse: *mut f32,
}

/// A shard's summary call.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn shard_stats(call: ShardStatsCall) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols,
        stride,
    } = call.logits;
    let logits = StridedBuffer::new(ptr, rows, cols, stride)?;
    call.shard.check(cols)?;
    let targets = Buffer::new(call.targets, rows)?;
    // SAFETY: C's contract: NULL or a readable xent_options; its weights cover the whole
    // vocabulary.
    let options = unsafe { CallOptions::read(call.options, call.shard.total_cols) }?;
    let out = Buffer::new(call.out, rows)?;
    check_disjoint(
        &[Some(out.bytes())],
        &[
            Some(logits.bytes()),
            Some(targets.bytes()),
            options.weight_bytes(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the output was just
    // checked disjoint from every input.
    let (logits, targets, options, out) = unsafe {
        (
            logits.as_rows()?,
            targets.as_slice(),
            options.to_core(),
            out.as_mut_slice(),
        )
    };
    let shard = call.shard.to_core();
    threads::run(|| xent_core::shard_stats(logits, shard, targets, &options, out))?;
    Ok(())
}

/// A shard's finishing call.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn shard_finish(call: ShardFinishCall) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols,
        stride,
    } = call.logits;
    let logits = StridedBuffer::new(ptr, rows, cols, stride)?;
    call.shard.check(cols)?;
    let targets = Buffer::new(call.targets, rows)?;
    // SAFETY: C's contract: NULL or a readable xent_options; its weights cover the whole
    // vocabulary.
    let options = unsafe { CallOptions::read(call.options, call.shard.total_cols) }?;
    let merged = Buffer::new(call.merged, rows)?;
    let loss = Buffer::required(call.loss, options.reduction.loss_len(rows))?;
    let grad = if call.grad.ptr.is_null() {
        None
    } else {
        Some(Destination::new(&logits, call.grad, rows, cols)?)
    };
    let lse = Buffer::optional(call.lse, rows)?;
    let logits_input = match &grad {
        Some(grad) => grad.input_bytes(&logits),
        None => Some(logits.bytes()),
    };
    check_disjoint(
        &[
            Some(loss.bytes()),
            grad.as_ref().map(Destination::bytes),
            lse.as_ref().map(Buffer::bytes),
        ],
        &[
            logits_input,
            Some(targets.bytes()),
            Some(merged.bytes()),
            options.weight_bytes(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the outputs (loss, grad,
    // lse) were just checked disjoint from each other and from every input.
    let (targets, options, merged, loss, lse) = unsafe {
        (
            targets.as_slice(),
            options.to_core(),
            merged.as_slice(),
            loss.as_mut_slice(),
            lse.map(|lse| lse.as_mut_slice()),
        )
    };
    let shard = call.shard.to_core();
    match grad {
        None => {
            // SAFETY: as above; the logits are only read.
            let logits = unsafe { logits.as_rows() }?;
            threads::run(|| {
                xent_core::shard_finish(logits, shard, targets, &options, merged, loss, lse)
            })?;
        }
        Some(grad) => {
            // SAFETY: as above; the gradient is disjoint from everything but, in place, the
            // logits it replaces, which then have no other view.
            let write = unsafe { grad.views(&logits) }?;
            match write {
                Write::Separate(logits, grad) => threads::run(|| {
                    xent_core::shard_finish_grad(
                        logits, shard, targets, &options, merged, loss, grad, lse,
                    )
                })?,
                Write::InPlace(logits) => threads::run(|| {
                    xent_core::shard_finish_grad_in_place(
                        logits, shard, targets, &options, merged, loss, lse,
                    )
                })?,
            }
        }
    }
    Ok(())
}

/// Merges `n` rows of `input` into `inout`; does nothing unless both are valid, disjoint
/// buffers.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn merge_shard_rows(input: *const ShardRow, inout: *mut ShardRow, n: usize) {
    let (Ok(input), Ok(inout)) = (Buffer::new(input, n), Buffer::new(inout, n)) else {
        return;
    };
    if check_disjoint(&[Some(inout.bytes())], &[Some(input.bytes())]).is_err() {
        return;
    }
    // SAFETY: C's contract makes both buffers valid; they were just checked disjoint.
    let (input, inout) = unsafe { (input.as_slice(), inout.as_mut_slice()) };
    // Cannot fail: both hold n rows.
    let _ = xent_core::merge_shard_rows(input, inout);
}

/// A fused linear + cross-entropy call: the logits `hidden·weightᵀ + bias` never exist.
pub(crate) struct LinearCall<T> {
    /// H: `rows × dim`.
    pub(crate) hidden: Batch<T>,
    /// W: `classes × dim` (the exports pass the hidden states' `dim` as its `cols`).
    pub(crate) weight: Batch<T>,
    pub(crate) bias: *const T,
    pub(crate) targets: *const i64,
    pub(crate) options: *const XentOptions,
    pub(crate) loss: *mut f32,
    pub(crate) grad_hidden: Out<T>,
    pub(crate) grad_weight: Out<T>,
    pub(crate) grad_bias: *mut T,
    pub(crate) lse: *mut f32,
}

/// An optional output batch: NULL means "not wanted".
fn optional_rows<T>(
    out: Out<T>,
    rows: usize,
    cols: usize,
) -> Result<Option<StridedBuffer<T>>, XentStatus> {
    if out.ptr.is_null() {
        Ok(None)
    } else {
        StridedBuffer::new(out.ptr, rows, cols, out.stride).map(Some)
    }
}

/// A fused linear + cross-entropy call.
///
/// # Safety
///
/// As [`forward`].
pub(crate) unsafe fn linear<T: Logit<Stat = f32>>(call: LinearCall<T>) -> Result<(), XentStatus> {
    let Batch {
        ptr,
        rows,
        cols: dim,
        stride,
    } = call.hidden;
    let hidden = StridedBuffer::new(ptr, rows, dim, stride)?;
    // The weight's rows are the vocabulary: required whenever there are classes, also
    // without rows; and rows need classes (a shape, so before the overlap checks).
    let classes = call.weight.rows;
    if rows > 0 && classes == 0 {
        return Err(XentStatus::InvalidShape);
    }
    let weight = StridedBuffer::new(call.weight.ptr, classes, dim, call.weight.stride)?;
    let bias = Buffer::optional(call.bias, classes)?;
    let targets = Buffer::new(call.targets, rows)?;
    // SAFETY: C's contract: NULL or a readable xent_options.
    let options = unsafe { CallOptions::read(call.options, classes) }?;
    let loss = Buffer::required(call.loss, options.reduction.loss_len(rows))?;
    let grad_hidden = optional_rows(call.grad_hidden, rows, dim)?;
    let grad_weight = optional_rows(call.grad_weight, classes, dim)?;
    let grad_bias = Buffer::optional(call.grad_bias, classes)?;
    let lse = Buffer::optional(call.lse, rows)?;
    check_disjoint(
        &[
            Some(loss.bytes()),
            grad_hidden.as_ref().map(StridedBuffer::bytes),
            grad_weight.as_ref().map(StridedBuffer::bytes),
            grad_bias.as_ref().map(Buffer::bytes),
            lse.as_ref().map(Buffer::bytes),
        ],
        &[
            Some(hidden.bytes()),
            Some(weight.bytes()),
            bias.as_ref().map(Buffer::bytes),
            Some(targets.bytes()),
            options.weight_bytes(),
        ],
    )?;
    // SAFETY: C's contract makes every buffer valid for this call; the outputs were just
    // checked disjoint from each other and from every input, so each exclusive view is the
    // only reference to its memory.
    let (head, grads, targets, options, loss, lse) = unsafe {
        let head = LinearHead {
            hidden: hidden.as_rows()?,
            weight: weight.as_rows()?,
            bias: bias.map(|b| b.as_slice()),
        };
        let grads = LinearGrads {
            hidden: grad_hidden.map(|g| g.as_rows_mut()).transpose()?,
            weight: grad_weight.map(|g| g.as_rows_mut()).transpose()?,
            bias: grad_bias.map(|g| g.as_mut_slice()),
        };
        (
            head,
            grads,
            targets.as_slice(),
            options.to_core(),
            loss.as_mut_slice(),
            lse.map(|lse| lse.as_mut_slice()),
        )
    };
    threads::run(|| xent_core::linear_cross_entropy(head, targets, &options, loss, grads, lse))?;
    Ok(())
}
