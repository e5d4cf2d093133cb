//! A quick profile target: the fastest of repeated fused in-place calls on one shape, in
//! f32 or bf16, beside the in-place roofline over the same element count in f32.
//! `cargo run --release -p xent-benches --example probe -- ROWS COLS [REPEATS [bf16]]`
use xent::bf16;

fn best_of<T: xent::Logit>(work: &mut [T], cols: usize, targets: &[i64], repeats: usize) -> f64 {
    let mut loss = [<T::Stat as xent::Stat>::from_f64(0.0)];
    let mut best = std::time::Duration::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        let view = xent::RowsMut::packed(&mut *work, cols).unwrap();
        xent::cross_entropy_grad_in_place(
            view,
            targets,
            &xent::Options::default(),
            &mut loss,
            None,
        )
        .unwrap();
        best = best.min(t.elapsed());
    }
    best.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (rows, cols, repeats) = (number(0, 2048), number(1, 32000), number(2, 20));
    let dtype = args.get(3).map_or("f32", String::as_str);
    let (logits, targets) = xent_benches::inputs(rows, cols);
    let mut work = logits.clone();
    let best = match dtype {
        "f32" => best_of(&mut work, cols, &targets, repeats),
        "bf16" => {
            let mut half: Vec<bf16> = logits.iter().map(|&v| bf16::from_f32(v)).collect();
            best_of(&mut half, cols, &targets, repeats)
        }
        other => panic!("dtype {other}: f32 or bf16"),
    };
    let mut best_roof = std::time::Duration::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        xent_benches::scale_in_place(&mut work, 0.999);
        best_roof = best_roof.min(t.elapsed());
    }
    let rate = |secs: f64| (rows * cols) as f64 / secs / 1e9;
    let roof = rate(best_roof.as_secs_f64());
    eprintln!(
        "{rows}x{cols} {dtype}: xent {:.2} Gelem/s, f32 roofline {roof:.2} Gelem/s ({:.0}%), {}",
        rate(best),
        100.0 * rate(best) / roof,
        xent::simd_level()
    );
}
