//! The exported functions of a vocabulary split across processes (tensor parallel): each
//! process holds every row but only a slice of the columns, and one all-reduce of the rows'
//! summaries gives every process the loss and its slice of the gradient.

use xent_core::ShardRow;

use crate::boundary::{catch_panic, status_call};
use crate::calls::{self, Batch, Out, ShardArg, ShardFinishCall, ShardStatsCall};
use crate::options::XentOptions;
use crate::status::XentStatus;

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
    assert!(size_of::<XentShardRow>() == size_of::<ShardRow>());
    assert!(align_of::<XentShardRow>() == align_of::<ShardRow>());
    assert!(core::mem::offset_of!(XentShardRow, max) == core::mem::offset_of!(ShardRow, max));
    assert!(core::mem::offset_of!(XentShardRow, sumexp) == core::mem::offset_of!(ShardRow, sumexp));
    assert!(
        core::mem::offset_of!(XentShardRow, target_logit)
            == core::mem::offset_of!(ShardRow, target_logit)
    );
    assert!(
        core::mem::offset_of!(XentShardRow, smooth_sum)
            == core::mem::offset_of!(ShardRow, smooth_sum)
    );
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
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
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
        let call = ShardStatsCall {
            logits: Batch {
                ptr: logits,
                rows,
                cols,
                stride: logits_stride,
            },
            shard: ShardArg {
                class_offset,
                total_cols,
            },
            targets,
            options,
            out: out.cast::<ShardRow>(),
        };
        // SAFETY: this function's contract is `calls::shard_stats`'s; the cast is between
        // identical layouts (checked above).
        unsafe { calls::shard_stats(call) }
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
        // SAFETY: this function's contract is `calls::merge_shard_rows`'s; the casts are
        // between identical layouts (checked above).
        unsafe { calls::merge_shard_rows(r#in.cast::<ShardRow>(), inout.cast::<ShardRow>(), n) }
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
#[allow(
    clippy::too_many_arguments,
    reason = "the C signature is fixed by the issue"
)]
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
        let call = ShardFinishCall {
            logits: Batch {
                ptr: logits,
                rows,
                cols,
                stride: logits_stride,
            },
            shard: ShardArg {
                class_offset,
                total_cols,
            },
            targets,
            options,
            merged: merged.cast::<ShardRow>(),
            loss,
            grad: Out {
                ptr: grad,
                stride: grad_stride,
            },
            lse,
        };
        // SAFETY: this function's contract is `calls::shard_finish`'s; the cast is between
        // identical layouts (checked above).
        unsafe { calls::shard_finish(call) }
    })
}
