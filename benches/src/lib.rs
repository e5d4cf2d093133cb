//! What the benchmarks in `benches/xent.rs` compare xent with: the machine's memory
//! roofline over the same bytes, and a naive unfused cross-entropy (PyTorch's CPU path in
//! spirit: log_softmax, gather, softmax − one-hot, each a pass of its own).
//!
//! Everything here runs on the current rayon pool, like xent, so a 1-thread pool gives the
//! 1-thread figures.

use rayon::prelude::*;
use xent::bf16;

pub mod lm_head;
pub mod peak;

/// Elements per rayon task in the roofline loops.
const CHUNK: usize = 1 << 16;

/// The in-place roofline: `a[i] *= k`, 4 bytes read and 4 written per element, the same
/// traffic as an in-place fused forward + backward.
pub fn scale_in_place(a: &mut [f32], k: f32) {
    a.par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v *= k));
}

/// The read-only roofline: Σ a[i], 4 bytes read per element (a forward without gradient).
pub fn sum(a: &[f32]) -> f32 {
    a.par_chunks(CHUNK)
        .map(|c| {
            // 16 independent accumulators so the loop vectorises.
            let mut acc = [0.0f32; 16];
            let mut blocks = c.chunks_exact(16);
            for b in &mut blocks {
                for (s, v) in acc.iter_mut().zip(b) {
                    *s += v;
                }
            }
            acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
        })
        .sum()
}

/// The separate-output roofline: `b[i] = a[i]`, 4 bytes read and 4 written per element.
pub fn copy(a: &[f32], b: &mut [f32]) {
    b.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .for_each(|(b, a)| b.copy_from_slice(a));
}

/// Naive mean cross-entropy, unfused: `log_probs = log_softmax(logits)` (max, Σ exp, write),
/// then the loss gathered from it, then `grad = exp(log_probs) − one_hot` written over
/// `grad` (which may be the logits' own buffer in a caller that wants it in place).
pub fn naive_cross_entropy(
    logits: &[f32],
    cols: usize,
    targets: &[i64],
    log_probs: &mut [f32],
    grad: Option<&mut [f32]>,
) -> f32 {
    naive_log_softmax(logits, cols, log_probs);
    let loss: f64 = log_probs
        .par_chunks(cols)
        .zip(targets.par_iter())
        .map(|(lp, &y)| -f64::from(lp[y as usize]))
        .sum();
    if let Some(grad) = grad {
        grad.par_chunks_mut(cols)
            .zip(log_probs.par_chunks(cols))
            .zip(targets.par_iter())
            .for_each(|((g, lp), &y)| {
                for (g, &l) in g.iter_mut().zip(lp) {
                    *g = l.exp() / targets.len() as f32;
                }
                g[y as usize] -= 1.0 / targets.len() as f32;
            });
    }
    (loss / targets.len() as f64) as f32
}

/// [`naive_cross_entropy`] for bf16 logits, in place: widen into `wide`, the unfused f32
/// passes (log-probabilities into `log_probs`), then exp(lp) − one-hot rounded back over
/// the logits.
pub fn naive_cross_entropy_bf16(
    logits: &mut [bf16],
    cols: usize,
    targets: &[i64],
    wide: &mut [f32],
    log_probs: &mut [f32],
) -> f32 {
    wide.par_chunks_mut(CHUNK)
        .zip(logits.par_chunks(CHUNK))
        .for_each(|(w, h)| w.iter_mut().zip(h).for_each(|(w, h)| *w = h.to_f32()));
    let loss = naive_cross_entropy(wide, cols, targets, log_probs, None);
    let n = targets.len() as f32;
    logits
        .par_chunks_mut(cols)
        .zip(log_probs.par_chunks(cols))
        .zip(targets.par_iter())
        .for_each(|((g, lp), &y)| {
            for (c, (g, &l)) in g.iter_mut().zip(lp).enumerate() {
                let one_hot = if c == y as usize { 1.0 } else { 0.0 };
                *g = bf16::from_f32((l.exp() - one_hot) / n);
            }
        });
    loss
}

/// Naive row-wise log_softmax: max, Σ exp, then x − lse, each a pass.
pub fn naive_log_softmax(x: &[f32], cols: usize, out: &mut [f32]) {
    out.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, x)| {
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = x.iter().map(|&v| (v - m).exp()).sum();
            let lse = m + s.ln();
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v - lse;
            }
        });
}

/// Naive row-wise softmax: max, exp stored, then divided by the sum, each a pass.
pub fn naive_softmax(x: &[f32], cols: usize, out: &mut [f32]) {
    out.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, x)| {
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (o, &v) in o.iter_mut().zip(x) {
                *o = (v - m).exp();
            }
            let s: f32 = o.iter().sum();
            o.iter_mut().for_each(|v| *v /= s);
        });
}

/// Logits for a benchmark: a fixed pseudo-random spread like a trained model's (a few
/// units wide), and targets spread over the classes.
pub fn inputs(rows: usize, cols: usize) -> (Vec<f32>, Vec<i64>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let logits = (0..rows * cols)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0)
        .collect();
    let targets = (0..rows).map(|_| (next() % cols as u64) as i64).collect();
    (logits, targets)
}
