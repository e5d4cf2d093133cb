//! The caller's floating-point environment changes no result: with FTZ and DAZ (and
//! rounding toward zero) set in MXCSR on the calling thread and on every thread of the
//! rayon pool the calls run on, every entry point gives the bits it gives in the default
//! environment, and each thread's MXCSR is as it was afterwards, flags included. (But for
//! the linear head's GEMMs on a pool of the caller's: see below.)
#![cfg(all(target_arch = "x86_64", not(miri)))]

mod common;

use std::arch::asm;

use common::{Rng, assert_same_bits, random_logits};
use xent::{LinearGrads, LinearHead, Options, Reduction, Rows, RowsMut, Shard, ShardRow};

/// Flush to zero, denormals are zero, round toward zero, and the inexact flag raised.
const HOSTILE: u32 = 0x1F80 | 1 << 15 | 1 << 6 | 3 << 13 | 1 << 5;

fn mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stores MXCSR into a local.
    unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut csr, options(nostack, preserves_flags)) };
    csr
}

fn set_mxcsr(csr: u32) {
    // SAFETY: loads MXCSR from a local; HOSTILE and values read back set no reserved bit.
    unsafe { asm!("ldmxcsr [{p}]", p = in(reg) &csr, options(nostack, preserves_flags, readonly)) };
}

/// The inputs of [`outputs`], made in the default environment.
struct Inputs {
    logits: Vec<f32>,
    targets: Vec<i64>,
    soft: Vec<f32>,
    long: Vec<f32>,
    hidden: Vec<f32>,
    weight: Vec<f32>,
    head_targets: Vec<i64>,
}

const ROWS: usize = 256;
const COLS: usize = 1024;
const HEAD: (usize, usize, usize) = (48, 24, 200);

impl Inputs {
    /// Logits near −92 with a 0 at each row's target (probabilities of e^-90), soft
    /// targets of 1e-39, one row of 65536 (split into column blocks across threads), and a
    /// linear head whose weights of 1e-37 make ∂H subnormal.
    fn new() -> Self {
        let mut rng = Rng::new(90);
        let targets: Vec<i64> = (0..ROWS as i64).map(|i| i * 7 % COLS as i64).collect();
        let mut logits = random_logits(&mut rng, ROWS, COLS, COLS, 3.0, -92.0);
        for (i, &y) in targets.iter().enumerate() {
            logits[i * COLS + y as usize] = 0.0;
        }
        let (rows, dim, classes) = HEAD;
        Inputs {
            logits,
            targets,
            soft: (0..8 * COLS)
                .map(|k| if k % 3 == 0 { 1e-39 } else { 1.0 / COLS as f32 })
                .collect(),
            long: random_logits(&mut rng, 1, 65536, 65536, 3.0, -92.0),
            hidden: (0..rows * dim)
                .map(|k| (k % 9) as f32 * 0.25 - 1.0)
                .collect(),
            weight: (0..classes * dim)
                .map(|k| (k % 5) as f32 * 1e-37 - 2e-37)
                .collect(),
            head_targets: (0..rows as i64).map(|i| i * 13 % classes as i64).collect(),
        }
    }
}

/// Every output of a set of calls whose results depend on subnormals: the logits' e^-90,
/// a grad_scale of 1e-40 (itself subnormal) or 1e-38, the soft targets, the long row,
/// softmax, a shard's summary and the linear head (its outputs last).
fn outputs(x: &Inputs) -> Vec<Vec<f32>> {
    let batch = Rows::packed(&x.logits, COLS).unwrap();
    let mut out = Vec::new();
    for options in [
        Options::default(),
        Options {
            reduction: Reduction::Sum,
            grad_scale: 1e-40,
            label_smoothing: 0.1,
            ..Options::default()
        },
        Options {
            reduction: Reduction::None,
            grad_scale: 1e-38,
            z_loss: 1e-3,
            ..Options::default()
        },
    ] {
        let mut loss = vec![0.0f32; options.reduction.loss_len(ROWS)];
        let mut lse = vec![0.0f32; ROWS];
        let mut grad = x.logits.clone();
        let view = RowsMut::packed(&mut grad, COLS).unwrap();
        xent::cross_entropy_grad_in_place(
            view,
            &x.targets[..],
            &options,
            &mut loss,
            Some(&mut lse),
        )
        .unwrap();
        out.extend([loss, lse, grad]);
    }

    let soft = Rows::packed(&x.soft, COLS).unwrap();
    let few = Rows::packed(&x.logits[..8 * COLS], COLS).unwrap();
    let (mut loss, mut grad) = (vec![0.0f32], vec![0.0f32; 8 * COLS]);
    let view = RowsMut::packed(&mut grad, COLS).unwrap();
    xent::cross_entropy_grad(few, soft, &Options::default(), &mut loss, view, None).unwrap();
    out.extend([loss, grad]);

    let mut probs = vec![0.0f32; ROWS * COLS];
    xent::softmax(batch, RowsMut::packed(&mut probs, COLS).unwrap()).unwrap();
    out.push(probs);

    let mut grad = x.long.clone();
    let mut loss = [0.0f32];
    let view = RowsMut::packed(&mut grad, x.long.len()).unwrap();
    xent::cross_entropy_grad_in_place(view, &[3i64][..], &Options::default(), &mut loss, None)
        .unwrap();
    out.extend([loss.to_vec(), grad]);

    let shard = Shard {
        class_offset: 0,
        total_cols: COLS,
    };
    let mut summary = vec![ShardRow::EMPTY; ROWS];
    xent::shard_stats(
        batch,
        shard,
        &x.targets[..],
        &Options::default(),
        &mut summary,
    )
    .unwrap();
    out.push(summary.iter().flat_map(|r| [r.max, r.sumexp]).collect());

    let (rows, dim, classes) = HEAD;
    let (mut grad_hidden, mut grad_weight) = (vec![0.0f32; rows * dim], vec![0.0; classes * dim]);
    let mut loss = [0.0f32];
    let head = LinearHead {
        hidden: Rows::packed(&x.hidden, dim).unwrap(),
        weight: Rows::packed(&x.weight, dim).unwrap(),
        bias: None,
        next_token: None,
    };
    let grads = LinearGrads {
        hidden: Some(RowsMut::packed(&mut grad_hidden, dim).unwrap()),
        weight: Some(RowsMut::packed(&mut grad_weight, dim).unwrap()),
        bias: None,
    };
    let options = Options::default();
    xent::linear_cross_entropy(head, &x.head_targets[..], &options, &mut loss, grads, None)
        .unwrap();
    out.extend([loss.to_vec(), grad_hidden, grad_weight]);
    out
}

#[test]
fn the_callers_environment_changes_no_bit() {
    let default_env = mxcsr();
    let inputs = Inputs::new();
    let reference = xent::on_calling_thread(|| outputs(&inputs));
    // The inputs do reach subnormals: the same computation in C-like code flushes them.
    set_mxcsr(HOSTILE);
    let flushed = std::hint::black_box(1e-39f32) * std::hint::black_box(2.0f32);
    set_mxcsr(default_env);
    assert_eq!(flushed, 0.0, "FTZ/DAZ do not flush here");

    // On the calling thread.
    set_mxcsr(HOSTILE);
    let got = xent::on_calling_thread(|| outputs(&inputs));
    let after = mxcsr();
    set_mxcsr(default_env);
    assert_eq!(after, HOSTILE, "the calling thread's MXCSR, flags included");
    for (k, (a, b)) in got.iter().zip(&reference).enumerate() {
        assert_same_bits(a, b, &format!("calling thread, output {k}"));
    }

    // On a pool whose threads flush too.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(|_| set_mxcsr(HOSTILE))
        .build()
        .unwrap();
    set_mxcsr(HOSTILE);
    let (got, workers_after) = pool.install(|| {
        let got = outputs(&inputs);
        (got, rayon::broadcast(|_| mxcsr()))
    });
    let after = mxcsr();
    set_mxcsr(default_env);
    assert_eq!(after, HOSTILE);
    assert_eq!(
        workers_after,
        vec![HOSTILE; 2],
        "each pool thread's MXCSR as it was"
    );
    // Not the linear head's three outputs: its GEMMs run in the gemm crate's own tasks,
    // which take the environment of the pool thread they land on (documented in
    // docs/reliability.md; the C ABI's pools are always in the default one).
    let head = got.len() - 3;
    for (k, (a, b)) in got[..head].iter().zip(&reference).enumerate() {
        assert_same_bits(a, b, &format!("flushing pool, output {k}"));
    }
}
