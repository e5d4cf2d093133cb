//! The documented edge cases (docs/semantics.md), each with an exact expectation, plus finite-difference
//! checks of the gradient and the invariance of results under the thread count.

mod common;

use common::{
    Case, CaseTargets, PAD, Rng, agrees, assert_same_bits, check_case, miri_or, padded,
    random_logits,
};
use xent::{Options, Reduction, Rows, RowsMut, Targets};
use xent_oracle::RefTargets;

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;
const NINF: f32 = f32::NEG_INFINITY;

/// Runs the fused call with reduction `none` and returns (losses, gradient, lse).
fn run_none(case: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let options = Options {
        reduction: Reduction::None,
        ..case.options()
    };
    run_fused(case, &options)
}

/// Runs the fused call with `options` and returns (loss, gradient packed, lse).
fn run_fused(case: &Case, options: &Options<'_>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut loss = vec![PAD; options.reduction.loss_len(case.rows)];
    let mut grad = vec![PAD; case.rows * case.cols];
    let mut lse = vec![PAD; case.rows];
    xent::cross_entropy_grad(
        case.logits_view(),
        case.targets(),
        options,
        &mut loss,
        RowsMut::packed(&mut grad, case.cols).unwrap(),
        Some(&mut lse),
    )
    .unwrap();
    (loss, grad, lse)
}

#[test]
fn nan_and_infinite_rows_stay_in_their_row() {
    let cols = 5;
    let mut rng = Rng::new(7);
    let mut logits = random_logits(&mut rng, 5, cols, cols, 2.0, 0.0);
    logits[cols + 2] = NAN; // row 1
    logits[2 * cols + 4] = INF; // row 2
    logits[3 * cols..4 * cols].fill(NINF); // row 3: only −∞
    let case = Case::packed(cols, logits, vec![0, 1, 2, 3, 4]);
    check_case(&case);
    let (loss, grad, lse) = run_none(&case);
    for i in 1..4 {
        assert!(loss[i].is_nan() && lse[i].is_nan(), "row {i}");
        assert!(
            grad[i * cols..(i + 1) * cols].iter().all(|g| g.is_nan()),
            "row {i}"
        );
    }
    for i in [0, 4] {
        assert!(loss[i].is_finite() && lse[i].is_finite(), "row {i}");
        assert!(
            grad[i * cols..(i + 1) * cols].iter().all(|g| g.is_finite()),
            "row {i}"
        );
    }
    // Under mean the NaN reaches the reduced loss but not the other rows' gradient.
    let mut loss = [0.0f32];
    let mut grad = vec![0.0f32; 5 * cols];
    xent::cross_entropy_grad(
        case.logits_view(),
        case.targets(),
        &Options::default(),
        &mut loss,
        RowsMut::packed(&mut grad, cols).unwrap(),
        None,
    )
    .unwrap();
    assert!(loss[0].is_nan());
    assert!(
        grad[..cols]
            .iter()
            .chain(&grad[4 * cols..])
            .all(|g| g.is_finite())
    );
}

#[test]
fn ignored_rows_give_zero_whatever_their_logits() {
    let cols = 3;
    let logits = vec![NAN, 1.0, INF, 0.5, 1.5, -0.5, NINF, NINF, NINF];
    let case = Case::packed(cols, logits, vec![-100, 1, -100]);
    check_case(&case);
    let (loss, grad, lse) = run_none(&case);
    assert_eq!((loss[0], loss[2]), (0.0, 0.0));
    assert!(loss[1].is_finite());
    assert!(
        grad[..cols]
            .iter()
            .chain(&grad[2 * cols..])
            .all(|&g| g == 0.0)
    );
    // The lse is still every row's true logsumexp.
    assert!(lse[0].is_nan() && lse[2].is_nan());
    let want = (0.5f64.exp() + 1.5f64.exp() + (-0.5f64).exp()).ln();
    assert!((f64::from(lse[1]) - want).abs() < 1e-6);
}

/// Mean over no weight is NaN with an all-zero gradient; sum is 0.
#[test]
fn mean_over_nothing() {
    let cols = 4;
    let mut rng = Rng::new(3);
    let logits = random_logits(&mut rng, 3, cols, cols, 1.0, 0.0);
    let weights = [0.0f32, 1.0, 1.0, 0.0];
    let cases = [
        (vec![-100i64, -100, -100], None),
        (vec![0, 3, -100], Some(&weights[..])), // every counted target has weight 0
    ];
    for (targets, class_weights) in cases {
        for z_loss in [0.0, 0.1] {
            let options = Options {
                class_weights,
                z_loss,
                ..Options::default()
            };
            let mut loss = [0.0f32];
            let mut grad = vec![PAD; 3 * cols];
            let mut lse = vec![0.0f32; 3];
            xent::cross_entropy_grad(
                Rows::packed(&logits, cols).unwrap(),
                &targets[..],
                &options,
                &mut loss,
                RowsMut::packed(&mut grad, cols).unwrap(),
                Some(&mut lse),
            )
            .unwrap();
            assert!(loss[0].is_nan());
            assert!(grad.iter().all(|&g| g == 0.0));
            assert!(lse.iter().all(|l| l.is_finite()));

            let mut in_place = logits.clone();
            let mut back = logits.clone();
            xent::cross_entropy_grad_in_place(
                RowsMut::packed(&mut in_place, cols).unwrap(),
                &targets[..],
                &options,
                &mut loss,
                None,
            )
            .unwrap();
            assert!(in_place.iter().all(|&g| g == 0.0));
            xent::cross_entropy_backward_in_place(
                RowsMut::packed(&mut back, cols).unwrap(),
                &targets[..],
                &options,
                &lse,
                &[1.0],
            )
            .unwrap();
            assert!(back.iter().all(|&g| g == 0.0));

            let sum = Options {
                reduction: Reduction::Sum,
                ..options
            };
            xent::cross_entropy(
                Rows::packed(&logits, cols).unwrap(),
                &targets[..],
                &sum,
                &mut loss,
                None,
            )
            .unwrap();
            let weighted_zero = class_weights.is_some() && z_loss == 0.0;
            if class_weights.is_none() || weighted_zero {
                assert_eq!(loss[0], 0.0);
            }
        }
    }
}

#[test]
fn zero_rows() {
    let empty: [f32; 0] = [];
    let no_targets: [i64; 0] = [];
    for (reduction, want) in [(Reduction::Mean, None), (Reduction::Sum, Some(0.0f32))] {
        let options = Options {
            reduction,
            ..Options::default()
        };
        let mut loss = [PAD];
        let mut grad: [f32; 0] = [];
        xent::cross_entropy_grad(
            Rows::new(&empty, 0, 7, 9).unwrap(),
            &no_targets[..],
            &options,
            &mut loss,
            RowsMut::new(&mut grad, 0, 7, 7).unwrap(),
            Some(&mut []),
        )
        .unwrap();
        match want {
            None => assert!(loss[0].is_nan()),
            Some(w) => assert_eq!(loss[0], w),
        }
        let soft = Targets::Soft(Rows::new(&empty, 0, 7, 7).unwrap());
        xent::cross_entropy(
            Rows::new(&empty, 0, 7, 7).unwrap(),
            soft,
            &options,
            &mut loss,
            None,
        )
        .unwrap();
        match want {
            None => assert!(loss[0].is_nan()),
            Some(w) => assert_eq!(loss[0], w),
        }
    }
    let none = Options {
        reduction: Reduction::None,
        ..Options::default()
    };
    xent::cross_entropy(
        Rows::new(&empty, 0, 0, 0).unwrap(),
        &no_targets[..],
        &none,
        &mut [],
        None,
    )
    .unwrap();
    xent::softmax(
        Rows::new(&empty, 0, 3, 3).unwrap(),
        RowsMut::new(&mut [], 0, 3, 3).unwrap(),
    )
    .unwrap();
    // No rows of (nearly) usize::MAX columns is a valid batch too: planning its column
    // blocks overflowed (found by the fuzzer through the C ABI).
    for cols in [usize::MAX, usize::MAX - 7, usize::MAX / 2 + 1] {
        let mut loss = [PAD];
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let options = Options {
                reduction,
                ..Options::default()
            };
            let batch = Rows::new(&empty, 0, cols, cols).unwrap();
            xent::cross_entropy(batch, &no_targets[..], &options, &mut loss, None).unwrap();
        }
        assert_eq!(loss[0], 0.0);
    }
}

/// A hand-computed case: two classes, label smoothing and class weights.
#[test]
fn label_smoothing_with_weights_by_hand() {
    let logits = [0.0f32, (3.0f32).ln()]; // p = [1/4, 3/4]
    let weights = [2.0f32, 0.5];
    let options = Options {
        label_smoothing: 0.2,
        class_weights: Some(&weights),
        reduction: Reduction::Sum,
        ..Options::default()
    };
    let mut loss = [0.0f32];
    let mut grad = [0.0f32; 2];
    xent::cross_entropy_grad(
        Rows::packed(&logits, 2).unwrap(),
        &[0i64][..],
        &options,
        &mut loss,
        RowsMut::packed(&mut grad, 2).unwrap(),
        None,
    )
    .unwrap();
    let (lp0, lp1) = (0.25f64.ln(), 0.75f64.ln());
    // ce = 0.8·2·(−lp0) + 0.1·(2·(−lp0) + 0.5·(−lp1))
    let want = 0.8 * 2.0 * -lp0 + 0.1 * (2.0 * -lp0 + 0.5 * -lp1);
    assert!(
        (f64::from(loss[0]) - want).abs() < 1e-6,
        "{} vs {want}",
        loss[0]
    );
    // ∂/∂x_c = 0.8·2·(p_c − [c=0]) + 0.1·(p_c·2.5 − w_c)
    let g0 = 0.8 * 2.0 * (0.25 - 1.0) + 0.1 * (0.25 * 2.5 - 2.0);
    let g1 = 0.8 * 2.0 * 0.75 + 0.1 * (0.75 * 2.5 - 0.5);
    assert!((f64::from(grad[0]) - g0).abs() < 1e-6 && (f64::from(grad[1]) - g1).abs() < 1e-6);
}

/// z-loss and softcap by hand on one row.
#[test]
fn z_loss_and_softcap_by_hand() {
    let logits = [1.0f32, -2.0, 40.0];
    let (z, cap) = (0.01f64, 10.0f64);
    let options = Options {
        z_loss: z as f32,
        softcap: cap as f32,
        reduction: Reduction::Sum,
        grad_scale: 0.5,
        ..Options::default()
    };
    let mut loss = [0.0f32];
    let mut grad = [0.0f32; 3];
    xent::cross_entropy_grad(
        Rows::packed(&logits, 3).unwrap(),
        &[1i64][..],
        &options,
        &mut loss,
        RowsMut::packed(&mut grad, 3).unwrap(),
        None,
    )
    .unwrap();
    let xp: Vec<f64> = logits
        .iter()
        .map(|&x| cap * (f64::from(x) / cap).tanh())
        .collect();
    let lse = xp.iter().map(|v| v.exp()).sum::<f64>().ln();
    let want = (lse - xp[1]) + z * lse * lse;
    assert!(
        (f64::from(loss[0]) - want).abs() < 1e-5 * want,
        "{} vs {want}",
        loss[0]
    );
    for c in 0..3 {
        let p = (xp[c] - lse).exp();
        let one_hot = if c == 1 { 1.0 } else { 0.0 };
        let g = 0.5 * ((p - one_hot) + 2.0 * z * lse * p) * (1.0 - (xp[c] / cap).powi(2));
        assert!(
            (f64::from(grad[c]) - g).abs() < 1e-6,
            "grad[{c}] = {} vs {g}",
            grad[c]
        );
    }
}

/// Soft targets: a zero target against a −∞ logit adds nothing; a positive one makes +∞.
#[test]
fn soft_targets_with_zeros_against_masked_logits() {
    let logits = vec![0.0f32, NINF, 1.0, NINF, 2.0, 0.5];
    let probs = vec![0.5f32, 0.0, 0.5, 0.25, 0.25, 0.5];
    let mut case = Case::packed(3, logits, vec![]);
    case.rows = 2;
    case.targets = CaseTargets::Soft { probs, stride: 3 };
    case.reduction = Reduction::None;
    check_case(&case);
    let (loss, grad, _) = run_none(&case);
    let lse0 = (1.0f64 + 1f64.exp()).ln();
    let want0 = 0.5 * lse0 + 0.5 * (lse0 - 1.0);
    assert!((f64::from(loss[0]) - want0).abs() < 1e-6);
    assert_eq!(grad[1], 0.0);
    assert_eq!(loss[1], INF);
    // With smoothing every class gets a positive target, so the masked one makes +∞.
    case.label_smoothing = 0.1;
    check_case(&case);
    assert_eq!(case.reference().row_loss[0], f64::INFINITY);
    // A weight whose product with the target underflows f32 still meets the −∞ logit:
    // +∞, as PyTorch's w·(t·lp) gives, not 0·−∞ = NaN (fuzzer-found, every tier).
    case.label_smoothing = 0.0;
    case.weights = Some(vec![1.0, 1e-45, 1.0]);
    case.targets = CaseTargets::Soft {
        probs: vec![0.5f32, 0.25, 0.25, 0.25, 0.25, 0.5],
        stride: 3,
    };
    check_case(&case);
    let (loss, _, _) = run_none(&case);
    assert_eq!(loss[0], INF);
}

/// The fast gradient against central finite differences of the f64 oracle's loss.
#[test]
fn gradient_matches_finite_differences() {
    let mut rng = Rng::new(11);
    let weights = [0.5f32, 2.0, 1.0, 0.0, 1.5];
    for variant in 0..8 {
        let cols = 5;
        let rows = 3;
        let mut case = Case::packed(
            cols,
            random_logits(&mut rng, rows, cols, cols, 2.0, 0.0),
            vec![1, 4, 0],
        );
        case.reduction = [Reduction::Mean, Reduction::Sum, Reduction::None][variant % 3];
        case.label_smoothing = [0.0, 0.15][variant % 2];
        case.z_loss = [0.0, 0.02][(variant / 2) % 2];
        case.softcap = [0.0, 3.0][(variant / 4) % 2];
        case.weights = (variant % 3 == 1).then(|| weights.to_vec());
        case.grad_scale = 0.7;
        if variant == 7 {
            case.targets = CaseTargets::Soft {
                probs: common::random_soft(&mut rng, rows, cols, cols),
                stride: cols,
            };
        }
        let (_, grad, _) = {
            let mut grad = vec![0.0f32; rows * cols];
            let mut loss = vec![0.0f32; case.reduction.loss_len(rows)];
            xent::cross_entropy_grad(
                case.logits_view(),
                case.targets(),
                &case.options(),
                &mut loss,
                RowsMut::packed(&mut grad, cols).unwrap(),
                None,
            )
            .unwrap();
            (loss, grad, ())
        };
        let soft = match &case.targets {
            CaseTargets::Soft { probs, .. } => {
                Some(probs.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
            }
            CaseTargets::Hard(_) => None,
        };
        let hard = match &case.targets {
            CaseTargets::Hard(t) => t.clone(),
            CaseTargets::Soft { .. } => vec![],
        };
        let targets = match &soft {
            Some(s) => RefTargets::Soft(s),
            None => RefTargets::Hard(&hard),
        };
        let options = case.options();
        let total = |x: &[f64]| -> f64 {
            let out = xent_oracle::cross_entropy(x, rows, cols, targets, &options);
            f64::from(case.grad_scale) * out.loss.iter().sum::<f64>()
        };
        let x0: Vec<f64> = case.logits.iter().map(|&v| f64::from(v)).collect();
        let h = 1e-5;
        for k in 0..rows * cols {
            let mut plus = x0.clone();
            let mut minus = x0.clone();
            plus[k] += h;
            minus[k] -= h;
            let fd = (total(&plus) - total(&minus)) / (2.0 * h);
            assert!(
                agrees(grad[k], fd, 1e-5 * fd.abs() + 1e-6),
                "variant {variant}: grad[{k}] = {} vs finite difference {fd}",
                grad[k]
            );
        }
    }
}

/// Per-row outputs and the reduced loss are bit-identical on 1 and 2 threads.
#[test]
#[cfg_attr(
    miri,
    ignore = "a call runs in parallel from 131072 values on, minutes per call under Miri"
)]
fn results_do_not_depend_on_the_thread_count() {
    // Under Miri (by hand, with --include-ignored) just over the 131072 values below which
    // a call stays on its thread, in 3 chunks of rows.
    let (rows, cols) = (miri_or(132, 300), 1000);
    let mut rng = Rng::new(5);
    let logits = random_logits(&mut rng, rows, cols, cols, 5.0, 1.0);
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(cols) as i64).collect();
    // `None`: on the calling thread, with no pool at all.
    let run = |threads: Option<usize>, reduction: Reduction| {
        let call = || {
            let options = Options {
                reduction,
                label_smoothing: 0.1,
                ..Options::default()
            };
            let mut loss = vec![0.0f32; reduction.loss_len(rows)];
            let mut grad = logits.clone();
            let mut lse = vec![0.0f32; rows];
            xent::cross_entropy_grad_in_place(
                RowsMut::packed(&mut grad, cols).unwrap(),
                &targets[..],
                &options,
                &mut loss,
                Some(&mut lse),
            )
            .unwrap();
            (loss, grad, lse)
        };
        match threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(call),
            None => xent::on_calling_thread(call),
        }
    };
    for reduction in [Reduction::Mean, Reduction::None] {
        let (l1, g1, s1) = run(Some(1), reduction);
        let (l2, g2, s2) = run(Some(2), reduction);
        let (l0, g0, s0) = run(None, reduction);
        for (l, g, s) in [(&l2, &g2, &s2), (&l0, &g0, &s0)] {
            assert_same_bits(&l1, l, "loss");
            assert_same_bits(&g1, g, "grad");
            assert_same_bits(&s1, s, "lse");
        }
    }
}

/// i32 and u32 targets take the same path as i64 ones.
#[test]
fn narrow_target_types_agree_with_i64() {
    let cols = 6;
    let mut rng = Rng::new(9);
    let logits = random_logits(&mut rng, 4, cols, cols, 1.0, 0.0);
    let t64 = [5i64, 0, 3, 3];
    let t32 = [5i32, 0, 3, 3];
    let tu32 = [5u32, 0, 3, 3];
    let run = |targets: Targets<'_>| {
        let mut loss = [0.0f32];
        let mut grad = vec![0.0f32; 4 * cols];
        xent::cross_entropy_grad(
            Rows::packed(&logits, cols).unwrap(),
            targets,
            &Options::default(),
            &mut loss,
            RowsMut::packed(&mut grad, cols).unwrap(),
            None,
        )
        .unwrap();
        (loss, grad)
    };
    let (l64, g64) = run((&t64[..]).into());
    for t in [Targets::from(&t32[..]), Targets::from(&tu32[..])] {
        let (l, g) = run(t);
        assert_same_bits(&l64, &l, "loss");
        assert_same_bits(&g64, &g, "grad");
    }
}

/// softmax and log_softmax against the oracle: strides, in place, non-finite rows.
#[test]
fn softmax_and_log_softmax() {
    let mut rng = Rng::new(21);
    // Under Miri the lengths around the vector widths (8 lanes, 4 vectors per unrolled
    // step) instead of every length to 67 and rows of 8 column blocks: a 4105-value row
    // alone took 3 minutes there.
    let lengths: Vec<usize> = if cfg!(miri) {
        vec![1, 7, 8, 9, 16, 17, 31, 32, 33, 67]
    } else {
        (1..=67).chain([1000, 32003]).collect()
    };
    for cols in lengths {
        let rows = 4;
        let stride = cols + 2;
        let mut x = random_logits(&mut rng, rows, cols, stride, 10.0, 50.0);
        x[stride] = NINF; // row 1 has a masked entry
        x[2 * stride..2 * stride + cols].fill(NINF); // row 2 is all −∞: NaN
        x[3 * stride + cols / 2] = NAN; // row 3 has a NaN: NaN
        let packed = xent_oracle::widen(Rows::new(&x, rows, cols, stride).unwrap());
        let want_p = xent_oracle::softmax(&packed, rows, cols);
        let want_lp = xent_oracle::log_softmax(&packed, rows, cols);
        for (k, want) in [(0, &want_p), (1, &want_lp)] {
            let out_stride = cols + 1;
            let mut out = padded(rows, cols, out_stride, |_, _| PAD);
            let mut in_place = x.clone();
            let view = Rows::new(&x, rows, cols, stride).unwrap();
            let out_view = RowsMut::new(&mut out, rows, cols, out_stride).unwrap();
            let in_place_view = RowsMut::new(&mut in_place, rows, cols, stride).unwrap();
            if k == 0 {
                xent::softmax(view, out_view).unwrap();
                xent::softmax_in_place(in_place_view).unwrap();
            } else {
                xent::log_softmax(view, out_view).unwrap();
                xent::log_softmax_in_place(in_place_view).unwrap();
            }
            common::assert_padding_intact(&out, rows, cols, out_stride, "output");
            common::assert_padding_intact(&in_place, rows, cols, stride, "in place");
            for i in 0..rows {
                for c in 0..cols {
                    let w = want[i * cols + c];
                    let tol = 1e-5 * w.abs() + 1e-6;
                    let (a, b) = (out[i * out_stride + c], in_place[i * stride + c]);
                    assert!(
                        agrees(a, w, tol),
                        "cols {cols} kind {k}: [{i}][{c}] = {a} vs {w}"
                    );
                    assert_eq!(a.to_bits(), b.to_bits(), "in place differs");
                }
            }
        }
    }
}

/// `XENT_SIMD` really selects the tier the suite is meant to test (CI runs it per tier).
#[test]
fn forced_tier_is_the_active_one() {
    let level = xent::simd_level();
    let forced = std::env::var("XENT_SIMD").map(|v| v.trim().to_ascii_lowercase());
    match forced.as_deref() {
        Ok("avx512") => assert_eq!(level, "avx512"),
        Ok("avx512vl") => assert_eq!(level, "avx512vl"),
        Ok("avx2" | "avx2+fma") => assert_eq!(level, "avx2+fma"),
        Ok("portable" | "sse2" | "portable-avx2" | "neon") => {
            assert!(["sse2", "portable-avx2", "neon", "portable"].contains(&level))
        }
        Ok("scalar") => assert_eq!(level, "scalar"),
        Ok("") | Err(_) => assert_ne!(level, "scalar", "detection never picks the scalar tier"),
        Ok(other) => panic!("XENT_SIMD={other} names no tier"),
    }
}

/// Rows long enough to be cut into column blocks, and fewer rows than threads: the blocks
/// run in parallel, and give the oracle's results and the serial bits.
#[test]
#[cfg_attr(
    miri,
    ignore = "rows are split across threads from 16384 values on, about 10 calls of those \
              take tens of minutes under Miri"
)]
fn long_rows_split_across_threads() {
    // Under Miri (by hand, with --include-ignored) the shortest rows that are split (16384
    // values, 4 blocks, and a tail), and one variant: a masked block and the max in the last.
    let cols = miri_or(16_384 + 7, 262_144 + 7);
    let mut rng = Rng::new(17);
    for variant in miri_or(2..3, 0..4) {
        let rows = 1 + variant % 2;
        let mut logits = random_logits(&mut rng, rows, cols, cols, 3.0, 0.0);
        if variant == 2 {
            // A whole block of masked classes, and the max in the last block.
            logits[miri_or(4096..8192, 10_000..30_000)].fill(NINF);
            logits[cols - 1] = 40.0;
        }
        let mut case = Case::packed(cols, logits, (0..rows).map(|i| (i * 7919) as i64).collect());
        case.label_smoothing = if variant == 1 { 0.1 } else { 0.0 };
        case.softcap = if variant == 3 { 20.0 } else { 0.0 };
        case.reduction = Reduction::None;
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        four.install(|| check_case(&case));
        let (l_par, g_par, s_par) = four.install(|| run_none(&case));
        let (l_ser, g_ser, s_ser) = xent::on_calling_thread(|| run_none(&case));
        assert_same_bits(&l_par, &l_ser, "loss");
        assert_same_bits(&g_par, &g_ser, "grad");
        assert_same_bits(&s_par, &s_ser, "lse");
    }
    // A NaN in one block of a split row makes that row NaN, and only that row.
    let mut logits = random_logits(&mut rng, 1, cols, cols, 3.0, 0.0);
    logits[miri_or(12_000, 200_000)] = NAN;
    let case = Case::packed(cols, logits, vec![5]);
    let (loss, grad, lse) = run_none(&case);
    assert!(loss[0].is_nan() && lse[0].is_nan() && grad.iter().all(|g| g.is_nan()));
}

/// softmax and log_softmax of short rows (which run 16 at a time) against the oracle,
/// strided, in place too.
#[test]
fn softmax_and_log_softmax_of_short_rows() {
    let mut rng = Rng::new(31);
    // Under Miri a partial block of 8 values, one and two whole blocks, two partial ones,
    // and a row just too long for the short-row kernels, instead of every length to 17.
    let lengths = miri_or(vec![1, 3, 8, 9, 15, 16, 17], (1..=17).collect());
    for cols in lengths {
        let (rows, stride) = (21, cols + 3);
        let mut x = random_logits(&mut rng, rows, cols, stride, 4.0, 0.0);
        x[2 * stride] = NAN; // row 2 is NaN
        x[5 * stride..5 * stride + cols].fill(NINF); // row 5 is all −∞: NaN
        x[9 * stride] = NINF; // row 9 has a masked entry
        let wide = xent_oracle::widen(Rows::new(&x, rows, cols, stride).unwrap());
        for log in [false, true] {
            let want = if log {
                xent_oracle::log_softmax(&wide, rows, cols)
            } else {
                xent_oracle::softmax(&wide, rows, cols)
            };
            let mut out = padded(rows, cols, cols, |_, _| PAD);
            let mut in_place = x.clone();
            let view = Rows::new(&x, rows, cols, stride).unwrap();
            let out_view = RowsMut::packed(&mut out, cols).unwrap();
            let in_place_view = RowsMut::new(&mut in_place, rows, cols, stride).unwrap();
            if log {
                xent::log_softmax(view, out_view).unwrap();
                xent::log_softmax_in_place(in_place_view).unwrap();
            } else {
                xent::softmax(view, out_view).unwrap();
                xent::softmax_in_place(in_place_view).unwrap();
            }
            common::assert_padding_intact(&in_place, rows, cols, stride, "in place");
            for i in 0..rows {
                for c in 0..cols {
                    let w = want[i * cols + c];
                    let (a, b) = (out[i * cols + c], in_place[i * stride + c]);
                    assert!(
                        agrees(a, w, 1e-5 * w.abs() + 1e-6),
                        "cols {cols} log {log}: [{i}][{c}] = {a} vs {w}"
                    );
                    assert_eq!(a.to_bits(), b.to_bits(), "in place differs");
                }
            }
        }
    }
}

/// Checks a case whose scales sit at the edge of f32 (see `extreme_but_finite_scales`): every
/// style against the oracle (`check_case`), and then more tightly, because the absolute part
/// of the usual tolerance grows with |s|·max w: the losses within 1e-5 relative of the
/// oracle, and every gradient entry whose true value is finite in f32 finite, within 1e-5
/// relative plus 1e-6 of its own terms' size (|A|·p_c + the terms subtracted, so an entry
/// whose terms cancel may keep only their rounding error, but never the wrong sign of a
/// value larger than that).
fn check_extreme(what: &str, case: &Case) {
    check_case(case);
    let r = case.reference();
    let (loss, grad, _) = run_fused(case, &case.options());
    for (k, (&got, &want)) in loss.iter().zip(&r.loss).enumerate() {
        assert!(
            (want as f32).is_finite(),
            "{what}: a case meant to be finite (loss {want})"
        );
        let tol = 1e-5 * want.abs() + 1e-6;
        assert!(
            got.is_finite() && (f64::from(got) - want).abs() <= tol,
            "{what}: loss[{k}] = {got}, oracle {want}"
        );
    }
    let size = entry_sizes(case, &r);
    for (k, (&got, &want)) in grad.iter().zip(&r.grad).enumerate() {
        assert!(
            (want as f32).is_finite(),
            "{what}: a case meant to be finite (grad {want})"
        );
        // Plus f32's smallest spacing, for entries below its subnormals.
        let tol = 1e-5 * want.abs() + 1e-6 * size[k] + f64::from(f32::from_bits(1));
        assert!(
            got.is_finite() && (f64::from(got) - want).abs() <= tol,
            "{what}: grad[{}][{}] = {got:e}, oracle {want:e} (tolerance {tol:e})",
            k / case.cols,
            k % case.cols
        );
    }
}

/// The size of each gradient entry's terms, in f64: for a counted row with hard target y,
/// s·[(1−ε)·w_y·(p_c + [c = y]) + (ε/C)·(p_c·Σw + w_c)]; for soft targets
/// s·(p_c·Σ_k w_k·t'_k + w_c·t'_c) (no z-loss or softcap in these cases).
fn entry_sizes(case: &Case, r: &xent_oracle::RefOutput) -> Vec<f64> {
    let (cols, eps) = (case.cols, f64::from(case.label_smoothing));
    let w = |c: usize| case.weights.as_ref().map_or(1.0, |w| f64::from(w[c]));
    let w_sum: f64 = (0..cols).map(w).sum();
    let s = r.ce_scale.abs();
    let mut sizes = vec![0.0; case.rows * cols];
    for i in 0..case.rows {
        let p = |c: usize| (f64::from(case.logits[i * case.stride + c]) - r.lse[i]).exp();
        let t = |k: usize| match &case.targets {
            CaseTargets::Soft { probs, stride } => {
                (1.0 - eps) * f64::from(probs[i * stride + k]) + eps / cols as f64
            }
            CaseTargets::Hard(_) => 0.0,
        };
        let wt: f64 = (0..cols).map(|k| w(k) * t(k)).sum();
        for c in 0..cols {
            sizes[i * cols + c] = match &case.targets {
                CaseTargets::Hard(t) if t[i] == case.ignore_index => 0.0,
                CaseTargets::Hard(t) => {
                    let y = t[i] as usize;
                    let hit = if c == y { 1.0 } else { 0.0 };
                    s * ((1.0 - eps) * w(y) * (p(c) + hit)
                        + eps / cols as f64 * (p(c) * w_sum + w(c)))
                }
                CaseTargets::Soft { .. } => s * (p(c) * wt + w(c) * t(c)),
            };
        }
    }
    sizes
}

/// Scales at the edge of f32 whose results are finite: they must come back finite, with
/// the right sign, on every tier and on both paths (rows of at most 16 values run in
/// groups, longer ones row by row, the longest in several column blocks). The per-row
/// coefficients are formed in f64 and rounded once, the weights are scaled by a power of
/// two inside the kernels, and a row whose coefficients leave f32's range is written
/// scaled down and then back up (see docs/semantics.md's accuracy notes).
#[test]
#[cfg_attr(
    miri,
    ignore = "a minute per tier under Miri for arithmetic in safe code; the kernels it calls \
              run under Miri in the other tests"
)]
fn extreme_but_finite_scales() {
    let rows = 8;
    let alternating = |cols: usize, even: f32, odd: f32| -> Option<Vec<f32>> {
        Some(
            (0..cols)
                .map(|c| if c % 2 == 0 { even } else { odd })
                .collect(),
        )
    };
    for cols in [16usize, 17, 4500] {
        let targets: Vec<i64> = (0..rows as i64)
            .map(|i| (3 * i + 1) % cols as i64)
            .collect();
        let mut rng = Rng::new(cols as u64);
        let random = Case::packed(
            cols,
            random_logits(&mut rng, rows, cols, cols, 1.0, 0.0),
            targets.clone(),
        );
        let flat = Case::packed(
            cols,
            random_logits(&mut rng, rows, cols, cols, 0.1, 0.0),
            targets.clone(),
        );
        // The target's logit 0 against 5 elsewhere, or 12 against 0.
        let peaked = |target: f32, other: f32| {
            let mut logits = vec![other; rows * cols];
            for (i, &y) in targets.iter().enumerate() {
                logits[i * cols + y as usize] = target;
            }
            Case::packed(cols, logits, targets.clone())
        };
        let mut cases: Vec<(&str, Case)> = Vec::new();
        // s·(p_y − 1) ≈ −1e38: finite, though s·Σ_{c≠y} e_c is not.
        cases.push((
            "grad_scale 1e38, sum",
            Case {
                grad_scale: 1e38,
                reduction: Reduction::Sum,
                ..peaked(0.0, 5.0)
            },
        ));
        // s·w_y = 1e39 exceeds f32, the entries A·p_c do not: the row is written scaled.
        cases.push((
            "grad_scale 1e38 times weight 10, sum",
            Case {
                grad_scale: 1e38,
                reduction: Reduction::Sum,
                weights: Some(vec![10.0; cols]),
                ..peaked(12.0, 0.0)
            },
        ));
        // w·(−lp) overflows f32, the mean does not.
        cases.push((
            "weights 1e38, mean",
            Case {
                weights: Some(vec![1e38; cols]),
                ..random.clone()
            },
        ));
        // Σ w·x' overflows f32 in the smoothing term; the row losses (about 1e37·ln C) do not.
        for reduction in [Reduction::None, Reduction::Mean] {
            cases.push((
                "weights 1e37, smoothing",
                Case {
                    weights: Some(vec![1e37; cols]),
                    label_smoothing: 0.1,
                    reduction,
                    ..flat.clone()
                },
            ));
        }
        // g/W overflows f32, s·w does not.
        for label_smoothing in [0.0, 0.1] {
            cases.push((
                "weights 1e-45, mean",
                Case {
                    weights: Some(vec![1e-45; cols]),
                    label_smoothing,
                    ..random.clone()
                },
            ));
        }
        // g/W is below f32's subnormals, s·w is not: a coefficient rounded to 0 in f32
        // used to flip the sign of the weight-1e38 classes' entries.
        for label_smoothing in [0.0, 0.1] {
            cases.push((
                "weights 1e38 and 1e-45, grad_scale 1e-30",
                Case {
                    weights: alternating(cols, 1e38, 1e-45),
                    grad_scale: 1e-30,
                    label_smoothing,
                    ..random.clone()
                },
            ));
        }
        // Soft targets: Σ w·t'·x' overflows with weights 1e37, and s = g/R times them is
        // what the gradient needs with weights 1e-45 and grad_scale 1e-30.
        let soft = CaseTargets::Soft {
            probs: common::random_soft(&mut rng, rows, cols, cols),
            stride: cols,
        };
        for (weights, grad_scale) in [(1e37f32, 1.0f32), (1e-45, 1e-30)] {
            cases.push((
                "soft targets, extreme weights",
                Case {
                    targets: soft.clone(),
                    weights: alternating(cols, weights, 1.0),
                    label_smoothing: 0.1,
                    grad_scale,
                    ..flat.clone()
                },
            ));
        }
        for (what, case) in &cases {
            check_extreme(&format!("{what}, {cols} columns"), case);
        }
    }
}

/// The backward from a saved lse keeps the gradient's accuracy however large the logits:
/// the f32 lse's rounding (|lse|·2⁻²⁴) is cancelled by each row's own sum. Logits
/// [10, 0, 0] + s, target 0: the exact gradient of the target entry is −2e⁻¹⁰/(1 + 2e⁻¹⁰)
/// = −9.0792e−5 at every s (from the f32 lse it was −6.1e−5 at s = 1000, 0 at s = 1e5).
/// Then 64 × 50 random logits shifted by 1000 and by 1e5 against the oracle, in f32 and f64.
#[test]
fn backward_from_a_large_lse_keeps_its_accuracy() {
    for s in [0.0f32, 1000.0, 1e5] {
        let logits = [10.0 + s, s, s];
        let mut lse = [0.0f32];
        xent::cross_entropy(
            Rows::packed(&logits, 3).unwrap(),
            &[0i64][..],
            &Options::default(),
            &mut [0.0],
            Some(&mut lse),
        )
        .unwrap();
        let mut grad = [PAD; 3];
        xent::cross_entropy_backward(
            Rows::packed(&logits, 3).unwrap(),
            &[0i64][..],
            &Options::default(),
            &lse,
            &[1.0],
            RowsMut::packed(&mut grad, 3).unwrap(),
        )
        .unwrap();
        let e = (-10.0f64).exp();
        let want = [
            -2.0 * e / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
        ];
        for (c, (&g, &w)) in grad.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-5 * w.abs(),
                "shift {s}: grad[{c}] = {g}, exact {w}"
            );
        }
    }

    let (rows, cols) = (64, 50);
    let mut rng = Rng::new(50);
    let base = random_logits(&mut rng, rows, cols, cols, 4.0, 0.0);
    let targets: Vec<i64> = (0..rows as i64).map(|i| (i * 7) % cols as i64).collect();
    let options = Options {
        label_smoothing: 0.1,
        ..Options::default()
    };
    for shift in [1000.0f32, 1e5] {
        let logits: Vec<f32> = base.iter().map(|&v| v + shift).collect();
        let x: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
        let want = xent_oracle::cross_entropy_backward(
            &x,
            rows,
            cols,
            RefTargets::Hard(&targets),
            &options,
            &[1.0],
        );
        let mut lse = vec![0.0f32; rows];
        xent::cross_entropy(
            Rows::packed(&logits, cols).unwrap(),
            &targets[..],
            &options,
            &mut [0.0],
            Some(&mut lse),
        )
        .unwrap();
        let mut grad = vec![PAD; rows * cols];
        xent::cross_entropy_backward(
            Rows::packed(&logits, cols).unwrap(),
            &targets[..],
            &options,
            &lse,
            &[1.0],
            RowsMut::packed(&mut grad, cols).unwrap(),
        )
        .unwrap();
        // docs/semantics.md's gradient bound: 1e-5 relative plus 1e-6 of the scale (1/64).
        for (k, (&g, &w)) in grad.iter().zip(&want).enumerate() {
            assert!(
                agrees(g, w, 1e-5 * w.abs() + 1e-6 / rows as f64),
                "shift {shift}: grad[{k}] = {g}, oracle {w}"
            );
        }

        let mut lse64 = vec![0.0f64; rows];
        xent::cross_entropy(
            Rows::packed(&x, cols).unwrap(),
            &targets[..],
            &options,
            &mut [0.0],
            Some(&mut lse64),
        )
        .unwrap();
        let mut grad64 = vec![0.0f64; rows * cols];
        xent::cross_entropy_backward(
            Rows::packed(&x, cols).unwrap(),
            &targets[..],
            &options,
            &lse64,
            &[1.0],
            RowsMut::packed(&mut grad64, cols).unwrap(),
        )
        .unwrap();
        // f64's own rounding of x − lse at |x| = 1e5 (ulp 1.5e−11) bounds its accuracy.
        for (k, (&g, &w)) in grad64.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-10 * w.abs() + 1e-15,
                "f64, shift {shift}: grad[{k}] = {g}, oracle {w}"
            );
        }
    }
}
