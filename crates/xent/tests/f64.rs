//! f64 logits: every call style against the f64 oracle within 1e-12 relative (plus an
//! absolute part 1e-14 scaled like docs/semantics.md's f32 one), strided, in place, with non-finite rows.

mod common;

use common::{Rng, miri_or, random_soft};
use xent::{Options, Reduction, Rows, RowsMut, Targets};
use xent_oracle::RefTargets;

/// A padding value no call may read into a result or overwrite.
const PAD: f64 = f64::from_bits(0x7ff8_dead_beef_0001);

fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= tol
    }
}

struct Case64 {
    rows: usize,
    cols: usize,
    stride: usize,
    /// Strided, `PAD` in the padding.
    logits: Vec<f64>,
    hard: Vec<i64>,
    soft: Option<Vec<f32>>,
    options: Options<'static>,
}

impl Case64 {
    fn view(&self) -> Rows<'_, f64> {
        Rows::new(&self.logits, self.rows, self.cols, self.stride).unwrap()
    }

    fn targets(&self) -> Targets<'_> {
        match &self.soft {
            Some(t) => Targets::Soft(Rows::packed(t, self.cols).unwrap()),
            None => Targets::I64(&self.hard),
        }
    }

    fn packed(&self) -> Vec<f64> {
        (0..self.rows)
            .flat_map(|i| self.logits[i * self.stride..i * self.stride + self.cols].to_vec())
            .collect()
    }

    fn reference(&self, soft64: &[f64]) -> xent_oracle::RefOutput {
        let targets = match &self.soft {
            Some(_) => RefTargets::Soft(soft64),
            None => RefTargets::Hard(&self.hard),
        };
        xent_oracle::cross_entropy(&self.packed(), self.rows, self.cols, targets, &self.options)
    }
}

/// Every call style of one case against the oracle.
fn check(case: &Case64) {
    let (rows, cols, stride) = (case.rows, case.cols, case.stride);
    let soft64: Vec<f64> = case
        .soft
        .as_ref()
        .map(|t| t.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    let r = case.reference(&soft64);
    let max_w = case
        .options
        .class_weights
        .map_or(1.0, |w| w.iter().fold(1.0f64, |m, &v| m.max(f64::from(v))));
    let s = r.ce_scale.abs().max(r.z_scale.abs());
    let s = if s.is_finite() { s } else { 0.0 };
    let cap = 1.0 + f64::from(case.options.softcap) / 2.0;
    let grad_tol = |w: f64| 1e-12 * w.abs() + 1e-14 * s * max_w * cap;
    let loss_len = case.options.reduction.loss_len(rows);
    let loss_tol: Vec<f64> = match case.options.reduction {
        Reduction::None => (0..rows)
            .map(|i| {
                let m = if r.row_max[i].is_finite() {
                    r.row_max[i].abs()
                } else {
                    0.0
                };
                1e-12 * r.row_loss[i].abs() + 1e-14 * (1.0 + m) * max_w
            })
            .collect(),
        _ => vec![1e-12 * r.loss[0].abs() + 1e-14 * max_w * rows as f64],
    };
    let check_loss = |loss: &[f64], what: &str| {
        for (k, ((&g, &w), &t)) in loss.iter().zip(&r.loss).zip(&loss_tol).enumerate() {
            assert!(
                close(g, w, t),
                "{what} loss[{k}] = {g}, oracle {w} (cols {cols})"
            );
        }
    };
    let check_lse = |lse: &[f64], what: &str| {
        for (i, (&g, &w)) in lse.iter().zip(&r.lse).enumerate() {
            assert!(
                close(g, w, 1e-12 * w.abs() + 1e-14),
                "{what} lse[{i}] = {g}, oracle {w}"
            );
        }
    };
    let check_grad = |grad: &[f64], gs: usize, want: &[f64], what: &str| {
        for i in 0..rows {
            for c in 0..cols {
                let (g, w) = (grad[i * gs + c], want[i * cols + c]);
                assert!(
                    close(g, w, grad_tol(w)),
                    "{what} grad[{i}][{c}] = {g}, oracle {w} (cols {cols}, {:?})",
                    case.options
                );
            }
            for c in cols..gs.min(grad.len() - i * gs) {
                assert_eq!(grad[i * gs + c].to_bits(), PAD.to_bits(), "{what}: padding");
            }
        }
    };

    // Forward only.
    let (mut loss, mut lse) = (vec![PAD; loss_len], vec![PAD; rows]);
    xent::cross_entropy(
        case.view(),
        case.targets(),
        &case.options,
        &mut loss,
        Some(&mut lse),
    )
    .unwrap();
    check_loss(&loss, "forward");
    check_lse(&lse, "forward");

    // Gradient into a separate strided buffer.
    let gs = cols + 2;
    let mut grad = vec![PAD; (rows - 1) * gs + cols];
    let mut loss2 = vec![PAD; loss_len];
    xent::cross_entropy_grad(
        case.view(),
        case.targets(),
        &case.options,
        &mut loss2,
        RowsMut::new(&mut grad, rows, cols, gs).unwrap(),
        None,
    )
    .unwrap();
    check_loss(&loss2, "separate");
    check_grad(&grad, gs, &r.grad, "separate");

    // In place: the same bits.
    let mut in_place = case.logits.clone();
    let mut loss3 = vec![PAD; loss_len];
    xent::cross_entropy_grad_in_place(
        RowsMut::new(&mut in_place, rows, cols, stride).unwrap(),
        case.targets(),
        &case.options,
        &mut loss3,
        None,
    )
    .unwrap();
    for i in 0..rows {
        for c in 0..cols {
            let (a, b) = (in_place[i * stride + c], grad[i * gs + c]);
            assert!(
                a.to_bits() == b.to_bits(),
                "in place [{i}][{c}]: {a} vs {b}"
            );
        }
    }
    check_grad(&in_place, stride, &r.grad, "in place");

    // Backward from the saved lse, separate and in place.
    let dloss = vec![0.75; loss_len];
    let targets = match &case.soft {
        Some(_) => RefTargets::Soft(&soft64),
        None => RefTargets::Hard(&case.hard),
    };
    let want = xent_oracle::cross_entropy_backward(
        &case.packed(),
        rows,
        cols,
        targets,
        &case.options,
        &dloss,
    );
    let mut back = vec![PAD; rows * cols];
    xent::cross_entropy_backward(
        case.view(),
        case.targets(),
        &case.options,
        &lse,
        &dloss,
        RowsMut::packed(&mut back, cols).unwrap(),
    )
    .unwrap();
    let scaled_tol = |w: f64| grad_tol(w) * 0.75;
    for (k, (&g, &w)) in back.iter().zip(&want).enumerate() {
        assert!(
            close(g, w, scaled_tol(w)),
            "backward [{k}] = {g}, oracle {w}"
        );
    }
    let mut back_in_place = case.logits.clone();
    xent::cross_entropy_backward_in_place(
        RowsMut::new(&mut back_in_place, rows, cols, stride).unwrap(),
        case.targets(),
        &case.options,
        &lse,
        &dloss,
    )
    .unwrap();
    for i in 0..rows {
        for c in 0..cols {
            let (a, b) = (back_in_place[i * stride + c], back[i * cols + c]);
            assert!(a.to_bits() == b.to_bits(), "backward in place [{i}][{c}]");
        }
    }
}

static WEIGHTS: [f32; 67] = {
    let mut w = [0.0f32; 67];
    let mut c = 0;
    while c < 67 {
        w[c] = 0.5 + (c % 7) as f32 * 0.25;
        c += 1;
    }
    w
};

#[test]
fn matches_the_oracle_to_1e_12() {
    let mut rng = Rng::new(64);
    // Under Miri fewer and shorter rows: the f64 path has no column blocks nor vectors,
    // so a row's length changes nothing but its cost.
    let lengths = miri_or(
        &[1, 3, 8, 17, 67][..],
        &[1, 2, 3, 8, 10, 16, 17, 33, 67, 1000, 32003],
    );
    for &cols in lengths {
        let rows = if cols > 1000 { 2 } else { 11 };
        for variant in 0..6 {
            let stride = cols + variant % 2;
            let mut logits = vec![PAD; (rows - 1) * stride + cols];
            for i in 0..rows {
                for c in 0..cols {
                    // Full f64 mantissas: these values are not f32's.
                    let v = f64::from(rng.normal()) * 5.0 + f64::from(rng.unit()) * 1e-9;
                    logits[i * stride + c] = v;
                }
            }
            // A masked entry, and (for rows ≥ 3) a NaN row and an all −∞ row.
            logits[0] = f64::NEG_INFINITY;
            if rows >= 3 && variant == 0 {
                logits[stride + cols / 2] = f64::NAN;
                logits[2 * stride..2 * stride + cols].fill(f64::NEG_INFINITY);
            }
            let hard: Vec<i64> = (0..rows).map(|i| ((i * 7 + 1) % cols) as i64).collect();
            let mut options = Options::default();
            let mut soft = None;
            match variant {
                1 if cols <= 67 => {
                    options.label_smoothing = 0.1;
                    options.class_weights = Some(&WEIGHTS[..cols]);
                }
                2 => {
                    options.z_loss = 1e-3;
                    options.softcap = 15.0;
                    options.reduction = Reduction::Sum;
                }
                3 => {
                    options.reduction = Reduction::None;
                    options.ignore_index = 0;
                    options.grad_scale = 0.5;
                }
                4 => soft = Some(random_soft(&mut rng, rows, cols, cols)),
                5 => {
                    options.label_smoothing = 0.2;
                    options.reduction = Reduction::None;
                }
                _ => {}
            }
            let mut hard = hard;
            if variant == 3 {
                hard[1] = 0; // an ignored row (ignore_index 0)
            }
            check(&Case64 {
                rows,
                cols,
                stride,
                logits,
                hard,
                soft,
                options,
            });
        }
    }
}

/// Soft targets with smoothing over a masked class of weight 0: the term w·t'·lp is
/// 0·(−∞) = NaN, as in PyTorch and the f32 kernels (fuzzer-found: the f64 path skipped
/// zero-weight terms and gave +∞).
#[test]
fn zero_weight_on_a_masked_class_under_smoothing_is_nan() {
    let logits = [f64::NEG_INFINITY, 0.5, 1.5];
    let probs = [0.25f32, 0.25, 0.5];
    let weights = [0.0f32, 1.0, 2.0];
    let options = Options {
        reduction: Reduction::Sum,
        label_smoothing: 0.1,
        class_weights: Some(&weights),
        ..Options::default()
    };
    let soft = Targets::Soft(Rows::packed(&probs, 3).unwrap());
    let mut loss = [0.0f64];
    xent::cross_entropy(
        Rows::packed(&logits, 3).unwrap(),
        soft,
        &options,
        &mut loss,
        None,
    )
    .unwrap();
    let logits32 = logits.map(|v| v as f32);
    let mut loss32 = [0.0f32];
    xent::cross_entropy(
        Rows::packed(&logits32, 3).unwrap(),
        soft,
        &options,
        &mut loss32,
        None,
    )
    .unwrap();
    assert!(
        loss[0].is_nan() && loss32[0].is_nan(),
        "f64 {} f32 {}",
        loss[0],
        loss32[0]
    );
}

/// softmax and log_softmax of f64 rows against the oracle, separate and in place.
#[test]
fn softmax_and_log_softmax() {
    let mut rng = Rng::new(65);
    for cols in [1, 5, 16, 67, miri_or(300, 1000)] {
        let rows = 9;
        let x: Vec<f64> = (0..rows * cols)
            .map(|_| f64::from(rng.normal()) * 8.0 + f64::from(rng.unit()) * 1e-10)
            .collect();
        for log in [false, true] {
            let want = if log {
                xent_oracle::log_softmax(&x, rows, cols)
            } else {
                xent_oracle::softmax(&x, rows, cols)
            };
            let mut out = vec![0.0f64; rows * cols];
            let mut in_place = x.clone();
            let view = Rows::packed(&x, cols).unwrap();
            if log {
                xent::log_softmax(view, RowsMut::packed(&mut out, cols).unwrap()).unwrap();
                xent::log_softmax_in_place(RowsMut::packed(&mut in_place, cols).unwrap()).unwrap();
            } else {
                xent::softmax(view, RowsMut::packed(&mut out, cols).unwrap()).unwrap();
                xent::softmax_in_place(RowsMut::packed(&mut in_place, cols).unwrap()).unwrap();
            }
            for (k, ((&g, &w), &p)) in out.iter().zip(&want).zip(&in_place).enumerate() {
                assert!(
                    close(g, w, 1e-12 * w.abs() + 1e-15),
                    "log {log} [{k}]: {g} vs {w}"
                );
                assert_eq!(g.to_bits(), p.to_bits(), "in place differs");
            }
        }
    }
}

/// f64 calls are validated like f32 ones, before anything is written.
#[test]
fn bad_input_writes_nothing() {
    let mut logits = vec![0.5f64, -1.0, 2.0, 0.25, 1.0, -3.0];
    let before = logits.clone();
    let mut loss = [PAD];
    let mut lse = [PAD; 2];
    let err = xent::cross_entropy_grad_in_place(
        RowsMut::packed(&mut logits, 3).unwrap(),
        &[0i64, 3][..],
        &Options::default(),
        &mut loss,
        Some(&mut lse),
    )
    .unwrap_err();
    assert!(
        matches!(err, xent::Error::TargetOutOfRange { row: 1, .. }),
        "{err:?}"
    );
    assert_eq!(logits, before);
    assert_eq!(loss[0].to_bits(), PAD.to_bits());
    assert!(lse.iter().all(|v| v.to_bits() == PAD.to_bits()));
    let short_lse = xent::cross_entropy(
        Rows::packed(&before, 3).unwrap(),
        &[0i64, 1][..],
        &Options::default(),
        &mut loss,
        Some(&mut lse[..1]),
    );
    assert!(matches!(short_lse, Err(xent::Error::InvalidShape { .. })));
    assert_eq!(loss[0].to_bits(), PAD.to_bits());
}
