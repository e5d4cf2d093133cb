//! Stress: 10,000 generated calls to every public entry point of the crate, made first one
//! after another on one thread, then again from 8 threads at once, each concurrent result
//! compared with the serial one bit for bit.
//!
//! The calls cover `cross_entropy`, `cross_entropy_grad`, `cross_entropy_grad_in_place`,
//! `cross_entropy_backward`, `cross_entropy_backward_in_place`, `softmax`, `log_softmax`
//! and their `_in_place` forms over f32, f64, bf16 and f16 logits; `shard_stats`,
//! `merge_shard_rows`, `shard_finish`, `shard_finish_grad` and
//! `shard_finish_grad_in_place` (f32, which is what they take); `linear_cross_entropy` and
//! `linear_cross_entropy_chunked` over f32, bf16 and f16 heads. Targets are hard (`i64`,
//! `i32`, `u32`, some rows ignored) or soft; every option varies (reductions,
//! `ignore_index`, smoothing, z-loss, softcap, class weights, `grad_scale`, `dloss`), and
//! so do the strides. About 10% of the calls are refused: a target out of range, a bad
//! option, a buffer of the wrong length or shape, a slice too short, a stride smaller than
//! the row, a shard past its vocabulary, soft targets where only class indices go, a head
//! whose shapes disagree. A refused call must give the same `Err` value every time, and
//! must have written nothing (checked in the serial run).
//!
//! Every output buffer is fresh for each run and filled with the same sentinel (a NaN with
//! a payload), so what a call leaves unwritten — padding, the outputs of a refused call —
//! is compared too; in-place calls get a fresh copy of their logits.
//!
//! The serial run is the reference in the strictest sense: every call inside
//! `xent::on_calling_thread`, so nothing runs on a pool. In the concurrent run each call
//! runs, by its index, on the global rayon pool, on its own thread (`on_calling_thread`) or
//! on a pool of 3 threads shared by the 8 callers: the callers contend for the pools and
//! the per-thread buffers, and a result must not depend on where it ran.
//!
//! Shapes are mostly small (they exercise the checks, the short-row kernels and the tails);
//! about 4% are large enough to run on the pool: at least 2^17 elements in many rows, or 1
//! to 3 rows of at least 16384 columns, which are cut into column blocks run in parallel
//! when a batch has fewer rows than the pool has threads. About 2% of the linear heads
//! are large: 1100 to 1300 rows over 1800 to 2400 classes, in several vocabulary chunks.
//! The generator starts from a constant seed: a failure names the call's index, and the
//! same index is the same call on every run.

// 10,000 calls and batches of 2^17 elements are far too slow under Miri, which covers the
// same code through the other tests.
#![cfg(not(miri))]

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use common::bits::Bits;
use common::{PAD, Rng};
use xent::{
    Chunking, Error, LinearGrads, LinearHead, Logit, Options, Reduction, Rows, RowsMut, Shard,
    ShardRow, Targets, bf16, f16,
};

/// The generator's seed: change it to explore other calls.
const SEED: u64 = 0x5eed_57e5;
/// How many calls are generated.
const CALLS: usize = 10_000;
/// How many threads make the calls at once.
const THREADS: usize = 8;
/// The length of each shared pool of logits (and of soft targets): every batch lies
/// inside one, so large batches cost no memory of their own.
const POOL_LEN: usize = (1 << 20) + 1024;
/// The pools' first values include NaN and +∞; only about 3% of the batches start there.
const SPECIAL: usize = 2048;
/// A batch of at least this many elements runs on the rayon pool (schedule.rs).
const PARALLEL_MIN_ELEMS: usize = 1 << 17;
/// Rows at least this long are cut into column blocks run in parallel (schedule.rs).
const SPLIT_MIN_COLS: usize = 16_384;

// ---------------------------------------------------------------------------------------
// Element types and their bits.

/// A logits type: its name in the calls' labels and its pool of shared values.
trait Elem: Logit<Stat: Bits> + Bits {
    const NAME: &'static str;
    fn pool(pools: &Pools) -> &Arc<Vec<Self>>;
}

impl Elem for f32 {
    const NAME: &'static str = "f32";
    fn pool(pools: &Pools) -> &Arc<Vec<f32>> {
        &pools.f32
    }
}

impl Elem for f64 {
    const NAME: &'static str = "f64";
    fn pool(pools: &Pools) -> &Arc<Vec<f64>> {
        &pools.f64
    }
}

impl Elem for bf16 {
    const NAME: &'static str = "bf16";
    fn pool(pools: &Pools) -> &Arc<Vec<bf16>> {
        &pools.bf16
    }
}

impl Elem for f16 {
    const NAME: &'static str = "f16";
    fn pool(pools: &Pools) -> &Arc<Vec<f16>> {
        &pools.f16
    }
}

/// The shared values every batch is a window of: the same logits in each type, and soft
/// target values.
struct Pools {
    f32: Arc<Vec<f32>>,
    f64: Arc<Vec<f64>>,
    bf16: Arc<Vec<bf16>>,
    f16: Arc<Vec<f16>>,
    soft: Arc<Vec<f32>>,
}

impl Pools {
    /// Logits in blocks of 1024 with scales from 0.5 to 40 (peaked and flat rows, large
    /// exponents), about one in 800 −∞ (masked classes), and NaN and +∞ among the first
    /// `SPECIAL` values only. Soft targets: 30% zeros, the rest in [0, 0.1).
    fn new(rng: &mut Rng) -> Pools {
        let scales = [0.5f32, 3.0, 12.0, 40.0];
        let mut scale = 1.0;
        let logits: Vec<f32> = (0..POOL_LEN)
            .map(|i| {
                if i % 1024 == 0 {
                    scale = scales[rng.below(scales.len())];
                }
                let u = rng.unit();
                if u < 1.0 / 800.0 {
                    f32::NEG_INFINITY
                } else if i < SPECIAL && u < 0.01 {
                    f32::NAN
                } else if i < SPECIAL && u < 0.015 {
                    f32::INFINITY
                } else {
                    rng.normal() * scale
                }
            })
            .collect();
        // f64 logits carry bits beyond f32's (v·(1 + ε) keeps ±∞ and NaN as they are).
        let f64s = logits
            .iter()
            .map(|&v| f64::from(v) * (1.0 + 1e-9 * f64::from(rng.normal())))
            .collect();
        let soft = (0..POOL_LEN)
            .map(|_| {
                let u = rng.unit();
                if u < 0.3 { 0.0 } else { u * 0.1 }
            })
            .collect();
        Pools {
            bf16: Arc::new(logits.iter().map(|&v| bf16::from_f32(v)).collect()),
            f16: Arc::new(logits.iter().map(|&v| f16::from_f32(v)).collect()),
            f64: Arc::new(f64s),
            f32: Arc::new(logits),
            soft: Arc::new(soft),
        }
    }
}

/// The elements a `rows × cols` batch with `stride` spans.
fn span(rows: usize, cols: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    }
}

/// A strided batch of `rows × cols` values inside a shared buffer, from `offset`; `short`
/// elements are cut from its end (a slice too short for its shape when > 0).
#[derive(Clone)]
struct Batch<T> {
    data: Arc<Vec<T>>,
    offset: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    short: usize,
}

impl<T: Copy> Batch<T> {
    /// A batch of its own (not in a pool).
    fn owned(data: Vec<T>, rows: usize, cols: usize, stride: usize) -> Self {
        Batch {
            data: Arc::new(data),
            offset: 0,
            rows,
            cols,
            stride,
            short: 0,
        }
    }

    fn data(&self) -> &[T] {
        let end = self.offset + span(self.rows, self.cols, self.stride) - self.short;
        &self.data[self.offset..end]
    }

    fn view(&self) -> Result<Rows<'_, T>, Error> {
        Rows::new(self.data(), self.rows, self.cols, self.stride)
    }

    /// How the batch runs: on the pool when it has many elements, its rows split into
    /// parallel blocks when they are long and few.
    fn size(&self) -> Size {
        if self.cols >= SPLIT_MIN_COLS && self.rows <= 3 {
            Size::LongRows
        } else if self.rows * self.cols >= PARALLEL_MIN_ELEMS {
            Size::ManyRows
        } else {
            Size::Small
        }
    }
}

impl<T> fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}×{} stride {} at {}",
            self.rows, self.cols, self.stride, self.offset
        )?;
        if self.short > 0 {
            write!(f, " ({} short)", self.short)?;
        }
        Ok(())
    }
}

/// A call's targets, owned.
#[derive(Debug)]
enum Tgt {
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    Soft(Batch<f32>),
}

impl Tgt {
    fn view(&self) -> Result<Targets<'_>, Error> {
        Ok(match self {
            Tgt::I64(t) => Targets::I64(t),
            Tgt::I32(t) => Targets::I32(t),
            Tgt::U32(t) => Targets::U32(t),
            Tgt::Soft(t) => Targets::Soft(t.view()?),
        })
    }

    fn is_soft(&self) -> bool {
        matches!(self, Tgt::Soft(_))
    }

    fn kind(&self) -> &'static str {
        match self {
            Tgt::I64(_) => "i64",
            Tgt::I32(_) => "i32",
            Tgt::U32(_) => "u32",
            Tgt::Soft(_) => "soft",
        }
    }
}

/// A call's options, owned (with their class weights).
#[derive(Clone)]
struct Opts {
    reduction: Reduction,
    ignore_index: i64,
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    grad_scale: f32,
    weights: Option<Vec<f32>>,
}

impl Opts {
    fn get(&self) -> Options<'_> {
        Options {
            reduction: self.reduction,
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            z_loss: self.z_loss,
            softcap: self.softcap,
            class_weights: self.weights.as_deref(),
            grad_scale: self.grad_scale,
        }
    }
}

impl fmt::Debug for Opts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} ignore {} ε {} z {} cap {} g {}",
            self.reduction,
            self.ignore_index,
            self.label_smoothing,
            self.z_loss,
            self.softcap,
            self.grad_scale
        )?;
        if let Some(w) = &self.weights {
            write!(f, " weights[{}]", w.len())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Outcomes.

/// One output buffer after a call: its bits, and whether it still holds what it held
/// before (only worked out for refused calls).
struct Output {
    name: &'static str,
    bits: Vec<u64>,
    untouched: bool,
}

/// What a call did: its result and every output buffer.
struct Outcome {
    result: Result<(), Error>,
    outputs: Vec<Output>,
}

impl Outcome {
    fn new(result: Result<(), Error>) -> Self {
        Outcome {
            result,
            outputs: Vec::new(),
        }
    }

    /// An output that held the sentinel before the call.
    fn fresh<B: Bits>(self, name: &'static str, buf: &[B]) -> Self {
        let sentinel = B::SENTINEL.bits();
        self.push(name, buf, |_, b| b == sentinel)
    }

    fn fresh_opt<B: Bits>(self, name: &'static str, buf: Option<&[B]>) -> Self {
        match buf {
            Some(buf) => self.fresh(name, buf),
            None => self,
        }
    }

    /// An output that held `before` (in-place logits, `merge_shard_rows`' `inout`).
    fn over<B: Bits>(self, name: &'static str, buf: &[B], before: &[B]) -> Self {
        self.push(name, buf, |k, b| b == before[k].bits())
    }

    fn push<B: Bits>(
        mut self,
        name: &'static str,
        buf: &[B],
        was: impl Fn(usize, u64) -> bool,
    ) -> Self {
        let bits: Vec<u64> = buf.iter().map(|v| v.bits()).collect();
        let untouched = self.result.is_err() && bits.iter().enumerate().all(|(k, &b)| was(k, b));
        self.outputs.push(Output {
            name,
            bits,
            untouched,
        });
        self
    }

    /// The result and a digest of each output, what the serial run keeps of each call.
    fn summary(&self) -> Summary {
        Summary {
            result: self.result.clone(),
            outputs: self
                .outputs
                .iter()
                .map(|o| (o.name, o.bits.len(), digest(&o.bits)))
                .collect(),
        }
    }
}

/// A call's result and, per output, its name, length and digest.
#[derive(Debug, PartialEq)]
struct Summary {
    result: Result<(), Error>,
    outputs: Vec<(&'static str, usize, u64)>,
}

/// FxHash over the bits: each step is a bijection of the running hash for a given word,
/// so two buffers that differ in one element always get different digests.
fn digest(bits: &[u64]) -> u64 {
    bits.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h.rotate_left(5) ^ b).wrapping_mul(0x517c_c1b7_2722_0a95)
    })
}

/// The four fields of each row, for recording.
fn flat(rows: &[ShardRow]) -> Vec<f32> {
    rows.iter()
        .flat_map(|r| [r.max, r.sumexp, r.target_logit, r.smooth_sum])
        .collect()
}

/// A `ShardRow` of sentinels, what fresh summary buffers hold.
const SENTINEL_ROW: ShardRow = ShardRow {
    max: PAD,
    sumexp: PAD,
    target_logit: PAD,
    smooth_sum: PAD,
};

// ---------------------------------------------------------------------------------------
// Calls.

/// What makes a generated call refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// A hard target outside the classes (and not `ignore_index`).
    Target,
    /// An option outside its domain, or class weights of the wrong length.
    Option,
    /// Targets for a different number of rows.
    TargetsLen,
    /// Soft targets with a different number of columns.
    SoftCols,
    /// Soft targets where only class indices go (sharded and linear calls).
    Soft,
    /// `loss` of the wrong length.
    Loss,
    /// `lse` (written) of the wrong length.
    Lse,
    /// `lse` (read, backward) of the wrong length.
    LseIn,
    /// `dloss` of the wrong length.
    Dloss,
    /// An output batch of another shape than the input's.
    Out,
    /// An input slice too short for its shape.
    Short,
    /// An input stride smaller than its row.
    Stride,
    /// An output stride smaller than its row.
    OutStride,
    /// A shard reaching past its vocabulary.
    Shard,
    /// `shard_stats`' `out` of the wrong length.
    OutLen,
    /// `merged` of the wrong length.
    Merged,
    /// `merge_shard_rows`' `inout` of another length than `input`.
    InOut,
    /// A weight of another `dim` than the hidden states'.
    Weight,
    /// A head without classes, for rows.
    NoClasses,
    /// A bias of the wrong length.
    Bias,
    /// Linear gradients of the wrong shapes.
    GradHidden,
    GradWeight,
    GradBias,
}

/// Runs a call with fresh output buffers.
type Run = Box<dyn Fn() -> Outcome + Send + Sync>;

/// One generated call.
struct Call {
    /// The entry point and element type, e.g. `cross_entropy_grad<bf16>`.
    label: String,
    /// Everything else about it, for messages.
    what: String,
    /// Why it must be refused, if it must.
    bad: Option<Bad>,
    /// How it runs: small, on the pool, or with rows split into parallel blocks.
    size: Size,
    run: Run,
}

/// How a generated call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Size {
    /// Below `PARALLEL_MIN_ELEMS`: on the calling thread whatever the pool.
    Small,
    /// Many rows, at least `PARALLEL_MIN_ELEMS` elements: chunks of rows on the pool.
    ManyRows,
    /// 1 to 3 rows of at least `SPLIT_MIN_COLS`: each row's blocks on the pool.
    LongRows,
    /// A linear head whose vocabulary takes several automatic chunks.
    Chunks,
}

/// The entry points of the cross-entropy family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ce {
    Forward,
    Grad,
    GradInPlace,
    Backward,
    BackwardInPlace,
}

impl Ce {
    fn name(self) -> &'static str {
        match self {
            Ce::Forward => "cross_entropy",
            Ce::Grad => "cross_entropy_grad",
            Ce::GradInPlace => "cross_entropy_grad_in_place",
            Ce::Backward => "cross_entropy_backward",
            Ce::BackwardInPlace => "cross_entropy_backward_in_place",
        }
    }
}

/// softmax, log_softmax and their in-place forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sm {
    Softmax,
    LogSoftmax,
    SoftmaxInPlace,
    LogSoftmaxInPlace,
}

impl Sm {
    fn name(self) -> &'static str {
        match self {
            Sm::Softmax => "softmax",
            Sm::LogSoftmax => "log_softmax",
            Sm::SoftmaxInPlace => "softmax_in_place",
            Sm::LogSoftmaxInPlace => "log_softmax_in_place",
        }
    }
}

/// The sharded calls that read a slice of logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sh {
    Stats,
    Finish,
    FinishGrad,
    FinishGradInPlace,
}

impl Sh {
    fn name(self) -> &'static str {
        match self {
            Sh::Stats => "shard_stats",
            Sh::Finish => "shard_finish",
            Sh::FinishGrad => "shard_finish_grad",
            Sh::FinishGradInPlace => "shard_finish_grad_in_place",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The generator.

struct Gen {
    rng: Rng,
    pools: Pools,
}

impl Gen {
    fn coin(&mut self, p: f32) -> bool {
        self.rng.unit() < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len())]
    }

    /// Padding after a row: none half the time.
    fn pad(&mut self) -> usize {
        if self.coin(0.5) {
            0
        } else {
            1 + self.rng.below(8)
        }
    }

    /// Rows, columns (at least 1) and how the batch runs: mostly small, 2.5% many rows on
    /// the pool, 1.5% long rows split into parallel blocks.
    fn shape(&mut self) -> (usize, usize, Size) {
        let u = self.rng.unit();
        if u < 0.025 {
            let cols = self.pick(&[3, 10, 16, 17, 100, 1000, 5000]);
            let elems = PARALLEL_MIN_ELEMS + self.rng.below(PARALLEL_MIN_ELEMS);
            (elems.div_ceil(cols), cols, Size::ManyRows)
        } else if u < 0.04 {
            let rows = 1 + self.rng.below(3);
            let cols = SPLIT_MIN_COLS + self.rng.below(100_000 - SPLIT_MIN_COLS);
            (rows, cols, Size::LongRows)
        } else {
            let cols = match self.rng.below(20) {
                0..=7 => 1 + self.rng.below(16),
                8..=16 => 17 + self.rng.below(300),
                _ => 300 + self.rng.below(4700),
            };
            let rows = if self.coin(0.04) {
                0
            } else {
                1 + self.rng.below(48)
            };
            // Below the pool's threshold: large batches are the shapes above.
            (rows.min((PARALLEL_MIN_ELEMS - 1) / cols), cols, Size::Small)
        }
    }

    /// A window of `pool`, at a random place (3% may include the pool's NaN and +∞).
    fn batch<T: Copy>(
        &mut self,
        pool: Arc<Vec<T>>,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Batch<T> {
        let len = span(rows, cols, stride);
        let lo = if self.coin(0.03) { 0 } else { SPECIAL };
        let offset = lo + self.rng.below(POOL_LEN - len - lo + 1);
        Batch {
            data: pool,
            offset,
            rows,
            cols,
            stride,
            short: 0,
        }
    }

    /// Soft targets shaped `rows × cols`.
    fn soft(&mut self, rows: usize, cols: usize) -> Tgt {
        let stride = cols + self.pad();
        let pool = Arc::clone(&self.pools.soft);
        Tgt::Soft(self.batch(pool, rows, cols, stride))
    }

    /// Options for `classes` classes (weights of that length).
    fn options(&mut self, classes: usize) -> Opts {
        let reduction = self.pick(&[Reduction::Mean, Reduction::Sum, Reduction::None]);
        let ignore_index = match self.rng.below(20) {
            0..=13 => -100,
            14..=16 => -1,
            _ if classes > 0 => self.rng.below(classes) as i64,
            _ => -100,
        };
        let label_smoothing = match self.rng.below(20) {
            0..=10 => 0.0,
            11..=17 => self.rng.range(0.0, 0.3),
            _ => self.pick(&[1.0, 0.5]),
        };
        let z_loss = if self.coin(0.7) {
            0.0
        } else {
            self.pick(&[1e-4, 1e-2])
        };
        let softcap = if self.coin(0.7) {
            0.0
        } else {
            self.pick(&[5.0, 30.0])
        };
        let grad_scale = if self.coin(0.6) {
            1.0
        } else {
            self.rng.range(-2.0, 2.0)
        };
        let weights = self.coin(0.25).then(|| {
            let mut w: Vec<f32> = (0..classes).map(|_| self.rng.range(0.0, 2.0)).collect();
            if classes > 2 && self.coin(0.3) {
                w[classes / 2] = 0.0;
            }
            w
        });
        Opts {
            reduction,
            ignore_index,
            label_smoothing,
            z_loss,
            softcap,
            grad_scale,
            weights,
        }
    }

    /// One option out of its domain (or weights of the wrong length).
    fn corrupt(&mut self, o: &mut Opts, classes: usize) {
        match self.rng.below(6) {
            0 => o.label_smoothing = self.pick(&[1.5, -0.25, f32::NAN]),
            1 => o.z_loss = self.pick(&[-1.0, f32::INFINITY, f32::NAN]),
            2 => o.softcap = self.pick(&[-2.0, f32::INFINITY, f32::NAN]),
            3 => o.grad_scale = self.pick(&[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]),
            4 if classes > 0 => {
                let mut w = o.weights.take().unwrap_or_else(|| vec![1.0; classes]);
                let k = self.rng.below(classes);
                w[k] = self.pick(&[-1.0, f32::NAN, f32::INFINITY]);
                o.weights = Some(w);
            }
            _ => o.weights = Some(vec![0.5; classes + 1]),
        }
    }

    /// `rows` class indices in `0..classes` in one of the three index types, about 10% of
    /// them `ignore_index` where the type can hold it.
    fn hard(&mut self, rows: usize, classes: usize, ignore_index: i64) -> Tgt {
        let class = |g: &mut Gen| {
            if classes == 0 || g.coin(0.1) {
                ignore_index
            } else {
                g.rng.below(classes) as i64
            }
        };
        let t: Vec<i64> = (0..rows).map(|_| class(self)).collect();
        match self.rng.below(10) {
            0..=5 => Tgt::I64(t),
            6 | 7 => Tgt::I32(t.iter().map(|&y| y as i32).collect()),
            // A u32 cannot hold a negative ignore_index: those rows get class 0.
            _ => Tgt::U32(t.iter().map(|&y| u32::try_from(y).unwrap_or(0)).collect()),
        }
    }

    /// Makes the target of one row a class that does not exist (and is not
    /// `ignore_index`, which is -100, -1 or a class).
    fn out_of_range(&mut self, t: &mut Tgt, classes: usize) {
        match t {
            Tgt::I64(t) => {
                let k = self.rng.below(t.len());
                t[k] = self.pick(&[classes as i64, -2, i64::MAX, i64::MIN]);
            }
            Tgt::I32(t) => {
                let k = self.rng.below(t.len());
                t[k] = self.pick(&[classes as i32, -2, i32::MIN]);
            }
            Tgt::U32(t) => {
                let k = self.rng.below(t.len());
                t[k] = self.pick(&[classes as u32, u32::MAX]);
            }
            Tgt::Soft(_) => unreachable!("only hard targets can be out of range"),
        }
    }

    /// Targets for one row more or one fewer.
    fn wrong_len(&mut self, t: &mut Tgt) {
        let shorter = !self.coin(0.5);
        match t {
            Tgt::I64(t) => resize(t, shorter, 0),
            Tgt::I32(t) => resize(t, shorter, 0),
            Tgt::U32(t) => resize(t, shorter, 0),
            Tgt::Soft(b) => {
                let rows = if shorter && b.rows > 0 {
                    b.rows - 1
                } else {
                    b.rows + 1
                };
                let cols = b.cols;
                *t = self.soft(rows, cols);
            }
        }
    }

    /// Whether this call is one of the ~10% refused, and why: a kind from `kinds` that
    /// `applies` to it.
    fn bad(&mut self, kinds: &[Bad], applies: impl Fn(Bad) -> bool) -> Option<Bad> {
        if !self.coin(0.1) {
            return None;
        }
        let kind = (0..1000)
            .map(|_| self.pick(kinds))
            .find(|&b| applies(b))
            .unwrap_or_else(|| panic!("no kind of {kinds:?} applies"));
        Some(kind)
    }

    /// A length other than `n`.
    fn other_len(&mut self, n: usize) -> usize {
        if n == 0 || self.coin(0.5) {
            n + 1
        } else {
            n - 1
        }
    }

    /// The lse a forward call saves for `x` (every row ignored, so any targets do), 20% of
    /// the time nudged (a backward from a stale lse).
    fn saved_lse<T: Elem>(&mut self, x: &Batch<T>, softcap: f32) -> Vec<T::Stat> {
        let rows = x.rows;
        let mut lse = vec![T::Stat::SENTINEL; rows];
        let mut loss = vec![T::Stat::SENTINEL; rows];
        let ignored = vec![-100i64; rows];
        let options = Options {
            reduction: Reduction::None,
            softcap,
            ..Options::default()
        };
        xent::on_calling_thread(|| {
            let view = x.view()?;
            xent::cross_entropy(view, &ignored[..], &options, &mut loss, Some(&mut lse))
        })
        .expect("the forward call that saves the lse");
        if self.coin(0.2) {
            for v in &mut lse {
                *v = Bits::of_f64(v.to_f64() + 0.01 * f64::from(self.rng.normal()));
            }
        }
        lse
    }

    /// `n` upstream gradients in [-2, 2).
    fn upstream<S: Bits>(&mut self, n: usize) -> Vec<S> {
        (0..n)
            .map(|_| S::of_f64(f64::from(self.rng.range(-2.0, 2.0))))
            .collect()
    }

    /// A summary row as an all-reduce might carry: finite, all −∞ (sum 0), NaN, ±0 maxes.
    fn shard_row(&mut self) -> ShardRow {
        let max = match self.rng.below(20) {
            0..=2 => f32::NEG_INFINITY,
            3 => f32::NAN,
            4 => 0.0,
            5 => -0.0,
            _ => self.rng.normal() * 10.0,
        };
        let sumexp = if max == f32::NEG_INFINITY || self.coin(0.05) {
            0.0
        } else {
            1.0 + self.rng.unit() * 100.0
        };
        ShardRow {
            max,
            sumexp,
            target_logit: if self.coin(0.5) {
                self.rng.normal() * 5.0
            } else {
                0.0
            },
            smooth_sum: if self.coin(0.5) {
                self.rng.normal() * 50.0
            } else {
                0.0
            },
        }
    }
}

/// One element more, or one fewer when `shorter` and there is one.
fn resize<T: Clone>(v: &mut Vec<T>, shorter: bool, fill: T) {
    if shorter && !v.is_empty() {
        v.pop();
    } else {
        v.push(fill);
    }
}

/// A writable view of `buf` shaped `shape`.
fn rows_mut<T>(buf: &mut [T], (rows, cols, stride): Shape) -> Result<RowsMut<'_, T>, Error> {
    RowsMut::new(buf, rows, cols, stride)
}

/// A fresh output buffer.
fn fresh<B: Bits>(len: usize) -> Vec<B> {
    vec![B::SENTINEL; len]
}

/// The shape of an output batch: rows, cols, stride.
type Shape = (usize, usize, usize);

/// A fresh output batch of `shape`.
fn fresh_batch<B: Bits>(shape: Shape) -> Vec<B> {
    fresh(span(shape.0, shape.1, shape.2))
}

/// Changes an output shape so that the call refuses it: another number of rows or
/// columns, or (`stride`) a stride smaller than the row.
fn bad_shape(g: &mut Gen, shape: &mut Shape, stride: bool) {
    if stride {
        shape.2 = shape.1 - 1;
    } else if g.coin(0.5) {
        shape.0 = g.other_len(shape.0);
    } else {
        shape.1 += 1;
        shape.2 = shape.2.max(shape.1);
    }
}

// ---------------------------------------------------------------------------------------
// The entry points' calls.

/// A call of the cross-entropy family over `T` logits.
fn ce_call<T: Elem>(g: &mut Gen, entry: Ce) -> Call {
    let (rows, cols, _) = g.shape();
    let pool = Arc::clone(T::pool(&g.pools));
    let stride = cols + g.pad();
    let mut x = g.batch(pool, rows, cols, stride);
    let mut opts = g.options(cols);
    let mut tgt = if g.coin(0.25) {
        g.soft(rows, cols)
    } else {
        g.hard(rows, cols, opts.ignore_index)
    };
    let reduction = opts.reduction;
    let backward = matches!(entry, Ce::Backward | Ce::BackwardInPlace);
    let separate = matches!(entry, Ce::Grad | Ce::Backward);
    let mut want_lse = !backward && g.coin(0.5);
    let (mut lse_in, mut dloss) = if backward {
        let lse = g.saved_lse(&x, opts.softcap);
        (lse, g.upstream(reduction.loss_len(rows)))
    } else {
        (Vec::new(), Vec::new())
    };
    let mut loss_len = reduction.loss_len(rows);
    let mut lse_len = rows;
    let mut out: Shape = (rows, cols, cols + g.pad());

    let mut kinds = vec![
        Bad::Option,
        Bad::Target,
        Bad::TargetsLen,
        Bad::SoftCols,
        Bad::Short,
        Bad::Stride,
    ];
    if backward {
        kinds.extend([Bad::LseIn, Bad::Dloss]);
    } else {
        kinds.extend([Bad::Loss, Bad::Lse]);
    }
    if separate {
        kinds.extend([Bad::Out, Bad::OutStride]);
    }
    let bad = g.bad(&kinds, |b| match b {
        Bad::Target => rows > 0 && !tgt.is_soft(),
        Bad::SoftCols => tgt.is_soft(),
        Bad::Short => rows > 0,
        _ => true,
    });
    match bad {
        None => {}
        Some(Bad::Option) => g.corrupt(&mut opts, cols),
        Some(Bad::Target) => g.out_of_range(&mut tgt, cols),
        Some(Bad::TargetsLen) => g.wrong_len(&mut tgt),
        Some(Bad::SoftCols) => tgt = g.soft(rows, cols + 1),
        Some(Bad::Short) => x.short = 1,
        Some(Bad::Stride) => x.stride = cols - 1,
        Some(Bad::LseIn) => resize(&mut lse_in, g.coin(0.5), T::Stat::of_f64(0.0)),
        Some(Bad::Dloss) => resize(&mut dloss, g.coin(0.5), T::Stat::of_f64(1.0)),
        Some(Bad::Loss) => loss_len = g.other_len(loss_len),
        Some(Bad::Lse) => {
            want_lse = true;
            lse_len = g.other_len(rows);
        }
        Some(Bad::Out) => bad_shape(g, &mut out, false),
        Some(Bad::OutStride) => bad_shape(g, &mut out, true),
        Some(other) => unreachable!("{other:?} is not a cross-entropy kind"),
    }
    let what = format!(
        "{x:?}, {} targets, {opts:?}, lse {want_lse}, out {out:?}",
        tgt.kind()
    );
    let size = x.size();
    let run: Run = Box::new(move || {
        let o = opts.get();
        let mut loss = fresh::<T::Stat>(loss_len);
        let mut lse = want_lse.then(|| fresh::<T::Stat>(lse_len));
        match entry {
            Ce::Forward => {
                let r = (|| {
                    let lse = lse.as_deref_mut();
                    xent::cross_entropy(x.view()?, tgt.view()?, &o, &mut loss, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
            }
            Ce::Grad => {
                let mut grad = fresh_batch::<T>(out);
                let r = (|| {
                    let g = RowsMut::new(&mut grad, out.0, out.1, out.2)?;
                    let lse = lse.as_deref_mut();
                    xent::cross_entropy_grad(x.view()?, tgt.view()?, &o, &mut loss, g, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
                    .fresh("grad", &grad)
            }
            Ce::GradInPlace => {
                let mut buf = x.data().to_vec();
                let r = (|| {
                    let v = RowsMut::new(&mut buf, x.rows, x.cols, x.stride)?;
                    let lse = lse.as_deref_mut();
                    xent::cross_entropy_grad_in_place(v, tgt.view()?, &o, &mut loss, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
                    .over("logits", &buf, x.data())
            }
            Ce::Backward => {
                let mut grad = fresh_batch::<T>(out);
                let r = (|| {
                    let g = RowsMut::new(&mut grad, out.0, out.1, out.2)?;
                    xent::cross_entropy_backward(x.view()?, tgt.view()?, &o, &lse_in, &dloss, g)
                })();
                Outcome::new(r).fresh("grad", &grad)
            }
            Ce::BackwardInPlace => {
                let mut buf = x.data().to_vec();
                let r = (|| {
                    let v = RowsMut::new(&mut buf, x.rows, x.cols, x.stride)?;
                    xent::cross_entropy_backward_in_place(v, tgt.view()?, &o, &lse_in, &dloss)
                })();
                Outcome::new(r).over("logits", &buf, x.data())
            }
        }
    });
    Call {
        label: format!("{}<{}>", entry.name(), T::NAME),
        what,
        bad,
        size,
        run,
    }
}

/// softmax, log_softmax or an in-place form over `T` logits.
fn softmax_call<T: Elem>(g: &mut Gen, entry: Sm) -> Call {
    let (rows, cols, _) = g.shape();
    let pool = Arc::clone(T::pool(&g.pools));
    let stride = cols + g.pad();
    let mut x = g.batch(pool, rows, cols, stride);
    let mut out: Shape = (rows, cols, cols + g.pad());
    let in_place = matches!(entry, Sm::SoftmaxInPlace | Sm::LogSoftmaxInPlace);
    let kinds: &[Bad] = if in_place {
        &[Bad::Short, Bad::Stride]
    } else {
        &[Bad::Short, Bad::Stride, Bad::Out, Bad::OutStride]
    };
    let bad = g.bad(kinds, |b| b != Bad::Short || rows > 0);
    match bad {
        None => {}
        Some(Bad::Short) => x.short = 1,
        Some(Bad::Stride) => x.stride = cols - 1,
        Some(Bad::Out) => bad_shape(g, &mut out, false),
        Some(Bad::OutStride) => bad_shape(g, &mut out, true),
        Some(other) => unreachable!("{other:?} is not a softmax kind"),
    }
    let what = format!("{x:?}, out {out:?}");
    let size = x.size();
    let run: Run = Box::new(move || {
        if in_place {
            let mut buf = x.data().to_vec();
            let r = (|| {
                let v = RowsMut::new(&mut buf, x.rows, x.cols, x.stride)?;
                if entry == Sm::SoftmaxInPlace {
                    xent::softmax_in_place(v)
                } else {
                    xent::log_softmax_in_place(v)
                }
            })();
            Outcome::new(r).over("logits", &buf, x.data())
        } else {
            let mut y = fresh_batch::<T>(out);
            let r = (|| {
                let v = RowsMut::new(&mut y, out.0, out.1, out.2)?;
                if entry == Sm::Softmax {
                    xent::softmax(x.view()?, v)
                } else {
                    xent::log_softmax(x.view()?, v)
                }
            })();
            Outcome::new(r).fresh("y", &y)
        }
    });
    Call {
        label: format!("{}<{}>", entry.name(), T::NAME),
        what,
        bad,
        size,
        run,
    }
}

/// The rows of `whole` summed up over 1 to 3 uneven slices and merged, as the all-reduce
/// would: what `shard_finish` takes.
fn merged_rows(g: &mut Gen, whole: &Batch<f32>, tgt: &Tgt, opts: &Opts) -> Vec<ShardRow> {
    let total = whole.cols;
    let mut cuts: Vec<usize> = (0..g.rng.below(3))
        .map(|_| 1 + g.rng.below(total))
        .filter(|&c| c < total)
        .collect();
    cuts.extend([0, total]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut merged = vec![ShardRow::EMPTY; whole.rows];
    for piece in cuts.windows(2) {
        let slice = Batch {
            offset: whole.offset + piece[0],
            cols: piece[1] - piece[0],
            ..whole.clone()
        };
        let shard = Shard {
            class_offset: piece[0],
            total_cols: total,
        };
        let mut part = vec![ShardRow::EMPTY; whole.rows];
        xent::on_calling_thread(|| {
            xent::shard_stats(slice.view()?, shard, tgt.view()?, &opts.get(), &mut part)?;
            xent::merge_shard_rows(&part, &mut merged)
        })
        .expect("the summaries of a valid call");
    }
    merged
}

/// A sharded call over a slice of the vocabulary (f32).
fn shard_call(g: &mut Gen, entry: Sh) -> Call {
    let (rows, total, size) = g.shape();
    let stride = total + g.pad();
    let pool = Arc::clone(&g.pools.f32);
    let whole = g.batch(pool, rows, total, stride);
    let cols = if g.coin(if size == Size::LongRows { 0.6 } else { 0.3 }) {
        total
    } else {
        1 + g.rng.below(total)
    };
    let offset = g.rng.below(total - cols + 1);
    let mut x = Batch {
        offset: whole.offset + offset,
        cols,
        ..whole.clone()
    };
    let mut shard = Shard {
        class_offset: offset,
        total_cols: total,
    };
    let mut opts = g.options(total);
    let mut tgt = g.hard(rows, total, opts.ignore_index);
    let mut merged = if entry == Sh::Stats {
        Vec::new()
    } else {
        merged_rows(g, &whole, &tgt, &opts)
    };
    let reduction = opts.reduction;
    let mut want_lse = g.coin(0.5);
    let mut loss_len = reduction.loss_len(rows);
    let mut lse_len = rows;
    let mut out_len = rows;
    let mut out: Shape = (rows, cols, cols + g.pad());

    let mut kinds = vec![
        Bad::Option,
        Bad::Target,
        Bad::TargetsLen,
        Bad::Soft,
        Bad::Shard,
        Bad::Short,
        Bad::Stride,
    ];
    match entry {
        Sh::Stats => kinds.push(Bad::OutLen),
        _ => kinds.extend([Bad::Merged, Bad::Loss, Bad::Lse]),
    }
    if entry == Sh::FinishGrad {
        kinds.extend([Bad::Out, Bad::OutStride]);
    }
    let bad = g.bad(&kinds, |b| match b {
        Bad::Target | Bad::Short => rows > 0,
        _ => true,
    });
    match bad {
        None => {}
        Some(Bad::Option) => g.corrupt(&mut opts, total),
        Some(Bad::Target) => g.out_of_range(&mut tgt, total),
        Some(Bad::TargetsLen) => g.wrong_len(&mut tgt),
        Some(Bad::Soft) => tgt = g.soft(rows, cols),
        Some(Bad::Shard) => {
            if g.coin(0.5) {
                shard.class_offset = total - cols + 1 + g.rng.below(3);
            } else {
                shard.total_cols = offset + cols - 1;
            }
        }
        Some(Bad::Short) => x.short = 1,
        Some(Bad::Stride) => x.stride = cols - 1,
        Some(Bad::OutLen) => out_len = g.other_len(rows),
        Some(Bad::Merged) => resize(&mut merged, g.coin(0.5), ShardRow::EMPTY),
        Some(Bad::Loss) => loss_len = g.other_len(loss_len),
        Some(Bad::Lse) => {
            want_lse = true;
            lse_len = g.other_len(rows);
        }
        Some(Bad::Out) => bad_shape(g, &mut out, false),
        Some(Bad::OutStride) => bad_shape(g, &mut out, true),
        Some(other) => unreachable!("{other:?} is not a shard kind"),
    }
    let what = format!(
        "{x:?} of {shard:?}, {} targets, {opts:?}, lse {want_lse}, out {out:?}",
        tgt.kind()
    );
    let size = x.size();
    let run: Run = Box::new(move || {
        let o = opts.get();
        if entry == Sh::Stats {
            let mut rows_out = vec![SENTINEL_ROW; out_len];
            let r = (|| xent::shard_stats(x.view()?, shard, tgt.view()?, &o, &mut rows_out))();
            return Outcome::new(r).fresh("out", &flat(&rows_out));
        }
        let mut loss = fresh::<f32>(loss_len);
        let mut lse = want_lse.then(|| fresh::<f32>(lse_len));
        match entry {
            Sh::Finish => {
                let r = (|| {
                    let lse = lse.as_deref_mut();
                    xent::shard_finish(x.view()?, shard, tgt.view()?, &o, &merged, &mut loss, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
            }
            Sh::FinishGrad => {
                let mut grad = fresh_batch::<f32>(out);
                let r = (|| {
                    let g = RowsMut::new(&mut grad, out.0, out.1, out.2)?;
                    let (t, lse) = (tgt.view()?, lse.as_deref_mut());
                    xent::shard_finish_grad(x.view()?, shard, t, &o, &merged, &mut loss, g, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
                    .fresh("grad", &grad)
            }
            _ => {
                let mut buf = x.data().to_vec();
                let r = (|| {
                    let v = RowsMut::new(&mut buf, x.rows, x.cols, x.stride)?;
                    let (t, lse) = (tgt.view()?, lse.as_deref_mut());
                    xent::shard_finish_grad_in_place(v, shard, t, &o, &merged, &mut loss, lse)
                })();
                Outcome::new(r)
                    .fresh("loss", &loss)
                    .fresh_opt("lse", lse.as_deref())
                    .over("logits", &buf, x.data())
            }
        }
    });
    Call {
        label: format!("{}<f32>", entry.name()),
        what,
        bad,
        size,
        run,
    }
}

/// `merge_shard_rows` over generated summaries.
fn merge_call(g: &mut Gen) -> Call {
    let n = if g.coin(0.02) {
        20_000 + g.rng.below(50_000)
    } else {
        g.rng.below(40)
    };
    let mut input: Vec<ShardRow> = (0..n).map(|_| g.shard_row()).collect();
    let mut inout: Vec<ShardRow> = (0..n).map(|_| g.shard_row()).collect();
    let bad = g.bad(&[Bad::InOut], |_| true);
    if bad.is_some() {
        if g.coin(0.5) {
            resize(&mut input, true, ShardRow::EMPTY);
        } else {
            resize(&mut inout, g.coin(0.5), ShardRow::EMPTY);
        }
    }
    let what = format!("input {}, inout {}", input.len(), inout.len());
    let before = flat(&inout);
    let run: Run = Box::new(move || {
        let mut acc = inout.clone();
        let r = xent::merge_shard_rows(&input, &mut acc);
        Outcome::new(r).over("inout", &flat(&acc), &before)
    });
    Call {
        label: "merge_shard_rows".into(),
        what,
        bad,
        size: Size::Small,
        run,
    }
}

/// A values buffer of `rows × cols` with `stride`, values `scale`·N(0, 1), sentinels in
/// the padding.
fn values<T: Bits>(g: &mut Gen, rows: usize, cols: usize, stride: usize, scale: f64) -> Vec<T> {
    (0..span(rows, cols, stride))
        .map(|k| {
            if k % stride < cols {
                T::of_f64(scale * f64::from(g.rng.normal()))
            } else {
                T::SENTINEL
            }
        })
        .collect()
}

/// `linear_cross_entropy` (automatic chunks) or `_chunked` over a `T` head.
fn linear_call<T: Elem + Logit<Stat = f32>>(g: &mut Gen, chunked: bool) -> Call {
    let big = g.coin(0.02);
    let (rows, dim, mut classes) = if big {
        // At least two automatic chunks: 2^21 / rows < classes.
        (
            1100 + g.rng.below(200),
            3 + g.rng.below(4),
            1800 + g.rng.below(600),
        )
    } else {
        let rows = if g.coin(0.05) { 0 } else { 1 + g.rng.below(40) };
        (rows, 1 + g.rng.below(48), 1 + g.rng.below(300))
    };
    let chunking = if !chunked {
        Chunking::Auto
    } else if big {
        Chunking::Classes(500 + g.rng.below(700))
    } else {
        Chunking::Classes(1 + g.rng.below(classes))
    };
    let kinds = [
        Bad::Option,
        Bad::Target,
        Bad::TargetsLen,
        Bad::Soft,
        Bad::Loss,
        Bad::Lse,
        Bad::Weight,
        Bad::NoClasses,
        Bad::Bias,
        Bad::GradHidden,
        Bad::GradWeight,
        Bad::GradBias,
        Bad::Short,
        Bad::Stride,
    ];
    let bad = g.bad(&kinds, |b| match b {
        Bad::Target | Bad::NoClasses | Bad::Short => rows > 0,
        _ => true,
    });
    if bad == Some(Bad::NoClasses) {
        classes = 0;
    }
    let mut hidden_stride = dim + g.pad();
    let hidden = values::<T>(g, rows, dim, hidden_stride, 1.0);
    let weight_cols = if bad == Some(Bad::Weight) {
        dim + 1
    } else {
        dim
    };
    let weight_stride = weight_cols + g.pad();
    let weight = values::<T>(g, classes, weight_cols, weight_stride, 0.5);
    let mut bias: Option<Vec<T>> = g.coin(0.6).then(|| {
        (0..classes)
            .map(|_| {
                if g.coin(0.03) {
                    T::of_f64(f64::NEG_INFINITY)
                } else {
                    T::of_f64(0.5 * f64::from(g.rng.normal()))
                }
            })
            .collect()
    });
    let mut opts = g.options(classes);
    let mut tgt = g.hard(rows, classes, opts.ignore_index);
    let mut want_lse = g.coin(0.5);
    let mut loss_len = opts.reduction.loss_len(rows);
    let mut lse_len = rows;
    let mut grad_hidden: Option<Shape> = g.coin(0.7).then(|| (rows, dim, dim + g.pad()));
    let mut grad_weight: Option<Shape> = g.coin(0.7).then(|| (classes, dim, dim + g.pad()));
    let mut grad_bias: Option<usize> = g.coin(0.7).then_some(classes);
    let mut hidden_short = 0;
    match bad {
        None | Some(Bad::NoClasses | Bad::Weight) => {}
        Some(Bad::Option) => g.corrupt(&mut opts, classes),
        Some(Bad::Target) => g.out_of_range(&mut tgt, classes),
        Some(Bad::TargetsLen) => g.wrong_len(&mut tgt),
        // Refused whatever their shape: narrow rows keep them inside the pool.
        Some(Bad::Soft) => tgt = g.soft(rows, classes.clamp(1, 64)),
        Some(Bad::Loss) => loss_len = g.other_len(loss_len),
        Some(Bad::Lse) => {
            want_lse = true;
            lse_len = g.other_len(rows);
        }
        Some(Bad::Bias) => {
            let shorter = g.coin(0.5);
            resize(bias.get_or_insert_with(Vec::new), shorter, T::of_f64(0.0));
        }
        Some(Bad::GradHidden) => {
            let mut shape = grad_hidden.unwrap_or((rows, dim, dim));
            bad_shape(g, &mut shape, false);
            grad_hidden = Some(shape);
        }
        Some(Bad::GradWeight) => {
            let mut shape = grad_weight.unwrap_or((classes, dim, dim));
            bad_shape(g, &mut shape, false);
            grad_weight = Some(shape);
        }
        Some(Bad::GradBias) => grad_bias = Some(g.other_len(classes)),
        Some(Bad::Short) => hidden_short = 1,
        Some(Bad::Stride) => hidden_stride = dim - 1,
        Some(other) => unreachable!("{other:?} is not a linear kind"),
    }
    let hidden = Batch {
        short: hidden_short,
        ..Batch::owned(hidden, rows, dim, hidden_stride)
    };
    let weight = Batch::owned(weight, classes, weight_cols, weight_stride);
    let several = chunking.classes(rows, classes) < classes;
    let size = if several && !chunked {
        Size::Chunks
    } else {
        Size::Small
    };
    let what = format!(
        "hidden {hidden:?}, weight {weight:?}, bias {:?}, {chunking:?} ({} targets), {opts:?}, \
         lse {want_lse}, grads {grad_hidden:?} {grad_weight:?} {grad_bias:?}",
        bias.as_ref().map(Vec::len),
        tgt.kind()
    );
    let run: Run = Box::new(move || {
        let o = opts.get();
        let mut loss = fresh::<f32>(loss_len);
        let mut lse = want_lse.then(|| fresh::<f32>(lse_len));
        let mut gh = grad_hidden.map(fresh_batch::<T>);
        let mut gw = grad_weight.map(fresh_batch::<T>);
        let mut gb = grad_bias.map(fresh::<T>);
        let r = (|| {
            let head = LinearHead {
                hidden: hidden.view()?,
                weight: weight.view()?,
                bias: bias.as_deref(),
                next_token: None,
            };
            let grads = LinearGrads {
                hidden: gh
                    .as_mut()
                    .zip(grad_hidden)
                    .map(|(b, s)| rows_mut(b, s))
                    .transpose()?,
                weight: gw
                    .as_mut()
                    .zip(grad_weight)
                    .map(|(b, s)| rows_mut(b, s))
                    .transpose()?,
                bias: gb.as_deref_mut(),
            };
            let (t, lse) = (tgt.view()?, lse.as_deref_mut());
            if chunked {
                xent::linear_cross_entropy_chunked(head, t, &o, &mut loss, grads, lse, chunking)
            } else {
                xent::linear_cross_entropy(head, t, &o, &mut loss, grads, lse)
            }
        })();
        Outcome::new(r)
            .fresh("loss", &loss)
            .fresh_opt("lse", lse.as_deref())
            .fresh_opt("grad_hidden", gh.as_deref())
            .fresh_opt("grad_weight", gw.as_deref())
            .fresh_opt("grad_bias", gb.as_deref())
    });
    let name = if chunked {
        "linear_cross_entropy_chunked"
    } else {
        "linear_cross_entropy"
    };
    Call {
        label: format!("{name}<{}>", T::NAME),
        what,
        bad,
        size,
        run,
    }
}

/// Makes one call of an entry point.
type Make = fn(&mut Gen) -> Call;

/// Every entry point and element type, with its share of the calls (out of the sum of the
/// weights): the cross-entropy family about half, softmax a fifth, the sharded calls and
/// the linear heads a tenth or more each.
fn entry_points() -> Vec<(u32, Make)> {
    let ce: [(u32, Make); 20] = [
        (6, |g| ce_call::<f32>(g, Ce::Forward)),
        (6, |g| ce_call::<f32>(g, Ce::Grad)),
        (6, |g| ce_call::<f32>(g, Ce::GradInPlace)),
        (6, |g| ce_call::<f32>(g, Ce::Backward)),
        (6, |g| ce_call::<f32>(g, Ce::BackwardInPlace)),
        (6, |g| ce_call::<f64>(g, Ce::Forward)),
        (6, |g| ce_call::<f64>(g, Ce::Grad)),
        (6, |g| ce_call::<f64>(g, Ce::GradInPlace)),
        (6, |g| ce_call::<f64>(g, Ce::Backward)),
        (6, |g| ce_call::<f64>(g, Ce::BackwardInPlace)),
        (6, |g| ce_call::<bf16>(g, Ce::Forward)),
        (6, |g| ce_call::<bf16>(g, Ce::Grad)),
        (6, |g| ce_call::<bf16>(g, Ce::GradInPlace)),
        (6, |g| ce_call::<bf16>(g, Ce::Backward)),
        (6, |g| ce_call::<bf16>(g, Ce::BackwardInPlace)),
        (6, |g| ce_call::<f16>(g, Ce::Forward)),
        (6, |g| ce_call::<f16>(g, Ce::Grad)),
        (6, |g| ce_call::<f16>(g, Ce::GradInPlace)),
        (6, |g| ce_call::<f16>(g, Ce::Backward)),
        (6, |g| ce_call::<f16>(g, Ce::BackwardInPlace)),
    ];
    let softmax: [(u32, Make); 16] = [
        (3, |g| softmax_call::<f32>(g, Sm::Softmax)),
        (3, |g| softmax_call::<f32>(g, Sm::LogSoftmax)),
        (3, |g| softmax_call::<f32>(g, Sm::SoftmaxInPlace)),
        (3, |g| softmax_call::<f32>(g, Sm::LogSoftmaxInPlace)),
        (3, |g| softmax_call::<f64>(g, Sm::Softmax)),
        (3, |g| softmax_call::<f64>(g, Sm::LogSoftmax)),
        (3, |g| softmax_call::<f64>(g, Sm::SoftmaxInPlace)),
        (3, |g| softmax_call::<f64>(g, Sm::LogSoftmaxInPlace)),
        (3, |g| softmax_call::<bf16>(g, Sm::Softmax)),
        (3, |g| softmax_call::<bf16>(g, Sm::LogSoftmax)),
        (3, |g| softmax_call::<bf16>(g, Sm::SoftmaxInPlace)),
        (3, |g| softmax_call::<bf16>(g, Sm::LogSoftmaxInPlace)),
        (3, |g| softmax_call::<f16>(g, Sm::Softmax)),
        (3, |g| softmax_call::<f16>(g, Sm::LogSoftmax)),
        (3, |g| softmax_call::<f16>(g, Sm::SoftmaxInPlace)),
        (3, |g| softmax_call::<f16>(g, Sm::LogSoftmaxInPlace)),
    ];
    let shard: [(u32, Make); 5] = [
        (7, |g| shard_call(g, Sh::Stats)),
        (3, merge_call),
        (7, |g| shard_call(g, Sh::Finish)),
        (7, |g| shard_call(g, Sh::FinishGrad)),
        (7, |g| shard_call(g, Sh::FinishGradInPlace)),
    ];
    let linear: [(u32, Make); 6] = [
        (4, |g| linear_call::<f32>(g, false)),
        (4, |g| linear_call::<f32>(g, true)),
        (4, |g| linear_call::<bf16>(g, false)),
        (4, |g| linear_call::<bf16>(g, true)),
        (4, |g| linear_call::<f16>(g, false)),
        (4, |g| linear_call::<f16>(g, true)),
    ];
    [&ce[..], &softmax, &shard, &linear].concat()
}

/// The `n` calls of `seed`.
fn generate(seed: u64, n: usize) -> (Vec<Call>, usize) {
    let mut rng = Rng::new(seed);
    let pools = Pools::new(&mut rng);
    let mut g = Gen { rng, pools };
    let entries = entry_points();
    let total: u32 = entries.iter().map(|e| e.0).sum();
    let calls = (0..n)
        .map(|_| {
            let mut r = g.rng.below(total as usize) as u32;
            let make = entries
                .iter()
                .find_map(|&(w, make)| {
                    if r < w {
                        Some(make)
                    } else {
                        r -= w;
                        None
                    }
                })
                .expect("r < total");
            make(&mut g)
        })
        .collect();
    (calls, entries.len())
}

// ---------------------------------------------------------------------------------------
// The runs.

/// Where a concurrent call runs, by its index.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The global rayon pool.
    Global,
    /// Its own thread, in `xent::on_calling_thread`.
    CallingThread,
    /// The pool of 3 threads the 8 callers share.
    Pool3,
}

impl Mode {
    fn of(index: usize) -> Mode {
        match index % 3 {
            0 => Mode::Global,
            1 => Mode::CallingThread,
            _ => Mode::Pool3,
        }
    }

    fn run(self, call: &Call, pool3: &rayon::ThreadPool) -> Outcome {
        match self {
            Mode::Global => (call.run)(),
            Mode::CallingThread => xent::on_calling_thread(|| (call.run)()),
            Mode::Pool3 => pool3.install(|| (call.run)()),
        }
    }
}

/// Where two outcomes of call `index` differ, in words.
fn differences(index: usize, call: &Call, mode: Mode, got: &Outcome, want: &Outcome) -> String {
    let mut s = format!("call #{index} {} ({}) on {mode:?}:", call.label, call.what);
    if got.result != want.result {
        s += &format!(" result {:?}, serially {:?};", got.result, want.result);
    }
    for (g, w) in got.outputs.iter().zip(&want.outputs) {
        let differ: Vec<usize> = (0..g.bits.len().min(w.bits.len()))
            .filter(|&k| g.bits[k] != w.bits[k])
            .collect();
        if g.bits.len() != w.bits.len() {
            s += &format!(
                " {}: {} elements, serially {};",
                g.name,
                g.bits.len(),
                w.bits.len()
            );
        } else if let Some(&k) = differ.first() {
            s += &format!(
                " {}: {} of {} elements differ, first [{k}] {:#x}, serially {:#x};",
                g.name,
                differ.len(),
                g.bits.len(),
                g.bits[k],
                w.bits[k]
            );
        }
    }
    s
}

/// Per label: calls that succeeded and calls refused.
type Counts = BTreeMap<String, (usize, usize)>;

#[test]
fn ten_thousand_mixed_calls_from_8_threads_give_the_serial_results() {
    let start = Instant::now();
    let (calls, entry_points) = generate(SEED, CALLS);
    let generated = start.elapsed();

    // The serial run: every call on this thread, one after another. Each generated-refused
    // call must be refused, each other call must succeed, and a refused call must have
    // left every output as it was.
    let start = Instant::now();
    let mut problems = Vec::new();
    let mut counts = Counts::new();
    let serial: Vec<Summary> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let outcome = xent::on_calling_thread(|| (call.run)());
            let refused = outcome.result.is_err();
            let count = counts.entry(call.label.clone()).or_default();
            if refused {
                count.1 += 1;
            } else {
                count.0 += 1;
            }
            if refused != call.bad.is_some() {
                problems.push(format!(
                    "call #{i} {} ({}), made to be refused for {:?}: {:?}",
                    call.label, call.what, call.bad, outcome.result
                ));
            }
            for o in outcome.outputs.iter().filter(|o| refused && !o.untouched) {
                problems.push(format!(
                    "call #{i} {} ({}) was refused ({:?}) but wrote {}",
                    call.label, call.what, outcome.result, o.name
                ));
            }
            outcome.summary()
        })
        .collect();
    let serial_time = start.elapsed();
    assert!(
        problems.is_empty(),
        "{} problems in the serial run:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The concurrent run: 8 threads take the calls from one counter.
    let start = Instant::now();
    let pool3 = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let next = AtomicUsize::new(0);
    let mismatches = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(call) = calls.get(i) else { break };
                    let mode = Mode::of(i);
                    let outcome = mode.run(call, &pool3);
                    if outcome.summary() != serial[i] {
                        let mut m = mismatches.lock().unwrap_or_else(PoisonError::into_inner);
                        m.push((i, mode, outcome));
                    }
                }
            });
        }
    });
    let concurrent_time = start.elapsed();
    let mismatches = mismatches
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);

    let (ok, refused) = counts
        .values()
        .fold((0, 0), |(a, b), &(ok, refused)| (a + ok, b + refused));
    let sized = |size: Size| calls.iter().filter(|c| c.size == size).count();
    println!(
        "stress: {} calls compared ({ok} ok, {refused} refused) from {THREADS} threads: \
         {} differ; {} many-row batches on the pool, {} long-row batches, {} linear heads in \
         several automatic chunks",
        calls.len(),
        mismatches.len(),
        sized(Size::ManyRows),
        sized(Size::LongRows),
        sized(Size::Chunks),
    );
    println!(
        "stress: generated in {:.2?}, serial run {:.2?}, concurrent run {:.2?}",
        generated, serial_time, concurrent_time
    );
    for (label, (ok, refused)) in &counts {
        println!("  {label:40} {ok:5} ok {refused:4} refused");
    }

    let report: Vec<String> = mismatches
        .iter()
        .take(20)
        .map(|(i, mode, got)| {
            let want = xent::on_calling_thread(|| (calls[*i].run)());
            differences(*i, &calls[*i], *mode, got, &want)
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} concurrent calls differ from the serial ones (the first 20):\n{}",
        mismatches.len(),
        calls.len(),
        report.join("\n")
    );
    // Every entry point and element type ran, both succeeding and refused.
    assert_eq!(
        counts.len(),
        entry_points,
        "entry points that ran: {counts:?}"
    );
    for (label, &(ok, refused)) in &counts {
        assert!(ok > 0 && refused > 0, "{label}: {ok} ok, {refused} refused");
    }
    assert!(
        refused * 20 > calls.len() && refused * 7 < calls.len(),
        "{refused} refused"
    );
    assert!(sized(Size::ManyRows) > 0 && sized(Size::LongRows) > 0 && sized(Size::Chunks) > 0);
}
