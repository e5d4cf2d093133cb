//! Generated cases: everything a case varies (shape, options, data distribution, special
//! rows), as a proptest strategy, and the case built from it.

use proptest::prelude::*;
use xent::Reduction;

use super::{Case, CaseTargets, Rng, random_logits, random_soft};

/// Everything a generated case varies, before the data is drawn from `seed`.
#[derive(Debug, Clone)]
pub struct Params {
    pub rows: usize,
    pub cols: usize,
    pub pad: usize,
    pub reduction: Reduction,
    pub ignore_index: i64,
    pub ignore_share: f32,
    pub label_smoothing: f32,
    pub z_loss: f32,
    pub softcap: f32,
    pub weighted: bool,
    pub grad_scale: f32,
    pub soft: bool,
    pub scale: f32,
    pub offset: f32,
    pub mask_share: f32,
    pub special_row: Option<f32>,
    pub seed: u64,
}

pub fn build(p: &Params) -> Case {
    let mut rng = Rng::new(p.seed);
    let stride = p.cols + p.pad;
    let mut logits = random_logits(&mut rng, p.rows, p.cols, stride, p.scale, p.offset);
    for i in 0..p.rows {
        for c in 0..p.cols {
            if rng.unit() < p.mask_share {
                logits[i * stride + c] = f32::NEG_INFINITY;
            }
        }
    }
    // One row gets a NaN, +∞ or only −∞ somewhere, to show it stays in its row.
    if let (Some(v), true) = (p.special_row, p.rows > 0) {
        let i = rng.below(p.rows);
        if v == f32::NEG_INFINITY {
            logits[i * stride..i * stride + p.cols].fill(v);
        } else {
            logits[i * stride + rng.below(p.cols)] = v;
        }
    }
    let targets = if p.soft {
        let t_stride = p.cols + 1;
        CaseTargets::Soft {
            probs: random_soft(&mut rng, p.rows, p.cols, t_stride),
            stride: t_stride,
        }
    } else {
        CaseTargets::Hard(
            (0..p.rows)
                .map(|_| {
                    if rng.unit() < p.ignore_share {
                        p.ignore_index
                    } else {
                        rng.below(p.cols) as i64
                    }
                })
                .collect(),
        )
    };
    let weights = p.weighted.then(|| {
        (0..p.cols)
            .map(|_| {
                if rng.unit() < 0.15 {
                    0.0
                } else {
                    rng.range(0.0, 3.0)
                }
            })
            .collect()
    });
    Case {
        rows: p.rows,
        cols: p.cols,
        stride,
        logits,
        targets,
        weights,
        reduction: p.reduction,
        ignore_index: p.ignore_index,
        label_smoothing: p.label_smoothing,
        z_loss: p.z_loss,
        softcap: p.softcap,
        grad_scale: p.grad_scale,
    }
}

pub fn params(
    rows: impl Strategy<Value = usize>,
    cols: impl Strategy<Value = usize>,
) -> impl Strategy<Value = Params> {
    (
        (rows, cols, 0usize..4),
        (
            prop_oneof![
                Just(Reduction::Mean),
                Just(Reduction::Sum),
                Just(Reduction::None)
            ],
            prop_oneof![Just(-100i64), Just(0), Just(i64::MIN)],
            prop_oneof![Just(0.0f32), Just(0.3), Just(1.0)],
        ),
        (
            prop_oneof![Just(0.0f32), Just(1.0), 0.0f32..1.0],
            prop_oneof![Just(0.0f32), 0.0f32..0.1],
            prop_oneof![Just(0.0f32), 0.5f32..50.0],
            any::<bool>(),
            prop_oneof![Just(1.0f32), -4.0f32..4.0],
            any::<bool>(),
        ),
        (
            prop_oneof![Just(1.0f32), Just(10.0), Just(100.0)],
            prop_oneof![Just(0.0f32), -1000.0f32..1000.0],
            prop_oneof![Just(0.0f32), Just(0.2)],
            prop_oneof![
                4 => Just(None),
                1 => Just(Some(f32::NAN)),
                1 => Just(Some(f32::INFINITY)),
                1 => Just(Some(f32::NEG_INFINITY)),
            ],
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (rows, cols, pad),
                (reduction, ignore_index, ignore_share),
                (label_smoothing, z_loss, softcap, weighted, grad_scale, soft),
                (scale, offset, mask_share, special_row, seed),
            )| Params {
                rows,
                cols,
                pad,
                reduction,
                ignore_index,
                ignore_share,
                label_smoothing,
                z_loss,
                softcap,
                weighted,
                grad_scale,
                soft,
                scale,
                offset,
                mask_share,
                special_row,
                seed,
            },
        )
}
