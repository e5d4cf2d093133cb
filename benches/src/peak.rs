//! The machine's f32 FMA peak, measured: a loop of independent FMAs on every thread of the
//! current rayon pool at once, with the widest vectors the CPU has.

use std::time::Instant;

/// Independent accumulators per thread: more than the FMA latency times the FMA ports
/// (4 × 2), so that the loop is bound by the ports alone.
const CHAINS: usize = 12;

/// FMAs per chain and thread in one measurement.
const STEPS: usize = 20_000_000;

/// The FMA rate of every thread of the current pool at once, in GFLOP/s (an FMA counts as
/// two), and the vector width it was measured with.
pub fn fma_peak() -> (f64, &'static str) {
    let (per_step, width, run): (usize, &str, fn() -> f32) = fma_loop();
    // The best of three: the clock of a shared machine drifts.
    let seconds = (0..3)
        .map(|_| {
            let start = Instant::now();
            let sinks = rayon::broadcast(|_| run());
            assert!(sinks.iter().all(|s| s.is_finite()));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let flops = (rayon::current_num_threads() * STEPS * CHAINS * per_step * 2) as f64;
    (flops / seconds / 1e9, width)
}

/// The widest FMA loop this CPU runs: (lanes per FMA, its name, the loop).
fn fma_loop() -> (usize, &'static str, fn() -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return (16, "AVX-512", || {
                // SAFETY: AVX-512F was detected above (the CPU does not change).
                unsafe { x86::fma512() }
            });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return (8, "AVX2+FMA", || {
                // SAFETY: AVX2 and FMA were detected above.
                unsafe { x86::fma256() }
            });
        }
    }
    (1, "scalar", scalar)
}

fn scalar() -> f32 {
    let mut acc = [1.0f32; CHAINS];
    let x = std::hint::black_box(0.999_999f32);
    for _ in 0..STEPS {
        for a in &mut acc {
            *a = a.mul_add(x, 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{CHAINS, STEPS};

    /// # Safety
    ///
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512() -> f32 {
        let x = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let y = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..STEPS {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    /// # Safety
    ///
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256() -> f32 {
        let x = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let y = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..STEPS {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut lanes = [0.0f32; 8];
        acc.iter()
            .map(|&a| {
                // SAFETY: 8 writable values.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
                lanes.iter().sum::<f32>()
            })
            .sum()
    }
}
