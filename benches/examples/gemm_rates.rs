//! The rates of the linear head's three matrix products, against the machine's FMA peak
//! measured in the same run: xent's `matmul` and, as the yardstick, the `gemm` crate.
//!
//! ```sh
//! cargo run --release -p xent-benches --example gemm_rates                  # 2048 1024 1024
//! cargo run --release -p xent-benches --example gemm_rates -- 4096 2048 512  # rows dim classes
//! ```
//! `classes` is one vocabulary chunk of the fused head (`Chunking::Auto` for the rows).

use std::time::Instant;

use xent_benches::lm_head::matmul;
use xent_benches::peak::fma_peak;

/// The best of `reps` runs of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("rows dim classes: whole numbers"))
        .collect();
    let (rows, dim, classes) = match args[..] {
        [] => (2048, 1024, 1024),
        [r, d, c] => (r, d, c),
        _ => panic!("usage: gemm_rates [rows dim classes]"),
    };
    let fill = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let (h, w, g) = (
        fill(rows * dim, 1),
        fill(classes * dim, 2),
        fill(rows * classes, 3),
    );
    let mut logits = vec![0.0f32; rows * classes];
    let mut dh = vec![0.0f32; rows * dim];
    let mut dw = vec![0.0f32; classes * dim];
    let (peak, width) = fma_peak();
    let threads = rayon::current_num_threads();
    println!(
        "{rows} rows x dim {dim} x {classes} classes, {threads} threads; FMA peak {peak:.0} GFLOP/s ({width})"
    );
    let rate = |seconds: f64| 2.0 * (rows * dim * classes) as f64 / seconds / 1e9;
    let products: [(&str, &mut Vec<f32>, _, Operand<'_>, Operand<'_>); 3] = [
        (
            "logits = H·Wᵀ",
            &mut logits,
            (rows, classes, dim),
            (&h[..], false),
            (&w[..], true),
        ),
        (
            "dH = G·W",
            &mut dh,
            (rows, dim, classes),
            (&g[..], false),
            (&w[..], false),
        ),
        (
            "dW = Gᵀ·H",
            &mut dw,
            (classes, dim, rows),
            (&g[..], true),
            (&h[..], false),
        ),
    ];
    for (name, dst, shape, a, b) in products {
        let (xent, yardstick) = time_product(dst, shape, a, b);
        println!(
            "{name:<26} {:6.1} GFLOP/s  {:5.1}% of peak  {:.2}x the gemm crate",
            rate(xent),
            100.0 * rate(xent) / peak,
            yardstick / xent
        );
    }
}

/// Packed values, and whether they are the operand's transpose.
type Operand<'a> = (&'a [f32], bool);

/// The best of 5 runs of `dst (m × n) = a·b` by xent and by the gemm crate, in seconds;
/// `a` is stored `m × k`, or `k × m` when flagged transposed, `b` `k × n` or `n × k`.
fn time_product(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    (a, a_t): Operand<'_>,
    (b, b_t): Operand<'_>,
) -> (f64, f64) {
    let xent = best(5, || matmul(dst, a, b, (m, n, k), a_t, b_t, false));
    let yardstick = best(5, || unsafe_gemm(dst, a, b, (m, n, k), a_t, b_t));
    (xent, yardstick)
}

/// The gemm crate's product of packed operands (`a` given as `k × m` when `a_t`, `b` as
/// `n × k` when `b_t`).
fn unsafe_gemm(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    a_t: bool,
    b_t: bool,
) {
    assert!(dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    let (a_rs, a_cs) = if a_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b_t { (1, k) } else { (n, 1) };
    // SAFETY: the assert makes every element of each packed matrix an index of its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}
