//! The f64 path: f64 logits, gradients, loss and lse, every row computed in f64 one
//! element at a time with the standard library's `exp`, `exp_m1`, `ln` and `tanh`.
//!
//! The formulas are the f32 path's (`Plan`, `row_loss`, `grad_row`: they are f64 already);
//! only the row sums and the element-wise writes are done here, in f64 instead of the
//! f32 kernels. No SIMD: f64 is for work that needs its precision, not for speed.

use super::{Chunk, Partial, Plan, RowSums, RowTarget, TargetProb, row_loss, row_target};
use crate::batch_io::BatchIo;
use crate::row::GradCoefs;
use crate::schedule::SplitRows;

/// x' = c·tanh(x/c) for c > 0, x itself for c = 0.
fn capped(x: f64, cap: f32) -> f64 {
    if cap > 0.0 {
        let c = f64::from(cap);
        c * (x / c).tanh()
    } else {
        x
    }
}

/// Phase 1 of a row: its max and the sums relative to it, with a hard target's exp apart
/// from the others (see `RowStats::rest`).
fn row_sums(plan: &Plan<'_>, x: &[f64], target: Option<RowTarget<'_>>) -> RowSums {
    let cap = plan.cap;
    let max = x
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(capped(v, cap)));
    let shift = if max == f64::NEG_INFINITY { 0.0 } else { max };
    let y = match target {
        Some(RowTarget::Class(y)) => Some(y),
        _ => None,
    };
    let smoothing = y.is_some() && plan.uniform > 0.0;
    let soft = match target {
        Some(RowTarget::Soft(t)) => Some(plan.smoothed(t, 1.0)),
        _ => None,
    };
    let mut sums = RowSums {
        max,
        sum: 0.0,
        target_exp: 0.0,
        rest: 0.0,
        weighted: 0.0,
        dot: 0.0,
        t_total: 0.0,
    };
    for (c, &v) in x.iter().enumerate() {
        let d = capped(v, cap) - shift;
        if Some(c) == y {
            sums.target_exp = d.exp();
        } else {
            sums.rest += d.exp();
        }
        let w = plan.column_weight(c);
        if smoothing {
            sums.weighted += w * d;
        }
        if let Some(t) = soft {
            let smoothed = t.keep * f64::from(t.probs[c]) + t.uniform;
            let wt = w * smoothed;
            sums.t_total += wt;
            // A zero target adds 0 even against a −∞ logit; a zero weight does not (0·∞ is
            // NaN, as in PyTorch and the f32 kernels: the fuzzer found this path giving +∞).
            if smoothed != 0.0 {
                sums.dot += wt * d;
            }
        }
    }
    sums.sum = sums.rest + sums.target_exp;
    if max == f64::NEG_INFINITY {
        // A row of only −∞ has no softmax.
        sums.sum = f64::NAN;
        sums.rest = f64::NAN;
    }
    sums
}

/// out_c = (scale·exp(x'_c − shift) − smooth·w_c − w_c·t'_c)·(1 − (x'_c/c)²), and the hard
/// target's entry as `grad` gives it: the f32 kernels' `GradCoefs32` in f64.
fn write_grad(pass: &mut BatchIo<'_, f64>, i: usize, grad: &GradCoefs<'_>, shift: f64) {
    let cap = grad.cap;
    let entry = |c: usize, v: f64| {
        if let Some((y, value)) = grad.target
            && y == c
        {
            return value;
        }
        let x = capped(v, cap);
        let w = grad.weights.map_or(1.0, |w| f64::from(w.values[c]));
        let mut g = grad.scale * (x - shift).exp() - grad.smooth * w;
        if let Some(t) = grad.soft {
            g -= w * (t.keep * f64::from(t.probs[c]) + t.uniform);
        }
        if cap > 0.0 {
            let r = x / f64::from(cap);
            g *= 1.0 - r * r;
        }
        g
    };
    map_row(pass, i, entry);
}

/// Overwrites row `i`'s output with `f(c, x_c)`, reading x_c first.
fn map_row(pass: &mut BatchIo<'_, f64>, i: usize, mut f: impl FnMut(usize, f64) -> f64) {
    match pass {
        BatchIo::Forward(_) => {}
        BatchIo::InPlace(x) => {
            for (c, v) in x.row_mut(i).iter_mut().enumerate() {
                *v = f(c, *v);
            }
        }
        BatchIo::Separate(x, out) => {
            for (c, (o, &v)) in out.row_mut(i).iter_mut().zip(x.row(i)).enumerate() {
                *o = f(c, v);
            }
        }
    }
}

/// The f64 forward (and fused gradient) of one chunk.
pub(super) fn forward_chunk(plan: &Plan<'_>, mut chunk: Chunk<'_, f64, f64>) -> Partial {
    let mut partial = Partial::default();
    let write = plan.writes(&chunk);
    for i in 0..chunk.pass.rows() {
        let target = row_target(&chunk.targets, i, plan.options.ignore_index);
        let x = chunk.pass.input(i);
        let sums = row_sums(plan, x, target);
        let Some(target) = target else {
            if let Some(lse) = chunk.lse_out.as_deref_mut() {
                lse[i] = sums.max + sums.sum.ln();
            }
            if let Some(loss) = chunk.loss.as_deref_mut() {
                loss[i] = 0.0;
            }
            map_row(&mut chunk.pass, i, |_, _| 0.0);
            continue;
        };
        let x_y = match target {
            RowTarget::Class(y) => capped(x[y], plan.cap),
            RowTarget::Soft(_) => 0.0,
        };
        let row = row_loss(plan, target, x_y, &sums, &mut partial);
        if let Some(loss) = chunk.loss.as_deref_mut() {
            loss[i] = row.ce + row.zl;
        }
        if let Some(lse) = chunk.lse_out.as_deref_mut() {
            lse[i] = row.lse;
        }
        if write {
            let p_y = TargetProb::from_sums(&sums, x_y);
            let grad = plan.grad_row(target, sums.t_total, sums.sum, row.lse, 1.0, p_y);
            let shift = if sums.max == f64::NEG_INFINITY {
                0.0
            } else {
                sums.max
            };
            write_grad(&mut chunk.pass, i, &grad, shift);
        } else {
            map_row(&mut chunk.pass, i, |_, _| 0.0);
        }
    }
    partial
}

/// The f64 gradient of one chunk from its saved lse, each row renormalized by its own
/// Σ_c exp(x'_c − lse) as the f32 path does (see `driver::backward_chunk`).
pub(super) fn backward_chunk(plan: &Plan<'_>, mut chunk: Chunk<'_, f64, f64>) {
    let lse_in = chunk.lse_in.expect("backward reads the saved lse");
    for i in 0..chunk.pass.rows() {
        let target = row_target(&chunk.targets, i, plan.options.ignore_index);
        let Some(target) = target.filter(|_| !plan.zero_grad) else {
            map_row(&mut chunk.pass, i, |_, _| 0.0);
            continue;
        };
        let x = chunk.pass.input(i);
        let lse = lse_in[i];
        let column = match target {
            RowTarget::Class(y) => Some(y),
            RowTarget::Soft(_) => None,
        };
        let (mut target_exp, mut rest) = (0.0, 0.0);
        for (c, &v) in x.iter().enumerate() {
            let e = (capped(v, plan.cap) - lse).exp();
            if Some(c) == column {
                target_exp = e;
            } else {
                rest += e;
            }
        }
        let sum = target_exp + rest;
        let (t_total, p_y) = match target {
            RowTarget::Class(y) => (
                0.0,
                TargetProb::from_parts(target_exp, rest, capped(x[y], plan.cap)),
            ),
            RowTarget::Soft(t) => {
                let t = plan.smoothed(t, 1.0);
                let total = (0..x.len())
                    .map(|c| {
                        let w = plan.column_weight(c);
                        w * (t.keep * f64::from(t.probs[c]) + t.uniform)
                    })
                    .sum();
                (total, TargetProb::NONE)
            }
        };
        let upstream = chunk.dloss.map_or(1.0, |d| d[i]);
        let grad = plan.grad_row(target, t_total, sum, lse + sum.ln(), upstream, p_y);
        write_grad(&mut chunk.pass, i, &grad, lse);
    }
}

/// softmax (p_c = exp(x_c − m)/S) or, with `log`, log_softmax ((x_c − m) − ln S) of each
/// row of an f64 pass.
pub(crate) fn normalize_chunk(mut pass: BatchIo<'_, f64>, log: bool) {
    for i in 0..pass.rows() {
        let x = pass.input(i);
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum = if max == f64::NEG_INFINITY {
            f64::NAN
        } else {
            x.iter().map(|&v| (v - max).exp()).sum()
        };
        if log {
            let ln_sum = sum.ln();
            map_row(&mut pass, i, |_, v| (v - max) - ln_sum);
        } else {
            map_row(&mut pass, i, |_, v| (v - max).exp() / sum);
        }
    }
}
