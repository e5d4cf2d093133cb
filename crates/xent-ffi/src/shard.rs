//! The exported functions of a vocabulary split across processes (tensor parallel): each
//! process holds every row but only a slice of the columns, and one all-reduce of the rows'
//! summaries gives every process the loss and its slice of the gradient.

use xent::{Shard, ShardRow};

use crate::args::{BatchIo, ForwardOut, Write};
use crate::boundary::{catch_panic, status_call};
use crate::options::{CallOptions, XentOptions};
use crate::raw::{Buffer, StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

/// One row's summary over a slice of the vocabulary's columns, or over several slices
/// merged by `xent_merge_shard_rows`. x' are the softcapped logits (the logits themselves
/// without a softcap). An MPI program moves it as 4 contiguous `MPI_FLOAT`s.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XentShardRow {
    /// The max of x' over the columns: -INFINITY when they are all -INFINITY, NaN when one
    /// is NaN or +INFINITY (the row's loss and gradient are then NaN on every process).
    pub max: f32,
    /// The sum of exp(x' - max) over the columns: 0 when they are all -INFINITY.
    pub sumexp: f32,
    /// x' at the row's target when the target is one of the columns, else 0.
    pub target_logit: f32,
    /// The sum of class_weights[c] * x'[c] over the columns when label_smoothing > 0, else 0.
    pub smooth_sum: f32,
}

// The core crate's `ShardRow` is the same four f32 fields in the same order, both
// `#[repr(C)]`: pointers to one are pointers to the other.
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<XentShardRow>() == size_of::<ShardRow>());
    assert!(align_of::<XentShardRow>() == align_of::<ShardRow>());
    assert!(offset_of!(XentShardRow, max) == offset_of!(ShardRow, max));
    assert!(offset_of!(XentShardRow, sumexp) == offset_of!(ShardRow, sumexp));
    assert!(offset_of!(XentShardRow, target_logit) == offset_of!(ShardRow, target_logit));
    assert!(offset_of!(XentShardRow, smooth_sum) == offset_of!(ShardRow, smooth_sum));
};

/// Step 1 of a sharded cross-entropy: summarises each row of this process's slice of the
/// logits into `out[i]`, for `xent_merge_shard_rows`.
///
/// - `logits`: row `i` holds this process's `cols` columns, the global classes
///   `class_offset .. class_offset + cols` of `total_cols`, from
///   `logits + i * logits_stride`. `class_offset + cols > total_cols` is refused
///   (XENT_STATUS_INVALID_SHAPE); `cols` is at least 1 when `rows > 0`.
/// - `targets`: `rows` global class indices, each in `[0, total_cols)` or equal to
///   `options->ignore_index` (the same array on every process).
/// - `options`: NULL for the defaults; `class_weights`, when set, holds the `total_cols`
///   weights of the whole vocabulary (the same on every process). Every option applies.
/// - `out`: `rows` summaries.
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(clippy::too_many_arguments, reason = "the C signature")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_shard_stats_f32(
    logits: *const f32,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    class_offset: usize,
    total_cols: usize,
    targets: *const i64,
    options: *const XentOptions,
    out: *mut XentShardRow,
) -> XentStatus {
    status_call(|| {
        let logits = (logits, rows, cols, logits_stride);
        // SAFETY: C's contract: NULL or a readable xent_options.
        let (logits, shard, targets, options) =
            unsafe { shard_args(logits, (class_offset, total_cols), targets, options) }?;
        let out = Buffer::new(out.cast::<ShardRow>(), rows)?;
        check_disjoint(
            &[Some(out.bytes())],
            &[
                Some(logits.bytes()),
                Some(targets.bytes()),
                options.weight_bytes(),
            ],
        )?;
        // SAFETY: C's contract makes every buffer valid for this call (the cast is between
        // identical layouts, checked above); the output was just checked disjoint from
        // every input.
        let (logits, targets, options, out) = unsafe {
            (
                logits.as_rows()?,
                targets.as_slice(),
                options.to_core(),
                out.as_mut_slice(),
            )
        };
        threads::run(|| xent::shard_stats(logits, shard, targets, &options, out))?;
        Ok(())
    })
}

/// Step 2: merges `in[i]` into `inout[i]` for `i < n` (the log-sum-exp merge of max and
/// sumexp, in double; the sums of the other fields). It is associative up to rounding and
/// commutative bit for bit, so it can be the body of an `MPI_User_function` for one
/// `MPI_Allreduce` created with `commute = 1`:
///
/// ```c
/// static void merge(void *in, void *inout, int *len, MPI_Datatype *type) {
///     (void)type;
///     xent_merge_shard_rows(in, inout, (size_t)*len);
/// }
/// ```
///
/// Does nothing when `n > 0` and a pointer is NULL or misaligned, or when the two ranges
/// overlap (there is no status to return: check the pointers before).
///
/// # Safety
///
/// `in` and `inout` point to `n` readable rows, `inout` writable, for the duration of the
/// call, and no other thread writes them meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_merge_shard_rows(
    r#in: *const XentShardRow,
    inout: *mut XentShardRow,
    n: usize,
) {
    catch_panic((), || {
        let input = Buffer::new(r#in.cast::<ShardRow>(), n);
        let inout = Buffer::new(inout.cast::<ShardRow>(), n);
        let (Ok(input), Ok(inout)) = (input, inout) else {
            return;
        };
        if check_disjoint(&[Some(inout.bytes())], &[Some(input.bytes())]).is_err() {
            return;
        }
        // SAFETY: C's contract makes both buffers valid (the casts are between identical
        // layouts, checked above); they were just checked disjoint.
        let (input, inout) = unsafe { (input.as_slice(), inout.as_mut_slice()) };
        // Cannot fail: both hold n rows.
        let _ = xent::merge_shard_rows(input, inout);
    });
}

/// Step 3: the loss, each row's lse and this slice's gradient from the rows merged over
/// every process. `loss` and `lse` come out the same, bit for bit, on every process, and
/// match `xent_cross_entropy_f32` on the whole rows within its accuracy.
///
/// - `logits`, `class_offset`, `total_cols`, `targets`, `options`: as given to
///   `xent_shard_stats_f32`.
/// - `merged`: `rows` summaries merged over every slice of the vocabulary.
/// - `loss` (never NULL): 1 value (reductions mean and sum) or `rows` values (none).
/// - `grad`: NULL for no gradient, or `rows` rows of `cols` values receiving this slice's
///   columns of the gradient, row `i` at `grad + i * grad_stride`; `grad == logits` with
///   `grad_stride == logits_stride` overwrites the logits (in place).
/// - `lse`: NULL, or `rows` values that receive each row's logsumexp over the whole
///   vocabulary (ignored rows included).
///
/// # Safety
///
/// As `xent_cross_entropy_f32`.
#[allow(clippy::too_many_arguments, reason = "the C signature")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xent_shard_finish_f32(
    logits: *const f32,
    rows: usize,
    cols: usize,
    logits_stride: usize,
    class_offset: usize,
    total_cols: usize,
    targets: *const i64,
    options: *const XentOptions,
    merged: *const XentShardRow,
    loss: *mut f32,
    grad: *mut f32,
    grad_stride: usize,
    lse: *mut f32,
) -> XentStatus {
    status_call(|| {
        let logits = (logits, rows, cols, logits_stride);
        // SAFETY: C's contract: NULL or a readable xent_options.
        let (logits, shard, targets, options) =
            unsafe { shard_args(logits, (class_offset, total_cols), targets, options) }?;
        let merged = Buffer::new(merged.cast::<ShardRow>(), rows)?;
        let out = ForwardOut::new(
            logits,
            (loss, options.reduction.loss_len(rows)),
            (grad, grad_stride),
            lse,
        )?;
        let inputs = [
            out.logit_bytes(),
            Some(targets.bytes()),
            Some(merged.bytes()),
            options.weight_bytes(),
        ];
        check_disjoint(&out.output_bytes(), &inputs)?;
        // SAFETY: C's contract makes every buffer valid for this call (the cast is between
        // identical layouts, checked above); the outputs (loss, grad, lse) were just
        // checked disjoint from each other and from every input (in place, the logits the
        // gradient replaces have no other view).
        let ((pass, loss, lse), targets, options, merged) = unsafe {
            (
                out.views()?,
                targets.as_slice(),
                options.to_core(),
                merged.as_slice(),
            )
        };
        let options = &options;
        threads::run(|| match pass {
            BatchIo::Read(x) => xent::shard_finish(x, shard, targets, options, merged, loss, lse),
            BatchIo::Write(Write::Separate(x, grad)) => {
                xent::shard_finish_grad(x, shard, targets, options, merged, loss, grad, lse)
            }
            BatchIo::Write(Write::InPlace(x)) => {
                xent::shard_finish_grad_in_place(x, shard, targets, options, merged, loss, lse)
            }
        })?;
        Ok(())
    })
}

/// The arguments both steps start with, checked in the header's order: the logits, where
/// their columns lie in the vocabulary (a slice that does not fit is INVALID_SHAPE, a shape
/// check like the others), the targets and the options, whose weights cover the whole
/// vocabulary.
///
/// # Safety
///
/// `options` is NULL or points to a readable `xent_options`.
unsafe fn shard_args(
    (logits, rows, cols, stride): (*const f32, usize, usize, usize),
    (class_offset, total_cols): (usize, usize),
    targets: *const i64,
    options: *const XentOptions,
) -> Result<(StridedBuffer<f32>, Shard, Buffer<i64>, CallOptions), XentStatus> {
    let logits = StridedBuffer::new(logits, rows, cols, stride)?;
    if class_offset
        .checked_add(cols)
        .is_none_or(|end| end > total_cols)
    {
        return Err(XentStatus::InvalidShape);
    }
    let shard = Shard {
        class_offset,
        total_cols,
    };
    let targets = Buffer::new(targets, rows)?;
    // SAFETY: forwarded to the caller.
    let options = unsafe { CallOptions::read(options, total_cols) }?;
    Ok((logits, shard, targets, options))
}
