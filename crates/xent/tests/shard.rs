//! The vocabulary-parallel calls, with the shards simulated in one process: every
//! generated case of the hard-target option space cut into 1 to 4 uneven column slices,
//! each slice in its own strided buffer, merged as an all-reduce would, and compared with
//! the f64 oracle on the whole rows (docs/semantics.md's tolerances) and with the unsharded call.
//! Then the merge's exact cases and the bad input of each call.

mod common;

use common::generated::{Params, build, params};
use common::{
    Case, CaseTargets, PAD, Rng, agrees, assert_grad, assert_padding_intact, assert_same_bits,
    loss_tolerances, miri_or, padded,
};
use proptest::prelude::*;
use xent::{Error, Options, Reduction, Rows, RowsMut, Shard, ShardRow, merge_shard_rows};

/// One process's share of a case: columns `start..end` in a buffer of their own.
struct Slice {
    shard: Shard,
    cols: usize,
    stride: usize,
    logits: Vec<f32>,
}

impl Slice {
    fn new(case: &Case, start: usize, end: usize) -> Slice {
        let cols = end - start;
        // Each slice gets its own padding, unlike the case's.
        let stride = cols + 1 + start % 3;
        Slice {
            shard: Shard {
                class_offset: start,
                total_cols: case.cols,
            },
            cols,
            stride,
            logits: padded(case.rows, cols, stride, |i, c| {
                case.logits[i * case.stride + start + c]
            }),
        }
    }

    fn view(&self, rows: usize) -> Rows<'_> {
        Rows::new(&self.logits, rows, self.cols, self.stride).unwrap()
    }
}

/// Column slices `bounds[k]..bounds[k + 1]`: `shards` non-empty slices cut at random.
fn cut(cols: usize, shards: usize, seed: u64) -> Vec<usize> {
    let shards = shards.min(cols);
    let mut rng = Rng::new(seed);
    let mut bounds = vec![0, cols];
    while bounds.len() < shards + 1 {
        let at = 1 + rng.below(cols - 1);
        if !bounds.contains(&at) {
            bounds.push(at);
        }
    }
    bounds.sort_unstable();
    bounds
}

fn hard_targets(case: &Case) -> &[i64] {
    match &case.targets {
        CaseTargets::Hard(t) => t,
        CaseTargets::Soft { .. } => unreachable!("sharded cases have hard targets"),
    }
}

/// What every shard's finish call returned.
struct Finished {
    loss: Vec<f32>,
    lse: Vec<f32>,
    /// The gradient of the whole rows, assembled from the slices (packed).
    grad: Vec<f32>,
}

/// The three calls over the slices cut at `bounds`; checks what must hold between shards
/// and call styles (the same loss and lse bits everywhere, in place = separate), and
/// returns the results with the gradient assembled.
fn run_sharded(case: &Case, bounds: &[usize]) -> Finished {
    let options = case.options();
    let targets = hard_targets(case);
    let rows = case.rows;
    let slices: Vec<Slice> = bounds
        .windows(2)
        .map(|w| Slice::new(case, w[0], w[1]))
        .collect();

    // 1. Each shard's summary.
    let summaries: Vec<Vec<ShardRow>> = slices
        .iter()
        .map(|s| {
            let mut out = vec![ShardRow::EMPTY; rows];
            xent::shard_stats(s.view(rows), s.shard, targets, &options, &mut out).unwrap();
            out
        })
        .collect();

    // 2. The all-reduce: merged in shard order, as rank 0 of a chain would.
    let mut merged = summaries[0].clone();
    for s in &summaries[1..] {
        merge_shard_rows(s, &mut merged).unwrap();
    }

    // 3. Every shard finishes: with a separate gradient, in place, and without a gradient.
    let loss_len = case.reduction.loss_len(rows);
    let mut grad = vec![0.0f32; rows * case.cols];
    let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
    for s in &slices {
        let g_stride = s.cols + 2;
        let mut g = padded(rows, s.cols, g_stride, |_, _| PAD);
        let (mut loss, mut lse) = (vec![PAD; loss_len], vec![PAD; rows]);
        let view = RowsMut::new(&mut g, rows, s.cols, g_stride).unwrap();
        xent::shard_finish_grad(
            s.view(rows),
            s.shard,
            targets,
            &options,
            &merged,
            &mut loss,
            view,
            Some(&mut lse),
        )
        .unwrap();
        assert_padding_intact(&g, rows, s.cols, g_stride, "sharded grad");

        let mut in_place = s.logits.clone();
        let mut loss_ip = vec![PAD; loss_len];
        let view = RowsMut::new(&mut in_place, rows, s.cols, s.stride).unwrap();
        xent::shard_finish_grad_in_place(
            view,
            s.shard,
            targets,
            &options,
            &merged,
            &mut loss_ip,
            None,
        )
        .unwrap();
        assert_same_bits(&loss, &loss_ip, "loss in place vs separate");
        assert_padding_intact(&in_place, rows, s.cols, s.stride, "sharded in place");

        let (mut loss_fw, mut lse_fw) = (vec![PAD; loss_len], vec![PAD; rows]);
        xent::shard_finish(
            s.view(rows),
            s.shard,
            targets,
            &options,
            &merged,
            &mut loss_fw,
            Some(&mut lse_fw),
        )
        .unwrap();
        assert_same_bits(&loss, &loss_fw, "loss without vs with a gradient");
        assert_same_bits(&lse, &lse_fw, "lse without vs with a gradient");

        for i in 0..rows {
            let row = &g[i * g_stride..i * g_stride + s.cols];
            assert_same_bits(
                &in_place[i * s.stride..i * s.stride + s.cols],
                row,
                "in-place vs separate sharded gradient",
            );
            let start = i * case.cols + s.shard.class_offset;
            grad[start..start + s.cols].copy_from_slice(row);
        }
        match &first {
            None => first = Some((loss, lse)),
            Some((loss0, lse0)) => {
                assert_same_bits(loss0, &loss, "loss on two shards");
                assert_same_bits(lse0, &lse, "lse on two shards");
            }
        }
    }
    let (loss, lse) = first.expect("at least one shard");
    Finished { loss, lse, grad }
}

/// The sharded results against the oracle on the whole rows, and NaN where the unsharded
/// call has NaN.
fn check_sharded(case: &Case, bounds: &[usize]) {
    let got = run_sharded(case, bounds);
    let r = case.reference();
    let tolerances = loss_tolerances(case, &r);
    for (k, (&got, &want)) in got.loss.iter().zip(&r.loss).enumerate() {
        assert!(
            agrees(got, want, tolerances[k]),
            "sharded loss[{k}] = {got}, oracle {want} (tolerance {}, shards {bounds:?})",
            tolerances[k]
        );
    }
    for (i, (&got, (&want, &m))) in got.lse.iter().zip(r.lse.iter().zip(&r.row_max)).enumerate() {
        let m = if m.is_finite() { m.abs() } else { 0.0 };
        let tol = 1e-6 * (1.0 + m) + 1e-6 * want.abs();
        assert!(
            agrees(got, want, tol),
            "sharded lse[{i}] = {got}, oracle {want} (shards {bounds:?})"
        );
    }
    assert_grad(case, &r, &r.grad, &got.grad, case.cols, "sharded");

    // The unsharded call: NaN in the same places.
    let mut loss = vec![0.0f32; case.reduction.loss_len(case.rows)];
    let mut grad = vec![0.0f32; case.rows * case.cols];
    let view = RowsMut::packed(&mut grad, case.cols).unwrap();
    xent::cross_entropy_grad(
        case.logits_view(),
        case.targets(),
        &case.options(),
        &mut loss,
        view,
        None,
    )
    .unwrap();
    for (k, (a, b)) in got.grad.iter().zip(&grad).enumerate() {
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "grad element {k}: sharded {a}, unsharded {b}"
        );
    }
    // And within one gradient tolerance of it, not two: both take each logit's x' (the
    // target's too) from the same kernels.
    let unsharded: Vec<f64> = grad.iter().map(|&g| f64::from(g)).collect();
    assert_grad(
        case,
        &r,
        &unsharded,
        &got.grad,
        case.cols,
        "sharded against unsharded",
    );
}

/// A softcap where it bends the logits (c = 30, logits of standard deviation 40), rows split in
/// three uneven slices: the sharded results stay within one tolerance of the unsharded call's (the
/// target's x'_y, taken out of its slice, is the kernels' value).
#[test]
fn softcapped_shards_match_the_unsharded_call() {
    for seed in 0..7 {
        let p = Params {
            rows: 33,
            cols: 7,
            pad: 0,
            reduction: Reduction::Mean,
            ignore_index: -100,
            ignore_share: 0.0,
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: 30.0,
            weighted: false,
            grad_scale: 1.0,
            soft: false,
            scale: 40.0,
            offset: 0.0,
            mask_share: 0.0,
            special_row: None,
            seed,
        };
        check_sharded(&build(&p), &[0, 2, 5, 7]);
    }
}

fn sharded_params(
    rows: impl Strategy<Value = usize>,
    cols: impl Strategy<Value = usize>,
) -> impl Strategy<Value = (Params, usize, u64)> {
    (params(rows, cols), 1usize..=4, any::<u64>()).prop_map(|(mut p, shards, seed)| {
        p.soft = false;
        (p, shards, seed)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(384), ..ProptestConfig::default() })]

    /// Small batches over the whole hard-target option space, 1 to 4 shards.
    #[test]
    fn shards_match_the_oracle((p, shards, seed) in sharded_params(0usize..6, 1usize..=67)) {
        let case = build(&p);
        check_sharded(&case, &cut(case.cols, shards, seed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(16), ..ProptestConfig::default() })]

    /// Long rows, cut into slices that span several of the kernels' column blocks (under
    /// Miri, rows of 2 blocks instead of 8).
    #[test]
    fn long_rows_in_shards(
        (p, shards, seed) in sharded_params(
            1usize..3,
            prop_oneof![Just(1000usize), Just(miri_or(4105, 32003))],
        )
    ) {
        let case = build(&p);
        check_sharded(&case, &cut(case.cols, shards, seed));
    }
}

/// Enough rows to run each call's chunks on the rayon pool.
#[test]
#[cfg_attr(
    miri,
    ignore = "two chunks of rows in a slice take 65536 values or more, tens of minutes \
              under Miri"
)]
fn parallel_batches_in_shards() {
    let p = Params {
        rows: 300,
        cols: 1500,
        pad: 1,
        reduction: Reduction::Mean,
        ignore_index: -100,
        ignore_share: 0.1,
        label_smoothing: 0.1,
        z_loss: 1e-4,
        softcap: 20.0,
        weighted: true,
        grad_scale: 0.5,
        soft: false,
        scale: 3.0,
        offset: -2.0,
        mask_share: 0.01,
        special_row: Some(f32::NAN),
        seed: 6,
    };
    let case = build(&p);
    check_sharded(&case, &[0, 1, 700, 1500]);
}

/// Rows whose −∞ entries cover whole shards, whose max sits in different shards, and one
/// NaN: every row but the NaN one is exact, the NaN one is NaN on every shard.
#[test]
fn masked_shards_moving_maxes_and_nan() {
    let ninf = f32::NEG_INFINITY;
    // Shards: columns 0..3, 3..5, 5..9.
    let rows: [[f32; 9]; 6] = [
        [ninf, ninf, ninf, 1.0, 2.0, 0.5, 0.0, -1.0, 3.0], // shard 0 masked, max in shard 2
        [9.0, 1.0, 0.0, ninf, ninf, ninf, ninf, ninf, ninf], // only shard 0 has values
        [0.0, 0.0, 0.0, 40.0, -3.0, 0.0, 0.0, 0.0, 0.0],   // max in shard 1
        [1.0, f32::NAN, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], // NaN in shard 0
        [-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0], // signed zeros everywhere
        [ninf, 5.0, ninf, ninf, ninf, ninf, ninf, ninf, 5.0], // ties across shards
    ];
    let logits: Vec<f32> = rows.iter().flatten().copied().collect();
    for eps in [0.0, 0.25] {
        for cap in [0.0, 10.0] {
            let mut case = Case::packed(9, logits.clone(), vec![8, 0, 4, 3, 1, 8]);
            case.reduction = Reduction::None;
            case.label_smoothing = eps;
            case.softcap = cap;
            check_sharded(&case, &[0, 3, 5, 9]);
            let got = run_sharded(&case, &[0, 3, 5, 9]);
            for (i, loss) in got.loss.iter().enumerate() {
                // Smoothing over a masked class makes a row's loss +∞ (docs/semantics.md).
                let masked = rows[i].contains(&ninf) && cap == 0.0;
                assert_eq!(loss.is_nan(), i == 3, "row {i}: loss {loss}");
                assert_eq!(
                    loss.is_infinite(),
                    masked && eps > 0.0,
                    "row {i}: loss {loss}"
                );
            }
            assert!(got.grad[3 * 9..4 * 9].iter().all(|g| g.is_nan()));
        }
    }
}

/// The merge's exact cases, field by field.
#[test]
fn merge_is_exact_where_it_must_be() {
    let row = |max: f32, sumexp: f32| ShardRow {
        max,
        sumexp,
        target_logit: 0.0,
        smooth_sum: 0.0,
    };
    let ninf = f32::NEG_INFINITY;
    // Shards of only −∞ add nothing, also to each other.
    assert_eq!(row(ninf, 0.0).merge(&row(ninf, 0.0)), row(ninf, 0.0));
    assert_eq!(row(2.5, 1.25).merge(&ShardRow::EMPTY), row(2.5, 1.25));
    // The max moves to the larger shard and the smaller sum is scaled down exactly.
    assert_eq!(row(1.0, 2.0).merge(&row(1.0, 3.0)).sumexp, 5.0);
    let moved = row(0.0, 1.0).merge(&row(2f32.ln(), 1.0));
    assert_eq!(moved.max, 2f32.ln());
    assert!((moved.sumexp - 1.5).abs() <= f32::EPSILON);
    assert_eq!(row(1.0, 1.0).merge(&row(3.0, 2.0)).max, 3.0);
    // NaN in one shard is NaN after any merge, whichever side it is on.
    for other in [row(1.0, 2.0), row(ninf, 0.0), row(f32::NAN, f32::NAN)] {
        let nan = row(f32::NAN, f32::NAN);
        for merged in [nan.merge(&other), other.merge(&nan)] {
            assert!(merged.max.is_nan() && merged.sumexp.is_nan());
        }
    }
    // A zero max: +0 whatever the order, so every process gets the same bits.
    let (pos, neg) = (row(0.0, 1.0), row(-0.0, 1.0));
    assert_eq!(pos.merge(&neg).max.to_bits(), 0.0f32.to_bits());
    assert_eq!(neg.merge(&pos).max.to_bits(), 0.0f32.to_bits());
    // The target logit and the smoothing sum add; −∞ stays −∞.
    let t = ShardRow {
        target_logit: ninf,
        smooth_sum: -7.5,
        ..row(1.0, 1.0)
    };
    let merged = t.merge(&row(0.5, 2.0));
    assert_eq!((merged.target_logit, merged.smooth_sum), (ninf, -7.5));
}

/// merge(a, b) has the same bits as merge(b, a) on random summaries, and any merge order
/// gives the same rows within a few f32 roundings.
#[test]
fn merge_commutes_bit_for_bit_and_associates_within_rounding() {
    let mut rng = Rng::new(42);
    let draw = |rng: &mut Rng| ShardRow {
        max: if rng.unit() < 0.1 {
            f32::NEG_INFINITY
        } else {
            rng.range(-50.0, 50.0)
        },
        sumexp: rng.range(1.0, 1000.0),
        target_logit: rng.range(-5.0, 5.0),
        smooth_sum: rng.range(-1e4, 1e4),
    };
    for _ in 0..miri_or(300, 10_000) {
        let (a, b, c) = (draw(&mut rng), draw(&mut rng), draw(&mut rng));
        let [a, b, c] = [a, b, c].map(|r| {
            if r.max == f32::NEG_INFINITY {
                ShardRow { sumexp: 0.0, ..r }
            } else {
                r
            }
        });
        let ab = a.merge(&b);
        let ba = b.merge(&a);
        assert_eq!(
            [ab.max, ab.sumexp, ab.target_logit, ab.smooth_sum].map(f32::to_bits),
            [ba.max, ba.sumexp, ba.target_logit, ba.smooth_sum].map(f32::to_bits),
        );
        let left = ab.merge(&c);
        let right = a.merge(&b.merge(&c));
        assert_eq!(left.max, right.max);
        let lse = |r: &ShardRow| f64::from(r.max) + f64::from(r.sumexp).ln();
        if left.sumexp > 0.0 {
            assert!((lse(&left) - lse(&right)).abs() <= 4e-7 * (1.0 + lse(&left).abs()));
        }
    }
}

/// NaNs with different payloads merge to the same bits in either order (fuzzer-found: x86
/// keeps the first operand's payload, so merge(a, b) and merge(b, a) differed in a NaN
/// smoothing sum).
#[test]
fn merge_commutes_bit_for_bit_with_nan_payloads() {
    let nan = |payload: u32| f32::from_bits(0x7fc0_0000 | payload);
    let a = ShardRow {
        max: nan(1),
        sumexp: nan(2),
        target_logit: nan(3),
        smooth_sum: nan(4),
    };
    let b = ShardRow {
        max: 1.0,
        sumexp: nan(5),
        target_logit: nan(6),
        smooth_sum: f32::from_bits(0xffff_fffe),
    };
    let bits = |r: ShardRow| [r.max, r.sumexp, r.target_logit, r.smooth_sum].map(f32::to_bits);
    assert_eq!(bits(a.merge(&b)), bits(b.merge(&a)));
    assert_eq!(bits(a.merge(&b)), [f32::NAN.to_bits(); 4]);
}

/// Each call refuses what it must, before writing anything.
#[test]
fn bad_input_writes_nothing() {
    let logits = [0.5f32, 1.0, -1.0, 2.0, 0.0, 3.0];
    let view = Rows::packed(&logits, 3).unwrap();
    let targets = [4i64, 0];
    let options = Options::default();
    let shard = Shard {
        class_offset: 2,
        total_cols: 5,
    };
    let sentinel = ShardRow {
        max: 7.0,
        sumexp: 7.0,
        target_logit: 7.0,
        smooth_sum: 7.0,
    };
    let stats = |shard: Shard, targets: &[i64], options: &Options<'_>| {
        let mut out = [sentinel; 2];
        let err = xent::shard_stats(view, shard, targets, options, &mut out).unwrap_err();
        assert_eq!(out, [sentinel; 2], "{err}: out was written");
        err
    };
    // The slice must fit in the vocabulary: 2 + 3 > 4.
    let small = Shard {
        total_cols: 4,
        ..shard
    };
    assert!(matches!(
        stats(small, &[0, 0], &options),
        Error::InvalidShape {
            buffer: "shard",
            ..
        }
    ));
    let huge = Shard {
        class_offset: usize::MAX,
        total_cols: usize::MAX,
    };
    assert!(matches!(
        stats(huge, &[0, 0], &options),
        Error::InvalidShape { .. }
    ));
    // Targets are global classes: 5 is outside 0..5.
    assert!(matches!(
        stats(shard, &[5, 0], &options),
        Error::TargetOutOfRange {
            row: 0,
            target: 5,
            cols: 5,
            ..
        }
    ));
    // Class weights cover the whole vocabulary, not the slice.
    let weights = [1.0f32; 3];
    let sliced = Options {
        class_weights: Some(&weights),
        ..options
    };
    assert!(matches!(
        stats(shard, &targets, &sliced),
        Error::InvalidShape {
            buffer: "class_weights",
            ..
        }
    ));
    let bad_eps = Options {
        label_smoothing: f32::NAN,
        ..options
    };
    assert!(matches!(
        stats(shard, &targets, &bad_eps),
        Error::InvalidOption { .. }
    ));

    // The finish: merged rows of the wrong count, soft targets; the logits stay as they are
    // in place, and loss and lse are untouched.
    let merged = [sentinel; 2];
    let mut data = logits;
    let (mut loss, mut lse) = ([PAD], [PAD; 2]);
    let view = RowsMut::packed(&mut data, 3).unwrap();
    let err = xent::shard_finish_grad_in_place(
        view,
        shard,
        &targets[..],
        &options,
        &merged[..1],
        &mut loss,
        Some(&mut lse),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidShape {
            buffer: "merged",
            ..
        }
    ));
    let soft = [0.2f32; 6];
    let view = RowsMut::packed(&mut data, 3).unwrap();
    let err = xent::shard_finish_grad_in_place(
        view,
        shard,
        Rows::packed(&soft, 3).unwrap(),
        &options,
        &merged,
        &mut loss,
        Some(&mut lse),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidShape {
            buffer: "targets",
            ..
        }
    ));
    let view = RowsMut::packed(&mut data, 3).unwrap();
    let err = xent::shard_finish_grad_in_place(
        view,
        small,
        &targets[..],
        &options,
        &merged,
        &mut loss,
        Some(&mut lse),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidShape {
            buffer: "shard",
            ..
        }
    ));
    assert_same_bits(&data, &logits, "logits after refused calls");
    assert_same_bits(&loss, &[PAD], "loss after refused calls");
    assert_same_bits(&lse, &[PAD; 2], "lse after refused calls");
    let mut inout = [sentinel; 1];
    assert!(merge_shard_rows(&merged, &mut inout).is_err());
    assert_eq!(inout, [sentinel]);
}
