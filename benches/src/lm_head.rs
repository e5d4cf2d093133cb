//! A language-model head for the fused linear + cross-entropy benchmarks and example: a
//! generated layer and batch, the unfused path it is compared with, and an allocator that
//! records the peak of live heap bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use xent::{LinearGrads, LinearHead, Matrix, Options, Rows, RowsMut};

/// The system allocator, counting live bytes and their peak. A binary installs it with
/// `#[global_allocator] static ALLOC: PeakAlloc = PeakAlloc;`.
pub struct PeakAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only
// observe the sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Runs `f` and returns its result with the peak of heap bytes allocated during it beyond
/// those live when it started (exact when `PeakAlloc` is the global allocator, 0 otherwise).
pub fn peak_extra_bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed) - base)
}

/// A head and a batch: H (`rows × dim`), W (`classes × dim`), b and the targets.
pub struct Head {
    /// Rows of the batch.
    pub rows: usize,
    /// Hidden size.
    pub dim: usize,
    /// Vocabulary size.
    pub classes: usize,
    /// H, packed.
    pub hidden: Vec<f32>,
    /// W, packed.
    pub weight: Vec<f32>,
    /// b.
    pub bias: Vec<f32>,
    /// One class per row, a few ignored (-100).
    pub targets: Vec<i64>,
}

impl Head {
    /// Generated from a fixed seed: H ~ U(−1, 1), W ~ U(−1, 1)/√dim (logits of a few units),
    /// b ~ U(−0.1, 0.1), targets uniform with 1 row in 50 ignored.
    pub fn generate(rows: usize, dim: usize, classes: usize) -> Head {
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (rows * dim * classes) as u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut unit = move || (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        let scale = 1.0 / (dim as f32).sqrt();
        let hidden = (0..rows * dim).map(|_| unit()).collect();
        let weight = (0..classes * dim).map(|_| unit() * scale).collect();
        let bias = (0..classes).map(|_| unit() * 0.1).collect();
        let targets = (0..rows)
            .map(|i| {
                if i % 50 == 49 {
                    -100
                } else {
                    ((unit() + 1.0) / 2.0 * classes as f32) as i64 % classes as i64
                }
            })
            .collect();
        Head {
            rows,
            dim,
            classes,
            hidden,
            weight,
            bias,
            targets,
        }
    }

    /// The head as xent's view.
    pub fn view(&self) -> LinearHead<'_> {
        LinearHead {
            hidden: Rows::packed(&self.hidden, self.dim).unwrap(),
            weight: Rows::packed(&self.weight, self.dim).unwrap(),
            bias: Some(&self.bias),
            next_token: None,
        }
    }
}

/// The gradients of a head, packed.
pub struct Grads {
    /// ∂loss/∂H.
    pub hidden: Vec<f32>,
    /// ∂loss/∂W.
    pub weight: Vec<f32>,
    /// ∂loss/∂b.
    pub bias: Vec<f32>,
}

impl Grads {
    /// Zeroed gradients for `head`.
    pub fn new(head: &Head) -> Grads {
        Grads {
            hidden: vec![0.0; head.rows * head.dim],
            weight: vec![0.0; head.classes * head.dim],
            bias: vec![0.0; head.classes],
        }
    }

    /// xent's view of them.
    pub fn view(&mut self, head: &Head) -> LinearGrads<'_> {
        LinearGrads {
            hidden: Some(RowsMut::packed(&mut self.hidden, head.dim).unwrap()),
            weight: Some(RowsMut::packed(&mut self.weight, head.dim).unwrap()),
            bias: Some(&mut self.bias),
        }
    }
}

/// `dst (m × n) = a (m × k) · b (k × n)`, all packed row-major, or with `b_transposed` b
/// given as `n × k`, or with `a_transposed` a given as `k × m`: xent's `matmul`, on the
/// current rayon pool.
pub fn matmul(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    a_transposed: bool,
    b_transposed: bool,
    accumulate: bool,
) {
    let operand = |x, rows, cols, transposed| {
        if transposed {
            Matrix::Transposed(Rows::packed(x, rows).unwrap())
        } else {
            Matrix::Rows(Rows::packed(x, cols).unwrap())
        }
    };
    let (a, b) = (
        operand(a, m, k, a_transposed),
        operand(b, k, n, b_transposed),
    );
    xent::matmul(RowsMut::packed(dst, n).unwrap(), a, b, accumulate).unwrap();
}

/// `logits` (`rows × classes`) = H·Wᵀ, plus b broadcast when `bias`.
fn logits_gemm(head: &Head, logits: &mut [f32], bias: bool) {
    if bias {
        for row in logits.chunks_exact_mut(head.classes) {
            row.copy_from_slice(&head.bias);
        }
    }
    let shape = (head.rows, head.classes, head.dim);
    matmul(logits, &head.hidden, &head.weight, shape, false, true, bias);
}

/// dH = G·W and dW = Gᵀ·H for the gradient of the logits `g` (`rows × classes`).
fn gradient_gemms(head: &Head, g: &[f32], grads: &mut Grads) {
    let (rows, dim, classes) = (head.rows, head.dim, head.classes);
    matmul(
        &mut grads.hidden,
        g,
        &head.weight,
        (rows, dim, classes),
        false,
        false,
        false,
    );
    matmul(
        &mut grads.weight,
        g,
        &head.hidden,
        (classes, dim, rows),
        true,
        false,
        false,
    );
}

/// The unfused path's three GEMMs alone, over `logits` (`rows × classes`, any values):
/// logits = H·Wᵀ, dH = G·W and dW = Gᵀ·H with the logits standing in for G.
pub fn gemms_only(head: &Head, logits: &mut [f32], grads: &mut Grads) {
    logits_gemm(head, logits, false);
    gradient_gemms(head, logits, grads);
}

/// The unfused path xent's fused call replaces: the whole `rows × classes` logits by a
/// GEMM (the bias broadcast first), the fused cross-entropy over them in place, then
/// dH = G·W, dW = Gᵀ·H and db = Σ_rows G. Returns the loss.
pub fn unfused(head: &Head, options: &Options<'_>, grads: &mut Grads) -> f32 {
    let classes = head.classes;
    let mut logits = vec![0.0f32; head.rows * classes];
    logits_gemm(head, &mut logits, true);
    let mut loss = [0.0f32];
    let view = RowsMut::packed(&mut logits, classes).unwrap();
    xent::cross_entropy_grad_in_place(view, &head.targets[..], options, &mut loss, None).unwrap();
    gradient_gemms(head, &logits, grads);
    let mut sums = vec![0.0f64; classes];
    for row in logits.chunks_exact(classes) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    for (b, s) in grads.bias.iter_mut().zip(sums) {
        *b = s as f32;
    }
    loss[0]
}

/// xent's fused call on the same head. Returns the loss.
pub fn fused(head: &Head, options: &Options<'_>, grads: &mut Grads) -> f32 {
    let mut loss = [0.0f32];
    let view = grads.view(head);
    xent::linear_cross_entropy(
        head.view(),
        &head.targets[..],
        options,
        &mut loss,
        view,
        None,
    )
    .unwrap();
    loss[0]
}
