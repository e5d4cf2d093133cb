//! The vocabulary-sharded exports (`xent_shard_stats_f32`, `xent_merge_shard_rows`,
//! `xent_shard_finish_f32`), called through the rlib exactly as C calls them, give the core
//! crate's `shard_stats`, `merge_shard_rows` and `shard_finish*` results bit for bit: over
//! 1 to 3 uneven slices of several option sets, strided with NaN padding that must survive,
//! in place and separate, with and without `grad` and `lse`, and for no rows. Every refused
//! call gets its status and leaves every byte of every buffer — the logits of an in-place
//! call included — as it was; the merge, which has no status, does nothing on bad pointers.

mod common;

use std::ptr;

use xent::{Options, Reduction, Rows, RowsMut, Shard, ShardRow, merge_shard_rows};
use xent_ffi::{
    XentOptions, XentReduction, XentShardRow, XentStatus, xent_merge_shard_rows,
    xent_options_default, xent_shard_finish_f32, xent_shard_stats_f32,
};

use common::abi::{OptionSet, PAD, Rng, bits, option_sets, weights};

/// A summary no call may leave in a row it should have written, or write over a guard.
const SENTINEL: XentShardRow = XentShardRow {
    max: PAD,
    sumexp: PAD,
    target_logit: PAD,
    smooth_sum: PAD,
};

fn row_bits(rows: &[XentShardRow]) -> Vec<[u32; 4]> {
    rows.iter()
        .map(|r| [r.max, r.sumexp, r.target_logit, r.smooth_sum].map(f32::to_bits))
        .collect()
}

fn core_row_bits(rows: &[ShardRow]) -> Vec<[u32; 4]> {
    rows.iter()
        .map(|r| [r.max, r.sumexp, r.target_logit, r.smooth_sum].map(f32::to_bits))
        .collect()
}

fn to_core(rows: &[XentShardRow]) -> Vec<ShardRow> {
    rows.iter()
        .map(|r| ShardRow {
            max: r.max,
            sumexp: r.sumexp,
            target_logit: r.target_logit,
            smooth_sum: r.smooth_sum,
        })
        .collect()
}

/// `rows` rows of `cols` values with `stride`, PAD in the padding.
fn strided(
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
    (0..len)
        .map(|k| {
            if k % stride < cols {
                value(k / stride, k % stride)
            } else {
                PAD
            }
        })
        .collect()
}

fn assert_padding_intact(buf: &[f32], cols: usize, stride: usize, what: &str) {
    for (k, v) in buf.iter().enumerate() {
        if k % stride >= cols {
            assert_eq!(
                v.to_bits(),
                PAD.to_bits(),
                "{what}: padding {k} was written"
            );
        }
    }
}

/// Whole rows, as one process would hold them unsharded (packed).
struct Whole {
    rows: usize,
    total: usize,
    logits: Vec<f32>,
    targets: Vec<i64>,
}

/// Random rows and targets; every fourth row's target is `ignore_index`. With `special`,
/// row 0 has −∞ over its first half, row 1 a NaN and row 2 a max far above the others.
fn whole(rows: usize, total: usize, seed: u64, ignore_index: i64, special: bool) -> Whole {
    let mut rng = Rng(seed);
    let mut logits: Vec<f32> = (0..rows * total).map(|_| rng.range(-8.0, 8.0)).collect();
    let targets = (0..rows)
        .map(|i| {
            if i % 4 == 3 {
                ignore_index
            } else {
                rng.below(total) as i64
            }
        })
        .collect();
    if special {
        logits[..total / 2].fill(f32::NEG_INFINITY);
        logits[total + total / 3] = f32::NAN;
        logits[2 * total + total - 1] = 60.0;
    }
    Whole {
        rows,
        total,
        logits,
        targets,
    }
}

/// One process's columns `offset..offset + cols` of the whole rows, with padding of its own.
struct Slice {
    offset: usize,
    cols: usize,
    stride: usize,
    logits: Vec<f32>,
}

fn slices(w: &Whole, bounds: &[usize]) -> Vec<Slice> {
    bounds
        .windows(2)
        .map(|b| {
            let (offset, cols) = (b[0], b[1] - b[0]);
            let stride = cols + 1 + offset % 3;
            Slice {
                offset,
                cols,
                stride,
                logits: strided(w.rows, cols, stride, |i, c| {
                    w.logits[i * w.total + offset + c]
                }),
            }
        })
        .collect()
}

impl Slice {
    fn shard(&self, w: &Whole) -> Shard {
        Shard {
            class_offset: self.offset,
            total_cols: w.total,
        }
    }

    fn view(&self, rows: usize) -> Rows<'_> {
        Rows::new(&self.logits, rows, self.cols, self.stride).unwrap()
    }
}

/// How the rows are cut into slices: 1 to 3 uneven shards, one of a single column.
fn cuts(total: usize) -> Vec<Vec<usize>> {
    vec![
        vec![0, total],
        vec![0, total / 3, total],
        vec![0, 1, total / 2 + 1, total],
        vec![0, total - 7, total - 6, total],
    ]
}

/// `xent_shard_stats_f32` on a slice; the row after the last must stay untouched.
fn c_stats(w: &Whole, s: &Slice, set: &OptionSet) -> Vec<XentShardRow> {
    let options = set.c_options();
    let mut out = vec![SENTINEL; w.rows + 1];
    // SAFETY: the slice holds `rows` rows of `cols` at `stride`, `targets` `rows` values,
    // the options' weights `total` values, `out` `rows + 1` rows.
    let status = unsafe {
        xent_shard_stats_f32(
            s.logits.as_ptr(),
            w.rows,
            s.cols,
            s.stride,
            s.offset,
            w.total,
            w.targets.as_ptr(),
            &options,
            out.as_mut_ptr(),
        )
    };
    assert_eq!(
        status,
        XentStatus::Ok,
        "{}: stats of {}..",
        set.name,
        s.offset
    );
    assert_eq!(
        row_bits(&out[w.rows..]),
        row_bits(&[SENTINEL]),
        "row after the last"
    );
    out.truncate(w.rows);
    out
}

fn core_stats(w: &Whole, s: &Slice, set: &OptionSet) -> Vec<ShardRow> {
    let mut out = vec![ShardRow::EMPTY; w.rows];
    let options = set.core_options();
    xent::shard_stats(
        s.view(w.rows),
        s.shard(w),
        &w.targets[..],
        &options,
        &mut out,
    )
    .unwrap();
    out
}

/// The all-reduce through the export: every slice's summary merged into the first's.
fn c_merge_all(summaries: &[Vec<XentShardRow>]) -> Vec<XentShardRow> {
    let mut merged = summaries[0].clone();
    for s in &summaries[1..] {
        // SAFETY: both hold `merged.len()` rows, in separate vectors.
        unsafe { xent_merge_shard_rows(s.as_ptr(), merged.as_mut_ptr(), merged.len()) };
    }
    merged
}

/// The finishing call through the export.
struct Finish<'a> {
    w: &'a Whole,
    s: &'a Slice,
    set: &'a OptionSet,
    merged: &'a [XentShardRow],
}

impl Finish<'_> {
    /// `xent_shard_finish_f32` over `logits` (the slice's, or a copy for in place), `loss`
    /// with its length, `grad` NULL or covering the slice at `grad_stride`, `lse` NULL or
    /// `rows` values.
    fn call(
        &self,
        logits: *const f32,
        loss: &mut [f32],
        grad: *mut f32,
        grad_stride: usize,
        lse: *mut f32,
    ) -> XentStatus {
        let options = self.set.c_options();
        assert!(loss.len() >= self.set.reduction().loss_len(self.w.rows));
        // SAFETY: the caller's buffers cover what the arguments describe.
        unsafe {
            xent_shard_finish_f32(
                logits,
                self.w.rows,
                self.s.cols,
                self.s.stride,
                self.s.offset,
                self.w.total,
                self.w.targets.as_ptr(),
                &options,
                self.merged.as_ptr(),
                loss.as_mut_ptr(),
                grad,
                grad_stride,
                lse,
            )
        }
    }
}

/// What every shard's finishing calls returned (checked against the core crate).
struct Finished {
    loss: Vec<f32>,
    lse: Vec<f32>,
}

/// Every form of the finishing call on one slice against the core crate's, bit for bit.
fn check_finish(w: &Whole, s: &Slice, set: &OptionSet, merged: &[XentShardRow]) -> Finished {
    let name = format!("{} (shard {}..{})", set.name, s.offset, s.offset + s.cols);
    let rows = w.rows;
    let loss_len = set.reduction().loss_len(rows);
    let options = set.core_options();
    let core_merged = to_core(merged);
    let f = Finish { w, s, set, merged };

    // The core crate: separate gradient (packed), in place, forward only.
    let mut want_grad = vec![0.0f32; rows * s.cols];
    let (mut want_loss, mut want_lse) = (vec![0.0f32; loss_len], vec![0.0f32; rows]);
    xent::shard_finish_grad(
        s.view(rows),
        s.shard(w),
        &w.targets[..],
        &options,
        &core_merged,
        &mut want_loss,
        RowsMut::new(&mut want_grad, rows, s.cols, s.cols).unwrap(),
        Some(&mut want_lse),
    )
    .unwrap();
    let mut want_in_place = s.logits.clone();
    let mut loss_ip = vec![0.0f32; loss_len];
    xent::shard_finish_grad_in_place(
        RowsMut::new(&mut want_in_place, rows, s.cols, s.stride).unwrap(),
        s.shard(w),
        &w.targets[..],
        &options,
        &core_merged,
        &mut loss_ip,
        None,
    )
    .unwrap();
    assert_eq!(bits(&loss_ip), bits(&want_loss), "{name}: core in place");
    let (mut loss_fw, mut lse_fw) = (vec![0.0f32; loss_len], vec![0.0f32; rows]);
    xent::shard_finish(
        s.view(rows),
        s.shard(w),
        &w.targets[..],
        &options,
        &core_merged,
        &mut loss_fw,
        Some(&mut lse_fw),
    )
    .unwrap();

    // Separate, strided gradient with lse; loss and lse each with a guard element.
    let g_stride = s.cols + 2;
    let mut grad = strided(rows, s.cols, g_stride, |_, _| PAD);
    let (mut loss, mut lse) = (vec![PAD; loss_len + 1], vec![PAD; rows + 1]);
    let status = f.call(
        s.logits.as_ptr(),
        &mut loss,
        grad.as_mut_ptr(),
        g_stride,
        lse.as_mut_ptr(),
    );
    assert_eq!(status, XentStatus::Ok, "{name}: separate");
    assert_eq!(
        bits(&loss[..loss_len]),
        bits(&want_loss),
        "{name}: separate loss"
    );
    assert_eq!(bits(&lse[..rows]), bits(&want_lse), "{name}: separate lse");
    assert_eq!(
        bits(&[loss[loss_len], lse[rows]]),
        bits(&[PAD, PAD]),
        "{name}: guards"
    );
    assert_padding_intact(&grad, s.cols, g_stride, &name);
    for i in 0..rows {
        assert_eq!(
            bits(&grad[i * g_stride..i * g_stride + s.cols]),
            bits(&want_grad[i * s.cols..(i + 1) * s.cols]),
            "{name}: separate gradient row {i}"
        );
    }

    // Separate without lse.
    let mut grad2 = strided(rows, s.cols, g_stride, |_, _| PAD);
    let mut loss2 = vec![PAD; loss_len];
    let status = f.call(
        s.logits.as_ptr(),
        &mut loss2,
        grad2.as_mut_ptr(),
        g_stride,
        ptr::null_mut(),
    );
    assert_eq!(status, XentStatus::Ok, "{name}: NULL lse");
    assert_eq!(bits(&loss2), bits(&want_loss), "{name}: loss with NULL lse");
    assert_eq!(bits(&grad2), bits(&grad), "{name}: gradient with NULL lse");

    // In place over a copy of the slice: the core's in-place result, padding included.
    let mut in_place = s.logits.clone();
    let mut loss3 = vec![PAD; loss_len];
    let mut lse3 = vec![PAD; rows];
    let p = in_place.as_mut_ptr();
    let status = f.call(p, &mut loss3, p, s.stride, lse3.as_mut_ptr());
    assert_eq!(status, XentStatus::Ok, "{name}: in place");
    assert_eq!(
        bits(&in_place),
        bits(&want_in_place),
        "{name}: in-place gradient"
    );
    assert_padding_intact(&in_place, s.cols, s.stride, &name);
    assert_eq!(bits(&loss3), bits(&want_loss), "{name}: in-place loss");
    assert_eq!(bits(&lse3), bits(&want_lse), "{name}: in-place lse");

    // No gradient (its stride ignored), with and without lse.
    let mut loss4 = vec![PAD; loss_len];
    let mut lse4 = vec![PAD; rows];
    let status = f.call(
        s.logits.as_ptr(),
        &mut loss4,
        ptr::null_mut(),
        0,
        lse4.as_mut_ptr(),
    );
    assert_eq!(status, XentStatus::Ok, "{name}: NULL grad");
    assert_eq!(bits(&loss4), bits(&loss_fw), "{name}: forward loss");
    assert_eq!(bits(&lse4), bits(&lse_fw), "{name}: forward lse");
    let mut loss5 = vec![PAD; loss_len];
    let status = f.call(
        s.logits.as_ptr(),
        &mut loss5,
        ptr::null_mut(),
        0,
        ptr::null_mut(),
    );
    assert_eq!(status, XentStatus::Ok, "{name}: NULL grad and lse");
    assert_eq!(bits(&loss5), bits(&loss_fw), "{name}: loss alone");

    Finished {
        loss: want_loss,
        lse: want_lse,
    }
}

/// Every option set and cut: stats and merge through the exports equal the core crate's,
/// then every finishing form on every slice does, and loss and lse are the same bits on
/// every shard.
fn check_sharded(rows: usize, total: usize, special: bool) {
    for (k, set) in option_sets(total).iter().enumerate() {
        let w = whole(
            rows,
            total,
            10 + k as u64,
            set.options.ignore_index,
            special,
        );
        for bounds in cuts(total) {
            let slices = slices(&w, &bounds);
            let summaries: Vec<Vec<XentShardRow>> = slices
                .iter()
                .map(|s| {
                    let got = c_stats(&w, s, set);
                    let want = core_stats(&w, s, set);
                    assert_eq!(
                        row_bits(&got),
                        core_row_bits(&want),
                        "{}: stats of shard {}.. of {bounds:?}",
                        set.name,
                        s.offset
                    );
                    got
                })
                .collect();
            let merged = c_merge_all(&summaries);
            let mut want = to_core(&summaries[0]);
            for s in &summaries[1..] {
                merge_shard_rows(&to_core(s), &mut want).unwrap();
            }
            assert_eq!(
                row_bits(&merged),
                core_row_bits(&want),
                "{}: merged",
                set.name
            );

            let finished: Vec<Finished> = slices
                .iter()
                .map(|s| check_finish(&w, s, set, &merged))
                .collect();
            for f in &finished[1..] {
                assert_eq!(
                    bits(&f.loss),
                    bits(&finished[0].loss),
                    "{}: loss across shards",
                    set.name
                );
                assert_eq!(
                    bits(&f.lse),
                    bits(&finished[0].lse),
                    "{}: lse across shards",
                    set.name
                );
            }
        }
    }
}

#[test]
fn shards_match_the_core_bit_for_bit() {
    check_sharded(7, 37, false);
}

#[test]
fn masked_nan_and_far_rows_match_the_core_bit_for_bit() {
    check_sharded(5, 23, true);
}

/// Long rows (several of the kernels' column blocks per slice) and enough rows for the
/// calls to split them across threads.
#[test]
fn long_and_many_rows_match_the_core_bit_for_bit() {
    check_sharded(3, 3001, true);
    check_sharded(300, 70, false);
}

/// Every row ignored: a mean over no rows is NaN with an all-zero gradient, a sum 0, on
/// every shard as in the core crate.
#[test]
fn all_rows_ignored_match_the_core() {
    let d = xent_options_default();
    for reduction in [XentReduction::Mean, XentReduction::Sum, XentReduction::None] {
        let set = OptionSet {
            name: "all ignored",
            options: XentOptions {
                reduction: reduction as u32,
                label_smoothing: 0.1,
                z_loss: 1e-3,
                ..d
            },
            weights: Some(weights(11, 4)),
        };
        let mut w = whole(4, 11, 5, -100, false);
        w.targets.fill(-100);
        let slices = slices(&w, &[0, 4, 11]);
        let summaries: Vec<Vec<XentShardRow>> = slices
            .iter()
            .map(|s| {
                let got = c_stats(&w, s, &set);
                assert_eq!(row_bits(&got), core_row_bits(&core_stats(&w, s, &set)));
                got
            })
            .collect();
        let merged = c_merge_all(&summaries);
        for s in &slices {
            let f = check_finish(&w, s, &set, &merged);
            match reduction {
                XentReduction::Mean => assert!(f.loss[0].is_nan()),
                _ => assert!(f.loss.iter().all(|&l| l == 0.0), "{:?}", f.loss),
            }
            let mut grad = vec![PAD; w.rows * s.cols];
            let mut loss = vec![PAD; w.rows];
            let finish = Finish {
                w: &w,
                s,
                set: &set,
                merged: &merged,
            };
            let status = finish.call(
                s.logits.as_ptr(),
                &mut loss,
                grad.as_mut_ptr(),
                s.cols,
                ptr::null_mut(),
            );
            assert_eq!(status, XentStatus::Ok);
            assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
        }
    }
}

/// A slice far into a huge vocabulary (no weights: they would need `total_cols` values).
#[test]
fn a_shard_of_a_huge_vocabulary_matches_the_core() {
    let total = 1usize << 40;
    let w = Whole {
        rows: 3,
        total,
        logits: Vec::new(),
        targets: vec![(total - 2) as i64, 5, -100],
    };
    let cols = 4;
    let s = Slice {
        offset: total - cols,
        cols,
        stride: cols,
        logits: vec![
            0.5, -1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0, 0.0, -2.0, 4.0, 0.25,
        ],
    };
    let d = xent_options_default();
    let set = OptionSet {
        name: "huge vocabulary",
        options: XentOptions {
            label_smoothing: 0.1,
            z_loss: 1e-3,
            ..d
        },
        weights: None,
    };
    let got = c_stats(&w, &s, &set);
    assert_eq!(row_bits(&got), core_row_bits(&core_stats(&w, &s, &set)));
    assert_eq!(got[0].target_logit, 2.0);
    check_finish(&w, &s, &set, &got);
}

/// The merge export is the core crate's merge, bit for bit, on summaries with every kind of
/// max: finite, −∞ with sum 0, NaN, ±0, far apart.
#[test]
fn merge_matches_the_core_bit_for_bit() {
    let mut rng = Rng(7);
    let mut draw = || {
        let max = match rng.below(8) {
            0 => f32::NEG_INFINITY,
            1 => f32::NAN,
            2 => 0.0,
            3 => -0.0,
            4 => rng.range(-1e30, 1e30),
            _ => rng.range(-50.0, 50.0),
        };
        XentShardRow {
            max,
            sumexp: if max == f32::NEG_INFINITY {
                0.0
            } else if max.is_nan() {
                f32::NAN
            } else {
                rng.range(1.0, 1000.0)
            },
            target_logit: rng.range(-5.0, 5.0),
            smooth_sum: if rng.below(4) == 0 {
                f32::NEG_INFINITY
            } else {
                rng.range(-1e4, 1e4)
            },
        }
    };
    for n in [1usize, 2, 17, 1000] {
        let input: Vec<XentShardRow> = (0..n).map(|_| draw()).collect();
        let mut inout: Vec<XentShardRow> = (0..n).map(|_| draw()).collect();
        let mut want = to_core(&inout);
        merge_shard_rows(&to_core(&input), &mut want).unwrap();
        let input_before = row_bits(&input);
        // SAFETY: two separate vectors of n rows.
        unsafe { xent_merge_shard_rows(input.as_ptr(), inout.as_mut_ptr(), n) };
        assert_eq!(row_bits(&inout), core_row_bits(&want), "n = {n}");
        assert_eq!(row_bits(&input), input_before, "the input was written");
    }
    // The doc example's exact case.
    let a = [XentShardRow {
        max: 1.0,
        sumexp: 1.0,
        target_logit: 1.0,
        smooth_sum: 0.0,
    }];
    let mut b = [XentShardRow {
        target_logit: 0.0,
        ..a[0]
    }];
    // SAFETY: one row each, separate arrays.
    unsafe { xent_merge_shard_rows(a.as_ptr(), b.as_mut_ptr(), 1) };
    assert_eq!(
        row_bits(&b),
        row_bits(&[XentShardRow {
            max: 1.0,
            sumexp: 2.0,
            target_logit: 1.0,
            smooth_sum: 0.0
        }])
    );
}

/// rows = 0: every pointer but `loss` may be NULL (strides of NULL buffers ignored), and the
/// results are the core crate's; `loss` is still required.
#[test]
fn zero_rows_need_no_buffers_but_loss() {
    let opts = |reduction: XentReduction| XentOptions {
        reduction: reduction as u32,
        ..xent_options_default()
    };
    for (offset, cols, total) in [(0, 5, 5), (2, 3, 9), (0, 0, 0), (4, 0, 4)] {
        // SAFETY: no rows: nothing is read or written.
        let status = unsafe {
            xent_shard_stats_f32(
                ptr::null(),
                0,
                cols,
                0,
                offset,
                total,
                ptr::null(),
                ptr::null(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, XentStatus::Ok, "stats {offset} {cols} {total}");
        for reduction in [XentReduction::Mean, XentReduction::Sum, XentReduction::None] {
            let o = opts(reduction);
            let mut loss = [PAD];
            // SAFETY: no rows: only loss (one value) may be written.
            let status = unsafe {
                xent_shard_finish_f32(
                    ptr::null(),
                    0,
                    cols,
                    0,
                    offset,
                    total,
                    ptr::null(),
                    &o,
                    ptr::null(),
                    loss.as_mut_ptr(),
                    ptr::null_mut(),
                    0,
                    ptr::null_mut(),
                )
            };
            assert_eq!(status, XentStatus::Ok, "finish {reduction:?}");
            let core_reduction = match reduction {
                XentReduction::Mean => Reduction::Mean,
                XentReduction::Sum => Reduction::Sum,
                XentReduction::None => Reduction::None,
            };
            let mut want = vec![PAD; core_reduction.loss_len(0)];
            let options = Options {
                reduction: core_reduction,
                ..Options::default()
            };
            let empty: [f32; 0] = [];
            let no_targets: [i64; 0] = [];
            xent::shard_finish(
                Rows::new(&empty, 0, cols, cols).unwrap(),
                Shard {
                    class_offset: offset,
                    total_cols: total,
                },
                &no_targets[..],
                &options,
                &[],
                &mut want,
                None,
            )
            .unwrap();
            // Mean over no rows is NaN and sum is 0; none writes nothing.
            want.resize(1, PAD);
            assert_eq!(bits(&loss), bits(&want), "finish {reduction:?}: loss");
            if reduction == XentReduction::Mean {
                assert!(loss[0].is_nan());
            }
        }
        // loss is required even when it holds nothing.
        let none = opts(XentReduction::None);
        // SAFETY: refused: nothing is read or written.
        let status = unsafe {
            xent_shard_finish_f32(
                ptr::null(),
                0,
                cols,
                0,
                offset,
                total,
                ptr::null(),
                &none,
                ptr::null(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
                ptr::null_mut(),
            )
        };
        assert_eq!(status, XentStatus::NullPointer);
    }
    // A shard that does not fit is refused also without rows.
    // SAFETY: no rows: nothing is read or written.
    let status = unsafe {
        xent_shard_stats_f32(
            ptr::null(),
            0,
            4,
            4,
            3,
            6,
            ptr::null(),
            ptr::null(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, XentStatus::InvalidShape);
    // SAFETY: no rows: nothing is read or written.
    unsafe { xent_merge_shard_rows(ptr::null(), ptr::null_mut(), 0) };
}

// ---------------------------------------------------------------------------------------
// Refusals: every buffer lives in one arena, compared byte for byte around each call.

/// The batch of the refusal tests: ROWS rows of COLS of the TOTAL classes, from OFFSET, the
/// logits at STRIDE.
const ROWS: usize = 3;
const COLS: usize = 3;
const STRIDE: usize = 5;
const SPAN: usize = (ROWS - 1) * STRIDE + COLS;
const OFFSET: usize = 2;
const TOTAL: usize = 7;

/// Byte offsets of the buffers in the arena (each 16-byte aligned, apart from the others).
const L_AT: usize = 0; // logits, SPAN floats
const G_AT: usize = 128; // gradient, SPAN floats
const T_AT: usize = 256; // targets, ROWS i64
const W_AT: usize = 320; // class weights, TOTAL floats
const OUT_AT: usize = 384; // stats output, ROWS rows
const M_AT: usize = 448; // merged rows, ROWS rows
const LOSS_AT: usize = 512; // ROWS floats
const LSE_AT: usize = 576; // ROWS floats
const ARENA_BYTES: usize = 1024;

/// Memory every buffer of a refused call is carved from, reached only through `base`.
struct Arena {
    _memory: Vec<u64>,
    base: *mut u8,
}

impl Arena {
    fn new() -> Arena {
        let mut memory = vec![0u64; ARENA_BYTES / 8];
        let base = memory.as_mut_ptr().cast::<u8>();
        let arena = Arena {
            _memory: memory,
            base,
        };
        arena.reset();
        arena
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        self.base.wrapping_add(offset).cast::<T>()
    }

    fn l(&self) -> *mut f32 {
        self.at(L_AT)
    }
    fn g(&self) -> *mut f32 {
        self.at(G_AT)
    }
    fn t(&self) -> *mut i64 {
        self.at(T_AT)
    }
    fn w(&self) -> *mut f32 {
        self.at(W_AT)
    }
    fn out(&self) -> *mut XentShardRow {
        self.at(OUT_AT)
    }
    fn merged(&self) -> *mut XentShardRow {
        self.at(M_AT)
    }
    fn loss(&self) -> *mut f32 {
        self.at(LOSS_AT)
    }
    fn lse(&self) -> *mut f32 {
        self.at(LSE_AT)
    }

    /// Sentinel bytes everywhere, then valid inputs: logits, targets 4 (in the shard), 0 and
    /// 6 (outside it), weights, merged rows.
    fn reset(&self) {
        // SAFETY: every write stays inside the arena, at offsets aligned for its type.
        unsafe {
            ptr::write_bytes(self.base, 0xA5, ARENA_BYTES);
            for k in 0..SPAN {
                self.l().add(k).write(k as f32 * 0.25 - 1.0);
            }
            for (i, t) in [4i64, 0, 6].into_iter().enumerate() {
                self.t().add(i).write(t);
            }
            for c in 0..TOTAL {
                self.w().add(c).write(1.0 + c as f32 * 0.125);
            }
            for i in 0..ROWS {
                self.merged().add(i).write(XentShardRow {
                    max: 2.0,
                    sumexp: 3.5,
                    target_logit: 0.5,
                    smooth_sum: -1.0,
                });
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        // SAFETY: the arena's bytes, all initialized; no write is in flight.
        unsafe { std::slice::from_raw_parts(self.base, ARENA_BYTES) }.to_vec()
    }

    /// Runs `call`, expects `want`, and that no byte of the arena changed.
    fn refused(&self, want: XentStatus, what: &str, call: impl FnOnce() -> XentStatus) {
        let before = self.bytes();
        let got = call();
        assert_eq!(got, want, "{what}");
        let after = self.bytes();
        if let Some(k) = (0..ARENA_BYTES).find(|&k| before[k] != after[k]) {
            panic!("{what}: the refused call changed byte {k} of the arena");
        }
    }

    /// Runs `call`, expects OK, then resets the arena.
    fn accepted(&self, what: &str, call: impl FnOnce() -> XentStatus) {
        assert_eq!(call(), XentStatus::Ok, "{what}");
        self.reset();
    }
}

/// `p` moved by `bytes`.
fn shifted<T>(p: *mut T, bytes: usize) -> *mut T {
    p.cast::<u8>().wrapping_add(bytes).cast::<T>()
}

/// The arguments of `xent_shard_stats_f32`.
#[derive(Clone, Copy)]
struct Stats {
    logits: *const f32,
    rows: usize,
    cols: usize,
    stride: usize,
    offset: usize,
    total: usize,
    targets: *const i64,
    options: *const XentOptions,
    out: *mut XentShardRow,
}

impl Stats {
    fn valid(a: &Arena) -> Stats {
        Stats {
            logits: a.l(),
            rows: ROWS,
            cols: COLS,
            stride: STRIDE,
            offset: OFFSET,
            total: TOTAL,
            targets: a.t(),
            options: ptr::null(),
            out: a.out(),
        }
    }

    fn call(self) -> XentStatus {
        // SAFETY: every pointer of the tests is NULL or points into the arena with room for
        // what the other arguments describe, or the call refuses it before any access; the
        // options outlive the call.
        unsafe {
            xent_shard_stats_f32(
                self.logits,
                self.rows,
                self.cols,
                self.stride,
                self.offset,
                self.total,
                self.targets,
                self.options,
                self.out,
            )
        }
    }
}

/// The arguments of `xent_shard_finish_f32`.
#[derive(Clone, Copy)]
struct Fin {
    logits: *const f32,
    rows: usize,
    cols: usize,
    stride: usize,
    offset: usize,
    total: usize,
    targets: *const i64,
    options: *const XentOptions,
    merged: *const XentShardRow,
    loss: *mut f32,
    grad: *mut f32,
    grad_stride: usize,
    lse: *mut f32,
}

impl Fin {
    /// Separate gradient and lse.
    fn valid(a: &Arena) -> Fin {
        Fin {
            logits: a.l(),
            rows: ROWS,
            cols: COLS,
            stride: STRIDE,
            offset: OFFSET,
            total: TOTAL,
            targets: a.t(),
            options: ptr::null(),
            merged: a.merged(),
            loss: a.loss(),
            grad: a.g(),
            grad_stride: STRIDE,
            lse: a.lse(),
        }
    }

    /// In place, with lse.
    fn in_place(a: &Arena) -> Fin {
        Fin {
            grad: a.l(),
            ..Fin::valid(a)
        }
    }

    fn call(self) -> XentStatus {
        // SAFETY: as in `Stats::call`.
        unsafe {
            xent_shard_finish_f32(
                self.logits,
                self.rows,
                self.cols,
                self.stride,
                self.offset,
                self.total,
                self.targets,
                self.options,
                self.merged,
                self.loss,
                self.grad,
                self.grad_stride,
                self.lse,
            )
        }
    }
}

/// An invalid option: the options, and for a bad class weight, which one to spoil.
struct BadOption {
    what: String,
    options: XentOptions,
    weight: Option<(usize, f32)>,
}

impl BadOption {
    /// Resets the arena and spoils the weight, if this case is one.
    fn prepare(&self, a: &Arena) {
        a.reset();
        if let Some((class, v)) = self.weight {
            // SAFETY: inside the arena, aligned.
            unsafe { a.w().add(class).write(v) };
        }
    }
}

/// Every invalid option value (class weights: the arena's).
fn bad_options(a: &Arena) -> Vec<BadOption> {
    let d = xent_options_default();
    let mut cases = Vec::new();
    let mut push = |what: String, options: XentOptions| {
        cases.push(BadOption {
            what,
            options,
            weight: None,
        });
    };
    for r in [3u32, 7, u32::MAX] {
        push(format!("reduction {r}"), XentOptions { reduction: r, ..d });
    }
    for v in [-0.1f32, 1.5, f32::NAN, f32::INFINITY] {
        let o = XentOptions {
            label_smoothing: v,
            ..d
        };
        push(format!("label_smoothing {v}"), o);
    }
    for v in [-1.0f32, -1e-30, f32::NAN, f32::INFINITY] {
        push(format!("z_loss {v}"), XentOptions { z_loss: v, ..d });
        push(format!("softcap {v}"), XentOptions { softcap: v, ..d });
    }
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        push(
            format!("grad_scale {v}"),
            XentOptions { grad_scale: v, ..d },
        );
    }
    // Weights outside the shard's columns count as much as those inside.
    let weighted = XentOptions {
        class_weights: a.w(),
        ..d
    };
    for (class, v) in [
        (0, -1.0f32),
        (TOTAL - 1, f32::NAN),
        (OFFSET + 1, f32::INFINITY),
    ] {
        cases.push(BadOption {
            what: format!("class weight {class} = {v}"),
            options: weighted,
            weight: Some((class, v)),
        });
    }
    cases
}

#[test]
fn stats_refusals_write_nothing() {
    let a = Arena::new();
    let ok = Stats::valid(&a);
    let weighted = XentOptions {
        class_weights: a.w(),
        ..xent_options_default()
    };
    let misaligned_weights = XentOptions {
        class_weights: shifted(a.w(), 1),
        ..weighted
    };
    a.accepted("valid", || ok.call());
    a.accepted("valid, weighted", || {
        Stats {
            options: &weighted,
            ..ok
        }
        .call()
    });

    use XentStatus::{InvalidShape, NullPointer, OverlappingBuffers, TargetOutOfRange};
    #[rustfmt::skip]
    let cases: Vec<(XentStatus, &str, Stats)> = vec![
        (NullPointer, "NULL logits", Stats { logits: ptr::null(), ..ok }),
        (NullPointer, "NULL targets", Stats { targets: ptr::null(), ..ok }),
        (NullPointer, "NULL out", Stats { out: ptr::null_mut(), ..ok }),
        (InvalidShape, "offset + cols > total", Stats { offset: TOTAL - COLS + 1, ..ok }),
        (InvalidShape, "cols > total", Stats { offset: 0, total: COLS - 1, ..ok }),
        (InvalidShape, "offset usize::MAX", Stats { offset: usize::MAX, total: usize::MAX, ..ok }),
        (InvalidShape, "offset + cols overflows",
         Stats { offset: usize::MAX - 1, total: usize::MAX, ..ok }),
        (InvalidShape, "stride < cols", Stats { stride: COLS - 1, ..ok }),
        (InvalidShape, "cols 0 with rows", Stats { cols: 0, ..ok }),
        (InvalidShape, "rows overflow", Stats { rows: usize::MAX, ..ok }),
        (InvalidShape, "misaligned logits", Stats { logits: shifted(a.l(), 2), ..ok }),
        (InvalidShape, "misaligned targets", Stats { targets: shifted(a.t(), 4), ..ok }),
        (InvalidShape, "misaligned out", Stats { out: shifted(a.out(), 2), ..ok }),
        (InvalidShape, "misaligned weights", Stats { options: &misaligned_weights, ..ok }),
        (InvalidShape, "weights of a huge vocabulary",
         Stats { offset: 0, total: usize::MAX / 2, options: &weighted, ..ok }),
        (OverlappingBuffers, "out over the logits", Stats { out: a.l().cast(), ..ok }),
        (OverlappingBuffers, "out over the logits' last value",
         Stats { out: a.l().wrapping_add(SPAN - 1).cast(), ..ok }),
        (OverlappingBuffers, "out in the logits' padding",
         Stats { out: a.l().wrapping_add(COLS).cast(), ..ok }),
        (OverlappingBuffers, "out over the targets",
         Stats { out: a.t().wrapping_add(1).cast(), ..ok }),
        (OverlappingBuffers, "out over the weights",
         Stats { out: a.w().wrapping_add(TOTAL - 1).cast(), options: &weighted, ..ok }),
    ];
    for (want, what, args) in cases {
        a.refused(want, what, || args.call());
    }
    // An overlap is reported before a target out of range.
    // SAFETY: inside the arena, aligned.
    unsafe { a.t().add(1).write(TOTAL as i64) };
    let overlap = Stats {
        out: a.l().cast(),
        ..ok
    };
    a.refused(OverlappingBuffers, "overlap and bad target", || {
        overlap.call()
    });
    // A shard past the vocabulary is a shape, reported before an overlap (the header's
    // order).
    let overlap_past_the_end = Stats {
        offset: TOTAL - COLS + 1,
        ..overlap
    };
    a.refused(InvalidShape, "overlap and shard past the end", || {
        overlap_past_the_end.call()
    });
    // Targets are global classes: any of 0..TOTAL (in the shard or not) or ignore_index.
    for t in [
        TOTAL as i64,
        TOTAL as i64 + 1,
        -1,
        -99,
        -101,
        i64::MAX,
        i64::MIN,
    ] {
        // SAFETY: inside the arena, aligned.
        unsafe { a.t().add(1).write(t) };
        a.refused(TargetOutOfRange, &format!("target {t}"), || ok.call());
    }
    for t in [
        0i64,
        OFFSET as i64,
        (OFFSET + COLS) as i64,
        TOTAL as i64 - 1,
        -100,
    ] {
        a.reset();
        // SAFETY: inside the arena, aligned.
        unsafe { a.t().add(1).write(t) };
        a.accepted(&format!("target {t}"), || ok.call());
    }
    for bad in bad_options(&a) {
        bad.prepare(&a);
        let args = Stats {
            options: &bad.options,
            ..ok
        };
        a.refused(XentStatus::InvalidOption, &bad.what, || args.call());
    }
    // Buffers that only touch are no overlap; the weights' memory is free without weights.
    a.reset();
    #[rustfmt::skip]
    let touching = [
        ("out just after the logits", Stats { out: a.l().wrapping_add(SPAN).cast(), ..ok }),
        ("out over unused weights' memory", Stats { out: a.w().cast(), ..ok }),
    ];
    for (what, args) in touching {
        a.accepted(what, || args.call());
    }
}

#[test]
fn finish_refusals_write_nothing() {
    let a = Arena::new();
    let ok = Fin::valid(&a);
    let ip = Fin::in_place(&a);
    let no_grad = Fin {
        grad: ptr::null_mut(),
        grad_stride: 0,
        ..ok
    };
    let none = XentOptions {
        reduction: XentReduction::None as u32,
        ..xent_options_default()
    };
    let weighted = XentOptions {
        class_weights: a.w(),
        ..xent_options_default()
    };
    let misaligned_weights = XentOptions {
        class_weights: shifted(a.w(), 1),
        ..weighted
    };
    for (what, args) in [
        ("valid", ok),
        ("valid in place", ip),
        ("valid, no grad", no_grad),
    ] {
        a.accepted(what, || args.call());
        a.accepted(what, || {
            Fin {
                options: &none,
                ..args
            }
            .call()
        });
        a.accepted(what, || {
            Fin {
                options: &weighted,
                ..args
            }
            .call()
        });
    }

    use XentStatus::{InvalidShape, NullPointer, OverlappingBuffers, TargetOutOfRange};
    let f = |p: *mut XentShardRow| p.cast::<f32>();
    let mut cases: Vec<(XentStatus, String, Fin)> = Vec::new();
    for (base, style) in [(ok, "separate"), (ip, "in place"), (no_grad, "no grad")] {
        #[rustfmt::skip]
        let per_style = [
            (NullPointer, "NULL logits", Fin { logits: ptr::null(), ..base }),
            (NullPointer, "NULL targets", Fin { targets: ptr::null(), ..base }),
            (NullPointer, "NULL merged", Fin { merged: ptr::null(), ..base }),
            (NullPointer, "NULL loss", Fin { loss: ptr::null_mut(), ..base }),
            (InvalidShape, "offset + cols > total", Fin { offset: TOTAL - COLS + 1, ..base }),
            (InvalidShape, "cols > total", Fin { offset: 0, total: COLS - 1, ..base }),
            (InvalidShape, "offset usize::MAX",
             Fin { offset: usize::MAX, total: usize::MAX, ..base }),
            (InvalidShape, "offset + cols overflows",
             Fin { offset: usize::MAX - 2, total: usize::MAX, ..base }),
            (InvalidShape, "logits stride < cols",
             Fin { stride: COLS - 1, grad_stride: COLS - 1, ..base }),
            (InvalidShape, "misaligned targets", Fin { targets: shifted(a.t(), 4), ..base }),
            (InvalidShape, "misaligned merged", Fin { merged: shifted(a.merged(), 2), ..base }),
            (InvalidShape, "misaligned loss", Fin { loss: shifted(a.loss(), 1), ..base }),
            (InvalidShape, "misaligned lse", Fin { lse: shifted(a.lse(), 2), ..base }),
            (InvalidShape, "misaligned weights", Fin { options: &misaligned_weights, ..base }),
            (InvalidShape, "rows overflow", Fin { rows: usize::MAX / 4, ..base }),
            (OverlappingBuffers, "loss over merged",
             Fin { loss: f(a.merged()).wrapping_add(3), ..base }),
            (OverlappingBuffers, "lse over merged",
             Fin { lse: f(a.merged()).wrapping_add(10), ..base }),
            (OverlappingBuffers, "loss over lse", Fin { loss: a.lse().wrapping_add(2), ..base }),
            (OverlappingBuffers, "loss = lse", Fin { loss: a.lse(), options: &none, ..base }),
            (OverlappingBuffers, "loss over the targets", Fin { loss: a.t().cast(), ..base }),
            (OverlappingBuffers, "lse over the targets",
             Fin { lse: a.t().wrapping_add(2).cast(), ..base }),
            (OverlappingBuffers, "loss over the logits",
             Fin { loss: a.l().wrapping_add(SPAN - 1), ..base }),
            (OverlappingBuffers, "lse in the logits' padding",
             Fin { lse: a.l().wrapping_add(STRIDE + COLS), ..base }),
            (OverlappingBuffers, "loss over the weights",
             Fin { loss: a.w().wrapping_add(1), options: &weighted, ..base }),
            (OverlappingBuffers, "lse over the weights",
             Fin { lse: a.w().wrapping_add(TOTAL - 1), options: &weighted, ..base }),
        ];
        cases.extend(
            per_style
                .into_iter()
                .map(|(want, what, args)| (want, format!("{what}, {style}"), args)),
        );
    }
    #[rustfmt::skip]
    let single = [
        (NullPointer, "NULL loss, no rows", Fin { rows: 0, loss: ptr::null_mut(), ..ok }),
        (InvalidShape, "misaligned logits", Fin { logits: shifted(a.l(), 2), ..ok }),
        (InvalidShape, "misaligned logits, in place",
         Fin { logits: shifted(a.l(), 2), grad: shifted(a.l(), 2), ..ok }),
        (InvalidShape, "misaligned grad", Fin { grad: shifted(a.g(), 2), ..ok }),
        (InvalidShape, "grad stride < cols", Fin { grad_stride: COLS - 1, ..ok }),
        (InvalidShape, "grad stride overflows", Fin { grad_stride: usize::MAX / 2, ..ok }),
        (OverlappingBuffers, "grad one past the logits", Fin { grad: a.l().wrapping_add(1), ..ok }),
        (OverlappingBuffers, "grad one row into the logits",
         Fin { grad: a.l().wrapping_add(STRIDE), ..ok }),
        (OverlappingBuffers, "grad over the logits' last value",
         Fin { grad: a.l().wrapping_add(SPAN - 1), ..ok }),
        (OverlappingBuffers, "grad = logits, longer stride", Fin { grad_stride: STRIDE + 1, ..ip }),
        (OverlappingBuffers, "grad = logits, packed stride", Fin { grad_stride: COLS, ..ip }),
        (OverlappingBuffers, "logits one past grad",
         Fin { logits: a.l().wrapping_add(1), grad: a.l(), ..ok }),
        (OverlappingBuffers, "grad in the logits' padding",
         Fin { rows: 2, cols: 2, stride: 4, grad: a.l().wrapping_add(2), grad_stride: 4, ..ok }),
        (OverlappingBuffers, "grad over merged", Fin { grad: f(a.merged()).wrapping_add(1), ..ok }),
        (OverlappingBuffers, "grad over the targets", Fin { grad: a.t().cast(), ..ok }),
        (OverlappingBuffers, "grad over the weights",
         Fin { grad: a.w(), options: &weighted, ..ok }),
        (OverlappingBuffers, "loss over grad", Fin { loss: a.g().wrapping_add(SPAN - 1), ..ok }),
        (OverlappingBuffers, "lse over grad", Fin { lse: a.g().wrapping_add(4), ..ok }),
    ];
    cases.extend(single.map(|(want, what, args)| (want, what.to_owned(), args)));
    for (want, what, args) in cases {
        a.refused(want, &what, || args.call());
    }

    // Targets are global classes: TOTAL and beyond are refused, in place too.
    for t in [TOTAL as i64, TOTAL as i64 + 5, -1, i64::MIN] {
        a.reset();
        // SAFETY: inside the arena, aligned.
        unsafe { a.t().add(2).write(t) };
        for (base, style) in [(ok, "separate"), (ip, "in place"), (no_grad, "no grad")] {
            let what = format!("target {t}, {style}");
            a.refused(TargetOutOfRange, &what, || base.call());
            let per_row = Fin {
                options: &none,
                ..base
            };
            a.refused(TargetOutOfRange, &format!("{what}, none"), || {
                per_row.call()
            });
        }
    }
    for bad in bad_options(&a) {
        bad.prepare(&a);
        for (base, style) in [(ok, "separate"), (ip, "in place"), (no_grad, "no grad")] {
            let args = Fin {
                options: &bad.options,
                ..base
            };
            let what = format!("{}, {style}", bad.what);
            a.refused(XentStatus::InvalidOption, &what, || args.call());
        }
    }

    // Buffers that only touch are no overlap; the stride of a NULL grad is not looked at.
    a.reset();
    #[rustfmt::skip]
    let touching = [
        ("grad just after the logits", Fin { grad: a.l().wrapping_add(SPAN), ..ok }),
        ("loss just after merged", Fin { loss: f(a.merged()).wrapping_add(4 * ROWS), ..ok }),
        ("lse just before the weights",
         Fin { lse: a.w().wrapping_sub(ROWS), options: &weighted, ..ok }),
        ("NULL grad, stride 0", no_grad),
    ];
    for (what, args) in touching {
        a.accepted(what, || args.call());
    }
}

/// The merge has no status: on NULL, misaligned, overlapping or oversized buffers it does
/// nothing (and does not crash); with n = 0 it does nothing whatever the pointers.
#[test]
fn merge_refusals_write_nothing() {
    let a = Arena::new();
    let merge = |input: *const XentShardRow, inout: *mut XentShardRow, n: usize| {
        // SAFETY: NULL, or pointers into the arena with room for n rows, or a call that
        // refuses them (n too large) before any access.
        unsafe { xent_merge_shard_rows(input, inout, n) };
        XentStatus::Ok
    };
    // Stats rows to merge into the merged ones.
    assert_eq!(Stats::valid(&a).call(), XentStatus::Ok);
    let (input, inout) = (a.out(), a.merged());
    let cases: Vec<(&str, *const XentShardRow, *mut XentShardRow, usize)> = vec![
        ("n = 0, NULL", ptr::null(), ptr::null_mut(), 0),
        ("n = 0", input, inout, 0),
        ("NULL in", ptr::null(), inout, ROWS),
        ("NULL inout", input, ptr::null_mut(), ROWS),
        ("both NULL", ptr::null(), ptr::null_mut(), ROWS),
        ("misaligned in", shifted(input, 2), inout, ROWS),
        ("misaligned inout", input, shifted(inout, 2), ROWS),
        ("in == inout", inout, inout, ROWS),
        ("in one row into inout", inout.wrapping_add(1), inout, ROWS),
        ("inout one row into in", input, input.wrapping_add(1), ROWS),
        ("in 4 bytes into inout", shifted(inout, 4), inout, ROWS),
        ("n overflows", input, inout, usize::MAX),
        ("n's bytes overflow", input, inout, usize::MAX / 16 + 1),
    ];
    for (what, i, io, n) in cases {
        a.refused(XentStatus::Ok, what, || merge(i, io, n));
    }
    // And a good merge changes exactly inout, as the core crate would.
    let before = a.bytes();
    // SAFETY: two separate ranges of ROWS rows inside the arena.
    let (input_rows, mut want) = unsafe {
        (
            to_core(std::slice::from_raw_parts(input, ROWS)),
            to_core(std::slice::from_raw_parts(inout, ROWS)),
        )
    };
    merge_shard_rows(&input_rows, &mut want).unwrap();
    merge(input, inout, ROWS);
    let after = a.bytes();
    // SAFETY: ROWS rows inside the arena.
    let got = unsafe { std::slice::from_raw_parts(inout, ROWS) };
    assert_eq!(row_bits(got), core_row_bits(&want));
    let merged_bytes = M_AT..M_AT + ROWS * size_of::<XentShardRow>();
    for k in (0..ARENA_BYTES).filter(|k| !merged_bytes.contains(k)) {
        assert_eq!(
            before[k], after[k],
            "the merge wrote byte {k} outside inout"
        );
    }
    assert_ne!(before[merged_bytes.clone()], after[merged_bytes]);
}
