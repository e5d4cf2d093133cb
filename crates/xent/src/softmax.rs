//! The standalone row kernels: softmax and log-softmax, in place or out of place.

use core::marker::PhantomData;

use half::{bf16, f16};

use crate::batch_io::BatchIo;
use crate::dispatch::{Work, on_tier};
use crate::dtype::{ExpBuffers, Logit, Route};
use crate::error::Result;
use crate::kernels::{
    Elem, GROUP, GROUPS_PER_CALL, Normalization, RowKernels, SHORT_COLS, ShortJob, ShortStats,
};
use crate::loss::f64_rows::normalize_chunk;
use crate::row::{Exps, Gather, GradCoefs, MAX_BLOCKS, RowSrc, exp_store, row_stats, write_row};
use crate::rows::{Rows, RowsMut};
use crate::schedule::{SplitRows, for_each_chunk, split_rows};

fn run<T: Logit>(pass: BatchIo<'_, T>, output: Normalization) -> Result<()> {
    // Every call computes in the default floating-point environment (see `fpenv.rs`).
    let _fp = crate::fpenv::enter();
    pass.check("output")?;
    let cols = pass.cols();
    let split = split_rows(pass.rows(), cols);
    let buffers = ExpBuffers::new::<T>(cols);
    for_each_chunk(pass, cols, |chunk| {
        let route = NormalizeChunk {
            output,
            split,
            buffers: &buffers,
            chunk: PhantomData,
        };
        T::route(route, chunk)
    });
    Ok(())
}

/// A chunk of each element type through its path: f64 rows one element at a time, the
/// others through [`rows_chunk`] on the tier in force (`buffers` for a 16-bit row's
/// exponentials). Not generic, so that its instances (one per type and tier) are compiled
/// once, in this crate.
struct NormalizeChunk<'b, 'c> {
    output: Normalization,
    split: bool,
    buffers: &'b ExpBuffers,
    chunk: PhantomData<BatchIo<'c>>,
}

impl<'c> NormalizeChunk<'_, 'c> {
    fn on_tier<E: Logit + Elem>(self, chunk: BatchIo<'c, E>) {
        let (output, split) = (self.output, self.split);
        self.buffers.with(|buffer| {
            on_tier(RowsChunk {
                chunk,
                output,
                split,
                buffer,
            })
        })
    }
}

impl<'c> Route for NormalizeChunk<'_, 'c> {
    type Of<T: Logit> = BatchIo<'c, T>;
    type Output = ();

    fn f32(self, chunk: BatchIo<'c, f32>) {
        self.on_tier(chunk)
    }

    fn f64(self, chunk: BatchIo<'c, f64>) {
        normalize_chunk(chunk, matches!(self.output, Normalization::LogSoftmax));
    }

    fn bf16(self, chunk: BatchIo<'c, bf16>) {
        self.on_tier(chunk)
    }

    fn f16(self, chunk: BatchIo<'c, f16>) {
        self.on_tier(chunk)
    }
}

/// [`rows_chunk`] with its arguments, for [`on_tier`].
struct RowsChunk<'c, E> {
    chunk: BatchIo<'c, E>,
    output: Normalization,
    split: bool,
    buffer: Option<&'c mut [f32]>,
}

impl<E: Logit + Elem> Work for RowsChunk<'_, E> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        rows_chunk(k, self.chunk, self.output, self.split, self.buffer)
    }
}

/// One chunk's rows: short rows in groups, the others one by one (`buffer` keeps a 16-bit
/// row's exponentials between its two phases).
fn rows_chunk<K: RowKernels, E: Logit + Elem>(
    k: K,
    mut chunk: BatchIo<'_, E>,
    output: Normalization,
    split: bool,
    mut buffer: Option<&mut [f32]>,
) {
    const NO_BLOCK_WEIGHTS: [f64; MAX_BLOCKS] = [0.0; MAX_BLOCKS];
    let rows = chunk.rows();
    let mut first = 0;
    // Short rows: a group at a time, no per-row calls.
    if chunk.cols() <= SHORT_COLS {
        let job = ShortJob::Normalize(output);
        // The kernels fill per-row lse values, which nothing here wants.
        let mut stats = [ShortStats::default(); GROUPS_PER_CALL];
        while rows - first >= GROUP {
            let groups = ((rows - first) / GROUP).min(GROUPS_PER_CALL);
            k.short_rows(chunk.groups(first, groups), &job, &mut stats[..groups]);
            first += groups * GROUP;
        }
    }
    let gather = Gather {
        cap: 0.0,
        smoothing: false,
        weights: None,
        soft: None,
        block_weights: &NO_BLOCK_WEIGHTS,
        target: None,
    };
    for i in first..rows {
        let Some(io) = chunk.io(i) else {
            unreachable!("standalone kernels always write")
        };
        // Probabilities are the stored exponentials scaled; log-probabilities need the
        // logits (and a 16-bit row without a buffer recomputes its exponentials).
        let exps = match output {
            Normalization::Softmax => exp_store(io, buffer.as_deref_mut()),
            Normalization::LogSoftmax => None,
        };
        let stored = exps.as_ref().map(|&(_, stored)| stored);
        let src = match exps {
            Some((io, _)) => RowSrc::Store(io),
            None => RowSrc::Read(chunk.input(i)),
        };
        let stats = row_stats(k, src, &gather, split);
        let Some(io) = chunk.io(i) else {
            unreachable!("standalone kernels always write")
        };
        match output {
            // p_c = exp(x_c − m) · (1/S): one rounding of 1/S instead of exp(x − lse),
            // whose argument loses the low bits of large logits.
            Normalization::Softmax => {
                let probs = GradCoefs {
                    scale: 1.0 / stats.sum,
                    smooth: 0.0,
                    target: None,
                    soft: None,
                    weights: None,
                    cap: 0.0,
                };
                let exps = Exps::after(&stats, stored, buffer.as_deref());
                write_row(k, io, &probs, exps, split);
            }
            Normalization::LogSoftmax => {
                k.write_log_probs(io, stats.max, stats.sum.ln() as f32);
            }
        }
    }
}

/// Writes softmax(x) of each row of `x` into `y` (the same shape, any stride).
///
/// ```
/// use xent::{Rows, RowsMut};
///
/// let x = [0.0f32, 0.0, 1.0, 1.0];
/// let mut y = [0.0f32; 4];
/// xent::softmax(Rows::packed(&x, 2)?, RowsMut::packed(&mut y, 2)?)?;
/// assert_eq!(y, [0.5; 4]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax<T: Logit>(x: Rows<'_, T>, y: RowsMut<'_, T>) -> Result<()> {
    run(BatchIo::Separate(x, y), Normalization::Softmax)
}

/// Replaces each row of `x` by its softmax.
///
/// ```
/// let mut x = [3.0f32, 3.0, 3.0, 3.0];
/// xent::softmax_in_place(xent::RowsMut::packed(&mut x, 4)?)?;
/// assert_eq!(x, [0.25; 4]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax_in_place<T: Logit>(x: RowsMut<'_, T>) -> Result<()> {
    run(BatchIo::InPlace(x), Normalization::Softmax)
}

/// Writes log_softmax(x) = x − logsumexp(x) of each row of `x` into `y`.
///
/// ```
/// use xent::{Rows, RowsMut};
///
/// let x = [1.0f32, 1.0];
/// let mut y = [0.0f32; 2];
/// xent::log_softmax(Rows::packed(&x, 2)?, RowsMut::packed(&mut y, 2)?)?;
/// assert!((y[0] + 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax<T: Logit>(x: Rows<'_, T>, y: RowsMut<'_, T>) -> Result<()> {
    run(BatchIo::Separate(x, y), Normalization::LogSoftmax)
}

/// Replaces each row of `x` by its log-softmax.
///
/// ```
/// let mut x = [0.0f32, 0.0, 0.0, 0.0];
/// xent::log_softmax_in_place(xent::RowsMut::packed(&mut x, 4)?)?;
/// assert!(x.iter().all(|&v| (v + 4f32.ln()).abs() < 1e-6));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax_in_place<T: Logit>(x: RowsMut<'_, T>) -> Result<()> {
    run(BatchIo::InPlace(x), Normalization::LogSoftmax)
}
