//! A quick profile target: the fastest of repeated fused in-place calls on one shape.
//! `cargo run --release -p xent-benches --example probe -- ROWS COLS [REPEATS]`
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let (rows, cols, repeats) = match args[..] {
        [r, c, n] => (r, c, n),
        [r, c] => (r, c, 20),
        _ => (2048, 32000, 20),
    };
    let (logits, targets) = xent_benches::inputs(rows, cols);
    let mut work = logits.clone();
    let mut loss = [0.0f32];
    let mut best = std::time::Duration::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        let view = xent::RowsMut::packed(&mut work, cols).unwrap();
        xent::cross_entropy_grad_in_place(
            view,
            &targets[..],
            &xent::Options::default(),
            &mut loss,
            None,
        )
        .unwrap();
        best = best.min(t.elapsed());
    }
    let mut best_roof = std::time::Duration::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        xent_benches::scale_in_place(&mut work, 0.999);
        best_roof = best_roof.min(t.elapsed());
    }
    let rate = |d: std::time::Duration| (rows * cols) as f64 / d.as_secs_f64() / 1e9;
    eprintln!(
        "{rows}x{cols}: xent {:.2} Gelem/s, roofline {:.2} Gelem/s ({:.0}%), {}",
        rate(best),
        rate(best_roof),
        100.0 * rate(best) / rate(best_roof),
        xent::simd_level()
    );
}
