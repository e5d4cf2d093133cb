//! Shared test machinery: generated cases, the f64 oracle comparison with the tolerances
//! of docs/semantics.md, and checks that padding and failed calls leave memory untouched.
#![allow(dead_code, unreachable_pub)]

pub mod bits;
pub mod generated;

use approx::relative_eq;
use xent::{Options, Reduction, Rows, RowsMut, Targets};
use xent_oracle::RefTargets;

/// A padding value no kernel may read into a result or overwrite: a NaN with a payload.
pub const PAD: f32 = f32::from_bits(0x7fc0_dead);

/// `normal` in an ordinary run, `miri` under Miri, which interprets each operation about a
/// million times slower: a smaller size that still takes the same code paths.
pub fn miri_or<T>(miri: T, normal: T) -> T {
    if cfg!(miri) { miri } else { normal }
}

/// The number of cases of a generated test: `normal`, or under Miri `PROPTEST_CASES` (2 by
/// default). An explicit `cases` in a `ProptestConfig` overrides proptest's own reading of
/// `PROPTEST_CASES`, so the tests ask here.
pub fn cases(normal: u32) -> u32 {
    if cfg!(miri) {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
    } else {
        normal
    }
}

/// A small deterministic generator (SplitMix64), so large rows are cheap to describe.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Roughly normal (sum of uniforms), mean 0, standard deviation 1.
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.unit()).sum::<f32>() * 3f32.sqrt() - 2.0 * 3f32.sqrt()
    }
}

/// A strided buffer of `rows × cols` values with `PAD` in the padding.
pub fn padded(
    rows: usize,
    cols: usize,
    stride: usize,
    mut value: impl FnMut(usize, usize) -> f32,
) -> Vec<f32> {
    let len = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    };
    let mut v = vec![PAD; len];
    for i in 0..rows {
        for c in 0..cols {
            v[i * stride + c] = value(i, c);
        }
    }
    v
}

/// Checks that every padding element of a strided buffer still holds `PAD`'s bits.
pub fn assert_padding_intact(buf: &[f32], rows: usize, cols: usize, stride: usize, what: &str) {
    for (k, v) in buf.iter().enumerate() {
        if k % stride >= cols && k / stride < rows {
            assert_eq!(
                v.to_bits(),
                PAD.to_bits(),
                "{what}: padding element {k} was written"
            );
        }
    }
}

/// Targets of a case, owned.
#[derive(Debug, Clone)]
pub enum CaseTargets {
    Hard(Vec<i64>),
    /// Soft targets, strided like the case's own `target_stride`.
    Soft {
        probs: Vec<f32>,
        stride: usize,
    },
}

/// One fully described call.
#[derive(Debug, Clone)]
pub struct Case {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub logits: Vec<f32>,
    pub targets: CaseTargets,
    pub weights: Option<Vec<f32>>,
    pub reduction: Reduction,
    pub ignore_index: i64,
    pub label_smoothing: f32,
    pub z_loss: f32,
    pub softcap: f32,
    pub grad_scale: f32,
}

impl Case {
    /// A case with default options and the given logits and hard targets (packed).
    pub fn packed(cols: usize, logits: Vec<f32>, targets: Vec<i64>) -> Case {
        Case {
            rows: targets.len(),
            cols,
            stride: cols,
            logits,
            targets: CaseTargets::Hard(targets),
            weights: None,
            reduction: Reduction::Mean,
            ignore_index: -100,
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: 0.0,
            grad_scale: 1.0,
        }
    }

    pub fn options(&self) -> Options<'_> {
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

    pub fn logits_view(&self) -> Rows<'_> {
        Rows::new(&self.logits, self.rows, self.cols, self.stride).unwrap()
    }

    pub fn targets(&self) -> Targets<'_> {
        match &self.targets {
            CaseTargets::Hard(t) => Targets::I64(t),
            CaseTargets::Soft { probs, stride } => {
                Targets::Soft(Rows::new(probs, self.rows, self.cols, *stride).unwrap())
            }
        }
    }

    /// The soft targets packed as f64, for the oracle.
    fn soft_f64(&self) -> Option<Vec<f64>> {
        match &self.targets {
            CaseTargets::Hard(_) => None,
            CaseTargets::Soft { probs, stride } => Some(xent_oracle::widen(
                Rows::new(probs, self.rows, self.cols, *stride).unwrap(),
            )),
        }
    }

    pub fn reference(&self) -> xent_oracle::RefOutput {
        let x = xent_oracle::widen(self.logits_view());
        let soft = self.soft_f64();
        let targets = match (&self.targets, &soft) {
            (CaseTargets::Hard(t), _) => RefTargets::Hard(t),
            (_, Some(s)) => RefTargets::Soft(s),
            _ => unreachable!(),
        };
        xent_oracle::cross_entropy(&x, self.rows, self.cols, targets, &self.options())
    }

    pub fn reference_backward(&self, dloss: &[f32]) -> Vec<f64> {
        let x = xent_oracle::widen(self.logits_view());
        let soft = self.soft_f64();
        let targets = match (&self.targets, &soft) {
            (CaseTargets::Hard(t), _) => RefTargets::Hard(t),
            (_, Some(s)) => RefTargets::Soft(s),
            _ => unreachable!(),
        };
        let dloss: Vec<f64> = dloss.iter().map(|&v| f64::from(v)).collect();
        xent_oracle::cross_entropy_backward(
            &x,
            self.rows,
            self.cols,
            targets,
            &self.options(),
            &dloss,
        )
    }

    /// W and N of docs/semantics.md (both R for soft targets).
    pub fn divisors(&self) -> (f64, f64) {
        match &self.targets {
            CaseTargets::Soft { .. } => (self.rows as f64, self.rows as f64),
            CaseTargets::Hard(t) => {
                t.iter()
                    .filter(|&&y| y != self.ignore_index)
                    .fold((0.0, 0.0), |(w, n), &y| {
                        let wy = self
                            .weights
                            .as_ref()
                            .map_or(1.0, |w| f64::from(w[y as usize]));
                        (w + wy, n + 1.0)
                    })
            }
        }
    }

    pub fn max_weight(&self) -> f64 {
        self.weights
            .as_ref()
            .map_or(1.0, |w| w.iter().fold(1.0f64, |m, &w| m.max(f64::from(w))))
    }
}

/// `got` agrees with the oracle's `want` within `tol`; NaN must meet NaN and ±∞ the same ∞.
/// An infinite `got` agrees with a finite `want` that, within `tol`, lies beyond f32's range
/// (it overflows when rounded to f32).
pub fn agrees(got: f32, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        f64::from(got) == want
    } else if got.is_infinite() {
        (want + tol.copysign(want)) as f32 == got
    } else {
        relative_eq!(f64::from(got), want, epsilon = tol, max_relative = 0.0)
    }
}

/// docs/semantics.md's loss tolerance for the call's `loss` output: per row
/// 1e-5·|ref| + 1e-6·(1 + |m_i|) (times the largest weight, which scales a row's ce), and
/// for a reduced loss the rows' tolerances combined the way the rows are.
pub fn loss_tolerances(case: &Case, r: &xent_oracle::RefOutput) -> Vec<f64> {
    let row_tol: Vec<f64> = (0..case.rows)
        .map(|i| {
            let m = if r.row_max[i].is_finite() {
                r.row_max[i].abs()
            } else {
                0.0
            };
            1e-5 * r.row_loss[i].abs() + 1e-6 * (1.0 + m) * case.max_weight()
        })
        .collect();
    let total: f64 = row_tol.iter().sum();
    match case.reduction {
        Reduction::None => row_tol,
        Reduction::Sum => vec![total],
        Reduction::Mean => {
            let (total_weight, counted) = case.divisors();
            vec![total / total_weight.min(counted).max(f64::MIN_POSITIVE)]
        }
    }
}

/// The gradient (docs/semantics.md) tolerance, 1e-5·|ref| + 1e-6·|s|·max(1, max w), with the absolute
/// part times (1 + c/2) under a softcap c: x' = c·tanh(x/c) is itself an f32 result, off by
/// up to ~2.5 ulp of |x'| ≤ c (as in PyTorch), and p moves by that much relative to it.
pub fn grad_tolerance(case: &Case, r: &xent_oracle::RefOutput, want: f64) -> f64 {
    GradTolerance::new(case, r).at(want)
}

/// [`grad_tolerance`] with its per-call part computed once (the largest weight is a pass
/// over the weights, too slow to repeat for every entry of a long row).
pub struct GradTolerance {
    absolute: f64,
}

impl GradTolerance {
    pub fn new(case: &Case, r: &xent_oracle::RefOutput) -> Self {
        let s = r.ce_scale.abs().max(r.z_scale.abs());
        let s = if s.is_finite() { s } else { 0.0 };
        let softcap = 1.0 + f64::from(case.softcap) / 2.0;
        GradTolerance {
            absolute: 1e-6 * s * case.max_weight() * softcap,
        }
    }

    /// The tolerance for an entry whose oracle value is `want`.
    pub fn at(&self, want: f64) -> f64 {
        1e-5 * want.abs() + self.absolute
    }
}

/// Compares a gradient buffer (strided) with the oracle's packed gradient.
pub fn assert_grad(
    case: &Case,
    r: &xent_oracle::RefOutput,
    want: &[f64],
    grad: &[f32],
    stride: usize,
    what: &str,
) {
    let tolerance = GradTolerance::new(case, r);
    for i in 0..case.rows {
        for c in 0..case.cols {
            let (g, w) = (grad[i * stride + c], want[i * case.cols + c]);
            assert!(
                agrees(g, w, tolerance.at(w)),
                "{what}: grad[{i}][{c}] = {g}, oracle {w} (tolerance {})",
                tolerance.at(w)
            );
        }
    }
}

/// Runs a case through every call style and compares each result with the oracle:
/// forward only, gradient into a separate strided buffer, in place, and backward from the
/// saved lse (separate and in place). Padding must survive every call.
pub fn check_case(case: &Case) {
    let r = case.reference();
    let options = case.options();
    let loss_len = case.reduction.loss_len(case.rows);
    let tolerances = loss_tolerances(case, &r);

    // Forward only.
    let mut loss = vec![PAD; loss_len];
    let mut lse = vec![PAD; case.rows];
    xent::cross_entropy(
        case.logits_view(),
        case.targets(),
        &options,
        &mut loss,
        Some(&mut lse),
    )
    .unwrap();
    for (k, (&got, &want)) in loss.iter().zip(&r.loss).enumerate() {
        assert!(
            agrees(got, want, tolerances[k]),
            "loss[{k}] = {got}, oracle {want} (tolerance {})",
            tolerances[k]
        );
    }
    for (i, (&got, (&want, &m))) in lse.iter().zip(r.lse.iter().zip(&r.row_max)).enumerate() {
        let m = if m.is_finite() { m.abs() } else { 0.0 };
        let tol = 1e-6 * (1.0 + m) + 1e-6 * want.abs();
        assert!(agrees(got, want, tol), "lse[{i}] = {got}, oracle {want}");
    }

    // Into a separate buffer with its own stride.
    let grad_stride = case.cols + 3;
    let mut grad = padded(case.rows, case.cols, grad_stride, |_, _| PAD);
    let mut loss2 = vec![PAD; loss_len];
    let mut lse2 = vec![PAD; case.rows];
    let grad_view = RowsMut::new(&mut grad, case.rows, case.cols, grad_stride).unwrap();
    xent::cross_entropy_grad(
        case.logits_view(),
        case.targets(),
        &options,
        &mut loss2,
        grad_view,
        Some(&mut lse2),
    )
    .unwrap();
    assert_same_bits(&loss, &loss2, "loss with gradient vs forward only");
    assert_same_bits(&lse, &lse2, "lse with gradient vs forward only");
    assert_grad(case, &r, &r.grad, &grad, grad_stride, "separate");
    assert_padding_intact(&grad, case.rows, case.cols, grad_stride, "separate grad");

    // In place: the same bits as the separate buffer, and the padding untouched.
    let mut in_place = case.logits.clone();
    let mut loss3 = vec![PAD; loss_len];
    let view = RowsMut::new(&mut in_place, case.rows, case.cols, case.stride).unwrap();
    xent::cross_entropy_grad_in_place(view, case.targets(), &options, &mut loss3, None).unwrap();
    assert_same_bits(&loss, &loss3, "loss in place vs forward only");
    for i in 0..case.rows {
        assert_same_bits(
            &in_place[i * case.stride..i * case.stride + case.cols],
            &grad[i * grad_stride..i * grad_stride + case.cols],
            "in-place vs separate gradient",
        );
    }
    assert_padding_intact(
        &in_place,
        case.rows,
        case.cols,
        case.stride,
        "in-place logits",
    );

    // Backward from the saved lse, with grad_scale as the upstream gradient.
    let dloss: Vec<f32> = match case.reduction {
        Reduction::None => vec![case.grad_scale; case.rows],
        _ => vec![case.grad_scale],
    };
    let want = case.reference_backward(&dloss);
    let mut back = padded(case.rows, case.cols, grad_stride, |_, _| PAD);
    let view = RowsMut::new(&mut back, case.rows, case.cols, grad_stride).unwrap();
    xent::cross_entropy_backward(
        case.logits_view(),
        case.targets(),
        &options,
        &lse,
        &dloss,
        view,
    )
    .unwrap();
    // Within the gradient's tolerance at any |lse|: each row is renormalized by its own
    // sum, so the f32 lse's rounding does not reach it.
    assert_grad(case, &r, &want, &back, grad_stride, "backward");
    assert_padding_intact(&back, case.rows, case.cols, grad_stride, "backward grad");

    let mut back_in_place = case.logits.clone();
    let view = RowsMut::new(&mut back_in_place, case.rows, case.cols, case.stride).unwrap();
    xent::cross_entropy_backward_in_place(view, case.targets(), &options, &lse, &dloss).unwrap();
    for i in 0..case.rows {
        assert_same_bits(
            &back_in_place[i * case.stride..i * case.stride + case.cols],
            &back[i * grad_stride..i * grad_stride + case.cols],
            "backward in place vs separate",
        );
    }
    assert_padding_intact(
        &back_in_place,
        case.rows,
        case.cols,
        case.stride,
        "backward in place",
    );
}

/// Bit-for-bit equality (NaN payloads included).
pub fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: element {k}: {x} vs {y}");
    }
}

/// Random logits for `rows × cols` with the given scale and offset, padded.
pub fn random_logits(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    stride: usize,
    scale: f32,
    offset: f32,
) -> Vec<f32> {
    padded(rows, cols, stride, |_, _| offset + scale * rng.normal())
}

/// Random soft targets: non-negative rows summing to 1, with some exact zeros.
pub fn random_soft(rng: &mut Rng, rows: usize, cols: usize, stride: usize) -> Vec<f32> {
    let mut t = padded(rows, cols, stride, |_, _| {
        let u = rng.unit();
        if u < 0.3 { 0.0 } else { u }
    });
    for i in 0..rows {
        let row = &mut t[i * stride..i * stride + cols];
        let s: f32 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        } else {
            row[0] = 1.0;
        }
    }
    t
}
