//! Every call style against the f64 oracle: generated option combinations (proptest), the
//! required column counts, strides with NaN padding, masked and non-finite rows, and
//! batches large enough to run in parallel.

mod common;

use common::generated::{Params, build, params};
use common::{Case, check_case, miri_or, padded};
use proptest::prelude::*;
use xent::Reduction;

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(512), ..ProptestConfig::default() })]

    /// Small batches over the whole option space.
    #[test]
    fn matches_oracle_small(p in params(0usize..6, 1usize..=67)) {
        check_case(&build(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(256), ..ProptestConfig::default() })]

    /// Batches of short rows, which run in groups of 16 through the short-row kernels (and
    /// the rows past the last whole group one by one).
    #[test]
    fn matches_oracle_short_rows(p in params(16usize..48, 1usize..=16)) {
        check_case(&build(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(24), ..ProptestConfig::default() })]

    /// Long rows, where summation order and accumulated rounding matter (under Miri, 2
    /// column blocks instead of 8).
    #[test]
    fn matches_oracle_long_rows(
        p in params(1usize..3, prop_oneof![Just(1000usize), Just(miri_or(4105, 32003))])
    ) {
        check_case(&build(&p));
    }
}

/// Every required column count, each under a few fixed option sets.
#[test]
fn every_column_count() {
    // Under Miri the lengths around the vector widths (8 lanes, 4 vectors per unrolled
    // step); rows of several column blocks take minutes each there (the long-row tests
    // have them).
    let cols: Vec<usize> = if cfg!(miri) {
        vec![1, 7, 8, 9, 16, 17, 31, 32, 33, 67]
    } else {
        (1..=67).chain([1000, 32003]).collect()
    };
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
#[cfg_attr(
    miri,
    ignore = "a batch of two chunks holds 65536 values or more, tens of minutes under Miri"
)]
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
