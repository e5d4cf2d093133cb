//! The fused linear + cross-entropy against the unfused composition evaluated in f64: the
//! logits H·Wᵀ + b, the oracle's loss, lse and gradient G, then dH = G·W, dW = Gᵀ·H and
//! db = Σ_rows G. H and W hold values with few mantissa bits, so every logit is exact in
//! f32 and the comparison sees the cross-entropy's rounding and the GEMMs' accumulation
//! only. Generated over the hard-target option space, odd dims (1, 3, 17, 65), strides,
//! ignored rows, −∞ bias entries (a masked vocabulary) and chunk sizes from 1 class to
//! the whole vocabulary. The backward from the saved lse is checked the same way, with a
//! per-row upstream gradient for `Reduction::None`, and the next-token shift against the
//! same call on explicitly shifted targets.

mod common;

use common::{PAD, Rng, agrees, assert_padding_intact, miri_or, padded};
use proptest::prelude::*;
use xent::{
    Chunking, Error, LinearGrads, LinearHead, Options, Reduction, Rows, RowsMut,
    linear_cross_entropy_backward_chunked, linear_cross_entropy_chunked,
};
use xent_oracle::RefTargets;

/// One generated layer and batch.
#[derive(Debug, Clone)]
struct Layer {
    rows: usize,
    dim: usize,
    classes: usize,
    hidden: Vec<f32>,
    hidden_stride: usize,
    weight: Vec<f32>,
    weight_stride: usize,
    bias: Option<Vec<f32>>,
    targets: Vec<i64>,
    class_weights: Option<Vec<f32>>,
    reduction: Reduction,
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    grad_scale: f32,
}

#[derive(Debug, Clone)]
struct Params {
    rows: usize,
    dim: usize,
    classes: usize,
    pad: usize,
    bias: u8,
    weighted: bool,
    ignore_share: f32,
    reduction: Reduction,
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    grad_scale: f32,
    seed: u64,
}

/// A value of `k/2^bits` with |k| ≤ `max`: products and sums of a few hundred of them stay
/// exact in f32.
fn coarse(rng: &mut Rng, max: i32, bits: i32) -> f32 {
    let k = rng.below(2 * max as usize + 1) as i32 - max;
    k as f32 / (1 << bits) as f32
}

fn build(p: &Params) -> Layer {
    let mut rng = Rng::new(p.seed);
    let hidden_stride = p.dim + p.pad;
    let weight_stride = p.dim + 2 * p.pad;
    let hidden = padded(p.rows, p.dim, hidden_stride, |_, _| coarse(&mut rng, 8, 3));
    let weight = padded(p.classes, p.dim, weight_stride, |_, _| {
        coarse(&mut rng, 8, 3)
    });
    let bias = match p.bias {
        0 => None,
        1 => Some((0..p.classes).map(|_| coarse(&mut rng, 16, 2)).collect()),
        // A masked vocabulary: some classes' bias is −∞.
        _ => Some(
            (0..p.classes)
                .map(|c| {
                    if c % 5 == 2 {
                        f32::NEG_INFINITY
                    } else {
                        coarse(&mut rng, 16, 2)
                    }
                })
                .collect(),
        ),
    };
    let targets = (0..p.rows)
        .map(|_| {
            if rng.unit() < p.ignore_share {
                -100
            } else {
                rng.below(p.classes) as i64
            }
        })
        .collect();
    let class_weights = p.weighted.then(|| {
        (0..p.classes)
            .map(|_| {
                if rng.unit() < 0.15 {
                    0.0
                } else {
                    rng.range(0.0, 3.0)
                }
            })
            .collect()
    });
    Layer {
        rows: p.rows,
        dim: p.dim,
        classes: p.classes,
        hidden,
        hidden_stride,
        weight,
        weight_stride,
        bias,
        targets,
        class_weights,
        reduction: p.reduction,
        label_smoothing: p.label_smoothing,
        z_loss: p.z_loss,
        softcap: p.softcap,
        grad_scale: p.grad_scale,
    }
}

impl Layer {
    fn options(&self) -> Options<'_> {
        Options {
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
            z_loss: self.z_loss,
            softcap: self.softcap,
            grad_scale: self.grad_scale,
            class_weights: self.class_weights.as_deref(),
            ..Options::default()
        }
    }

    fn head(&self) -> LinearHead<'_> {
        LinearHead {
            hidden: Rows::new(&self.hidden, self.rows, self.dim, self.hidden_stride).unwrap(),
            weight: Rows::new(&self.weight, self.classes, self.dim, self.weight_stride).unwrap(),
            bias: self.bias.as_deref(),
            next_token: None,
        }
    }

    fn h(&self, i: usize, k: usize) -> f64 {
        f64::from(self.hidden[i * self.hidden_stride + k])
    }

    fn w(&self, c: usize, k: usize) -> f64 {
        f64::from(self.weight[c * self.weight_stride + k])
    }

    /// The logits in f64 (exact: coarse values), packed.
    fn logits(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.rows * self.classes);
        for i in 0..self.rows {
            for c in 0..self.classes {
                let dot: f64 = (0..self.dim).map(|k| self.h(i, k) * self.w(c, k)).sum();
                let b = self.bias.as_ref().map_or(0.0, |b| f64::from(b[c]));
                out.push(dot + b);
            }
        }
        out
    }
}

/// What the fused call returned.
struct Fused {
    loss: Vec<f32>,
    lse: Vec<f32>,
    grads: Grads,
}

/// The three gradients, padded as [`Grads::new`] lays them out.
struct Grads {
    hidden: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

const GH_PAD: usize = 3;
const GW_PAD: usize = 1;

impl Grads {
    /// Gradient buffers for `layer`, padded and filled with [`PAD`].
    fn new(layer: &Layer) -> Grads {
        let (rows, dim, classes) = (layer.rows, layer.dim, layer.classes);
        Grads {
            hidden: padded(rows, dim, dim + GH_PAD, |_, _| PAD),
            weight: padded(classes, dim, dim + GW_PAD, |_, _| PAD),
            bias: vec![PAD; classes],
        }
    }

    fn views(&mut self, layer: &Layer) -> LinearGrads<'_> {
        let (rows, dim, classes) = (layer.rows, layer.dim, layer.classes);
        LinearGrads {
            hidden: Some(RowsMut::new(&mut self.hidden, rows, dim, dim + GH_PAD).unwrap()),
            weight: Some(RowsMut::new(&mut self.weight, classes, dim, dim + GW_PAD).unwrap()),
            bias: Some(&mut self.bias),
        }
    }

    fn assert_padding_intact(&self, layer: &Layer) {
        let (rows, dim, classes) = (layer.rows, layer.dim, layer.classes);
        assert_padding_intact(&self.hidden, rows, dim, dim + GH_PAD, "grad_hidden");
        assert_padding_intact(&self.weight, classes, dim, dim + GW_PAD, "grad_weight");
    }
}

fn run_fused(layer: &Layer, chunking: Chunking) -> Fused {
    let rows = layer.rows;
    let loss_len = layer.reduction.loss_len(rows);
    let mut loss = vec![PAD; loss_len];
    let mut lse = vec![PAD; rows];
    let mut grads = Grads::new(layer);
    let options = layer.options();
    linear_cross_entropy_chunked(
        layer.head(),
        &layer.targets[..],
        &options,
        &mut loss,
        grads.views(layer),
        Some(&mut lse),
        chunking,
    )
    .unwrap();
    grads.assert_padding_intact(layer);

    // Without gradients: the same loss and lse, bit for bit.
    let mut loss2 = vec![PAD; loss_len];
    let mut lse2 = vec![PAD; rows];
    linear_cross_entropy_chunked(
        layer.head(),
        &layer.targets[..],
        &options,
        &mut loss2,
        LinearGrads::default(),
        Some(&mut lse2),
        chunking,
    )
    .unwrap();
    common::assert_same_bits(&loss, &loss2, "loss without gradients");
    common::assert_same_bits(&lse, &lse2, "lse without gradients");
    Fused { loss, lse, grads }
}

/// The backward from the fused call's `lse` with upstream gradient `dloss`.
fn run_backward(layer: &Layer, chunking: Chunking, lse: &[f32], dloss: &[f32]) -> Grads {
    let mut grads = Grads::new(layer);
    linear_cross_entropy_backward_chunked(
        layer.head(),
        &layer.targets[..],
        &layer.options(),
        lse,
        dloss,
        grads.views(layer),
        chunking,
    )
    .unwrap();
    grads.assert_padding_intact(layer);
    grads
}

/// Compares one output with the f64 composition: `want` and `tol` per entry.
fn assert_close(what: &str, got: f32, want: f64, tol: f64) {
    assert!(
        agrees(got, want, tol),
        "{what} = {got}, composition {want} (tolerance {tol})"
    );
}

fn check(layer: &Layer, chunking: Chunking) {
    let (rows, classes) = (layer.rows, layer.classes);
    let fused = run_fused(layer, chunking);
    let logits = layer.logits();
    let options = layer.options();
    let r = xent_oracle::cross_entropy(
        &logits,
        rows,
        classes,
        RefTargets::Hard(&layer.targets),
        &options,
    );
    let max_w = layer
        .class_weights
        .as_ref()
        .map_or(1.0, |w| w.iter().fold(1.0f64, |m, &w| m.max(f64::from(w))));
    let finite_max = |i: usize| {
        let m = r.row_max[i];
        if m.is_finite() { m.abs() } else { 0.0 }
    };
    // docs/semantics.md's tolerances for the loss and the gradient G.
    let row_tol: Vec<f64> = (0..rows)
        .map(|i| 1e-5 * r.row_loss[i].abs() + 1e-6 * (1.0 + finite_max(i)) * max_w)
        .collect();
    match layer.reduction {
        Reduction::None => {
            for (i, tol) in row_tol.iter().enumerate() {
                assert_close(&format!("loss[{i}]"), fused.loss[i], r.loss[i], *tol);
            }
        }
        _ => {
            let total: f64 = row_tol.iter().sum();
            let divisor = match layer.reduction {
                Reduction::Mean => {
                    let counted = layer.targets.iter().filter(|&&y| y != -100);
                    let (w, n) = counted.fold((0.0, 0.0), |(w, n), &y| {
                        let wy = layer
                            .class_weights
                            .as_ref()
                            .map_or(1.0, |cw| f64::from(cw[y as usize]));
                        (w + wy, n + 1.0)
                    });
                    f64::min(w, n).max(f64::MIN_POSITIVE)
                }
                _ => 1.0,
            };
            assert_close("loss", fused.loss[0], r.loss[0], total / divisor);
        }
    }
    for i in 0..rows {
        let tol = 1e-6 * (1.0 + finite_max(i)) + 1e-6 * r.lse[i].abs();
        assert_close(&format!("lse[{i}]"), fused.lse[i], r.lse[i], tol);
    }
    let s = r.ce_scale.abs().max(r.z_scale.abs());
    let s = if s.is_finite() { s } else { 0.0 };
    check_grads(layer, &r.grad, s, max_w, &vec![1.0; rows], &fused.grads);

    // The backward from the saved lse: with the call's upstream gradient (grad_scale), the
    // fused gradients; with one per row, each row's gradient times its factor.
    let mut rng = Rng::new(rows as u64 * 31 + classes as u64);
    let row_scale: Vec<f64> = match layer.reduction {
        Reduction::None => (0..rows).map(|_| coarse(&mut rng, 8, 2).into()).collect(),
        _ => vec![1.0; rows],
    };
    let dloss: Vec<f32> = match layer.reduction {
        Reduction::None => row_scale
            .iter()
            .map(|&u| (u * f64::from(layer.grad_scale)) as f32)
            .collect(),
        _ => vec![layer.grad_scale],
    };
    let backward = run_backward(layer, chunking, &fused.lse, &dloss);
    let top = row_scale.iter().fold(1.0f64, |m, &u| m.max(u.abs()));
    check_grads(layer, &r.grad, s * top, max_w, &row_scale, &backward);
}

/// Compares the three gradients with the f64 composition from the logits' gradient
/// `grad` (row i times `row_scale[i]`); `s` is the largest scale of a gradient entry.
fn check_grads(layer: &Layer, grad: &[f64], s: f64, max_w: f64, row_scale: &[f64], got: &Grads) {
    let (rows, dim, classes) = (layer.rows, layer.dim, layer.classes);
    let g_tol =
        |want: f64| 1e-5 * want.abs() + 1e-6 * s * max_w * (1.0 + f64::from(layer.softcap) / 2.0);
    let g = |i: usize, c: usize| grad[i * classes + c] * row_scale[i];
    // f32 accumulation over n terms: within n·ε of the sum of their magnitudes.
    let eps = f64::from(f32::EPSILON);

    for i in 0..rows {
        for k in 0..dim {
            let terms = (0..classes).map(|c| (g(i, c), layer.w(c, k)));
            let (want, tol) = terms.fold((0.0, 0.0), |(sum, tol), (g, w)| {
                (
                    sum + g * w,
                    tol + g_tol(g) * w.abs() + classes as f64 * eps * (g * w).abs(),
                )
            });
            let got = got.hidden[i * (dim + GH_PAD) + k];
            assert_close(&format!("grad_hidden[{i}][{k}]"), got, want, tol);
        }
    }
    for c in 0..classes {
        for k in 0..dim {
            let terms = (0..rows).map(|i| (g(i, c), layer.h(i, k)));
            let (want, tol) = terms.fold((0.0, 0.0), |(sum, tol), (g, h)| {
                (
                    sum + g * h,
                    tol + g_tol(g) * h.abs() + rows as f64 * eps * (g * h).abs(),
                )
            });
            let got = got.weight[c * (dim + GW_PAD) + k];
            assert_close(&format!("grad_weight[{c}][{k}]"), got, want, tol);
        }
        let (want, tol) = (0..rows).fold((0.0, 0.0), |(sum, tol), i| {
            (sum + g(i, c), tol + g_tol(g(i, c)))
        });
        assert_close(&format!("grad_bias[{c}]"), got.bias[c], want, tol);
    }
}

fn params() -> impl Strategy<Value = (Params, Chunking)> {
    (
        (
            0usize..7,
            prop_oneof![Just(1usize), Just(3), Just(17), Just(65)],
            1usize..=67,
            0usize..3,
            0u8..3,
            any::<bool>(),
        ),
        (
            prop_oneof![Just(0.0f32), Just(0.3)],
            prop_oneof![
                Just(Reduction::Mean),
                Just(Reduction::Sum),
                Just(Reduction::None)
            ],
            prop_oneof![Just(0.0f32), Just(0.1), Just(1.0)],
            prop_oneof![Just(0.0f32), Just(1e-3)],
            prop_oneof![Just(0.0f32), Just(5.0)],
            prop_oneof![Just(1.0f32), Just(-0.5)],
        ),
        (
            prop_oneof![
                Just(Chunking::Auto),
                (1usize..10).prop_map(Chunking::Classes),
                Just(Chunking::Classes(1000)),
            ],
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (rows, dim, classes, pad, bias, weighted),
                (ignore_share, reduction, label_smoothing, z_loss, softcap, grad_scale),
                (chunking, seed),
            )| {
                (
                    Params {
                        rows,
                        dim,
                        classes,
                        pad,
                        bias,
                        weighted,
                        ignore_share,
                        reduction,
                        label_smoothing,
                        z_loss,
                        softcap,
                        grad_scale,
                        seed,
                    },
                    chunking,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(256), ..ProptestConfig::default() })]

    #[test]
    fn fused_matches_the_composition((p, chunking) in params()) {
        check(&build(&p), chunking);
    }
}

/// A batch large enough for the chunks and the GEMMs to run on the rayon pool, with the
/// automatic chunking cutting the vocabulary into several chunks.
#[test]
fn large_batch_in_automatic_chunks() {
    // Under Miri a smaller layer: 256-class chunks still cut it into 3, the last partial.
    let p = Params {
        rows: miri_or(12, 40),
        dim: miri_or(17, 65),
        classes: miri_or(600, 3000),
        pad: 1,
        bias: 2,
        weighted: true,
        ignore_share: 0.1,
        reduction: Reduction::Mean,
        label_smoothing: 0.1,
        z_loss: 1e-4,
        softcap: 0.0,
        grad_scale: 1.0,
        seed: 7,
    };
    let layer = build(&p);
    check(&layer, Chunking::Auto);
    check(&layer, Chunking::Classes(256));
}

/// A one-row batch may have any stride, usize::MAX included, and gives the packed results
/// (fuzzer-found: the hidden states' view panicked on its way to the GEMMs).
#[test]
fn one_row_views_with_huge_strides() {
    let hidden = [0.5f32, -1.0, 0.25];
    let weight = [
        0.25f32, 0.5, -0.5, 1.0, 0.0, 0.75, -0.25, 0.125, 2.0, 1.5, -1.5, 0.5,
    ];
    let run = |stride: usize| {
        let mut loss = [0.0f32];
        let mut grad_hidden = [0.0f32; 3];
        let mut grad_weight = [0.0f32; 12];
        let head = LinearHead {
            hidden: Rows::new(&hidden, 1, 3, stride).unwrap(),
            weight: Rows::packed(&weight, 3).unwrap(),
            bias: None,
            next_token: None,
        };
        let grads = LinearGrads {
            hidden: Some(RowsMut::new(&mut grad_hidden, 1, 3, stride).unwrap()),
            weight: Some(RowsMut::packed(&mut grad_weight, 3).unwrap()),
            bias: None,
        };
        xent::linear_cross_entropy(
            head,
            &[2i64][..],
            &Options::default(),
            &mut loss,
            grads,
            None,
        )
        .unwrap();
        (loss, grad_hidden, grad_weight)
    };
    let packed = run(3);
    assert!(packed.0[0] > 0.0);
    for stride in [4, usize::MAX / 2, usize::MAX] {
        assert_eq!(run(stride), packed, "stride {stride}");
    }
}

/// Every check runs before the first write.
#[test]
fn bad_input_writes_nothing() {
    let hidden = [0.5f32; 6];
    let weight = [0.25f32; 12];
    let bias = [0.0f32; 4];
    let head = LinearHead {
        hidden: Rows::packed(&hidden, 3).unwrap(),
        weight: Rows::packed(&weight, 3).unwrap(),
        bias: Some(&bias),
        next_token: None,
    };
    let options = Options::default();
    let call = |head: LinearHead<'_>, targets: &[i64], options: &Options<'_>, gh_cols: usize| {
        let mut loss = [PAD];
        let mut gh = [PAD; 8];
        let mut gw = [PAD; 12];
        let mut gb = [PAD; 4];
        let grads = LinearGrads {
            hidden: Some(RowsMut::new(&mut gh, 2, gh_cols, 4).unwrap()),
            weight: Some(RowsMut::packed(&mut gw, 3).unwrap()),
            bias: Some(&mut gb),
        };
        let err =
            xent::linear_cross_entropy(head, targets, options, &mut loss, grads, None).unwrap_err();
        for (what, buf) in [("loss", &loss[..]), ("gh", &gh), ("gw", &gw), ("gb", &gb)] {
            assert!(
                buf.iter().all(|v| v.to_bits() == PAD.to_bits()),
                "{what} written: {err}"
            );
        }
        err
    };
    assert!(matches!(
        call(head, &[0, 4], &options, 3),
        Error::TargetOutOfRange {
            row: 1,
            target: 4,
            cols: 4,
            ..
        }
    ));
    assert!(matches!(
        call(head, &[0, 1], &options, 2),
        Error::InvalidShape {
            buffer: "grad_hidden",
            ..
        }
    ));
    let short_bias = LinearHead {
        bias: Some(&bias[..3]),
        ..head
    };
    assert!(matches!(
        call(short_bias, &[0, 1], &options, 3),
        Error::InvalidShape { buffer: "bias", .. }
    ));
    let narrow = LinearHead {
        weight: Rows::packed(&weight, 4).unwrap(),
        ..head
    };
    assert!(matches!(
        call(narrow, &[0, 1], &options, 3),
        Error::InvalidShape {
            buffer: "weight",
            ..
        }
    ));
    let bad = Options {
        z_loss: -1.0,
        ..options
    };
    assert!(matches!(
        call(head, &[0, 1], &bad, 3),
        Error::InvalidOption { .. }
    ));
    for len in [0, 3] {
        let shifted = LinearHead {
            next_token: Some(len),
            ..head
        };
        assert!(matches!(
            call(shifted, &[0, 1], &options, 3),
            Error::InvalidShape {
                buffer: "next_token",
                ..
            }
        ));
    }

    // The backward: its lse and dloss, then every check the forward makes.
    let backward = |head: LinearHead<'_>, lse: &[f32], dloss: &[f32], targets: &[i64]| {
        let mut gh = [PAD; 6];
        let mut gw = [PAD; 12];
        let mut gb = [PAD; 4];
        let grads = LinearGrads {
            hidden: Some(RowsMut::packed(&mut gh, 3).unwrap()),
            weight: Some(RowsMut::packed(&mut gw, 3).unwrap()),
            bias: Some(&mut gb),
        };
        let err = xent::linear_cross_entropy_backward(head, targets, &options, lse, dloss, grads)
            .unwrap_err();
        for (what, buf) in [("gh", &gh[..]), ("gw", &gw), ("gb", &gb)] {
            assert!(
                buf.iter().all(|v| v.to_bits() == PAD.to_bits()),
                "{what} written: {err}"
            );
        }
        err
    };
    assert!(matches!(
        backward(head, &[1.0], &[1.0], &[0, 1]),
        Error::InvalidShape { buffer: "lse", .. }
    ));
    assert!(matches!(
        backward(head, &[1.0, 1.0], &[1.0, 1.0], &[0, 1]),
        Error::InvalidShape {
            buffer: "dloss",
            ..
        }
    ));
    assert!(matches!(
        backward(head, &[1.0, 1.0], &[1.0], &[0, 9]),
        Error::TargetOutOfRange { row: 1, .. }
    ));
}

/// `next_token: Some(len)` gives, bit for bit, the call on the targets shifted by hand
/// (row i against token i + 1, the last position of each sequence ignored), for the step
/// and for the backward.
#[test]
fn next_token_equals_the_shifted_targets() {
    for (len, reduction) in [
        (3, Reduction::Mean),
        (1, Reduction::Sum),
        (2, Reduction::None),
        (6, Reduction::Mean),
    ] {
        let p = Params {
            rows: 6,
            dim: 17,
            classes: 40,
            pad: 1,
            bias: 1,
            weighted: false,
            ignore_share: 0.2,
            reduction,
            label_smoothing: 0.1,
            z_loss: 1e-3,
            softcap: 0.0,
            grad_scale: 1.0,
            seed: len as u64,
        };
        let tokens = build(&p);
        let mut by_hand = tokens.clone();
        for i in 0..p.rows {
            by_hand.targets[i] = if (i + 1) % len == 0 {
                -100
            } else {
                tokens.targets[i + 1]
            };
        }
        let chunking = Chunking::Classes(16);
        let run = |head: LinearHead<'_>, layer: &Layer| {
            let mut loss = vec![PAD; reduction.loss_len(p.rows)];
            let mut lse = vec![PAD; p.rows];
            let mut grads = Grads::new(layer);
            let options = layer.options();
            let targets = &layer.targets[..];
            let views = grads.views(layer);
            linear_cross_entropy_chunked(
                head,
                targets,
                &options,
                &mut loss,
                views,
                Some(&mut lse),
                chunking,
            )
            .unwrap();
            let dloss: Vec<f32> = (0..loss.len()).map(|i| 0.5 + i as f32).collect();
            let mut back = Grads::new(layer);
            let views = back.views(layer);
            linear_cross_entropy_backward_chunked(
                head, targets, &options, &lse, &dloss, views, chunking,
            )
            .unwrap();
            (loss, lse, grads, back)
        };
        let shifted = LinearHead {
            next_token: Some(len),
            ..tokens.head()
        };
        let got = run(shifted, &tokens);
        let want = run(by_hand.head(), &by_hand);
        common::assert_same_bits(&got.0, &want.0, "loss");
        common::assert_same_bits(&got.1, &want.1, "lse");
        for (what, got, want) in [("step", &got.2, &want.2), ("backward", &got.3, &want.3)] {
            common::assert_same_bits(&got.hidden, &want.hidden, what);
            common::assert_same_bits(&got.weight, &want.weight, what);
            common::assert_same_bits(&got.bias, &want.bias, what);
        }
        assert!(got.0.iter().all(|l| l.is_finite()));
    }
}

/// A 16-bit head gives the f32 call's results on its widened values: the loss and lse bit
/// for bit, and each gradient the f32 one rounded once (packed layouts, so both calls run
/// the same GEMMs).
fn check_half<T: xent::Logit<Stat = f32>>(from_f32: fn(f32) -> T, to_f32: fn(T) -> f32) {
    for (rows, dim, classes, chunking) in [
        (5, 17, 67, Chunking::Classes(7)),
        // Under Miri a smaller layer, still one automatic chunk of several row blocks.
        miri_or(
            (12, 17, 300, Chunking::Auto),
            (40, 65, 1000, Chunking::Auto),
        ),
        (1, 3, 1, Chunking::Auto),
    ] {
        let mut rng = Rng::new((rows * dim * classes) as u64);
        let mut draw = |n: usize, scale: f32| -> Vec<T> {
            (0..n).map(|_| from_f32(rng.range(-scale, scale))).collect()
        };
        let hidden = draw(rows * dim, 2.0);
        let weight = draw(classes * dim, 0.5);
        let bias = draw(classes, 1.0);
        let targets: Vec<i64> = (0..rows as i64).map(|i| (i * 7) % classes as i64).collect();
        let options = Options {
            label_smoothing: 0.1,
            z_loss: 1e-4,
            ..Options::default()
        };
        let widen = |v: &[T]| -> Vec<f32> { v.iter().map(|&x| to_f32(x)).collect() };
        let (h32, w32, b32) = (widen(&hidden), widen(&weight), widen(&bias));

        let run = |hidden: &[f32], weight: &[f32], bias: &[f32]| {
            let mut loss = [0.0f32];
            let mut lse = vec![0.0f32; rows];
            let mut gh = vec![0.0f32; rows * dim];
            let mut gw = vec![0.0f32; classes * dim];
            let mut gb = vec![0.0f32; classes];
            let head = LinearHead {
                hidden: Rows::packed(hidden, dim).unwrap(),
                weight: Rows::packed(weight, dim).unwrap(),
                bias: Some(bias),
                next_token: None,
            };
            let grads = LinearGrads {
                hidden: Some(RowsMut::packed(&mut gh, dim).unwrap()),
                weight: Some(RowsMut::packed(&mut gw, dim).unwrap()),
                bias: Some(&mut gb),
            };
            linear_cross_entropy_chunked(
                head,
                &targets[..],
                &options,
                &mut loss,
                grads,
                Some(&mut lse),
                chunking,
            )
            .unwrap();
            (loss, lse, gh, gw, gb)
        };
        let want = run(&h32, &w32, &b32);

        let mut loss = [0.0f32];
        let mut lse = vec![0.0f32; rows];
        let zero = from_f32(0.0);
        let mut gh = vec![zero; rows * dim];
        let mut gw = vec![zero; classes * dim];
        let mut gb = vec![zero; classes];
        let head = LinearHead {
            hidden: Rows::packed(&hidden, dim).unwrap(),
            weight: Rows::packed(&weight, dim).unwrap(),
            bias: Some(&bias[..]),
            next_token: None,
        };
        let grads = LinearGrads {
            hidden: Some(RowsMut::packed(&mut gh, dim).unwrap()),
            weight: Some(RowsMut::packed(&mut gw, dim).unwrap()),
            bias: Some(&mut gb),
        };
        linear_cross_entropy_chunked(
            head,
            &targets[..],
            &options,
            &mut loss,
            grads,
            Some(&mut lse),
            chunking,
        )
        .unwrap();
        common::assert_same_bits(&loss, &want.0, "16-bit loss");
        common::assert_same_bits(&lse, &want.1, "16-bit lse");
        for (what, got, want) in [
            ("dH", &gh, &want.2),
            ("dW", &gw, &want.3),
            ("db", &gb, &want.4),
        ] {
            let rounded: Vec<f32> = want.iter().map(|&v| to_f32(from_f32(v))).collect();
            common::assert_same_bits(&widen(got), &rounded, what);
        }
    }
}

#[test]
fn bf16_heads_give_the_f32_results_rounded_once() {
    check_half(xent::bf16::from_f32, xent::bf16::to_f32);
}

#[test]
fn f16_heads_give_the_f32_results_rounded_once() {
    check_half(xent::f16::from_f32, xent::f16::to_f32);
}
