//! The rates of the linear head's three matrix products, against the machine's FMA peak
//! measured in the same run: xent's `matmul` and, as the yardstick, the `gemm` crate.
//!
//! ```sh
//! cargo run --release -p xent-benches --example gemm_rates                  # 2048 1024 1024
//! cargo run --release -p xent-benches --example gemm_rates -- 4096 2048 512  # rows dim classes
//! ```
//! `classes` is one vocabulary chunk of the fused head (`Chunking::Auto` for the rows).

use std::time::Instant;

use xent::{Matrix, Rows, RowsMut};
use xent_benches::peak::fma_peak;

fn view(x: &[f32], cols: usize) -> Rows<'_> {
    Rows::packed(x, cols).unwrap()
}

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
    let flops = 2.0 * (rows * dim * classes) as f64;
    let report = |name: &str, seconds: f64, yardstick: f64| {
        let rate = flops / seconds / 1e9;
        println!(
            "{name:<26} {rate:6.1} GFLOP/s  {:5.1}% of peak  {:.2}x the gemm crate",
            100.0 * rate / peak,
            yardstick / seconds
        );
    };
    let reps = 5;
    let x = best(reps, || {
        let out = RowsMut::packed(&mut logits, classes).unwrap();
        xent::matmul(
            out,
            Matrix::Rows(view(&h, dim)),
            Matrix::Transposed(view(&w, dim)),
            false,
        )
        .unwrap();
    });
    let y = best(reps, || {
        unsafe_gemm(&mut logits, &h, &w, (rows, classes, dim), false, true)
    });
    report("logits = H·Wᵀ", x, y);
    let x = best(reps, || {
        let out = RowsMut::packed(&mut dh, dim).unwrap();
        xent::matmul(
            out,
            Matrix::Rows(view(&g, classes)),
            Matrix::Rows(view(&w, dim)),
            false,
        )
        .unwrap();
    });
    let y = best(reps, || {
        unsafe_gemm(&mut dh, &g, &w, (rows, dim, classes), false, false)
    });
    report("dH = G·W", x, y);
    let x = best(reps, || {
        let out = RowsMut::packed(&mut dw, dim).unwrap();
        xent::matmul(
            out,
            Matrix::Transposed(view(&g, classes)),
            Matrix::Rows(view(&h, dim)),
            false,
        )
        .unwrap();
    });
    let y = best(reps, || {
        unsafe_gemm(&mut dw, &g, &h, (classes, dim, rows), true, false)
    });
    report("dW = Gᵀ·H", x, y);
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
