//! What a 16-bit call on one long row leaves resident after it returns. A test binary of
//! its own: the resident set is the whole process's, which other tests' threads would
//! change meanwhile.

use xent::{RowsMut, bf16};

/// This process's resident set, in bytes (`VmRSS` of Linux's `/proc/self/status`).
#[cfg(target_os = "linux")]
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib << 10
}

/// One bf16 call in place on a row of 2^24 values (32 MiB of logits, 64 MiB widened) on
/// the calling thread: afterwards, at most 1 MiB more is resident than before it, though
/// the row is still held.
#[cfg(target_os = "linux")]
#[test]
#[cfg_attr(miri, ignore = "Miri has no /proc")]
fn a_long_bf16_row_leaves_no_buffer_behind() {
    let cols = 1 << 24;
    let mut row: Vec<bf16> = (0..cols)
        .map(|i| bf16::from_f32((i % 1000) as f32 / 100.0))
        .collect();
    let mut loss = [0.0f32];
    let call = |row: &mut [bf16], loss: &mut [f32]| {
        let cols = row.len();
        xent::on_calling_thread(|| {
            xent::cross_entropy_grad_in_place(
                RowsMut::packed(row, cols).unwrap(),
                &[7i64][..],
                &xent::Options::default(),
                loss,
                None,
            )
        })
        .unwrap();
    };
    // A short call first, for what a call sets up once (the tier, the thread's buffer).
    call(&mut row[..16].to_vec(), &mut loss);
    let before = resident_bytes();
    call(&mut row[..], &mut loss);
    let after = resident_bytes();
    assert!(loss[0].is_finite() && loss[0] > 0.0, "loss {}", loss[0]);
    assert!(
        after <= before + (1 << 20),
        "{} MiB more resident after the call",
        (after - before) >> 20
    );
}
