//! The scalar tier: one element at a time, sums kept in f64. It is the fallback on every
//! CPU and the yardstick the vector tiers are tested against.

use super::{
    ClassWeights, ExpSums, GROUP, GradRow, HalfKind, RowIo, RowKernels, ShortJob, ShortStats,
    SmoothedTargets, StridedRows, softcap,
};

impl ExpSums {
    /// Adds class `c`'s term `e`.
    fn add(&mut self, c: usize, target: Option<usize>, e: f32) {
        if target == Some(c) {
            self.target += f64::from(e);
        } else {
            self.rest += f64::from(e);
        }
    }
}

/// Plain Rust loops, no SIMD.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

/// Overwrites each output element with `f(c, x_c)`, reading x_c first.
#[inline(always)]
fn map_row(io: RowIo<'_>, mut f: impl FnMut(usize, f32) -> f32) {
    match io {
        RowIo::InPlace(row) => {
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

impl RowKernels for Scalar {
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
            let probs = |scale: f64, target| GradRow {
                shift: max,
                scale: scale as f32,
                smooth: 0.0,
                target,
                soft: None,
                weights: None,
                cap: 0.0,
            };
            match (job, target) {
                (ShortJob::Probabilities, _) => {
                    if let Some(io) = io {
                        self.write_grad(io, &probs(1.0 / sum, None));
                    }
                }
                (ShortJob::LogProbabilities, _) => {
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

    fn widen(&self, kind: HalfKind, src: &[u16], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = match kind {
                HalfKind::Bf16 => half::bf16::from_bits(s).to_f32(),
                HalfKind::F16 => half::f16::from_bits(s).to_f32(),
            };
        }
    }

    fn narrow(&self, kind: HalfKind, src: &[f32], dst: &mut [u16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = match kind {
                HalfKind::Bf16 => half::bf16::from_f32(s).to_bits(),
                HalfKind::F16 => half::f16::from_f32(s).to_bits(),
            };
        }
    }

    fn write_grad(&self, io: RowIo<'_>, coef: &GradRow<'_>) {
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

    fn scale_exp(&self, out: &mut [f32], coef: &GradRow<'_>) {
        map_row(RowIo::InPlace(out), |c, e| {
            coef.target_value(c)
                .unwrap_or_else(|| coef.scale * e - coef.class_term(c))
        });
    }

    fn write_log_probs(&self, io: RowIo<'_>, max: f32, ln_sum: f32) {
        map_row(io, |_, v| (v - max) - ln_sum);
    }
}
