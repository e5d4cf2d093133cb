//! Every kernel tier this CPU has, in one process, against the scalar tier: each
//! [`RowKernels`] method on every length 1..=67, 1000 and 32003, on rows that start off
//! a vector boundary, with −∞, NaN and +∞ among the values (memchr's way: each arch
//! against a naive version). The integration tests then check the semantics above the
//! kernels once.

use super::scalar::Scalar;
use super::*;
use crate::dispatch::{Work, on_every_tier};

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

/// Runs `$check(tier, kernels)` on every vector tier this CPU has (every tier but the
/// scalar one), each inside its tier's `#[target_feature]` function.
macro_rules! on_vector_tiers {
    ($check:ident) => {{
        struct Check(&'static str);
        impl Work for Check {
            type Output = bool;
            fn run<K: RowKernels>(self, k: K) -> bool {
                let vector = self.0 != "scalar";
                if vector {
                    $check(self.0, k);
                }
                vector
            }
        }
        let mut tiers = 0;
        on_every_tier(|name| {
            tiers += 1;
            Check(name)
        });
        assert!(tiers > 1, "the portable tier is always there");
    }};
}

/// The relative tolerance of sums and outputs: f32 lanes of terms each within a few ulp,
/// flushed into f64 every 64 vectors.
const REL: f64 = 1e-5;

/// Below this an exponential is negligible (the vector exp is 0 below −88).
const TINY: f64 = 1e-36;

#[test]
fn row_max_and_sum_exp_match_scalar() {
    on_vector_tiers!(row_max_and_sum_exp_match_scalar_on);
}

fn row_max_and_sum_exp_match_scalar_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            for offset in [0, 3] {
                let buf = placed(&row, offset);
                let x = &buf[offset..];
                for cap in [0.0, 5.0] {
                    let want_max = Scalar.row_max(x, cap);
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
                        let want = Scalar.sum_exp(x, want_max, cap, target);
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
fn exp_store_sum_matches_scalar_in_place_and_apart() {
    on_vector_tiers!(exp_store_sum_matches_scalar_in_place_and_apart_on);
}

fn exp_store_sum_matches_scalar_in_place_and_apart_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            let shift = Scalar.row_max(&row, 0.0);
            let shift = if shift == f32::NEG_INFINITY {
                0.0
            } else {
                shift
            };
            let target = Some(n / 3);
            let mut want_out = row.clone();
            let want = Scalar.exp_store_sum(RowIo::InPlace(&mut want_out), shift, target);
            for offset in [0, 3] {
                let case = format!("{tier}, n {n}, {pattern}, offset {offset}");
                let mut in_place = placed(&row, offset);
                let got = k.exp_store_sum(RowIo::InPlace(&mut in_place[offset..]), shift, target);
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
fn weighted_and_soft_target_sums_match_scalar() {
    on_vector_tiers!(weighted_and_soft_target_sums_match_scalar_on);
}

fn weighted_and_soft_target_sums_match_scalar_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        let w = weights(n);
        let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v));
        let probs = soft_targets(n);
        for (pattern, row) in rows(n) {
            for cap in [0.0, 5.0] {
                let shift = shift_of(Scalar.row_max(&row, cap));
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
                    let want = Scalar.weighted_shifted_sum(&row, weights, shift, cap);
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
                        let want = Scalar.soft_target_sums(&row, targets, weights, shift, cap);
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
fn grad_rows<'a>(row: &[f32], w: &'a [f32], probs: &'a [f32]) -> Vec<(&'static str, GradRow<'a>)> {
    let n = row.len();
    let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v));
    let weights = ClassWeights::new(w, max_w);
    let shift = shift_of(Scalar.row_max(row, 0.0));
    let scale = (1.0 / Scalar.sum_exp(row, shift, 0.0, None).total()) as f32;
    let plain = GradRow {
        shift,
        scale,
        smooth: 0.0,
        target: Some((n / 2, -0.375)),
        soft: None,
        weights: None,
        cap: 0.0,
    };
    let capped_shift = Scalar.row_max(row, 5.0);
    vec![
        ("plain", plain),
        (
            "smoothing, weights",
            GradRow {
                smooth: 0.01 / weights.scale,
                weights: Some(weights),
                target: Some((n - 1, 0.25)),
                ..plain
            },
        ),
        (
            "soft targets",
            GradRow {
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
            GradRow {
                cap: 5.0,
                shift: shift_of(capped_shift),
                ..plain
            },
        ),
    ]
}

/// Checks `out` against the scalar tier's `want` for `coef`: the target's entry exactly,
/// the others within [`REL`] of the size of their terms.
fn check_grad(
    case: &str,
    row: &[f32],
    coef: &GradRow<'_>,
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
fn write_grad_and_scale_exp_match_scalar() {
    on_vector_tiers!(write_grad_and_scale_exp_match_scalar_on);
}

fn write_grad_and_scale_exp_match_scalar_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        let (w, probs) = (weights(n), soft_targets(n));
        for (pattern, row) in rows(n) {
            for (kind, coef) in grad_rows(&row, &w, &probs) {
                let case = format!("{tier}, n {n}, {pattern}, {kind}");
                let mut want = vec![0.0f32; n];
                Scalar.write_grad(RowIo::Separate(&row, &mut want), &coef);
                let mut got = placed(&row, 5);
                k.write_grad(RowIo::InPlace(&mut got[5..]), &coef);
                check_grad(&case, &row, &coef, None, &got[5..], &want);
                if coef.cap > 0.0 {
                    continue;
                }
                // From stored exponentials, as phase 2 runs.
                let mut exps = row.clone();
                Scalar.exp_store_sum(RowIo::InPlace(&mut exps), coef.shift, None);
                let mut want = exps.clone();
                Scalar.scale_exp(&mut want, &coef);
                let mut got = placed(&exps, 1);
                k.scale_exp(&mut got[1..], &coef);
                check_grad(
                    &format!("{case}, stored"),
                    &row,
                    &coef,
                    Some(&exps),
                    &got[1..],
                    &want,
                );
            }
            // Scaling by a power of two is exact.
            let mut got = row.clone();
            k.scale_exp(&mut got, &GradRow::times(2f32.powi(100)));
            for (c, (&g, &x)) in got.iter().zip(&row).enumerate() {
                let want = x * 2f32.powi(100);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{tier}, n {n}, {pattern}: ×2^100 entry {c}"
                );
            }
        }
    }
}

#[test]
fn write_log_probs_matches_scalar_bit_for_bit() {
    on_vector_tiers!(write_log_probs_matches_scalar_bit_for_bit_on);
}

fn write_log_probs_matches_scalar_bit_for_bit_on<K: RowKernels>(tier: &str, k: K) {
    for n in lengths() {
        for (pattern, row) in rows(n) {
            let (max, ln_sum) = (Scalar.row_max(&row, 0.0), 1.75f32);
            let mut want = vec![0.0f32; n];
            Scalar.write_log_probs(RowIo::Separate(&row, &mut want), max, ln_sum);
            let mut got = placed(&row, 2);
            k.write_log_probs(RowIo::InPlace(&mut got[2..]), max, ln_sum);
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
fn widen_and_narrow_match_scalar_bit_for_bit() {
    on_vector_tiers!(widen_and_narrow_match_scalar_bit_for_bit_on);
}

fn widen_and_narrow_match_scalar_bit_for_bit_on<K: RowKernels>(tier: &str, k: K) {
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
    for kind in [HalfKind::Bf16, HalfKind::F16] {
        for n in lengths()
            .into_iter()
            .chain((!cfg!(miri)).then_some(all.len()))
        {
            let src = &all[all.len() - n..];
            let (mut want, mut got) = (vec![0.0f32; n], vec![0.0f32; n]);
            Scalar.widen(kind, src, &mut want);
            k.widen(kind, src, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{tier}, {kind:?}, widen, n {n}");
        }
        for n in lengths()
            .into_iter()
            .chain((!cfg!(miri)).then_some(floats.len()))
        {
            let src = &floats[floats.len() - n..];
            let (mut want, mut got) = (vec![0u16; n], vec![0u16; n]);
            Scalar.narrow(kind, src, &mut want);
            k.narrow(kind, src, &mut got);
            assert_eq!(got, want, "{tier}, {kind:?}, narrow, n {n}");
        }
    }
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

#[test]
fn short_rows_match_scalar() {
    on_vector_tiers!(short_rows_match_scalar_on);
}

fn short_rows_match_scalar_on<K: RowKernels>(tier: &str, k: K) {
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
        let targets: Vec<ShortTargets> = (0..groups)
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
            .collect();
        let jobs = [
            ("probabilities", ShortJob::Probabilities),
            ("log-probabilities", ShortJob::LogProbabilities),
            (
                "loss",
                ShortJob::Loss(
                    ShortLoss {
                        z_grad: 0.0,
                        write: true,
                    },
                    &targets,
                ),
            ),
            (
                "loss, z",
                ShortJob::Loss(
                    ShortLoss {
                        z_grad: 2e-3,
                        write: true,
                    },
                    &targets,
                ),
            ),
            (
                "loss, no write",
                ShortJob::Loss(
                    ShortLoss {
                        z_grad: 0.0,
                        write: false,
                    },
                    &targets,
                ),
            ),
        ];
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
            let (want, want_stats, _) =
                run(&|rows, job, stats| Scalar.short_rows(rows, job, stats));
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
