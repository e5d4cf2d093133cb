//! Determinism across thread counts: every entry point, over every element type it takes,
//! on shapes that take the parallel paths, gives the same bits in rayon pools of 1, 2, 3, 4
//! and 8 threads as inside `xent::on_calling_thread` (no pool at all), and the same bits
//! again when run a second time in each.
//!
//! The shapes: many rows (300 × 1000, cut into chunks of rows), many short rows (20000 ×
//! 10, run 16 at a time by the short-row kernels), rows longer than a chunk's budget (40 ×
//! 5000), one long row (1 × 70001, its column blocks run in parallel on every pool of 2 or
//! more threads) and three long rows (3 × 40000, split on the pools of 4 and 8 threads
//! only, because a batch is split when it has fewer rows than the pool has threads). Every
//! output is compared: the loss (reduced and per row), the lse, gradients separate and in
//! place, softmax and log-softmax outputs, the shard summaries, their merge and each
//! slice's finish, and the linear heads' loss, lse, ∂H, ∂W and ∂b (heads of 2 and 5
//! vocabulary chunks, and a head of 3 rows of 20000 classes in one chunk, whose rows are
//! split into blocks). The option sets rotate with the shape so that each entry point
//! meets each of them: mean with smoothing, class weights, z-loss and ignored rows; none
//! (per-row losses) with a softcap and a `grad_scale`; sum; soft targets. The logits hold
//! masked classes (−∞), and the targets are chosen so that every loss is finite: a sum that
//! reached +∞ would have the same bits in any order and could hide a difference.
//!
//! A difference fails the test with its exact place: entry point, element type, shape,
//! option set, output, where it ran, how many elements differ and the first of them.

// Batches of 2^17 elements and more, run 11 times each in 6 places, are far too slow under
// Miri, which covers the same code through the other tests.
#![cfg(not(miri))]

mod common;

use std::fmt;

use common::bits::Bits;
use common::{PAD, Rng};
use rayon::{ThreadPool, ThreadPoolBuilder};
use xent::{
    Chunking, LinearGrads, LinearHead, Logit, Options, Reduction, Rows, RowsMut, Shard, ShardRow,
    Targets, bf16, f16,
};

/// The pool sizes every result is compared across (besides `on_calling_thread`).
const POOL_SIZES: [usize; 5] = [1, 2, 3, 4, 8];

/// The batches: rows, cols, stride.
const SHAPES: [(usize, usize, usize); 5] = [
    (300, 1000, 1003),
    (20_000, 10, 10),
    (40, 5000, 5001),
    (1, 70_001, 70_001),
    (3, 40_000, 40_003),
];

// ---------------------------------------------------------------------------------------
// Element types.

/// A logits type and its name.
trait Elem: Logit<Stat: Bits> + Bits {
    const NAME: &'static str;
}

impl Elem for f32 {
    const NAME: &'static str = "f32";
}

impl Elem for f64 {
    const NAME: &'static str = "f64";
}

impl Elem for bf16 {
    const NAME: &'static str = "bf16";
}

impl Elem for f16 {
    const NAME: &'static str = "f16";
}

fn bits<B: Bits>(values: &[B]) -> Vec<u64> {
    values.iter().map(|v| v.bits()).collect()
}

/// The bits of losses, which must be finite: a sum that reached ±∞ or NaN would have the
/// same bits whatever order its terms were added in, and hide a difference.
fn loss_bits<B: Bits>(values: &[B]) -> Vec<u64> {
    assert!(
        values.iter().all(|v| v.to_f64().is_finite()),
        "a loss is not finite: the inputs must keep it finite"
    );
    bits(values)
}

fn fresh<B: Bits>(len: usize) -> Vec<B> {
    vec![B::SENTINEL; len]
}

fn span(rows: usize, cols: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    }
}

/// `rows × cols` logits, 3·N(0, 1), with one in 50 −∞ (masked classes) in every fourth
/// row from row 1 (so that one long row has none: under smoothing a row with a masked
/// class is ignored), and `PAD` in the padding (read, it would poison a row with NaN).
fn logits(seed: u64, rows: usize, cols: usize, stride: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..span(rows, cols, stride))
        .map(|k| {
            if k % stride >= cols {
                PAD
            } else if k / stride % 4 == 1 && rng.below(50) == 0 {
                f32::NEG_INFINITY
            } else {
                3.0 * rng.normal()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Options.

/// An option set and the targets it goes with. Every loss stays finite (see `Set::inputs`).
struct Set {
    name: &'static str,
    reduction: Reduction,
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    grad_scale: f32,
    weighted: bool,
    soft: bool,
}

/// The option sets; the sharded calls and the heads take the first three (hard targets).
const SETS: [Set; 4] = [
    Set {
        name: "mean, ε 0.1, weights, z-loss, ignored rows",
        reduction: Reduction::Mean,
        label_smoothing: 0.1,
        z_loss: 1e-4,
        softcap: 0.0,
        grad_scale: 1.0,
        weighted: true,
        soft: false,
    },
    Set {
        name: "none, softcap 20, grad_scale 0.5",
        reduction: Reduction::None,
        label_smoothing: 0.0,
        z_loss: 0.0,
        softcap: 20.0,
        grad_scale: 0.5,
        weighted: false,
        soft: false,
    },
    Set {
        name: "sum",
        reduction: Reduction::Sum,
        label_smoothing: 0.0,
        z_loss: 0.0,
        softcap: 0.0,
        grad_scale: 1.0,
        weighted: false,
        soft: false,
    },
    Set {
        name: "mean, soft targets",
        reduction: Reduction::Mean,
        label_smoothing: 0.0,
        z_loss: 0.0,
        softcap: 0.0,
        grad_scale: 1.0,
        weighted: false,
        soft: true,
    },
];

/// A set's class weights and targets for `rows × classes`, owned.
struct Inputs {
    weights: Option<Vec<f32>>,
    hard: Vec<i64>,
    /// Soft target rows, packed.
    soft: Vec<f32>,
}

impl Set {
    /// Class weights and targets for `rows × classes` logits of which `masked(i, c)` are
    /// −∞. They keep every loss finite, so that the reduced loss shows the order of its
    /// sum: no hard target on a masked class, rows with a masked class ignored under
    /// smoothing (whose uniform part meets it), soft targets 0 on masked classes.
    fn inputs(
        &self,
        seed: u64,
        rows: usize,
        classes: usize,
        masked: impl Fn(usize, usize) -> bool,
    ) -> Inputs {
        let mut rng = Rng::new(seed);
        let weights = self
            .weighted
            .then(|| (0..classes).map(|_| rng.range(0.0, 2.0)).collect());
        // About 5% of the rows ignored.
        let hard = (0..rows)
            .map(|i| {
                let smoothed_mask =
                    self.label_smoothing > 0.0 && (0..classes).any(|c| masked(i, c));
                if rng.below(20) == 0 || smoothed_mask {
                    return -100;
                }
                loop {
                    let y = rng.below(classes);
                    if !masked(i, y) {
                        return y as i64;
                    }
                }
            })
            .collect();
        let soft = if self.soft {
            (0..rows * classes)
                .map(|k| {
                    if masked(k / classes, k % classes) {
                        0.0
                    } else {
                        rng.unit() * 2.0 / classes as f32
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Inputs {
            weights,
            hard,
            soft,
        }
    }

    fn options<'w>(&self, inputs: &'w Inputs) -> Options<'w> {
        Options {
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
            z_loss: self.z_loss,
            softcap: self.softcap,
            grad_scale: self.grad_scale,
            class_weights: inputs.weights.as_deref(),
            ..Options::default()
        }
    }

    fn targets<'t>(&self, inputs: &'t Inputs, rows: usize, classes: usize) -> Targets<'t> {
        if self.soft {
            Targets::Soft(Rows::new(&inputs.soft, rows, classes, classes).unwrap())
        } else {
            Targets::I64(&inputs.hard)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running and comparing.

/// A run's outputs: each buffer's name and bits.
type Outputs = Vec<(&'static str, Vec<u64>)>;

/// The pools, and the differences found so far.
struct Checker {
    pools: Vec<(usize, ThreadPool)>,
    differences: Vec<String>,
    cases: usize,
}

impl Checker {
    fn new() -> Self {
        Checker {
            pools: POOL_SIZES
                .iter()
                .map(|&n| (n, ThreadPoolBuilder::new().num_threads(n).build().unwrap()))
                .collect(),
            differences: Vec::new(),
            cases: 0,
        }
    }

    /// Runs `f` twice inside `on_calling_thread` and twice in each pool, and records every
    /// output that differs from the first run's.
    fn check(&mut self, what: impl fmt::Display, f: impl Fn() -> Outputs + Sync) {
        self.cases += 1;
        let reference = xent::on_calling_thread(&f);
        let mut runs = vec![(
            "on_calling_thread, again".to_string(),
            xent::on_calling_thread(&f),
        )];
        for (n, pool) in &self.pools {
            for run in 1..=2 {
                runs.push((format!("a pool of {n}, run {run}"), pool.install(&f)));
            }
        }
        for (place, got) in &runs {
            for ((name, want), (_, got)) in reference.iter().zip(got) {
                let differ: Vec<usize> = (0..want.len()).filter(|&k| got[k] != want[k]).collect();
                if let Some(&k) = differ.first() {
                    self.differences.push(format!(
                        "{what}: {name} in {place}: {} of {} elements differ, first [{k}] {:#x} \
                         vs {:#x} on the calling thread",
                        differ.len(),
                        want.len(),
                        got[k],
                        want[k]
                    ));
                }
            }
        }
    }

    /// Prints the figures and fails with every difference.
    fn finish(self, family: &str) {
        println!(
            "determinism, {family}: {} cases, each run {} times (on the calling thread and in \
             pools of {POOL_SIZES:?} threads, twice each): {} differences",
            self.cases,
            2 + 2 * POOL_SIZES.len(),
            self.differences.len()
        );
        assert!(
            self.differences.is_empty(),
            "{family}: results depend on where they ran:\n{}",
            self.differences.join("\n")
        );
    }
}

/// The lse a forward call gives for `x` (every row ignored, so any targets do).
fn saved_lse<T: Elem>(x: Rows<'_, T>, softcap: f32) -> Vec<T::Stat> {
    let rows = x.rows();
    let mut lse = fresh(rows);
    let mut loss = fresh(rows);
    let options = Options {
        reduction: Reduction::None,
        softcap,
        ..Options::default()
    };
    let ignored = vec![-100i64; rows];
    xent::on_calling_thread(|| {
        xent::cross_entropy(x, &ignored[..], &options, &mut loss, Some(&mut lse))
    })
    .unwrap();
    lse
}

/// The cross-entropy entry points over `T` logits, one option set per shape.
fn cross_entropy_family<T: Elem>(checker: &mut Checker) {
    for (s, &(rows, cols, stride)) in SHAPES.iter().enumerate() {
        let x32 = logits(s as u64, rows, cols, stride);
        let x: Vec<T> = x32.iter().map(|&v| T::of_f32(v)).collect();
        for (e, entry) in [
            "cross_entropy",
            "cross_entropy_grad",
            "cross_entropy_grad_in_place",
            "cross_entropy_backward",
            "cross_entropy_backward_in_place",
        ]
        .into_iter()
        .enumerate()
        {
            let set = &SETS[(s + e) % SETS.len()];
            let masked = |i: usize, c: usize| x32[i * stride + c] == f32::NEG_INFINITY;
            let inputs = set.inputs(100 + s as u64, rows, cols, masked);
            let options = set.options(&inputs);
            let view = Rows::new(&x, rows, cols, stride).unwrap();
            let loss_len = set.reduction.loss_len(rows);
            let lse_in = saved_lse(view, set.softcap);
            let dloss: Vec<T::Stat> = (0..loss_len)
                .map(|i| T::Stat::of_f32(0.5 + (i % 7) as f32 * 0.25))
                .collect();
            let targets = || set.targets(&inputs, rows, cols);
            let what = format!(
                "{entry}<{}> {rows}×{cols} (stride {stride}), {}",
                T::NAME,
                set.name
            );
            checker.check(what, || {
                let mut loss = fresh::<T::Stat>(loss_len);
                let mut lse = fresh::<T::Stat>(rows);
                let mut grad = fresh::<T>(x.len());
                let mut own = x.clone();
                let grad_view = RowsMut::new(&mut grad, rows, cols, stride).unwrap();
                let own_view = RowsMut::new(&mut own, rows, cols, stride).unwrap();
                let (l, s) = (&mut loss[..], Some(&mut lse[..]));
                match e {
                    0 => xent::cross_entropy(view, targets(), &options, l, s),
                    1 => xent::cross_entropy_grad(view, targets(), &options, l, grad_view, s),
                    2 => xent::cross_entropy_grad_in_place(own_view, targets(), &options, l, s),
                    3 => xent::cross_entropy_backward(
                        view,
                        targets(),
                        &options,
                        &lse_in,
                        &dloss,
                        grad_view,
                    ),
                    _ => xent::cross_entropy_backward_in_place(
                        own_view,
                        targets(),
                        &options,
                        &lse_in,
                        &dloss,
                    ),
                }
                .unwrap();
                match e {
                    0 => vec![("loss", loss_bits(&loss)), ("lse", bits(&lse))],
                    1 => vec![
                        ("loss", loss_bits(&loss)),
                        ("lse", bits(&lse)),
                        ("grad", bits(&grad)),
                    ],
                    2 => vec![
                        ("loss", loss_bits(&loss)),
                        ("lse", bits(&lse)),
                        ("logits", bits(&own)),
                    ],
                    3 => vec![("grad", bits(&grad))],
                    _ => vec![("logits", bits(&own))],
                }
            });
        }
    }
}

/// softmax, log_softmax and their in-place forms over `T` logits.
fn softmax_family<T: Elem>(checker: &mut Checker) {
    for (s, &(rows, cols, stride)) in SHAPES.iter().enumerate() {
        let x32 = logits(s as u64, rows, cols, stride);
        let x: Vec<T> = x32.iter().map(|&v| T::of_f32(v)).collect();
        let view = Rows::new(&x, rows, cols, stride).unwrap();
        for (e, entry) in [
            "softmax",
            "log_softmax",
            "softmax_in_place",
            "log_softmax_in_place",
        ]
        .into_iter()
        .enumerate()
        {
            let what = format!("{entry}<{}> {rows}×{cols} (stride {stride})", T::NAME);
            checker.check(what, || {
                // A packed output, so its stride differs from the input's.
                let mut y = fresh::<T>(rows * cols);
                let mut own = x.clone();
                let y_view = RowsMut::packed(&mut y, cols).unwrap();
                let own_view = RowsMut::new(&mut own, rows, cols, stride).unwrap();
                match e {
                    0 => xent::softmax(view, y_view),
                    1 => xent::log_softmax(view, y_view),
                    2 => xent::softmax_in_place(own_view),
                    _ => xent::log_softmax_in_place(own_view),
                }
                .unwrap();
                if e < 2 {
                    vec![("y", bits(&y))]
                } else {
                    vec![("logits", bits(&own))]
                }
            });
        }
    }
}

#[test]
fn cross_entropy_gives_the_same_bits_on_any_number_of_threads() {
    let mut checker = Checker::new();
    cross_entropy_family::<f32>(&mut checker);
    cross_entropy_family::<f64>(&mut checker);
    cross_entropy_family::<bf16>(&mut checker);
    cross_entropy_family::<f16>(&mut checker);
    checker.finish("cross_entropy, _grad, _grad_in_place, _backward, _backward_in_place");
}

#[test]
fn softmax_gives_the_same_bits_on_any_number_of_threads() {
    let mut checker = Checker::new();
    softmax_family::<f32>(&mut checker);
    softmax_family::<f64>(&mut checker);
    softmax_family::<bf16>(&mut checker);
    softmax_family::<f16>(&mut checker);
    checker.finish("softmax, log_softmax and their in-place forms");
}

/// The flat fields of summary rows.
fn row_bits(rows: &[ShardRow]) -> Vec<u64> {
    let fields: Vec<f32> = rows
        .iter()
        .flat_map(|r| [r.max, r.sumexp, r.target_logit, r.smooth_sum])
        .collect();
    bits(&fields)
}

/// The three sharded calls and the merge over three uneven slices of each shape's
/// vocabulary: every slice's summaries, the merged rows, and each slice's loss, lse,
/// gradient and in-place gradient.
#[test]
fn sharded_calls_give_the_same_bits_on_any_number_of_threads() {
    let mut checker = Checker::new();
    for (s, &(rows, total, stride)) in SHAPES.iter().enumerate() {
        let x = logits(s as u64, rows, total, stride);
        let set = &SETS[s % 3];
        let masked = |i: usize, c: usize| x[i * stride + c] == f32::NEG_INFINITY;
        let inputs = set.inputs(200 + s as u64, rows, total, masked);
        let options = set.options(&inputs);
        let targets = &inputs.hard[..];
        let cuts = [0, total / 5, total * 3 / 5 + 1, total];
        let slice = |k: usize| {
            let (start, end) = (cuts[k], cuts[k + 1]);
            let view = Rows::new(&x[start..], rows, end - start, stride).unwrap();
            let shard = Shard {
                class_offset: start,
                total_cols: total,
            };
            (view, shard)
        };
        let what = format!(
            "shard_stats, merge_shard_rows, shard_finish, _grad, _grad_in_place over columns \
             {cuts:?} of {rows}×{total} (stride {stride}), {}",
            set.name
        );
        checker.check(what, || {
            let mut out = Vec::new();
            let mut merged = vec![ShardRow::EMPTY; rows];
            for (k, name) in ["stats 0", "stats 1", "stats 2"].into_iter().enumerate() {
                let (view, shard) = slice(k);
                let mut part = vec![ShardRow::EMPTY; rows];
                xent::shard_stats(view, shard, targets, &options, &mut part).unwrap();
                xent::merge_shard_rows(&part, &mut merged).unwrap();
                out.push((name, row_bits(&part)));
            }
            out.push(("merged", row_bits(&merged)));
            for k in 0..3 {
                let (view, shard) = slice(k);
                let cols = view.cols();
                let loss_len = set.reduction.loss_len(rows);
                let (mut loss, mut lse) = (fresh::<f32>(loss_len), fresh::<f32>(rows));
                xent::shard_finish(
                    view,
                    shard,
                    targets,
                    &options,
                    &merged,
                    &mut loss,
                    Some(&mut lse),
                )
                .unwrap();
                let mut grad = fresh::<f32>(rows * cols);
                let grad_view = RowsMut::packed(&mut grad, cols).unwrap();
                let (mut loss2, mut lse2) = (fresh::<f32>(loss_len), fresh::<f32>(rows));
                xent::shard_finish_grad(
                    view,
                    shard,
                    targets,
                    &options,
                    &merged,
                    &mut loss2,
                    grad_view,
                    Some(&mut lse2),
                )
                .unwrap();
                let mut own = x[cuts[k]..].to_vec();
                let own_view = RowsMut::new(&mut own, rows, cols, stride).unwrap();
                let mut loss3 = fresh::<f32>(loss_len);
                xent::shard_finish_grad_in_place(
                    own_view, shard, targets, &options, &merged, &mut loss3, None,
                )
                .unwrap();
                let names = [
                    [
                        "finish loss 0",
                        "finish lse 0",
                        "finish_grad loss 0",
                        "finish_grad lse 0",
                    ],
                    [
                        "finish loss 1",
                        "finish lse 1",
                        "finish_grad loss 1",
                        "finish_grad lse 1",
                    ],
                    [
                        "finish loss 2",
                        "finish lse 2",
                        "finish_grad loss 2",
                        "finish_grad lse 2",
                    ],
                ][k];
                let grads = [
                    ["finish_grad grad 0", "in-place loss 0", "in-place grad 0"],
                    ["finish_grad grad 1", "in-place loss 1", "in-place grad 1"],
                    ["finish_grad grad 2", "in-place loss 2", "in-place grad 2"],
                ][k];
                out.extend([
                    (names[0], loss_bits(&loss)),
                    (names[1], bits(&lse)),
                    (names[2], loss_bits(&loss2)),
                    (names[3], bits(&lse2)),
                    (grads[0], bits(&grad)),
                    (grads[1], loss_bits(&loss3)),
                    (grads[2], bits(&own)),
                ]);
            }
            out
        });
    }
    checker.finish("shard_stats, merge_shard_rows, shard_finish and its _grad forms");
}

/// The heads: rows, dim, classes, chunking.
const HEADS: [(usize, usize, usize, Chunking); 3] = [
    // 2^21 / 1200 rounded down to 64 classes: 1728 a chunk, 2 chunks.
    (1200, 5, 2100, Chunking::Auto),
    (300, 16, 3000, Chunking::Classes(700)),
    // One chunk of 3 rows of 20000 classes: rows split into blocks on pools of 4 and 8.
    (3, 8, 20_000, Chunking::Auto),
];

/// `linear_cross_entropy` (automatic chunks) and `_chunked` over a `T` head.
fn linear_heads<T: Elem + Logit<Stat = f32>>(checker: &mut Checker) {
    for (h, &(rows, dim, classes, chunking)) in HEADS.iter().enumerate() {
        let mut rng = Rng::new(300 + h as u64);
        let (hs, ws) = (dim + 1, dim + 2);
        let hidden: Vec<T> = (0..span(rows, dim, hs))
            .map(|_| T::of_f32(rng.normal()))
            .collect();
        let weight: Vec<T> = (0..span(classes, dim, ws))
            .map(|_| T::of_f32(0.5 * rng.normal()))
            .collect();
        let set = &SETS[h % 3];
        // Masked classes (a −∞ bias) where smoothing does not make every loss +∞.
        let masked = |_: usize, c: usize| set.label_smoothing == 0.0 && c.is_multiple_of(97);
        let bias: Vec<T> = (0..classes)
            .map(|c| {
                if masked(0, c) {
                    T::of_f32(f32::NEG_INFINITY)
                } else {
                    T::of_f32(0.5 * rng.normal())
                }
            })
            .collect();
        let inputs = set.inputs(400 + h as u64, rows, classes, masked);
        let options = set.options(&inputs);
        let entry = match chunking {
            Chunking::Auto => "linear_cross_entropy",
            Chunking::Classes(_) => "linear_cross_entropy_chunked",
        };
        let what = format!(
            "{entry}<{}> {rows} rows, dim {dim}, {classes} classes ({} a chunk), {}",
            T::NAME,
            chunking.classes(rows, classes),
            set.name
        );
        checker.check(what, || {
            let head = LinearHead {
                hidden: Rows::new(&hidden, rows, dim, hs).unwrap(),
                weight: Rows::new(&weight, classes, dim, ws).unwrap(),
                bias: Some(&bias),
                next_token: None,
            };
            let mut loss = fresh::<f32>(set.reduction.loss_len(rows));
            let mut lse = fresh::<f32>(rows);
            let mut gh = fresh::<T>(rows * dim);
            let mut gw = fresh::<T>(classes * dim);
            let mut gb = fresh::<T>(classes);
            let grads = LinearGrads {
                hidden: Some(RowsMut::packed(&mut gh, dim).unwrap()),
                weight: Some(RowsMut::packed(&mut gw, dim).unwrap()),
                bias: Some(&mut gb),
            };
            let targets = &inputs.hard[..];
            match chunking {
                Chunking::Auto => xent::linear_cross_entropy(
                    head,
                    targets,
                    &options,
                    &mut loss,
                    grads,
                    Some(&mut lse),
                ),
                Chunking::Classes(_) => xent::linear_cross_entropy_chunked(
                    head,
                    targets,
                    &options,
                    &mut loss,
                    grads,
                    Some(&mut lse),
                    chunking,
                ),
            }
            .unwrap();
            vec![
                ("loss", loss_bits(&loss)),
                ("lse", bits(&lse)),
                ("grad_hidden", bits(&gh)),
                ("grad_weight", bits(&gw)),
                ("grad_bias", bits(&gb)),
            ]
        });
    }
}

#[test]
fn linear_heads_give_the_same_bits_on_any_number_of_threads() {
    let mut checker = Checker::new();
    linear_heads::<f32>(&mut checker);
    linear_heads::<bf16>(&mut checker);
    linear_heads::<f16>(&mut checker);
    checker.finish("linear_cross_entropy and _chunked");
}
