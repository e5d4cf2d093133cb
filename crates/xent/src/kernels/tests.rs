//! Every kernel tier this CPU has (the scalar one included), in one process, against a
//! naive reference ([`Naive`]): each [`RowKernels`] method on every length 1..=67, 1000 and
//! 32003, on rows that start off a vector boundary, with −∞, NaN and +∞ among the values,
//! on f32 and 16-bit rows (memchr's way: each arch against a naive version). The
//! integration tests then check the semantics above the kernels once.

use half::{bf16, f16};

use super::*;
use crate::dispatch::{Work, on_every_tier};

impl ExpSums {
    /// Both parts together.
    pub(crate) fn total(self) -> f64 {
        self.rest + self.target
    }

    /// Adds class `c`'s term `e`.
    fn add(&mut self, c: usize, target: Option<usize>, e: f32) {
        if target == Some(c) {
            self.target += f64::from(e);
        } else {
            self.rest += f64::from(e);
        }
    }
}

/// x' = c·tanh(x/c) for c > 0 with the standard library's tanh, x itself for c = 0: the
/// naive reference's softcap, independent of the vector tanh under test.
fn softcap(x: f32, cap: f32) -> f32 {
    if cap > 0.0 { cap * (x / cap).tanh() } else { x }
}

/// The naive reference: plain Rust loops over f32 rows, one element at a time, sums kept
/// in f64; every tier is checked against it.
#[derive(Clone, Copy)]
struct Naive;

/// Overwrites each output element with `f(c, x_c)`, reading x_c first.
#[inline(always)]
fn map_row(io: RowIo<'_>, mut f: impl FnMut(usize, f32) -> f32) {
    match io {
        RowIo::InPlace(row, _) => {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f(c, *v);
            }
        }
        RowIo::Separate(x, out) => {
            for (c, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                *o = f(c, v);
            }
        }
    }
}

impl Naive {
    fn row_max(&self, x: &[f32], cap: f32) -> f32 {
        x.iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(softcap(v, cap)))
    }

    fn sum_exp(&self, x: &[f32], shift: f32, cap: f32, target: Option<usize>) -> ExpSums {
        let mut sums = ExpSums::default();
        for (c, &v) in x.iter().enumerate() {
            sums.add(c, target, (softcap(v, cap) - shift).exp());
        }
        sums
    }

    fn exp_store_sum(&self, io: RowIo<'_>, shift: f32, target: Option<usize>) -> ExpSums {
        let mut sums = ExpSums::default();
        map_row(io, |c, v| {
            let e = (v - shift).exp();
            sums.add(c, target, e);
            e
        });
        sums
    }

    /// Row by row, with the row sums and terms in f64.
    fn short_rows(&self, mut rows: StridedRows<'_>, job: &ShortJob<'_>, stats: &mut [ShortStats]) {
        assert_eq!(stats.len(), rows.groups());
        for i in 0..rows.groups() * GROUP {
            let (g, r) = (i / GROUP, i % GROUP);
            let x = rows.input(i);
            let max = self.row_max(x, 0.0);
            let target = match job {
                ShortJob::Loss(_, targets) if targets[g].class[r] >= 0.0 => {
                    Some((targets[g].class[r] as usize, targets[g].scale[r]))
                }
                _ => None,
            };
            let sums = self.sum_exp(x, max, 0.0, target.map(|(y, _)| y));
            let sum = sums.total();
            let ln_sum = sum.ln();
            let lse = f64::from(max) + ln_sum;
            stats[g].lse[r] = lse as f32;
            // Σ_{c≠y} exp(x_c − m), for the target's entry (see ShortLoss).
            let target = target.map(|(y, b)| (y, x[y], f64::from(b), sums.rest));
            let io = rows.io(i);
            let probs = |scale: f64, target| GradCoefs32 {
                shift: max,
                scale: scale as f32,
                smooth: 0.0,
                target,
                soft: None,
                weights: None,
                cap: 0.0,
                rescale: None,
            };
            match (job, target) {
                (ShortJob::Normalize(Normalization::Softmax), _) => {
                    if let Some(io) = io {
                        self.write_grad(io, &probs(1.0 / sum, None));
                    }
                }
                (ShortJob::Normalize(Normalization::LogSoftmax), _) => {
                    if let Some(io) = io {
                        self.write_log_probs(io, max, ln_sum as f32);
                    }
                }
                (ShortJob::Loss(job, _), Some((y, x_y, b, rest))) => {
                    stats[g].nll[r] = (ln_sum - (f64::from(x_y) - f64::from(max))) as f32;
                    let mut a_minus_b = 0.0;
                    if job.z_grad != 0.0 {
                        a_minus_b = f64::from(job.z_grad) * lse;
                    }
                    // The target's entry as ((A − B)·e_y − B·Σ_{c≠y} e_c)/S (see
                    // ShortLoss).
                    let e_y = f64::from((x_y - max).exp());
                    let value = (a_minus_b * e_y - b * rest) / sum;
                    match io {
                        Some(io) if job.write => {
                            let coef = probs((a_minus_b + b) / sum, Some((y, value as f32)));
                            self.write_grad(io, &coef);
                        }
                        Some(io) => io.into_output().fill(0.0),
                        None => {}
                    }
                }
                (ShortJob::Loss(..), None) => {
                    if let Some(io) = io {
                        io.into_output().fill(0.0);
                    }
                }
            }
        }
    }

    fn weighted_shifted_sum(
        &self,
        x: &[f32],
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> f64 {
        // In f64, where neither the weights nor their products need a scale.
        let shifted = |v: f32| f64::from(softcap(v, cap) - shift);
        match weights {
            None => x.iter().map(|&v| shifted(v)).sum(),
            Some(w) => x
                .iter()
                .zip(w.values)
                .map(|(&v, &w)| f64::from(w) * shifted(v))
                .sum(),
        }
    }

    fn soft_target_sums(
        &self,
        x: &[f32],
        targets: SmoothedTargets<'_>,
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> (f64, f64) {
        let mut dot = 0.0f64;
        let mut total = 0.0f64;
        for (c, &v) in x.iter().enumerate() {
            let t = targets.at(c);
            // In f64, so that a weight times target below f32's range (1e-45·0.33) stays
            // non-zero and a −∞ logit gives +∞, not 0·−∞ = NaN (found by the fuzzer).
            let wt = f64::from(weights.map_or(1.0, |w| w.values[c])) * f64::from(t);
            total += wt;
            if t != 0.0 {
                dot += wt * f64::from(softcap(v, cap) - shift);
            }
        }
        (dot, total)
    }

    fn write_grad(&self, io: RowIo<'_>, coef: &GradCoefs32<'_>) {
        assert!(
            coef.rescale.is_none(),
            "the naive rows scale back in scale_exp only"
        );
        map_row(io, |c, v| {
            if let Some(value) = coef.target_value(c) {
                return value;
            }
            let x = softcap(v, coef.cap);
            let g = coef.scale * (x - coef.shift).exp() - coef.class_term(c);
            if coef.cap > 0.0 {
                let r = x / coef.cap;
                g * (1.0 - r * r)
            } else {
                g
            }
        });
    }

    fn scale_exp(&self, out: &mut [f32], coef: &GradCoefs32<'_>) {
        let up = coef.rescale.map_or(1.0, |(a, b)| a * b);
        map_row(RowIo::in_place(out), |c, e| {
            let g = coef
                .target_value(c)
                .unwrap_or_else(|| coef.scale * e - coef.class_term(c));
            g * up
        });
    }

    fn write_log_probs(&self, io: RowIo<'_>, max: f32, ln_sum: f32) {
        map_row(io, |_, v| (v - max) - ln_sum);
    }
}

impl ClassWeights<'_> {
    /// w_c·scale, at least the smallest subnormal for a non-zero w_c.
    fn scaled(&self, c: usize) -> f32 {
        let w = self.values[c];
        (w * self.scale).max(w.min(SMALLEST_SUBNORMAL))
    }
}

impl SmoothedTargets<'_> {
    /// t'_c.
    fn at(&self, c: usize) -> f32 {
        self.keep * self.probs[c] + self.uniform
    }
}

impl GradCoefs32<'_> {
    /// What class `c` subtracts from its scaled exponential, one element at a time (the
    /// naive form of `generic::class_terms`): smooth·w_c + w_c·t'_c.
    fn class_term(&self, c: usize) -> f32 {
        let w = self.weights.map_or(1.0, |w| w.scaled(c));
        let mut term = self.smooth * w;
        if let Some(t) = self.soft {
            term += w * t.at(c);
        }
        term
    }

    /// The value of entry `c` when it is the hard target's.
    fn target_value(&self, c: usize) -> Option<f32> {
        self.target.filter(|&(y, _)| y == c).map(|(_, v)| v)
    }
}

/// Every length a pass meets: all tails and unroll remainders of 8- and 16-lane vectors,
/// and two long rows. Under Miri (about a million times slower), a tail alone, one vector
/// and a tail, and a 4-vector unroll step and a tail.
fn lengths() -> Vec<usize> {
    if cfg!(miri) {
        vec![1, 9, 33]
    } else {
        (1..=67).chain([1000, 32003]).collect()
    }
}

/// A value in [lo, hi) that varies with `i` and `salt` (a multiplicative hash).
fn spread(i: usize, salt: u64, lo: f32, hi: f32) -> f32 {
    let h =
        (i as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xD1B5_4A32_D192_ED03);
    lo + (hi - lo) * ((h >> 40) as f32 / (1u64 << 24) as f32)
}

/// Rows of `n` values: plain ones, and ones with −∞ entries, only −∞, a NaN, a +∞.
fn rows(n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let plain: Vec<f32> = (0..n).map(|i| spread(i, n as u64, -8.0, 8.0)).collect();
    let with = |at: usize, v: f32| {
        let mut row = plain.clone();
        row[at] = v;
        row
    };
    let mut some_neg_inf = plain.clone();
    for v in some_neg_inf.iter_mut().step_by(5) {
        *v = f32::NEG_INFINITY;
    }
    vec![
        ("plain", plain.clone()),
        ("every 5th −∞", some_neg_inf),
        ("all −∞", vec![f32::NEG_INFINITY; n]),
        ("a NaN", with(n / 2, f32::NAN)),
        ("a +∞", with(n - 1, f32::INFINITY)),
    ]
}

/// `row` copied to start `offset` values into a buffer (so that it starts off a vector
/// boundary), and the buffer.
fn placed(row: &[f32], offset: usize) -> Vec<f32> {
    let mut buf = vec![0.0; offset];
    buf.extend_from_slice(row);
    buf
}

/// Whether `got` matches `want` to `tol` (NaN for NaN, an infinity exactly).
fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        got == want || (got - want).abs() <= tol
    }
}

/// Σ |v| over the finite values of `vs`: the size a tolerance is relative to.
fn finite_size(vs: &[f64]) -> f64 {
    vs.iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum()
}

/// The shift the passes use for a row whose max is `max`: 0 for a row of only −∞.
fn shift_of(max: f32) -> f32 {
    if max == f32::NEG_INFINITY { 0.0 } else { max }
}

/// Runs `$check(tier, kernels)` on every tier this CPU has, each inside its tier's
/// `#[target_feature]` function.
macro_rules! on_tiers {
    ($check:ident) => {{
        struct Check(&'static str);
        impl Work for Check {
            type Output = ();
            fn run<K: RowKernels>(self, k: K) {
                $check(self.0, k);
            }
        }
        let mut tiers = 0;
        on_every_tier(|name| {
            tiers += 1;
            Check(name)
        });
        assert!(tiers >= 2, "the portable and scalar tiers are always there");
    }};
}

/// The relative tolerance of sums and outputs: f32 lanes of terms each within a few ulp,
/// flushed into f64 every 64 vectors.
const REL: f64 = 1e-5;

/// Below this an exponential is negligible (the vector exp is 0 below −88).
const TINY: f64 = 1e-36;

#[test]
fn row_max_and_sum_exp_match_naive() {
    on_tiers!(row_max_and_sum_exp_match_naive_on);
}

fn row_max_and_sum_exp_match_naive_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            for offset in [0, 3] {
                let buf = placed(&row, offset);
                let x = &buf[offset..];
                for cap in [0.0, 5.0] {
                    let want_max = Naive.row_max(x, cap);
                    let max = k.row_max(x, cap);
                    let case = format!("{tier}, n {n}, {pattern}, offset {offset}, cap {cap}");
                    if !row.iter().any(|v| v.is_nan()) {
                        let tol = if cap > 0.0 {
                            1e-6 * f64::from(cap)
                        } else {
                            0.0
                        };
                        assert!(
                            close(f64::from(max), f64::from(want_max), tol),
                            "{case}: max {max} vs {want_max}"
                        );
                    }
                    for target in [None, Some(0), Some(n / 2), Some(n - 1)] {
                        let want = Naive.sum_exp(x, want_max, cap, target);
                        let got = k.sum_exp(x, want_max, cap, target);
                        let tol = REL * finite_size(&[want.rest, want.target]) + TINY;
                        assert!(
                            close(got.rest, want.rest, tol) && close(got.target, want.target, tol),
                            "{case}, target {target:?}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn softcap_of_one_logit_is_the_passes_value() {
    on_tiers!(softcap_of_one_logit_is_the_passes_value_on);
}

/// A logit's x' taken out of its row (a target's x'_y) has the bits the passes compute for
/// it inside the row, and agrees with the naive softcap within the vector tanh's accuracy.
fn softcap_of_one_logit_is_the_passes_value_on<K: RowKernels>(tier: &str, k: K) {
    let logits = [
        0.0,
        -0.0,
        1e-40,
        0.3,
        -2.5,
        29.9,
        30.0,
        1e3,
        -1e30,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for cap in [0.0f32, 1.0, 30.0, 1e6] {
        for x in logits {
            let got = k.softcap(x, cap);
            // Every other logit of the row caps to −c (or stays −∞): the row's max is x'.
            let in_row = k.row_max(&[f32::NEG_INFINITY, x, f32::NEG_INFINITY], cap);
            let case = format!("{tier}, x {x}, cap {cap}");
            assert_eq!(
                got.to_bits(),
                in_row.to_bits(),
                "{case}: {got} vs {in_row} in a row"
            );
            let want = softcap(x, cap);
            let tol = 4.0 * f64::from(f32::EPSILON) * f64::from(want.abs());
            assert!(
                close(f64::from(got), f64::from(want), tol),
                "{case}: {got} vs {want}"
            );
        }
        assert!(
            k.softcap(f32::NAN, cap).is_nan(),
            "{tier}, cap {cap}: NaN stays NaN"
        );
    }
}

#[test]
fn exp_store_sum_matches_naive_in_place_and_apart() {
    on_tiers!(exp_store_sum_matches_naive_in_place_and_apart_on);
}

fn exp_store_sum_matches_naive_in_place_and_apart_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            let shift = Naive.row_max(&row, 0.0);
            let shift = if shift == f32::NEG_INFINITY {
                0.0
            } else {
                shift
            };
            let target = Some(n / 3);
            let mut want_out = row.clone();
            let want = Naive.exp_store_sum(RowIo::in_place(&mut want_out), shift, target);
            for offset in [0, 3] {
                let case = format!("{tier}, n {n}, {pattern}, offset {offset}");
                let mut in_place = placed(&row, offset);
                let got = k.exp_store_sum(RowIo::in_place(&mut in_place[offset..]), shift, target);
                let mut apart = vec![7.0f32; n + offset + 1];
                let got_apart = k.exp_store_sum(
                    RowIo::Separate(&row, &mut apart[offset..offset + n]),
                    shift,
                    target,
                );
                assert_eq!(apart[..offset], vec![7.0; offset][..], "{case}: before");
                assert_eq!(apart[offset + n], 7.0, "{case}: after");
                let tol = REL * finite_size(&[want.rest, want.target]) + TINY;
                for got in [got, got_apart] {
                    assert!(
                        close(got.rest, want.rest, tol) && close(got.target, want.target, tol),
                        "{case}: {got:?} vs {want:?}"
                    );
                }
                for (c, &w) in want_out.iter().enumerate() {
                    let w = f64::from(w);
                    let tol = 1e-6 * w.abs() + TINY;
                    for (how, out) in [
                        ("in place", &in_place[offset..]),
                        ("apart", &apart[offset..]),
                    ] {
                        assert!(
                            close(f64::from(out[c]), w, tol),
                            "{case}, {how}: entry {c} {} vs {w}",
                            out[c]
                        );
                    }
                }
            }
        }
    }
}

/// Weights in [0.25, 4) for `n` classes, with one 0.
fn weights(n: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..n).map(|i| spread(i, 77, 0.25, 4.0)).collect();
    w[n / 2] = 0.0;
    w
}

/// Soft targets for `n` classes, every third 0.
fn soft_targets(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                spread(i, 91, 0.0, 1.0)
            }
        })
        .collect()
}

#[test]
fn weighted_and_soft_target_sums_match_naive() {
    on_tiers!(weighted_and_soft_target_sums_match_naive_on);
}

fn weighted_and_soft_target_sums_match_naive_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        let w = weights(n);
        let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v));
        let probs = soft_targets(n);
        for (pattern, row) in rows(n) {
            for cap in [0.0, 5.0] {
                let shift = shift_of(Naive.row_max(&row, cap));
                for weights in [None, Some(ClassWeights::new(&w, max_w))] {
                    let case = format!(
                        "{tier}, n {n}, {pattern}, cap {cap}, weights {}",
                        weights.is_some()
                    );
                    let weight = |c: usize| weights.map_or(1.0, |w| f64::from(w.values[c]));
                    let shifted = |c: usize| f64::from(softcap(row[c], cap) - shift);
                    let magnitude: f64 = (0..n)
                        .map(|c| (weight(c) * shifted(c)).abs())
                        .filter(|v| v.is_finite())
                        .sum();
                    let want = Naive.weighted_shifted_sum(&row, weights, shift, cap);
                    let got = k.weighted_shifted_sum(&row, weights, shift, cap);
                    assert!(
                        close(got, want, REL * magnitude + TINY),
                        "{case}: weighted {got} vs {want}"
                    );
                    for uniform in [0.0, 0.01] {
                        let targets = SmoothedTargets {
                            probs: &probs,
                            keep: 0.9,
                            uniform,
                        };
                        let want = Naive.soft_target_sums(&row, targets, weights, shift, cap);
                        let got = k.soft_target_sums(&row, targets, weights, shift, cap);
                        let total: f64 = (0..n).map(|c| weight(c) * f64::from(targets.at(c))).sum();
                        assert!(
                            close(got.0, want.0, REL * magnitude + TINY)
                                && close(got.1, want.1, REL * total + TINY),
                            "{case}, uniform {uniform}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The gradient rows the passes write: plain with a hard target, smoothing with weights,
/// soft targets, a softcap.
fn grad_rows<'a>(
    row: &[f32],
    w: &'a [f32],
    probs: &'a [f32],
) -> Vec<(&'static str, GradCoefs32<'a>)> {
    let n = row.len();
    let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v));
    let weights = ClassWeights::new(w, max_w);
    let shift = shift_of(Naive.row_max(row, 0.0));
    let scale = (1.0 / Naive.sum_exp(row, shift, 0.0, None).total()) as f32;
    let plain = GradCoefs32 {
        shift,
        scale,
        smooth: 0.0,
        target: Some((n / 2, -0.375)),
        soft: None,
        weights: None,
        cap: 0.0,
        rescale: None,
    };
    let capped_shift = Naive.row_max(row, 5.0);
    vec![
        ("plain", plain),
        (
            "smoothing, weights",
            GradCoefs32 {
                smooth: 0.01 / weights.scale,
                weights: Some(weights),
                target: Some((n - 1, 0.25)),
                ..plain
            },
        ),
        (
            "soft targets",
            GradCoefs32 {
                soft: Some(SmoothedTargets {
                    probs,
                    keep: 0.9,
                    uniform: 0.001,
                }),
                target: None,
                ..plain
            },
        ),
        (
            "softcap",
            GradCoefs32 {
                cap: 5.0,
                shift: shift_of(capped_shift),
                ..plain
            },
        ),
    ]
}

/// Checks `out` against the naive `want` for `coef`: the target's entry exactly,
/// the others within [`REL`] of the size of their terms.
fn check_grad(
    case: &str,
    row: &[f32],
    coef: &GradCoefs32<'_>,
    exps: Option<&[f32]>,
    out: &[f32],
    want: &[f32],
) {
    for (c, (&got, &w)) in out.iter().zip(want).enumerate() {
        if let Some(value) = coef.target_value(c) {
            assert_eq!(got.to_bits(), value.to_bits(), "{case}: target entry {c}");
            continue;
        }
        let e = match exps {
            Some(e) => f64::from(e[c]),
            None => (f64::from(softcap(row[c], coef.cap)) - f64::from(coef.shift)).exp(),
        };
        let size = (f64::from(coef.scale) * e).abs() + f64::from(coef.class_term(c)).abs();
        assert!(
            close(f64::from(got), f64::from(w), REL * size + TINY),
            "{case}: entry {c} {got} vs {w}"
        );
    }
}

#[test]
fn write_grad_and_scale_exp_match_naive() {
    on_tiers!(write_grad_and_scale_exp_match_naive_on);
}

fn write_grad_and_scale_exp_match_naive_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        let (w, probs) = (weights(n), soft_targets(n));
        for (pattern, row) in rows(n) {
            for (kind, coef) in grad_rows(&row, &w, &probs) {
                let case = format!("{tier}, n {n}, {pattern}, {kind}");
                let mut want = vec![0.0f32; n];
                Naive.write_grad(RowIo::Separate(&row, &mut want), &coef);
                let mut got = placed(&row, 5);
                k.write_grad(RowIo::in_place(&mut got[5..]), &coef);
                check_grad(&case, &row, &coef, None, &got[5..], &want);
                if coef.cap > 0.0 {
                    continue;
                }
                // From stored exponentials, as phase 2 runs.
                let mut exps = row.clone();
                Naive.exp_store_sum(RowIo::in_place(&mut exps), coef.shift, None);
                let mut want = exps.clone();
                Naive.scale_exp(&mut want, &coef);
                let mut got = placed(&exps, 1);
                k.scale_exp(RowIo::<f32>::in_place(&mut got[1..]), &coef);
                check_grad(
                    &format!("{case}, stored"),
                    &row,
                    &coef,
                    Some(&exps),
                    &got[1..],
                    &want,
                );
            }
            // Scaling back by powers of two is exact (to ±∞ where the entry overflows).
            let mut got = row.clone();
            let coef = GradCoefs32 {
                shift: 0.0,
                scale: 2f32.powi(-60),
                smooth: 0.0,
                target: None,
                soft: None,
                weights: None,
                cap: 0.0,
                rescale: Some((2f32.powi(127), 2f32.powi(33))),
            };
            k.scale_exp(RowIo::<f32>::in_place(&mut got), &coef);
            for (c, (&g, &x)) in got.iter().zip(&row).enumerate() {
                let want = (f64::from(x) * 2f64.powi(100)) as f32;
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{tier}, n {n}, {pattern}: ×2^100 entry {c}: {g} vs {want}"
                );
            }
        }
    }
}

#[test]
fn write_log_probs_matches_naive_bit_for_bit() {
    on_tiers!(write_log_probs_matches_naive_bit_for_bit_on);
}

fn write_log_probs_matches_naive_bit_for_bit_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            let (max, ln_sum) = (Naive.row_max(&row, 0.0), 1.75f32);
            let mut want = vec![0.0f32; n];
            Naive.write_log_probs(RowIo::Separate(&row, &mut want), max, ln_sum);
            let mut got = placed(&row, 2);
            k.write_log_probs(RowIo::in_place(&mut got[2..]), max, ln_sum);
            for (c, (&g, &w)) in got[2..].iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "{tier}, n {n}, {pattern}: entry {c} {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn convert_matches_half_bit_for_bit() {
    on_tiers!(convert_matches_half_bit_for_bit_on);
}

/// Checks `convert` from 16-bit `$t` to f32 on `$bits` and back on `$floats` against the
/// `half` crate, on every length of [`lengths`] and on all of them.
macro_rules! check_convert {
    ($tier:expr, $k:expr, $t:ty, $bits:expr, $floats:expr) => {{
        let halves: Vec<$t> = $bits.iter().map(|&b| <$t>::from_bits(b)).collect();
        let floats: &[f32] = $floats;
        let f32_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let half_bits = |v: &[$t]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let all_of = |len: usize| (!cfg!(miri)).then_some(len);
        for n in lengths().into_iter().chain(all_of(halves.len())) {
            let src = &halves[halves.len() - n..];
            let want: Vec<f32> = src.iter().map(|h| h.to_f32()).collect();
            let mut got = vec![0.0f32; n];
            $k.convert(src, &mut got);
            let what = stringify!($t);
            assert_eq!(
                f32_bits(&got),
                f32_bits(&want),
                "{}, {what}, widen, n {n}",
                $tier
            );
        }
        for n in lengths().into_iter().chain(all_of(floats.len())) {
            let src = &floats[floats.len() - n..];
            let want: Vec<$t> = src.iter().map(|&x| <$t>::from_f32(x)).collect();
            let mut got = vec![<$t>::from_f32(0.0); n];
            $k.convert(src, &mut got);
            let what = stringify!($t);
            assert_eq!(
                half_bits(&got),
                half_bits(&want),
                "{}, {what}, narrow, n {n}",
                $tier
            );
        }
    }};
}

fn convert_matches_half_bit_for_bit_on<K: RowKernels>(tier: &str, k: K) {
    // Under Miri, the top 64 bit patterns and every 4099th high half: enough for its
    // checks of the loads and stores.
    let (first, step) = if cfg!(miri) {
        (u16::MAX - 63, 4099)
    } else {
        (0, 7)
    };
    let all: Vec<u16> = (first..=u16::MAX).collect();
    // Every f32 whose top 16 bits vary, with low halves at the rounding boundaries (ties
    // and their neighbours), plus the specials.
    let mut floats: Vec<f32> = Vec::new();
    for high in (0..=u32::from(u16::MAX)).step_by(step) {
        for low in [0u32, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1000, 0x0FFF] {
            floats.push(f32::from_bits(high << 16 | low));
        }
    }
    floats.extend([
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        65520.0,
        65519.0,
        1e-8,
        -0.0,
    ]);
    check_convert!(tier, k, bf16, all, &floats);
    check_convert!(tier, k, f16, all, &floats);
}

/// `groups` groups of short rows of `cols` values at `stride`, with −∞ entries, a NaN row
/// and a row of only −∞ among them.
fn short_batch(cols: usize, stride: usize, groups: usize) -> Vec<f32> {
    let rows = groups * GROUP;
    let mut x: Vec<f32> = (0..rows * stride)
        .map(|i| spread(i, cols as u64, -6.0, 6.0))
        .collect();
    for r in 0..rows {
        let row = &mut x[r * stride..r * stride + cols];
        match r % 11 {
            3 => row[r % cols] = f32::NEG_INFINITY,
            5 => row[cols / 2] = f32::NAN,
            7 => row.fill(f32::NEG_INFINITY),
            _ => {}
        }
    }
    x
}

/// Targets for `groups` groups of short rows of `cols` values: every fourth row ignored.
fn short_targets(groups: usize, cols: usize) -> Vec<ShortTargets> {
    (0..groups)
        .map(|g| {
            let mut t = ShortTargets::default();
            for r in 0..GROUP {
                if (g * GROUP + r) % 4 != 1 {
                    t.class[r] = ((g * GROUP + r * 5) % cols) as f32;
                    t.scale[r] = spread(r, g as u64, 0.5, 2.0);
                    t.weight[r] = 1.0;
                }
            }
            t
        })
        .collect()
}

/// Every short-row job, by name.
fn short_jobs(targets: &[ShortTargets]) -> [(&'static str, ShortJob<'_>); 5] {
    [
        ("probabilities", ShortJob::Normalize(Normalization::Softmax)),
        (
            "log-probabilities",
            ShortJob::Normalize(Normalization::LogSoftmax),
        ),
        (
            "loss",
            ShortJob::Loss(
                ShortLoss {
                    z_grad: 0.0,
                    write: true,
                },
                targets,
            ),
        ),
        (
            "loss, z",
            ShortJob::Loss(
                ShortLoss {
                    z_grad: 2e-3,
                    write: true,
                },
                targets,
            ),
        ),
        (
            "loss, no write",
            ShortJob::Loss(
                ShortLoss {
                    z_grad: 0.0,
                    write: false,
                },
                targets,
            ),
        ),
    ]
}

#[test]
fn short_rows_match_naive() {
    on_tiers!(short_rows_match_naive_on);
}

fn short_rows_match_naive_on<K: RowKernels>(tier: &str, k: K) {
    // Under Miri: one group; a row within one 8-lane block, past it, and two whole blocks.
    let (groups, all_cols) = if cfg!(miri) {
        (1, vec![1, 9, 16])
    } else {
        (3, (1..=SHORT_COLS).collect())
    };
    for cols in all_cols.iter().copied() {
        let stride = cols + 3;
        let out_stride = cols + 1;
        let x = short_batch(cols, stride, groups);
        let targets = short_targets(groups, cols);
        let jobs = short_jobs(&targets);
        for (name, job) in jobs {
            let case = format!("{tier}, cols {cols}, {name}");
            let run = |short_rows: &dyn Fn(StridedRows<'_>, &ShortJob<'_>, &mut [ShortStats])| {
                let mut out = vec![9.0f32; groups * GROUP * out_stride];
                let mut stats = vec![ShortStats::default(); groups];
                let rows = StridedRows::new(
                    StridedIo::Separate(&x, &mut out, out_stride),
                    cols,
                    stride,
                    groups,
                );
                short_rows(rows, &job, &mut stats);
                let mut read_only = vec![ShortStats::default(); groups];
                short_rows(
                    StridedRows::new(StridedIo::Read(&x), cols, stride, groups),
                    &job,
                    &mut read_only,
                );
                (out, stats, read_only)
            };
            let (want, want_stats, _) = run(&|rows, job, stats| Naive.short_rows(rows, job, stats));
            let (got, got_stats, read_only) =
                run(&|rows, job, stats| k.short_rows(rows, job, stats));
            for r in 0..groups * GROUP {
                let (g, lane) = (r / GROUP, r % GROUP);
                let (ws, gs) = (want_stats[g], got_stats[g]);
                for (what, w, v, ro) in [
                    ("lse", ws.lse[lane], gs.lse[lane], read_only[g].lse[lane]),
                    ("nll", ws.nll[lane], gs.nll[lane], read_only[g].nll[lane]),
                ] {
                    let tol = REL * (1.0 + f64::from(w).abs());
                    assert!(
                        close(f64::from(v), f64::from(w), tol),
                        "{case}: row {r} {what} {v} vs {w}"
                    );
                    assert_eq!(
                        v.to_bits(),
                        ro.to_bits(),
                        "{case}: row {r} {what} read-only"
                    );
                }
                for c in 0..out_stride {
                    let at = r * out_stride + c;
                    if c >= cols {
                        assert_eq!(got[at], 9.0, "{case}: row {r} wrote past its end");
                        continue;
                    }
                    let tol = REL * (1.0 + f64::from(want[at]).abs());
                    assert!(
                        close(f64::from(got[at]), f64::from(want[at]), tol),
                        "{case}: row {r} entry {c} {} vs {}",
                        got[at],
                        want[at]
                    );
                }
            }
        }
    }
}

/// Whether `a` and `b` are the same f32 (any NaN for NaN).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Whether `a` and `b` are the same f64 (any NaN for NaN).
fn same64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Checks that each 16-bit output of `got` is the f32 output of `want` rounded once.
fn check_rounded<E: Elem>(case: &str, got: &[E], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{case}: lengths");
    for (c, (&g, &w)) in got.iter().zip(want).enumerate() {
        let rounded = E::from_f32(w).to_f32();
        assert!(
            same(g.to_f32(), rounded),
            "{case}: entry {c} {} vs {w} rounded to {rounded}",
            g.to_f32()
        );
    }
}

#[test]
fn half_rows_match_f32_rows_bit_for_bit() {
    on_tiers!(half_rows_match_f32_rows_on);
}

/// On each tier, every pass over bf16 and f16 rows against the same pass over those
/// values widened to f32 (which the other tests check against the naive reference): the
/// sums and stored exponentials bit for bit, each 16-bit output the f32 one rounded once.
/// Under Miri (for the loads and stores, which f16 shares with bf16 but for the safe
/// conversion functions), bf16 only, on fewer rows.
fn half_rows_match_f32_rows_on<K: RowKernels>(tier: &str, k: K) {
    half_rows_match_f32_rows::<K, bf16>(tier, k);
    half_short_rows_match_f32_rows::<K, bf16>(tier, k);
    if !cfg!(miri) {
        half_rows_match_f32_rows::<K, f16>(tier, k);
        half_short_rows_match_f32_rows::<K, f16>(tier, k);
    }
}

/// How many of a list of cases the 16-bit tests take: the first two under Miri.
fn cases_under_miri(all: usize) -> usize {
    if cfg!(miri) { all.min(2) } else { all }
}

fn half_rows_match_f32_rows<K: RowKernels, E: Elem>(tier: &str, k: K) {
    let name = core::any::type_name::<E>();
    let zero = E::from_f32(0.0);
    for n in lengths() {
        let (w, probs) = (weights(n), soft_targets(n));
        let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v));
        let weights = Some(ClassWeights::new(&w, max_w));
        let rows = rows(n);
        for (pattern, row) in rows.iter().take(cases_under_miri(rows.len())) {
            let xe: Vec<E> = row.iter().map(|&v| E::from_f32(v)).collect();
            let xf: Vec<f32> = xe.iter().map(|v| v.to_f32()).collect();
            let case = format!("{tier}, {name}, n {n}, {pattern}");
            let caps: &[f32] = if cfg!(miri) { &[5.0] } else { &[0.0, 5.0] };
            for &cap in caps {
                let max = k.row_max(&xf, cap);
                assert!(same(k.row_max(&xe, cap), max), "{case}, cap {cap}: max");
                let shift = shift_of(max);
                for target in [None, Some(n / 2)] {
                    let (got, want) = (
                        k.sum_exp(&xe, shift, cap, target),
                        k.sum_exp(&xf, shift, cap, target),
                    );
                    assert!(
                        same64(got.rest, want.rest) && same64(got.target, want.target),
                        "{case}, cap {cap}: sums {got:?} vs {want:?}"
                    );
                }
                let (got, want) = (
                    k.weighted_shifted_sum(&xe, weights, shift, cap),
                    k.weighted_shifted_sum(&xf, weights, shift, cap),
                );
                assert!(same64(got, want), "{case}, cap {cap}: weighted");
                let targets = SmoothedTargets {
                    probs: &probs,
                    keep: 0.9,
                    uniform: 0.01,
                };
                let (got, want) = (
                    k.soft_target_sums(&xe, targets, weights, shift, cap),
                    k.soft_target_sums(&xf, targets, weights, shift, cap),
                );
                assert!(
                    same64(got.0, want.0) && same64(got.1, want.1),
                    "{case}, cap {cap}: soft targets"
                );
            }
            // Phase 1's stored exponentials: 16-bit logits into an f32 buffer.
            let shift = shift_of(k.row_max(&xf, 0.0));
            let mut exps_from_half = vec![0.0f32; n];
            let got = k.exp_store_sum(
                RowIo::Separate(&xe, &mut exps_from_half),
                shift,
                Some(n / 3),
            );
            let mut exps = xf.clone();
            let want = k.exp_store_sum(RowIo::in_place(&mut exps), shift, Some(n / 3));
            assert!(
                same64(got.rest, want.rest) && same64(got.target, want.target),
                "{case}: stored sums"
            );
            for (c, (&g, &w)) in exps_from_half.iter().zip(&exps).enumerate() {
                assert!(same(g, w), "{case}: stored entry {c}");
            }
            let grads = grad_rows(&xf, &w, &probs);
            for &(kind, coef) in grads.iter().take(cases_under_miri(grads.len())) {
                let case = format!("{case}, {kind}");
                let mut want = xf.clone();
                k.write_grad(RowIo::in_place(&mut want), &coef);
                let mut in_place = xe.clone();
                k.write_grad(RowIo::in_place(&mut in_place), &coef);
                check_rounded(&format!("{case}, in place"), &in_place, &want);
                let mut apart = vec![zero; n];
                k.write_grad(RowIo::Separate(&xe, &mut apart), &coef);
                check_rounded(&format!("{case}, apart"), &apart, &want);
                if coef.cap > 0.0 {
                    continue;
                }
                // Phase 2 from the buffer, and scaled back from a fit (see GradCoefs32).
                for rescale in [None, Some((2f32.powi(127), 2f32.powi(3)))] {
                    let coef = GradCoefs32 { rescale, ..coef };
                    let mut want = exps.clone();
                    k.scale_exp(RowIo::<f32>::in_place(&mut want), &coef);
                    let mut got = vec![zero; n];
                    k.scale_exp(RowIo::Separate(&exps, &mut got), &coef);
                    check_rounded(&format!("{case}, stored, {rescale:?}"), &got, &want);
                }
            }
            let (max, ln_sum) = (k.row_max(&xf, 0.0), 1.75f32);
            let mut want = xf.clone();
            k.write_log_probs(RowIo::in_place(&mut want), max, ln_sum);
            let mut got = xe.clone();
            k.write_log_probs(RowIo::in_place(&mut got), max, ln_sum);
            check_rounded(&format!("{case}, log-probabilities"), &got, &want);
        }
    }
}

/// Short-row groups of 16-bit rows against the same rows widened to f32, as
/// [`half_rows_match_f32_rows`].
fn half_short_rows_match_f32_rows<K: RowKernels, E: Elem>(tier: &str, k: K) {
    let name = core::any::type_name::<E>();
    // (Under Miri one length, not a multiple of 8 lanes, and three of the layouts below
    // that pass through both ways of converting: the loads and stores are those of the
    // other cases.)
    let (groups, all_cols) = if cfg!(miri) {
        (1, vec![9])
    } else {
        (2, (1..=SHORT_COLS).collect())
    };
    // Packed rows (converted as one run) and strided ones (row by row); read only, in
    // place, and into a separate output of its own stride.
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        Read,
        InPlace,
        Separate,
    }
    for cols in all_cols {
        for (stride, out_stride) in [(cols, cols), (cols + 3, cols + 1)] {
            let xe: Vec<E> = short_batch(cols, stride, groups)
                .iter()
                .map(|&v| E::from_f32(v))
                .collect();
            let xf: Vec<f32> = xe.iter().map(|v| v.to_f32()).collect();
            let targets = short_targets(groups, cols);
            for layout in [Layout::Read, Layout::InPlace, Layout::Separate] {
                let packed = stride == cols;
                if cfg!(miri) && packed == matches!(layout, Layout::Separate) {
                    continue;
                }
                for (job_name, job) in short_jobs(&targets) {
                    let case = format!(
                        "{tier}, {name}, cols {cols}, stride {stride}, {layout:?}, {job_name}"
                    );
                    let (mut want, mut got) = match layout {
                        Layout::InPlace => (xf.clone(), xe.clone()),
                        _ => (
                            vec![9.0f32; groups * GROUP * out_stride],
                            vec![E::from_f32(9.0); groups * GROUP * out_stride],
                        ),
                    };
                    let mut want_stats = vec![ShortStats::default(); groups];
                    let mut got_stats = vec![ShortStats::default(); groups];
                    let (io_f32, io_half) = match layout {
                        Layout::Read => (StridedIo::Read(&xf[..]), StridedIo::Read(&xe[..])),
                        Layout::InPlace => (
                            StridedIo::InPlace(&mut want[..]),
                            StridedIo::InPlace(&mut got[..]),
                        ),
                        Layout::Separate => (
                            StridedIo::Separate(&xf[..], &mut want[..], out_stride),
                            StridedIo::Separate(&xe[..], &mut got[..], out_stride),
                        ),
                    };
                    k.short_rows(
                        StridedRows::new(io_f32, cols, stride, groups),
                        &job,
                        &mut want_stats,
                    );
                    k.short_rows(
                        StridedRows::new(io_half, cols, stride, groups),
                        &job,
                        &mut got_stats,
                    );
                    // Every byte, the gaps between rows included (in place they keep
                    // the input, which rounds to itself).
                    check_rounded(&case, &got, &want);
                    for (g, (got, want)) in got_stats.iter().zip(&want_stats).enumerate() {
                        for r in 0..GROUP {
                            assert!(
                                same(got.lse[r], want.lse[r]) && same(got.nll[r], want.nll[r]),
                                "{case}: group {g} row {r} stats"
                            );
                        }
                    }
                }
            }
        }
    }
}
