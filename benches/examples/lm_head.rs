//! One training step of a small language-model head on generated data, fused and unfused:
//! the loss, the gradients' norms and how far the two paths' gradients are apart, the time
//! (the second of two runs), and the peak of heap memory each path allocates beyond its
//! inputs and outputs.
//!
//! ```sh
//! cargo run --release --example lm_head                      # 2048 rows, dim 512, 32000 classes
//! cargo run --release --example lm_head -- 4096 2048 128256  # rows dim classes
//! cargo run --release --example lm_head -- 2048 1024 32000 plain  # no smoothing, no z-loss
//! ```
//! The step has label smoothing 0.1 and z-loss 1e-4 unless `plain` (PyTorch's chunked
//! `F.linear_cross_entropy` takes neither, `benches/compare/run.sh` uses it).

use std::time::Instant;

use xent::Options;
use xent_benches::lm_head::{Grads, Head, PeakAlloc, fused, gemms_only, peak_extra_bytes, unfused};
use xent_benches::peak::fma_peak;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.last().is_some_and(|a| a == "plain");
    if plain {
        args.pop();
    }
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("rows dim classes [plain]: whole numbers"))
        .collect();
    let (rows, dim, classes) = match args[..] {
        [] => (2048, 512, 32_000),
        [r, d, c] => (r, d, c),
        _ => panic!("usage: lm_head [rows dim classes] [plain]"),
    };
    let mut head = Head::generate(rows, dim, classes);
    let options = if plain {
        Options::default()
    } else {
        Options {
            label_smoothing: 0.1,
            z_loss: 1e-4,
            ..Options::default()
        }
    };
    let logits_mib = mib(rows * classes * 4);
    println!(
        "LM head: {rows} rows x dim {dim} x {classes} classes (the f32 logits would take {logits_mib:.0} MiB), {} threads",
        rayon::current_num_threads()
    );

    let mut results = Vec::new();
    for (name, path) in [
        ("unfused", unfused as fn(&_, &_, &mut _) -> f32),
        ("fused", fused),
    ] {
        let mut grads = Grads::new(&head);
        let (loss, peak) = peak_extra_bytes(|| path(&head, &options, &mut grads));
        // The second of two runs, as for the GEMMs below (and PyTorch's step after its
        // warm-up): the first also pays for mapping the gradients' pages.
        let start = Instant::now();
        path(&head, &options, &mut grads);
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{name:>8}: loss {loss:.6} | |dH| {:.6} |dW| {:.6} |db| {:.6} | {seconds:.3} s | peak extra memory {:.1} MiB ({:.1}% of the logits)",
            norm(&grads.hidden),
            norm(&grads.weight),
            norm(&grads.bias),
            mib(peak),
            100.0 * mib(peak) / logits_mib,
        );
        results.push((loss, grads, seconds, peak));
    }
    let (unfused_r, fused_r) = (&results[0], &results[1]);
    println!(
        "fused vs unfused: time {:.2}x, memory {:.3}x; largest differences: loss {:.2e}, dH {:.2e}, dW {:.2e}, db {:.2e}",
        fused_r.2 / unfused_r.2,
        fused_r.3 as f64 / unfused_r.3 as f64,
        (f64::from(fused_r.0) - f64::from(unfused_r.0)).abs(),
        max_diff(&fused_r.1.hidden, &unfused_r.1.hidden),
        max_diff(&fused_r.1.weight, &unfused_r.1.weight),
        max_diff(&fused_r.1.bias, &unfused_r.1.bias),
    );

    // The yardsticks: the three GEMMs of the step alone (at the head's whole shape), and the
    // machine's FMA peak. Recomputing the logits makes four GEMMs of the fused step, so 4/3
    // of the three is its floor.
    let mut logits = vec![0.0f32; rows * classes];
    let mut scratch = Grads::new(&head);
    // The second of two runs: the first also pays for mapping the logits' pages.
    let gemm_seconds = (0..2)
        .map(|_| {
            let start = Instant::now();
            gemms_only(&head, &mut logits, &mut scratch);
            start.elapsed().as_secs_f64()
        })
        .last()
        .unwrap();
    drop(logits);
    let (peak, width) = fma_peak();
    let rate = 3.0 * 2.0 * (rows * dim * classes) as f64 / gemm_seconds / 1e9;
    println!(
        "three GEMMs alone: {gemm_seconds:.3} s, {rate:.0} GFLOP/s = {:.0}% of the FMA peak ({peak:.0} GFLOP/s, {width}); fused / three GEMMs {:.2}x (floor 1.33x)",
        100.0 * rate / peak,
        fused_r.2 / gemm_seconds
    );

    // The step: plain SGD on W and b with the fused gradients, then the loss again.
    let lr = 1.0;
    let grads = &fused_r.1;
    for (w, g) in head.weight.iter_mut().zip(&grads.weight) {
        *w -= lr * g;
    }
    for (b, g) in head.bias.iter_mut().zip(&grads.bias) {
        *b -= lr * g;
    }
    let mut after = Grads::new(&head);
    let loss_after = fused(&head, &options, &mut after);
    println!(
        "after one SGD step (lr {lr}) on W and b: loss {:.6} -> {loss_after:.6}",
        fused_r.0
    );
    assert!(loss_after < fused_r.0, "the step did not lower the loss");
}
