//! What a 16-bit call holds while it runs and leaves resident after it returns: at most
//! 1 MiB per thread of its pool (and one for the calling thread), whatever the row
//! length, and nothing afterwards. A test binary of its own, with one test: the resident
//! set is the whole process's, which other tests' threads would change meanwhile.

use xent::{RowsMut, bf16};

/// This process's resident set and its peak since the last [`reset_peak`], in bytes
/// (`VmRSS` and `VmHWM` of Linux's `/proc/self/status`).
#[cfg(target_os = "linux")]
fn resident_bytes() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> usize {
        let kib: usize = status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("a {name} line in kB"));
        kib << 10
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Makes the peak resident set the current one (writing 5 to `/proc/self/clear_refs`).
#[cfg(target_os = "linux")]
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

/// Runs one bf16 call in place on `rows` rows of `cols` values, and returns how much the
/// resident set grew at its peak and after it, in bytes.
#[cfg(target_os = "linux")]
fn growth(x: &mut [bf16], cols: usize, targets: &[i64]) -> (usize, usize) {
    let mut loss = [0.0f32];
    reset_peak();
    let (before, _) = resident_bytes();
    xent::cross_entropy_grad_in_place(
        RowsMut::packed(x, cols).unwrap(),
        targets,
        &xent::Options::default(),
        &mut loss,
        None,
    )
    .unwrap();
    let (after, peak) = resident_bytes();
    assert!(loss[0].is_finite() && loss[0] > 0.0, "loss {}", loss[0]);
    (peak.saturating_sub(before), after.saturating_sub(before))
}

/// bf16 logits of `len` values, every page touched.
fn logits(len: usize) -> Vec<bf16> {
    (0..len)
        .map(|i| bf16::from_f32((i % 1000) as f32 / 100.0))
        .collect()
}

/// A row of 2^27 values (256 MiB of bf16, 512 MiB in f32) and a batch of rows short
/// enough for their exponentials to be kept in f32 (200000 values, 800 KB): neither
/// call's peak exceeds 1 MiB per thread plus 1 MiB of slack (thread stacks, the
/// allocator), and neither leaves more than 1 MiB resident.
#[cfg(target_os = "linux")]
#[test]
#[cfg_attr(miri, ignore = "Miri has no /proc")]
fn a_bf16_call_holds_at_most_1_mib_per_thread_and_nothing_after() {
    const MIB: usize = 1 << 20;
    // The calling thread and each of the pool's threads may hold a buffer.
    let threads = rayon::current_num_threads() + 1;
    // A first call for what a process sets up once (the tier, the pool's threads).
    let mut warm = logits(64 * 1000);
    growth(&mut warm, 1000, &[7i64; 64]);

    let cols = 200_000;
    let mut batch = logits(16 * cols);
    let (peak, after) = growth(&mut batch, cols, &[7i64; 16]);
    let mib = |b: usize| b as f64 / MIB as f64;
    assert!(
        peak <= threads * MIB + MIB,
        "16 × {cols}: peak {:.1} MiB more, for {threads} threads",
        mib(peak)
    );
    assert!(
        after <= MIB,
        "16 × {cols}: {:.1} MiB more after",
        mib(after)
    );
    drop(batch);

    let cols = 1 << 27;
    let mut row = logits(cols);
    let (peak, after) = growth(&mut row, cols, &[7i64]);
    assert!(
        peak <= threads * MIB + MIB,
        "1 × 2^27: peak {:.1} MiB more, for {threads} threads",
        mib(peak)
    );
    assert!(after <= MIB, "1 × 2^27: {:.1} MiB more after", mib(after));
}
