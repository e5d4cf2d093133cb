//! xent against the memory roofline and a naive unfused baseline, side by side.
//!
//! Every group measures one variant on one shape with three functions: `roofline` (the
//! machine moving the same bytes with no arithmetic), `naive` (unfused passes with libm
//! exp) and `xent`. Throughput is in elements (logits), so criterion's reports read as
//! Gelem/s and each group's ratios are the figures that matter.
//!
//! ```sh
//! cargo bench -p xent-benches --bench xent           # everything (about 15 minutes)
//! cargo bench -p xent-benches --bench xent -- 'fused_in_place/'   # one variant
//! python3 benches/report.py                          # the performance table from the results
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use xent::{Options, Rows, RowsMut, Shard, ShardRow, bf16};
use xent_benches::{
    copy, inputs, naive_cross_entropy, naive_cross_entropy_bf16, naive_log_softmax, naive_softmax,
    scale_in_place, sum,
};

/// (rows, cols): LM vocabularies, a mid-size classifier, tiny rows, one huge row, and a
/// batch that fits in cache.
const SHAPES: [(usize, usize); 6] = [
    (1024, 128_256),
    (8192, 32_000),
    (65_536, 1000),
    (1_048_576, 10),
    (1, 262_144),
    (64, 32_000),
];

fn group<'c>(
    c: &'c mut Criterion,
    variant: &str,
    rows: usize,
    cols: usize,
) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(format!("{variant}/{rows}x{cols}"));
    g.throughput(Throughput::Elements((rows * cols) as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

fn benches(c: &mut Criterion) {
    let options = Options::default();
    for (rows, cols) in SHAPES {
        let (logits, targets) = inputs(rows, cols);
        let mut work = logits.clone();
        let mut out = vec![0.0f32; logits.len()];
        let mut loss = [0.0f32];

        let mut g = group(c, "forward", rows, cols);
        g.bench_function("roofline", |b| b.iter(|| black_box(sum(&logits))));
        g.bench_function("naive", |b| {
            b.iter(|| naive_cross_entropy(&logits, cols, &targets, &mut out, None))
        });
        g.bench_function("xent", |b| {
            b.iter(|| {
                let x = Rows::packed(&logits, cols).unwrap();
                xent::cross_entropy(x, &targets[..], &options, &mut loss, None).unwrap();
                black_box(loss[0])
            })
        });
        g.finish();

        let mut g = group(c, "fused_in_place", rows, cols);
        g.bench_function("roofline", |b| b.iter(|| scale_in_place(&mut work, 0.999)));
        g.bench_function("naive", |b| {
            b.iter(|| naive_cross_entropy(&logits, cols, &targets, &mut out, Some(&mut work)))
        });
        work.copy_from_slice(&logits);
        g.bench_function("xent", |b| {
            b.iter(|| {
                let x = RowsMut::packed(&mut work, cols).unwrap();
                xent::cross_entropy_grad_in_place(x, &targets[..], &options, &mut loss, None)
                    .unwrap();
            })
        });
        g.finish();

        let mut g = group(c, "fused_separate", rows, cols);
        g.bench_function("roofline", |b| b.iter(|| copy(&logits, &mut out)));
        g.bench_function("naive", |b| {
            b.iter(|| naive_cross_entropy(&logits, cols, &targets, &mut work, Some(&mut out)))
        });
        g.bench_function("xent", |b| {
            b.iter(|| {
                let x = Rows::packed(&logits, cols).unwrap();
                let y = RowsMut::packed(&mut out, cols).unwrap();
                xent::cross_entropy_grad(x, &targets[..], &options, &mut loss, y, None).unwrap();
            })
        });
        g.finish();

        let mut g = group(c, "softmax", rows, cols);
        g.bench_function("roofline", |b| b.iter(|| copy(&logits, &mut out)));
        g.bench_function("naive", |b| {
            b.iter(|| naive_softmax(&logits, cols, &mut out))
        });
        g.bench_function("xent", |b| {
            b.iter(|| {
                let x = Rows::packed(&logits, cols).unwrap();
                xent::softmax(x, RowsMut::packed(&mut out, cols).unwrap()).unwrap();
            })
        });
        g.finish();

        let mut g = group(c, "log_softmax", rows, cols);
        g.bench_function("roofline", |b| b.iter(|| copy(&logits, &mut out)));
        g.bench_function("naive", |b| {
            b.iter(|| naive_log_softmax(&logits, cols, &mut out))
        });
        g.bench_function("xent", |b| {
            b.iter(|| {
                let x = Rows::packed(&logits, cols).unwrap();
                xent::log_softmax(x, RowsMut::packed(&mut out, cols).unwrap()).unwrap();
            })
        });
        g.finish();

        // bf16 logits overwritten by their bf16 gradient: 2 bytes in and 2 out per
        // element, against the in-place roofline over the same bytes (half as many f32).
        if matches!((rows, cols), (1024, 128_256) | (8192, 32_000)) {
            let bits: Vec<bf16> = logits.iter().map(|&v| bf16::from_f32(v)).collect();
            let mut work16 = bits.clone();
            let mut g = group(c, "fused_in_place_bf16", rows, cols);
            g.bench_function("roofline", |b| {
                b.iter(|| scale_in_place(&mut work[..logits.len() / 2], 0.999))
            });
            g.bench_function("naive", |b| {
                b.iter(|| {
                    naive_cross_entropy_bf16(&mut work16, cols, &targets, &mut work, &mut out)
                })
            });
            work16.copy_from_slice(&bits);
            g.bench_function("xent", |b| {
                b.iter(|| {
                    let x = RowsMut::packed(&mut work16, cols).unwrap();
                    xent::cross_entropy_grad_in_place(x, &targets[..], &options, &mut loss, None)
                        .unwrap();
                })
            });
            g.finish();
        }

        // The sharded recipe on one process holding the whole vocabulary (stats, the merge,
        // finish in place), next to the unsharded fused call: what sharding costs per
        // element, since N processes each run it on 1/N of the columns.
        if matches!((rows, cols), (1024, 128_256) | (8192, 32_000)) {
            let shard = Shard {
                class_offset: 0,
                total_cols: cols,
            };
            let mut rows_stats = vec![ShardRow::EMPTY; rows];
            let mut merged = vec![ShardRow::EMPTY; rows];
            let mut g = group(c, "sharded_in_place", rows, cols);
            g.bench_function("roofline", |b| b.iter(|| scale_in_place(&mut work, 0.999)));
            g.bench_function("naive", |b| {
                b.iter(|| naive_cross_entropy(&logits, cols, &targets, &mut out, Some(&mut work)))
            });
            work.copy_from_slice(&logits);
            g.bench_function("unsharded", |b| {
                b.iter(|| {
                    let x = RowsMut::packed(&mut work, cols).unwrap();
                    xent::cross_entropy_grad_in_place(x, &targets[..], &options, &mut loss, None)
                        .unwrap();
                })
            });
            work.copy_from_slice(&logits);
            g.bench_function("xent", |b| {
                b.iter(|| {
                    let x = Rows::packed(&work, cols).unwrap();
                    xent::shard_stats(x, shard, &targets[..], &options, &mut rows_stats).unwrap();
                    merged.fill(ShardRow::EMPTY);
                    xent::merge_shard_rows(&rows_stats, &mut merged).unwrap();
                    let x = RowsMut::packed(&mut work, cols).unwrap();
                    xent::shard_finish_grad_in_place(
                        x,
                        shard,
                        &targets[..],
                        &options,
                        &merged,
                        &mut loss,
                        None,
                    )
                    .unwrap();
                })
            });
            g.finish();
        }

        // One thread, against the one-thread roofline; and for the single huge row, the
        // speed-up two threads give by splitting it into column blocks.
        if matches!((rows, cols), (8192, 32_000) | (65_536, 1000) | (1, 262_144)) {
            let one = pool(1);
            let mut g = group(c, "fused_in_place_1thread", rows, cols);
            g.bench_function("roofline", |b| {
                b.iter(|| one.install(|| scale_in_place(&mut work, 0.999)))
            });
            work.copy_from_slice(&logits);
            g.bench_function("xent", |b| {
                b.iter(|| {
                    one.install(|| {
                        let x = RowsMut::packed(&mut work, cols).unwrap();
                        xent::cross_entropy_grad_in_place(
                            x,
                            &targets[..],
                            &options,
                            &mut loss,
                            None,
                        )
                        .unwrap();
                    })
                })
            });
            g.finish();
        }
    }
}

criterion_group!(xent_benches, benches);
criterion_main!(xent_benches);
