//! Every call style against the f64 oracle: generated option combinations (proptest), the
//! required column counts, strides with NaN padding, masked and non-finite rows, and
//! batches large enough to run in parallel.

mod common;

use common::{Case, CaseTargets, Rng, check_case, padded, random_logits, random_soft};
use proptest::prelude::*;
use xent::Reduction;

/// Everything a generated case varies, before the data is drawn from `seed`.
#[derive(Debug, Clone)]
struct Params {
    rows: usize,
    cols: usize,
    pad: usize,
    reduction: Reduction,
    ignore_index: i64,
    ignore_share: f32,
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    weighted: bool,
    grad_scale: f32,
    soft: bool,
    scale: f32,
    offset: f32,
    mask_share: f32,
    special_row: Option<f32>,
    seed: u64,
}

fn build(p: &Params) -> Case {
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

fn params(
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Small batches over the whole option space.
    #[test]
    fn matches_oracle_small(p in params(0usize..6, 1usize..=67)) {
        check_case(&build(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Batches of short rows, which run in groups of 8 through the short-row kernels.
    #[test]
    fn matches_oracle_short_rows(p in params(8usize..40, 1usize..=16)) {
        check_case(&build(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Long rows, where summation order and accumulated rounding matter.
    #[test]
    fn matches_oracle_long_rows(p in params(1usize..3, prop_oneof![Just(1000usize), Just(32003)])) {
        check_case(&build(&p));
    }
}

/// Every required column count, each under a few fixed option sets.
#[test]
fn every_column_count() {
    let cols: Vec<usize> = (1..=67).chain([1000, 32003]).collect();
    for (k, &cols) in cols.iter().enumerate() {
        for variant in 0..4u64 {
            let p = Params {
                rows: 3,
                cols,
                pad: (k % 3) * 2,
                reduction: [Reduction::Mean, Reduction::Sum, Reduction::None][variant as usize % 3],
                ignore_index: -100,
                ignore_share: 0.2,
                label_smoothing: [0.0, 0.1, 0.0, 1.0][variant as usize],
                z_loss: [0.0, 0.0, 1e-3, 0.0][variant as usize],
                softcap: [0.0, 0.0, 30.0, 0.0][variant as usize],
                weighted: variant % 2 == 1,
                grad_scale: 1.0,
                soft: variant == 3,
                scale: 4.0,
                offset: 0.0,
                mask_share: 0.0,
                special_row: None,
                seed: (cols as u64) << 8 | variant,
            };
            check_case(&build(&p));
        }
    }
}

/// Batches big enough to be split into chunks and run on the rayon pool.
#[test]
fn parallel_batches() {
    for (rows, cols) in [(64usize, 3000usize), (4000, 67), (3, 65_537)] {
        let p = Params {
            rows,
            cols,
            pad: 1,
            reduction: Reduction::Mean,
            ignore_index: -100,
            ignore_share: 0.1,
            label_smoothing: 0.05,
            z_loss: 1e-4,
            softcap: 0.0,
            weighted: true,
            grad_scale: 1.0,
            soft: false,
            scale: 3.0,
            offset: 5.0,
            mask_share: 0.01,
            special_row: Some(f32::NAN),
            seed: (rows * cols) as u64,
        };
        check_case(&build(&p));
    }
}

/// Masked (−∞) entries, including a masked target, with and without smoothing.
#[test]
fn masked_entries() {
    let ninf = f32::NEG_INFINITY;
    let logits = padded(3, 4, 4, |i, c| match (i, c) {
        (0, 1) | (1, 0) | (2, 3) => ninf,
        _ => (i + c) as f32,
    });
    for eps in [0.0, 0.2, 1.0] {
        // Row 1's target is masked: +∞ loss (NaN when ε = 1: 0·∞).
        let mut case = Case::packed(4, logits.clone(), vec![2, 0, 1]);
        case.reduction = Reduction::None;
        case.label_smoothing = eps;
        check_case(&case);
        let r = case.reference();
        assert!(r.row_loss[0].is_finite() == (eps == 0.0));
        assert!(r.row_loss[1].is_infinite() || (eps == 1.0 && r.row_loss[1].is_nan()));
    }
}
