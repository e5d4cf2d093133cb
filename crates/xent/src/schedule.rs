//! Splitting a batch into chunks of rows and running them, in parallel when it pays.
//!
//! The split depends only on the shape, never on the number of threads, and partial results
//! come back in row order, so every output is the same whatever the pool size.

use std::cell::Cell;

use rayon::prelude::*;

/// About this many elements per chunk: enough work to amortise a rayon task, small enough
/// to balance two to a few dozen cores on the shapes users have.
const CHUNK_ELEMS: usize = 1 << 16;

/// Below this many elements a call runs on the calling thread without any rayon call.
const PARALLEL_MIN_ELEMS: usize = 1 << 17;

/// Something with a value (or a row) per row that can be cut between two rows: a view, the
/// targets, a per-row slice, an optional one, a struct of them ([`split_fields!`]).
pub(crate) trait SplitAtRow: Sized {
    /// Rows `0..at` and `at..`.
    fn split_at_row(self, at: usize) -> (Self, Self);
}

/// A batch [`for_each_chunk`] can cut into chunks: its rows, cut together.
pub(crate) trait SplitRows: SplitAtRow {
    /// The number of rows.
    fn rows(&self) -> usize;
}

impl<T> SplitAtRow for &[T] {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        self.split_at(at)
    }
}

impl<T> SplitAtRow for &mut [T] {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        self.split_at_mut(at)
    }
}

impl<S: SplitAtRow> SplitAtRow for Option<S> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        match self {
            Some(s) => {
                let (a, b) = s.split_at_row(at);
                (Some(a), Some(b))
            }
            None => (None, None),
        }
    }
}

impl<T> SplitAtRow for crate::rows::Rows<'_, T> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        crate::rows::Rows::split_at_row(self, at)
    }
}

impl<T> SplitAtRow for crate::rows::RowsMut<'_, T> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        crate::rows::RowsMut::split_at_row(self, at)
    }
}

impl SplitAtRow for crate::rows::Targets<'_> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        crate::rows::Targets::split_at_row(self, at)
    }
}

/// The body of [`SplitAtRow::split_at_row`] for a struct whose fields are each cut at the
/// row: `split_fields!(Chunk { pass, targets, loss })`. Every field must be listed (the
/// pattern is exhaustive), so a per-row field added to the struct is one name here.
macro_rules! split_fields {
    ($name:ident { $($field:ident),* $(,)? }) => {
        fn split_at_row(self, at: usize) -> (Self, Self) {
            let $name { $($field),* } = self;
            $(let $field = $crate::schedule::SplitAtRow::split_at_row($field, at);)*
            ($name { $($field: $field.0),* }, $name { $($field: $field.1),* })
        }
    };
}
pub(crate) use split_fields;

/// Runs `work` over chunks of `batch` of about [`CHUNK_ELEMS`] elements each, and returns
/// the chunks' results in row order.
pub(crate) fn for_each_chunk<B, R>(
    batch: B,
    cols: usize,
    work: impl Fn(B) -> R + Sync + Send,
) -> Vec<R>
where
    B: SplitRows + Send,
    R: Send,
{
    let rows = batch.rows();
    let rows_per_chunk = (CHUNK_ELEMS / cols.max(1)).max(1);
    let mut chunks = Vec::with_capacity(rows.div_ceil(rows_per_chunk).max(1));
    let mut rest = batch;
    while rest.rows() > rows_per_chunk {
        let (head, tail) = rest.split_at_row(rows_per_chunk);
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    let serial = chunks.len() == 1 || rows.saturating_mul(cols) < PARALLEL_MIN_ELEMS;
    map_parts(chunks, serial, work)
}

/// `work` on every part, the results in the parts' order: on the current pool's threads,
/// unless `serial`, calls run on the calling thread only (see [`on_calling_thread`]) or the
/// pool has one thread.
pub(crate) fn map_parts<P: Send, R: Send>(
    parts: Vec<P>,
    serial: bool,
    work: impl Fn(P) -> R + Sync + Send,
) -> Vec<R> {
    if serial || ON_CALLING_THREAD.get() || rayon::current_num_threads() == 1 {
        parts.into_iter().map(work).collect()
    } else {
        // On the pool's threads too: their environment is whatever started them.
        parts
            .into_par_iter()
            .map(|part| crate::fpenv::run(|| work(part)))
            .collect()
    }
}

thread_local! {
    /// Set while [`on_calling_thread`] runs its closure on this thread.
    static ON_CALLING_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every xent call it makes on the calling thread, without any rayon call.
///
/// By default a large call runs its rows on the current rayon pool (the global one, or the
/// pool whose [`install`](rayon::ThreadPool::install) it is called from). Inside `f` it
/// does not: for callers that already run one call per thread, or that must not touch a
/// thread pool. Results are bit-identical either way.
///
/// ```
/// use xent::{Rows, RowsMut};
///
/// let x = vec![0.5f32; 4096 * 64];
/// let mut y = vec![0.0f32; x.len()];
/// xent::on_calling_thread(|| {
///     xent::softmax(Rows::packed(&x, 64)?, RowsMut::packed(&mut y, 64)?)
/// })?;
/// assert!((y[0] - 1.0 / 64.0).abs() < 1e-9);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn on_calling_thread<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous setting, also when `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ON_CALLING_THREAD.set(self.0);
        }
    }
    let _restore = Restore(ON_CALLING_THREAD.replace(true));
    f()
}

/// Whether calls run on the calling thread only (inside [`on_calling_thread`]).
pub(crate) fn calling_thread_only() -> bool {
    ON_CALLING_THREAD.get()
}

/// Rows at least this long are split into column blocks run in parallel when a batch has
/// fewer rows than threads.
const SPLIT_MIN_COLS: usize = 16_384;

/// Whether a batch should run each row's column blocks in parallel: fewer rows than
/// threads, long rows, and parallelism allowed. (Results do not depend on it.)
pub(crate) fn split_rows(rows: usize, cols: usize) -> bool {
    cols >= SPLIT_MIN_COLS && !ON_CALLING_THREAD.get() && rows < rayon::current_num_threads()
}
