//! The scalar tier: one element at a time, sums kept in f64. It is the fallback on every
//! CPU and the yardstick the vector tiers are tested against.

use super::{GROUP, GradRow, RowIo, RowKernels, ShortGrad, SmoothedTargets, softcap};

/// Plain Rust loops, no SIMD.
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

    fn sum_exp(&self, x: &[f32], shift: f32, cap: f32) -> f64 {
        x.iter()
            .map(|&v| f64::from((softcap(v, cap) - shift).exp()))
            .sum()
    }

    fn exp_store_sum(&self, io: RowIo<'_>, shift: f32) -> f64 {
        let mut sum = 0.0f64;
        map_row(io, |_, v| {
            let e = (v - shift).exp();
            sum += f64::from(e);
            e
        });
        sum
    }

    fn short_rows(
        &self,
        rows: &mut [RowIo<'_>; GROUP],
        coefs: &mut dyn FnMut(&[f32; GROUP], &[f64; GROUP]) -> ShortGrad,
    ) {
        let mut max = [0.0; GROUP];
        let mut sum = [0.0; GROUP];
        for (r, row) in rows.iter_mut().enumerate() {
            max[r] = self.row_max(row.input(), 0.0);
            sum[r] = self.exp_store_sum(row.slice(0, row.input().len()), max[r]);
        }
        let grad = coefs(&max, &sum);
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, v) in row.output().iter_mut().enumerate() {
                let one_hot = if c as f32 == grad.target[r] {
                    grad.target_coef[r]
                } else {
                    0.0
                };
                *v = if grad.keep[r] {
                    grad.scale[r] * *v - one_hot
                } else {
                    0.0
                };
            }
        }
    }

    fn weighted_shifted_sum(
        &self,
        x: &[f32],
        weights: Option<&[f32]>,
        shift: f32,
        cap: f32,
    ) -> f64 {
        let shifted = |v: f32| f64::from(softcap(v, cap) - shift);
        match weights {
            None => x.iter().map(|&v| shifted(v)).sum(),
            Some(w) => x
                .iter()
                .zip(w)
                .map(|(&v, &w)| f64::from(w) * shifted(v))
                .sum(),
        }
    }

    fn soft_target_sums(
        &self,
        x: &[f32],
        targets: SmoothedTargets<'_>,
        weights: Option<&[f32]>,
        shift: f32,
        cap: f32,
    ) -> (f64, f64) {
        let mut dot = 0.0f64;
        let mut total = 0.0f64;
        for (c, &v) in x.iter().enumerate() {
            let t = targets.at(c);
            let wt = f64::from(weights.map_or(1.0, |w| w[c]) * t);
            total += wt;
            if t != 0.0 {
                dot += wt * f64::from(softcap(v, cap) - shift);
            }
        }
        (dot, total)
    }

    fn write_grad(&self, io: RowIo<'_>, coef: &GradRow<'_>) {
        map_row(io, |c, v| {
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
            coef.scale * e - coef.class_term(c)
        });
    }

    fn write_log_probs(&self, io: RowIo<'_>, max: f32, ln_sum: f32) {
        map_row(io, |_, v| (v - max) - ln_sum);
    }
}
