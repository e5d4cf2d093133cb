//! The fused linear + cross-entropy of a language-model head against the unfused path, and
//! against the GEMMs alone.
//!
//! Each group is one head shape (rows × dim × classes, the rows × classes logits counted
//! as its elements) with three functions: `xent` (the fused call: the logits are computed
//! chunk by chunk, twice), `naive` (the unfused path: the whole logits by a GEMM, xent's
//! fused cross-entropy in place, then the gradients' GEMMs) and `roofline` (the unfused
//! path's three GEMMs alone, with no cross-entropy: the floor both paths stand on). Before
//! timing, each path's peak of heap memory beyond its inputs and outputs is printed.
//!
//! ```sh
//! cargo bench -p xent-benches --bench linear   # about 35 minutes on 2 cores
//! python3 benches/report.py                    # the table (groups linear_ce/…)
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xent::Options;
use xent_benches::lm_head::{Grads, Head, PeakAlloc, fused, gemms_only, peak_extra_bytes, unfused};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// (rows, dim, classes): a 4096-token batch of a 2048-wide model, Llama 2's and Llama 3's
/// vocabularies.
const SHAPES: [(usize, usize, usize); 2] = [(4096, 2048, 32_000), (4096, 2048, 128_256)];

fn benches(c: &mut Criterion) {
    let options = Options::default();
    for (rows, dim, classes) in SHAPES {
        let head = Head::generate(rows, dim, classes);
        let mut grads = Grads::new(&head);
        let logits_bytes = rows * classes * 4;
        for (name, path) in [
            ("naive", unfused as fn(&_, &_, &mut _) -> f32),
            ("xent", fused),
        ] {
            let (_, peak) = peak_extra_bytes(|| path(&head, &options, &mut grads));
            println!(
                "linear_ce/{rows}x{dim}x{classes}/{name}: peak extra memory {:.1} MiB = {:.2}% of the {:.0} MiB logits",
                peak as f64 / f64::from(1u32 << 20),
                100.0 * peak as f64 / logits_bytes as f64,
                logits_bytes as f64 / f64::from(1u32 << 20),
            );
        }

        let mut g = c.benchmark_group(format!("linear_ce/{rows}x{dim}x{classes}"));
        g.throughput(Throughput::Elements((rows * classes) as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(1));
        g.measurement_time(Duration::from_secs(1));
        let mut scratch = vec![0.0f32; rows * classes];
        g.bench_function("roofline", |b| {
            b.iter(|| gemms_only(&head, &mut scratch, &mut grads))
        });
        drop(scratch);
        g.bench_function("naive", |b| {
            b.iter(|| black_box(unfused(&head, &options, &mut grads)))
        });
        g.bench_function("xent", |b| {
            b.iter(|| black_box(fused(&head, &options, &mut grads)))
        });
        g.finish();
    }
}

criterion_group!(linear_benches, benches);
criterion_main!(linear_benches);
