//! The exported functions, called through the rlib exactly as C calls them, give the core
//! crate's results bit for bit — out of place, in place and strided — and those agree with
//! the f64 oracle (`xent::reference`) within SPEC §2's tolerances. The `_bf16` and `_f16`
//! functions give the core crate's results over its `bf16` and `f16` views, bit for bit,
//! and the `_f64` functions its results over `f64` views (with f64 loss, lse and `dloss`).

use std::ptr;

use xent::{
    XentOptions, XentReduction, XentStatus, xent_cross_entropy_backward_bf16,
    xent_cross_entropy_backward_f16, xent_cross_entropy_backward_f32,
    xent_cross_entropy_backward_f64, xent_cross_entropy_bf16, xent_cross_entropy_f16,
    xent_cross_entropy_f32, xent_cross_entropy_f64, xent_cross_entropy_soft_bf16,
    xent_cross_entropy_soft_f16, xent_cross_entropy_soft_f32, xent_cross_entropy_soft_f64,
    xent_log_softmax_bf16, xent_log_softmax_f16, xent_log_softmax_f32, xent_log_softmax_f64,
    xent_options_default, xent_softmax_bf16, xent_softmax_f16, xent_softmax_f32, xent_softmax_f64,
};
use xent_core::reference::{self, RefTargets};
use xent_core::{Logit, Options, Reduction, Rows, RowsMut, Targets, bf16, f16};

/// Padding no call may read into a result or overwrite: a NaN with a payload.
const PAD: f32 = f32::from_bits(0x7fc0_dead);

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `rows` rows of `cols` values with `stride`, PAD in the padding.
fn strided(rows: usize, cols: usize, stride: usize, mut value: impl FnMut() -> f32) -> Vec<f32> {
    let len = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    };
    (0..len)
        .map(|k| if k % stride < cols { value() } else { PAD })
        .collect()
}

fn assert_padding_intact(buf: &[f32], cols: usize, stride: usize, what: &str) {
    for (k, v) in buf.iter().enumerate() {
        if k % stride >= cols {
            assert_eq!(
                v.to_bits(),
                PAD.to_bits(),
                "{what}: padding {k} was written"
            );
        }
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// `got` agrees with the oracle's `want` within `tol` (NaN meets NaN, ∞ the same ∞).
fn assert_close(got: f32, want: f64, tol: f64, what: &str) {
    let ok = if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        f64::from(got) == want
    } else {
        (f64::from(got) - want).abs() <= tol
    };
    assert!(
        ok,
        "{what}: got {got}, the oracle says {want} (tolerance {tol:e})"
    );
}

/// The targets of a case.
enum CaseTargets {
    Hard(Vec<i64>),
    Soft { probs: Vec<f32>, stride: usize },
}

/// One call's inputs.
struct Case {
    name: &'static str,
    rows: usize,
    cols: usize,
    stride: usize,
    logits: Vec<f32>,
    targets: CaseTargets,
    weights: Option<Vec<f32>>,
    options: XentOptions,
}

impl Case {
    fn new(name: &'static str, rows: usize, cols: usize, stride: usize, seed: u64) -> Case {
        let mut rng = Rng(seed);
        let logits = strided(rows, cols, stride, || rng.range(-8.0, 8.0));
        let targets = (0..rows).map(|_| rng.below(cols) as i64).collect();
        Case {
            name,
            rows,
            cols,
            stride,
            logits,
            targets: CaseTargets::Hard(targets),
            weights: None,
            options: xent_options_default(),
        }
    }

    fn reduction(&self) -> Reduction {
        match self.options.reduction {
            r if r == XentReduction::Sum as u32 => Reduction::Sum,
            r if r == XentReduction::None as u32 => Reduction::None,
            _ => Reduction::Mean,
        }
    }

    /// The options for C, pointing at this case's class weights.
    fn c_options(&self) -> XentOptions {
        XentOptions {
            class_weights: self.weights.as_ref().map_or(ptr::null(), |w| w.as_ptr()),
            ..self.options
        }
    }

    fn core_options(&self) -> Options<'_> {
        Options {
            reduction: self.reduction(),
            ignore_index: self.options.ignore_index,
            label_smoothing: self.options.label_smoothing,
            z_loss: self.options.z_loss,
            softcap: self.options.softcap,
            class_weights: self.weights.as_deref(),
            grad_scale: self.options.grad_scale,
        }
    }

    fn loss_len(&self) -> usize {
        self.reduction().loss_len(self.rows)
    }

    fn logits_view(&self) -> Rows<'_> {
        Rows::new(&self.logits, self.rows, self.cols, self.stride).unwrap()
    }

    fn core_targets(&self) -> Targets<'_> {
        match &self.targets {
            CaseTargets::Hard(t) => Targets::I64(t),
            CaseTargets::Soft { probs, stride } => {
                Targets::Soft(Rows::new(probs, self.rows, self.cols, *stride).unwrap())
            }
        }
    }

    /// The C forward call over `logits` (this case's, or a copy for in place).
    fn call_forward(
        &self,
        logits: *const f32,
        loss: &mut [f32],
        grad: *mut f32,
        grad_stride: usize,
        lse: &mut [f32],
    ) -> XentStatus {
        let options = self.c_options();
        let (rows, cols, stride) = (self.rows, self.cols, self.stride);
        // SAFETY: every pointer covers the elements its arguments describe, and the outputs
        // are separate vectors (or the logits themselves, in place).
        unsafe {
            match &self.targets {
                CaseTargets::Hard(t) => xent_cross_entropy_f32(
                    logits,
                    rows,
                    cols,
                    stride,
                    t.as_ptr(),
                    &options,
                    loss.as_mut_ptr(),
                    grad,
                    grad_stride,
                    lse.as_mut_ptr(),
                ),
                CaseTargets::Soft { probs, stride: ts } => xent_cross_entropy_soft_f32(
                    logits,
                    rows,
                    cols,
                    stride,
                    probs.as_ptr(),
                    *ts,
                    &options,
                    loss.as_mut_ptr(),
                    grad,
                    grad_stride,
                    lse.as_mut_ptr(),
                ),
            }
        }
    }

    fn oracle(&self) -> reference::RefOutput {
        let x = reference::widen(self.logits_view());
        let soft;
        let targets = match &self.targets {
            CaseTargets::Hard(t) => RefTargets::Hard(t),
            CaseTargets::Soft { probs, stride } => {
                soft = reference::widen(Rows::new(probs, self.rows, self.cols, *stride).unwrap());
                RefTargets::Soft(&soft)
            }
        };
        reference::cross_entropy(&x, self.rows, self.cols, targets, &self.core_options())
    }

    fn max_weight(&self) -> f64 {
        self.weights
            .iter()
            .flatten()
            .fold(1.0, |m: f64, &w| m.max(f64::from(w)))
    }

    /// SPEC §2's loss tolerance per row, combined as the reduction combines rows.
    fn loss_tolerances(&self, r: &reference::RefOutput) -> Vec<f64> {
        let rows: Vec<f64> = (0..self.rows)
            .map(|i| {
                let m = if r.row_max[i].is_finite() {
                    r.row_max[i].abs()
                } else {
                    0.0
                };
                1e-5 * r.row_loss[i].abs() + 1e-6 * (1.0 + m) * self.max_weight()
            })
            .collect();
        let total: f64 = rows.iter().sum();
        match self.reduction() {
            Reduction::None => rows,
            Reduction::Sum => vec![total],
            // A mean divides by at least the smallest counted weight's share: scale by s.
            Reduction::Mean => vec![total * r.ce_scale.abs().max(r.z_scale.abs()) + 1e-7],
        }
    }

    fn grad_tolerance(&self, r: &reference::RefOutput, want: f64) -> f64 {
        let s = r.ce_scale.abs().max(r.z_scale.abs());
        1e-5 * want.abs() + 1e-6 * s * self.max_weight()
    }
}

/// Every way of calling the forward on `case` agrees with the core crate and the oracle.
fn check_forward(case: &Case) {
    let name = case.name;
    let (rows, cols) = (case.rows, case.cols);
    let oracle = case.oracle();
    let loss_tol = case.loss_tolerances(&oracle);
    let core_options = case.core_options();

    // The loss alone, and each row's lse.
    let mut loss = vec![0.0f32; case.loss_len()];
    let mut lse = vec![0.0f32; rows];
    let status = case.call_forward(
        case.logits.as_ptr(),
        &mut loss,
        ptr::null_mut(),
        0,
        &mut lse,
    );
    assert_eq!(status, XentStatus::Ok, "{name}: forward");
    let (mut core_loss, mut core_lse) = (vec![0.0f32; loss.len()], vec![0.0f32; rows]);
    xent_core::cross_entropy(
        case.logits_view(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(
        bits(&loss),
        bits(&core_loss),
        "{name}: loss differs from the core's"
    );
    assert_eq!(
        bits(&lse),
        bits(&core_lse),
        "{name}: lse differs from the core's"
    );
    for (i, (&got, &want)) in loss.iter().zip(&oracle.loss).enumerate() {
        assert_close(got, want, loss_tol[i], &format!("{name}: loss[{i}]"));
    }
    for (i, (&got, &want)) in lse.iter().zip(&oracle.lse).enumerate() {
        let tol = 1e-6 * (1.0 + want.abs());
        assert_close(got, want, tol, &format!("{name}: lse[{i}]"));
    }

    // The fused gradient into a separate buffer with its own stride.
    let grad_stride = cols + 1;
    let mut grad = strided(rows, cols, grad_stride, || 0.0);
    let mut grad_loss = vec![0.0f32; loss.len()];
    let status = case.call_forward(
        case.logits.as_ptr(),
        &mut grad_loss,
        grad.as_mut_ptr(),
        grad_stride,
        &mut lse,
    );
    assert_eq!(status, XentStatus::Ok, "{name}: forward + grad");
    assert_eq!(
        bits(&grad_loss),
        bits(&loss),
        "{name}: the loss depends on the gradient"
    );
    assert_padding_intact(&grad, cols, grad_stride, name);
    let mut core_grad = strided(rows, cols, grad_stride, || 0.0);
    xent_core::cross_entropy_grad(
        case.logits_view(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(
        bits(&grad),
        bits(&core_grad),
        "{name}: grad differs from the core's"
    );
    for i in 0..rows {
        for c in 0..cols {
            let want = oracle.grad[i * cols + c];
            let tol = case.grad_tolerance(&oracle, want);
            let got = grad[i * grad_stride + c];
            assert_close(got, want, tol, &format!("{name}: grad[{i}][{c}]"));
        }
    }

    // In place: the logits become the gradient, exactly the core's in-place result.
    let mut in_place = case.logits.clone();
    let mut in_place_loss = vec![0.0f32; loss.len()];
    let p = in_place.as_mut_ptr();
    let status = case.call_forward(p, &mut in_place_loss, p, case.stride, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: in place");
    assert_eq!(bits(&in_place_loss), bits(&loss), "{name}: in-place loss");
    assert_padding_intact(&in_place, cols, case.stride, name);
    let mut core_in_place = case.logits.clone();
    xent_core::cross_entropy_grad_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, case.stride).unwrap(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        None,
    )
    .unwrap();
    assert_eq!(
        bits(&in_place),
        bits(&core_in_place),
        "{name}: in-place grad"
    );
}

/// The backward from the saved lse agrees with the core crate and the oracle, out of place
/// and in place.
fn check_backward(case: &Case) {
    let name = case.name;
    let (rows, cols, stride) = (case.rows, case.cols, case.stride);
    let CaseTargets::Hard(targets) = &case.targets else {
        unreachable!("the C ABI has a backward for hard targets only")
    };
    let core_options = case.core_options();
    let mut loss = vec![0.0f32; case.loss_len()];
    let mut lse = vec![0.0f32; rows];
    xent_core::cross_entropy(
        case.logits_view(),
        case.core_targets(),
        &core_options,
        &mut loss,
        Some(&mut lse),
    )
    .unwrap();
    let dloss: Vec<f32> = (0..loss.len()).map(|i| 0.5 + i as f32 * 0.25).collect();
    let options = case.c_options();
    let backward = |logits: *const f32, grad: *mut f32, grad_stride: usize| {
        // SAFETY: every pointer covers the elements its arguments describe; grad is a
        // separate vector or the logits themselves.
        unsafe {
            xent_cross_entropy_backward_f32(
                logits,
                rows,
                cols,
                stride,
                targets.as_ptr(),
                &options,
                lse.as_ptr(),
                dloss.as_ptr(),
                grad,
                grad_stride,
            )
        }
    };

    let grad_stride = cols + 2;
    let mut grad = strided(rows, cols, grad_stride, || 0.0);
    let status = backward(case.logits.as_ptr(), grad.as_mut_ptr(), grad_stride);
    assert_eq!(status, XentStatus::Ok, "{name}: backward");
    assert_padding_intact(&grad, cols, grad_stride, name);
    let mut core_grad = strided(rows, cols, grad_stride, || 0.0);
    xent_core::cross_entropy_backward(
        case.logits_view(),
        case.core_targets(),
        &core_options,
        &lse,
        &dloss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
    )
    .unwrap();
    assert_eq!(
        bits(&grad),
        bits(&core_grad),
        "{name}: backward differs from the core's"
    );

    let x = reference::widen(case.logits_view());
    let lse64: Vec<f64> = lse.iter().map(|&v| f64::from(v)).collect();
    let dloss64: Vec<f64> = dloss.iter().map(|&v| f64::from(v)).collect();
    let want = reference::cross_entropy_backward(
        &x,
        rows,
        cols,
        RefTargets::Hard(targets),
        &core_options,
        &lse64,
        &dloss64,
    );
    let oracle = case.oracle();
    let scale = dloss64.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    for i in 0..rows {
        for c in 0..cols {
            let w = want[i * cols + c];
            let tol = case.grad_tolerance(&oracle, w) * scale.max(1.0);
            let got = grad[i * grad_stride + c];
            assert_close(got, w, tol, &format!("{name}: backward[{i}][{c}]"));
        }
    }

    let mut in_place = case.logits.clone();
    let p = in_place.as_mut_ptr();
    assert_eq!(
        backward(p, p, stride),
        XentStatus::Ok,
        "{name}: backward in place"
    );
    assert_padding_intact(&in_place, cols, stride, name);
    let mut core_in_place = case.logits.clone();
    xent_core::cross_entropy_backward_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &lse,
        &dloss,
    )
    .unwrap();
    assert_eq!(
        bits(&in_place),
        bits(&core_in_place),
        "{name}: backward in place"
    );
}

fn cases() -> Vec<Case> {
    let mut defaults = Case::new("defaults, strided", 9, 7, 10, 1);
    if let CaseTargets::Hard(t) = &mut defaults.targets {
        t[4] = -100; // ignored
    }

    let mut smoothed = Case::new("sum, smoothing, weights, ignore_index", 12, 5, 5, 2);
    smoothed.options.reduction = XentReduction::Sum as u32;
    smoothed.options.label_smoothing = 0.1;
    smoothed.options.ignore_index = 3;
    smoothed.weights = Some(vec![0.5, 2.0, 1.0, 0.0, 1.5]);

    let mut capped = Case::new("none, z_loss, softcap, grad_scale", 6, 33, 40, 3);
    capped.options.reduction = XentReduction::None as u32;
    capped.options.z_loss = 1e-3;
    capped.options.softcap = 5.0;
    capped.options.grad_scale = 0.5;

    let mut mean_weighted = Case::new("mean, weights, z_loss", 16, 10, 13, 4);
    mean_weighted.options.z_loss = 1e-2;
    mean_weighted.options.label_smoothing = 0.2;
    mean_weighted.weights = Some((0..10).map(|c| 0.25 + c as f32 * 0.2).collect());

    let mut soft = Case::new("soft targets, mean, smoothing", 8, 6, 9, 5);
    let mut rng = Rng(6);
    let soft_stride = 7;
    let mut probs = strided(8, 6, soft_stride, || rng.range(0.0, 1.0));
    for i in 0..8 {
        let row = &mut probs[i * soft_stride..i * soft_stride + 6];
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|p| *p /= sum);
    }
    soft.targets = CaseTargets::Soft {
        probs,
        stride: soft_stride,
    };
    soft.options.label_smoothing = 0.05;

    vec![defaults, smoothed, capped, mean_weighted, soft]
}

#[test]
fn forward_matches_the_core_and_the_oracle() {
    for case in cases() {
        check_forward(&case);
    }
}

#[test]
fn backward_matches_the_core_and_the_oracle() {
    for case in cases() {
        if matches!(case.targets, CaseTargets::Hard(_)) {
            check_backward(&case);
        }
    }
}

#[test]
fn softmax_and_log_softmax_match_the_core_and_the_oracle() {
    type Exported =
        unsafe extern "C" fn(*const f32, usize, usize, usize, *mut f32, usize) -> XentStatus;
    type Core = fn(Rows<'_>, RowsMut<'_>) -> xent_core::Result<()>;
    type CoreInPlace = fn(RowsMut<'_>) -> xent_core::Result<()>;
    type Oracle = fn(&[f64], usize, usize) -> Vec<f64>;
    let kernels: [(&str, Exported, Core, CoreInPlace, Oracle); 2] = [
        (
            "softmax",
            xent_softmax_f32,
            xent_core::softmax,
            xent_core::softmax_in_place,
            reference::softmax,
        ),
        (
            "log_softmax",
            xent_log_softmax_f32,
            xent_core::log_softmax,
            xent_core::log_softmax_in_place,
            reference::log_softmax,
        ),
    ];
    let (rows, cols, x_stride, y_stride) = (5, 11, 12, 14);
    let mut rng = Rng(7);
    let x = strided(rows, cols, x_stride, || rng.range(-20.0, 20.0));
    let x64 = reference::widen(Rows::new(&x, rows, cols, x_stride).unwrap());
    for (name, exported, core, core_in_place, oracle) in kernels {
        let mut y = strided(rows, cols, y_stride, || 0.0);
        // SAFETY: x and y cover their shapes and are separate vectors.
        let status =
            unsafe { exported(x.as_ptr(), rows, cols, x_stride, y.as_mut_ptr(), y_stride) };
        assert_eq!(status, XentStatus::Ok, "{name}");
        assert_padding_intact(&y, cols, y_stride, name);
        let mut core_y = strided(rows, cols, y_stride, || 0.0);
        core(
            Rows::new(&x, rows, cols, x_stride).unwrap(),
            RowsMut::new(&mut core_y, rows, cols, y_stride).unwrap(),
        )
        .unwrap();
        assert_eq!(bits(&y), bits(&core_y), "{name} differs from the core's");
        let want = oracle(&x64, rows, cols);
        for i in 0..rows {
            for c in 0..cols {
                let w = want[i * cols + c];
                let tol = 1e-5 * w.abs() + 1e-6;
                assert_close(y[i * y_stride + c], w, tol, &format!("{name}[{i}][{c}]"));
            }
        }

        let mut in_place = x.clone();
        let p = in_place.as_mut_ptr();
        // SAFETY: in place: y is x exactly, same stride.
        let status = unsafe { exported(p, rows, cols, x_stride, p, x_stride) };
        assert_eq!(status, XentStatus::Ok, "{name} in place");
        let mut core_in_place_y = x.clone();
        core_in_place(RowsMut::new(&mut core_in_place_y, rows, cols, x_stride).unwrap()).unwrap();
        assert_eq!(bits(&in_place), bits(&core_in_place_y), "{name} in place");
    }
}

#[test]
fn zero_rows_need_no_buffers_but_loss() {
    let mut loss = [1.0f32];
    // SAFETY: rows = 0: no buffer but loss is read or written.
    let status = unsafe {
        xent_cross_entropy_f32(
            ptr::null(),
            0,
            5,
            5,
            ptr::null(),
            ptr::null(),
            loss.as_mut_ptr(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
        )
    };
    assert_eq!(status, XentStatus::Ok);
    assert!(
        loss[0].is_nan(),
        "the mean over no rows is NaN, as in PyTorch"
    );
}

/// The exported functions of a 16-bit element type, whose values cross the C ABI as their
/// bits, and the core crate's type `T` for them.
struct Half<T> {
    name: &'static str,
    from_f32: fn(f32) -> T,
    from_bits: fn(u16) -> T,
    to_bits: fn(T) -> u16,
    forward: Forward16,
    soft: Soft16,
    backward: Backward16,
    softmax: Normalize16,
    log_softmax: Normalize16,
}

type Forward16 = unsafe extern "C" fn(
    *const u16,
    usize,
    usize,
    usize,
    *const i64,
    *const XentOptions,
    *mut f32,
    *mut u16,
    usize,
    *mut f32,
) -> XentStatus;
type Soft16 = unsafe extern "C" fn(
    *const u16,
    usize,
    usize,
    usize,
    *const f32,
    usize,
    *const XentOptions,
    *mut f32,
    *mut u16,
    usize,
    *mut f32,
) -> XentStatus;
type Backward16 = unsafe extern "C" fn(
    *const u16,
    usize,
    usize,
    usize,
    *const i64,
    *const XentOptions,
    *const f32,
    *const f32,
    *mut u16,
    usize,
) -> XentStatus;
type Normalize16 =
    unsafe extern "C" fn(*const u16, usize, usize, usize, *mut u16, usize) -> XentStatus;

const BF16: Half<bf16> = Half {
    name: "bf16",
    from_f32: bf16::from_f32,
    from_bits: bf16::from_bits,
    to_bits: bf16::to_bits,
    forward: xent_cross_entropy_bf16,
    soft: xent_cross_entropy_soft_bf16,
    backward: xent_cross_entropy_backward_bf16,
    softmax: xent_softmax_bf16,
    log_softmax: xent_log_softmax_bf16,
};

const F16: Half<f16> = Half {
    name: "f16",
    from_f32: f16::from_f32,
    from_bits: f16::from_bits,
    to_bits: f16::to_bits,
    forward: xent_cross_entropy_f16,
    soft: xent_cross_entropy_soft_f16,
    backward: xent_cross_entropy_backward_f16,
    softmax: xent_softmax_f16,
    log_softmax: xent_log_softmax_f16,
};

/// Bits no call may write into padding: a NaN with a payload, in both 16-bit formats.
const PAD16: u16 = 0x7fa5;

impl<T: Logit<Stat = f32>> Half<T> {
    /// `values` rounded to this type, as bits (PAD stays a NaN).
    fn narrow(&self, values: &[f32]) -> Vec<u16> {
        values
            .iter()
            .map(|&v| (self.to_bits)((self.from_f32)(v)))
            .collect()
    }

    /// Bits as the core crate's values.
    fn typed(&self, bits: &[u16]) -> Vec<T> {
        bits.iter().map(|&b| (self.from_bits)(b)).collect()
    }

    fn bits(&self, values: &[T]) -> Vec<u16> {
        values.iter().map(|&v| (self.to_bits)(v)).collect()
    }
}

/// `rows` rows of `cols` with `stride`, all PAD16.
fn padded16(rows: usize, cols: usize, stride: usize) -> Vec<u16> {
    vec![
        PAD16;
        if rows == 0 {
            0
        } else {
            (rows - 1) * stride + cols
        }
    ]
}

/// Every forward and backward call of `half` on `case`'s logits rounded to it agrees with
/// the core crate's call on the same values, bit for bit, padding untouched.
fn check_half<T: Logit<Stat = f32>>(half: &Half<T>, case: &Case) {
    let name = format!("{} {}", half.name, case.name);
    let (rows, cols, stride) = (case.rows, case.cols, case.stride);
    let x = half.narrow(&case.logits);
    let x_core = half.typed(&x);
    let view = Rows::new(&x_core, rows, cols, stride).unwrap();
    let options = case.c_options();
    let core_options = case.core_options();
    let loss_len = case.loss_len();
    let forward =
        |logits: *const u16, loss: &mut [f32], grad: *mut u16, grad_stride, lse: &mut [f32]| {
            // SAFETY: every pointer covers the elements its arguments describe, and the outputs
            // are separate vectors (or the logits themselves, in place).
            unsafe {
                match &case.targets {
                    CaseTargets::Hard(t) => (half.forward)(
                        logits,
                        rows,
                        cols,
                        stride,
                        t.as_ptr(),
                        &options,
                        loss.as_mut_ptr(),
                        grad,
                        grad_stride,
                        lse.as_mut_ptr(),
                    ),
                    CaseTargets::Soft { probs, stride: ts } => (half.soft)(
                        logits,
                        rows,
                        cols,
                        stride,
                        probs.as_ptr(),
                        *ts,
                        &options,
                        loss.as_mut_ptr(),
                        grad,
                        grad_stride,
                        lse.as_mut_ptr(),
                    ),
                }
            }
        };

    // The loss alone.
    let (mut loss, mut lse) = (vec![0.0f32; loss_len], vec![0.0f32; rows]);
    let status = forward(x.as_ptr(), &mut loss, ptr::null_mut(), 0, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: forward");
    let (mut core_loss, mut core_lse) = (vec![0.0f32; loss_len], vec![0.0f32; rows]);
    xent_core::cross_entropy(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(bits(&loss), bits(&core_loss), "{name}: loss");
    assert_eq!(bits(&lse), bits(&core_lse), "{name}: lse");

    // The gradient into a separate buffer with its own stride.
    let grad_stride = cols + 3;
    let mut grad = padded16(rows, cols, grad_stride);
    let status = forward(
        x.as_ptr(),
        &mut loss,
        grad.as_mut_ptr(),
        grad_stride,
        &mut lse,
    );
    assert_eq!(status, XentStatus::Ok, "{name}: forward + grad");
    let mut core_grad = half.typed(&padded16(rows, cols, grad_stride));
    xent_core::cross_entropy_grad(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(bits(&loss), bits(&core_loss), "{name}: loss with grad");
    assert_eq!(bits(&lse), bits(&core_lse), "{name}: lse with grad");
    assert_eq!(grad, half.bits(&core_grad), "{name}: grad");
    assert!(
        grad.iter()
            .enumerate()
            .all(|(k, &g)| k % grad_stride < cols || g == PAD16),
        "{name}: grad padding written"
    );

    // In place.
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    let status = forward(p, &mut loss, p, stride, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: in place");
    let mut core_in_place = x_core.clone();
    xent_core::cross_entropy_grad_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        None,
    )
    .unwrap();
    assert_eq!(bits(&loss), bits(&core_loss), "{name}: in-place loss");
    assert_eq!(in_place, half.bits(&core_in_place), "{name}: in-place grad");
    assert!(
        (0..in_place.len()).all(|k| k % stride < cols || in_place[k] == x[k]),
        "{name}: in-place padding written"
    );

    // The backward from the saved lse, separate and in place (hard targets only).
    let CaseTargets::Hard(targets) = &case.targets else {
        return;
    };
    let dloss: Vec<f32> = (0..loss_len).map(|i| 0.5 + i as f32 * 0.25).collect();
    let backward = |logits: *const u16, grad: *mut u16, grad_stride: usize| {
        // SAFETY: as for the forward.
        unsafe {
            (half.backward)(
                logits,
                rows,
                cols,
                stride,
                targets.as_ptr(),
                &options,
                core_lse.as_ptr(),
                dloss.as_ptr(),
                grad,
                grad_stride,
            )
        }
    };
    let mut grad = padded16(rows, cols, grad_stride);
    let status = backward(x.as_ptr(), grad.as_mut_ptr(), grad_stride);
    assert_eq!(status, XentStatus::Ok, "{name}: backward");
    let mut core_grad = half.typed(&padded16(rows, cols, grad_stride));
    xent_core::cross_entropy_backward(
        view,
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
    )
    .unwrap();
    assert_eq!(grad, half.bits(&core_grad), "{name}: backward");
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    assert_eq!(
        backward(p, p, stride),
        XentStatus::Ok,
        "{name}: backward in place"
    );
    let mut core_in_place = x_core.clone();
    xent_core::cross_entropy_backward_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
    )
    .unwrap();
    assert_eq!(
        in_place,
        half.bits(&core_in_place),
        "{name}: backward in place"
    );
}

/// softmax and log_softmax of `half`, separate and in place, agree with the core crate's.
fn check_half_normalize<T: Logit<Stat = f32>>(half: &Half<T>) {
    type Core<T> = fn(Rows<'_, T>, RowsMut<'_, T>) -> xent_core::Result<()>;
    type CoreInPlace<T> = fn(RowsMut<'_, T>) -> xent_core::Result<()>;
    let kernels: [(&str, Normalize16, Core<T>, CoreInPlace<T>); 2] = [
        (
            "softmax",
            half.softmax,
            xent_core::softmax,
            xent_core::softmax_in_place,
        ),
        (
            "log_softmax",
            half.log_softmax,
            xent_core::log_softmax,
            xent_core::log_softmax_in_place,
        ),
    ];
    let (rows, cols, x_stride, y_stride) = (5, 11, 12, 14);
    let mut rng = Rng(8);
    let x = half.narrow(&strided(rows, cols, x_stride, || rng.range(-20.0, 20.0)));
    let x_core = half.typed(&x);
    for (kernel, exported, core, core_in_place) in kernels {
        let name = format!("{} {kernel}", half.name);
        let mut y = padded16(rows, cols, y_stride);
        // SAFETY: x and y cover their shapes and are separate vectors.
        let status =
            unsafe { exported(x.as_ptr(), rows, cols, x_stride, y.as_mut_ptr(), y_stride) };
        assert_eq!(status, XentStatus::Ok, "{name}");
        let mut core_y = half.typed(&padded16(rows, cols, y_stride));
        core(
            Rows::new(&x_core, rows, cols, x_stride).unwrap(),
            RowsMut::new(&mut core_y, rows, cols, y_stride).unwrap(),
        )
        .unwrap();
        assert_eq!(y, half.bits(&core_y), "{name}");
        assert!(
            y.iter()
                .enumerate()
                .all(|(k, &v)| k % y_stride < cols || v == PAD16),
            "{name}: padding written"
        );

        let mut in_place = x.clone();
        let p = in_place.as_mut_ptr();
        // SAFETY: in place: y is x exactly, same stride.
        let status = unsafe { exported(p, rows, cols, x_stride, p, x_stride) };
        assert_eq!(status, XentStatus::Ok, "{name} in place");
        let mut core_y_in_place = x_core.clone();
        core_in_place(RowsMut::new(&mut core_y_in_place, rows, cols, x_stride).unwrap()).unwrap();
        assert_eq!(in_place, half.bits(&core_y_in_place), "{name} in place");
    }
}

#[test]
fn bf16_and_f16_match_the_core() {
    for case in cases() {
        check_half(&BF16, &case);
        check_half(&F16, &case);
    }
    check_half_normalize(&BF16);
    check_half_normalize(&F16);
}

#[test]
fn bf16_and_f16_refuse_what_f32_refuses_and_write_nothing() {
    let (rows, cols) = (3, 4);
    for (name, forward) in [("bf16", BF16.forward), ("f16", F16.forward)] {
        let logits = [0x3f80u16; 12];
        let targets = [0i64, 4, 1]; // 4 is out of range
        let mut loss = [7.0f32];
        let mut grad = [PAD16; 12];
        let call =
            |logits: *const u16, stride, targets: *const i64, loss: *mut f32, grad: *mut u16| {
                // SAFETY: each pointer is NULL or covers 3 rows of 4 at its stride.
                unsafe {
                    forward(
                        logits,
                        rows,
                        cols,
                        stride,
                        targets,
                        ptr::null(),
                        loss,
                        grad,
                        cols,
                        ptr::null_mut(),
                    )
                }
            };
        let l = logits.as_ptr();
        let (t, lp, g) = (targets.as_ptr(), loss.as_mut_ptr(), grad.as_mut_ptr());
        assert_eq!(
            call(ptr::null(), cols, t, lp, g),
            XentStatus::NullPointer,
            "{name}"
        );
        assert_eq!(
            call(l, cols - 1, t, lp, g),
            XentStatus::InvalidShape,
            "{name}"
        );
        let odd = l.cast::<u8>().wrapping_add(1).cast::<u16>();
        assert_eq!(
            call(odd, cols, t, lp, g),
            XentStatus::InvalidShape,
            "{name}"
        );
        assert_eq!(
            call(l, cols, t, lp, g),
            XentStatus::TargetOutOfRange,
            "{name}"
        );
        // The gradient one element (2 bytes) into the logits overlaps them.
        let mut shared = [0x3f80u16; 13];
        let s = shared.as_mut_ptr();
        let fine = [0i64, 1, 2];
        assert_eq!(
            call(s, cols, fine.as_ptr(), lp, s.wrapping_add(1)),
            XentStatus::OverlappingBuffers,
            "{name}"
        );
        assert_eq!(loss, [7.0], "{name}: a refused call wrote the loss");
        assert_eq!(
            grad, [PAD16; 12],
            "{name}: a refused call wrote the gradient"
        );
        assert_eq!(
            shared, [0x3f80u16; 13],
            "{name}: a refused call wrote the logits"
        );
    }
}

/// Padding no `_f64` call may read into a result or overwrite: a NaN with a payload.
const PAD64: f64 = f64::from_bits(0x7ff8_dead_beef_a5a5);

fn bits64(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// `rows` rows of `cols` values with `stride`, PAD64 in the padding.
fn strided64(rows: usize, cols: usize, stride: usize, mut value: impl FnMut() -> f64) -> Vec<f64> {
    let len = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    };
    (0..len)
        .map(|k| if k % stride < cols { value() } else { PAD64 })
        .collect()
}

fn assert_padding64_intact(buf: &[f64], cols: usize, stride: usize, what: &str) {
    for (k, v) in buf.iter().enumerate() {
        if k % stride >= cols {
            assert_eq!(
                v.to_bits(),
                PAD64.to_bits(),
                "{what}: padding {k} was written"
            );
        }
    }
}

/// A case's logits as f64 values that no f32 holds, with PAD64 in the padding.
fn logits64(case: &Case) -> Vec<f64> {
    case.logits
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            if k % case.stride < case.cols {
                f64::from(v) * (1.0 + 1e-9 * (k + 1) as f64)
            } else {
                PAD64
            }
        })
        .collect()
}

/// Every forward and backward `_f64` call on `case` (its logits made f64) agrees with the
/// core crate's generic functions over f64, bit for bit: separate with a stride of its own,
/// and in place; padding untouched.
fn check_f64(case: &Case) {
    let name = format!("f64 {}", case.name);
    let (rows, cols, stride) = (case.rows, case.cols, case.stride);
    let x = logits64(case);
    let view = Rows::new(&x, rows, cols, stride).unwrap();
    let options = case.c_options();
    let core_options = case.core_options();
    let loss_len = case.loss_len();
    let forward =
        |logits: *const f64, loss: &mut [f64], grad: *mut f64, grad_stride, lse: &mut [f64]| {
            // SAFETY: every pointer covers the elements its arguments describe, and the outputs
            // are separate vectors (or the logits themselves, in place).
            unsafe {
                match &case.targets {
                    CaseTargets::Hard(t) => xent_cross_entropy_f64(
                        logits,
                        rows,
                        cols,
                        stride,
                        t.as_ptr(),
                        &options,
                        loss.as_mut_ptr(),
                        grad,
                        grad_stride,
                        lse.as_mut_ptr(),
                    ),
                    CaseTargets::Soft { probs, stride: ts } => xent_cross_entropy_soft_f64(
                        logits,
                        rows,
                        cols,
                        stride,
                        probs.as_ptr(),
                        *ts,
                        &options,
                        loss.as_mut_ptr(),
                        grad,
                        grad_stride,
                        lse.as_mut_ptr(),
                    ),
                }
            }
        };

    // The loss alone.
    let (mut loss, mut lse) = (vec![0.0f64; loss_len], vec![0.0f64; rows]);
    let status = forward(x.as_ptr(), &mut loss, ptr::null_mut(), 0, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: forward");
    let (mut core_loss, mut core_lse) = (vec![0.0f64; loss_len], vec![0.0f64; rows]);
    xent_core::cross_entropy(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(bits64(&loss), bits64(&core_loss), "{name}: loss");
    assert_eq!(bits64(&lse), bits64(&core_lse), "{name}: lse");

    // The gradient into a separate buffer with its own stride.
    let grad_stride = cols + 3;
    let mut grad = strided64(rows, cols, grad_stride, || PAD64);
    let status = forward(
        x.as_ptr(),
        &mut loss,
        grad.as_mut_ptr(),
        grad_stride,
        &mut lse,
    );
    assert_eq!(status, XentStatus::Ok, "{name}: forward + grad");
    let mut core_grad = strided64(rows, cols, grad_stride, || PAD64);
    xent_core::cross_entropy_grad(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(bits64(&loss), bits64(&core_loss), "{name}: loss with grad");
    assert_eq!(bits64(&lse), bits64(&core_lse), "{name}: lse with grad");
    assert_eq!(bits64(&grad), bits64(&core_grad), "{name}: grad");
    assert_padding64_intact(&grad, cols, grad_stride, &name);

    // In place: the core's in-place result, and the separate gradient's values.
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    let status = forward(p, &mut loss, p, stride, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: in place");
    let mut core_in_place = x.clone();
    xent_core::cross_entropy_grad_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        None,
    )
    .unwrap();
    assert_eq!(bits64(&loss), bits64(&core_loss), "{name}: in-place loss");
    assert_eq!(
        bits64(&in_place),
        bits64(&core_in_place),
        "{name}: in-place grad"
    );
    assert_padding64_intact(&in_place, cols, stride, &name);
    for i in 0..rows {
        assert_eq!(
            bits64(&in_place[i * stride..i * stride + cols]),
            bits64(&grad[i * grad_stride..i * grad_stride + cols]),
            "{name}: in place differs from separate in row {i}"
        );
    }

    // The backward from the saved lse, separate and in place (hard targets only).
    let CaseTargets::Hard(targets) = &case.targets else {
        return;
    };
    let dloss: Vec<f64> = (0..loss_len).map(|i| 0.5 + i as f64 * 0.25).collect();
    let backward = |logits: *const f64, grad: *mut f64, grad_stride: usize| {
        // SAFETY: as for the forward.
        unsafe {
            xent_cross_entropy_backward_f64(
                logits,
                rows,
                cols,
                stride,
                targets.as_ptr(),
                &options,
                core_lse.as_ptr(),
                dloss.as_ptr(),
                grad,
                grad_stride,
            )
        }
    };
    let mut grad = strided64(rows, cols, grad_stride, || PAD64);
    let status = backward(x.as_ptr(), grad.as_mut_ptr(), grad_stride);
    assert_eq!(status, XentStatus::Ok, "{name}: backward");
    let mut core_grad = strided64(rows, cols, grad_stride, || PAD64);
    xent_core::cross_entropy_backward(
        view,
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
    )
    .unwrap();
    assert_eq!(bits64(&grad), bits64(&core_grad), "{name}: backward");
    assert_padding64_intact(&grad, cols, grad_stride, &name);
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    assert_eq!(
        backward(p, p, stride),
        XentStatus::Ok,
        "{name}: backward in place"
    );
    let mut core_in_place = x.clone();
    xent_core::cross_entropy_backward_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
    )
    .unwrap();
    assert_eq!(
        bits64(&in_place),
        bits64(&core_in_place),
        "{name}: backward in place"
    );
}

/// softmax and log_softmax over f64, separate (strided) and in place, agree with the core
/// crate's bit for bit.
fn check_f64_normalize() {
    type Exported =
        unsafe extern "C" fn(*const f64, usize, usize, usize, *mut f64, usize) -> XentStatus;
    type Core = fn(Rows<'_, f64>, RowsMut<'_, f64>) -> xent_core::Result<()>;
    type CoreInPlace = fn(RowsMut<'_, f64>) -> xent_core::Result<()>;
    let kernels: [(&str, Exported, Core, CoreInPlace); 2] = [
        (
            "softmax",
            xent_softmax_f64,
            xent_core::softmax,
            xent_core::softmax_in_place,
        ),
        (
            "log_softmax",
            xent_log_softmax_f64,
            xent_core::log_softmax,
            xent_core::log_softmax_in_place,
        ),
    ];
    let (rows, cols, x_stride, y_stride) = (5, 11, 12, 14);
    let mut rng = Rng(9);
    let x = strided64(rows, cols, x_stride, || {
        f64::from(rng.range(-20.0, 20.0)) + f64::from(rng.range(0.0, 1.0)) * 1e-9
    });
    for (kernel, exported, core, core_in_place) in kernels {
        let name = format!("f64 {kernel}");
        let mut y = strided64(rows, cols, y_stride, || PAD64);
        // SAFETY: x and y cover their shapes and are separate vectors.
        let status =
            unsafe { exported(x.as_ptr(), rows, cols, x_stride, y.as_mut_ptr(), y_stride) };
        assert_eq!(status, XentStatus::Ok, "{name}");
        let mut core_y = strided64(rows, cols, y_stride, || PAD64);
        core(
            Rows::new(&x, rows, cols, x_stride).unwrap(),
            RowsMut::new(&mut core_y, rows, cols, y_stride).unwrap(),
        )
        .unwrap();
        assert_eq!(bits64(&y), bits64(&core_y), "{name}");
        assert_padding64_intact(&y, cols, y_stride, &name);

        let mut in_place = x.clone();
        let p = in_place.as_mut_ptr();
        // SAFETY: in place: y is x exactly, same stride.
        let status = unsafe { exported(p, rows, cols, x_stride, p, x_stride) };
        assert_eq!(status, XentStatus::Ok, "{name} in place");
        let mut core_in_place_y = x.clone();
        core_in_place(RowsMut::new(&mut core_in_place_y, rows, cols, x_stride).unwrap()).unwrap();
        assert_eq!(
            bits64(&in_place),
            bits64(&core_in_place_y),
            "{name} in place"
        );
        assert_padding64_intact(&in_place, cols, x_stride, &name);
    }
}

#[test]
fn f64_matches_the_core() {
    for case in cases() {
        check_f64(&case);
    }
    check_f64_normalize();
}

#[test]
fn f64_refuses_what_f32_refuses_and_writes_nothing() {
    let (rows, cols) = (3, 4);
    let logits = [0.5f64; 12];
    let targets = [0i64, 4, 1]; // 4 is out of range
    let fine = [0i64, 1, 2];
    let mut loss = [7.0f64];
    let mut grad = [PAD64; 12];
    let lse_in = [2.0f64; 3];
    let dloss = [1.0f64];
    let call = |logits: *const f64, stride, targets: *const i64, loss: *mut f64, grad: *mut f64| {
        // SAFETY: each pointer is NULL or covers 3 rows of 4 at its stride (or is refused
        // before anything is read).
        unsafe {
            xent_cross_entropy_f64(
                logits,
                rows,
                cols,
                stride,
                targets,
                ptr::null(),
                loss,
                grad,
                cols,
                ptr::null_mut(),
            )
        }
    };
    let l = logits.as_ptr();
    let (t, ok_t) = (targets.as_ptr(), fine.as_ptr());
    let (lp, g) = (loss.as_mut_ptr(), grad.as_mut_ptr());
    assert_eq!(call(ptr::null(), cols, t, lp, g), XentStatus::NullPointer);
    assert_eq!(
        call(l, cols, t, ptr::null_mut(), g),
        XentStatus::NullPointer
    );
    assert_eq!(call(l, cols - 1, t, lp, g), XentStatus::InvalidShape);
    // 4 bytes off: aligned for float, not for double.
    let off4 = |p: *const f64| p.cast::<u8>().wrapping_add(4).cast::<f64>();
    assert_eq!(call(off4(l), cols, ok_t, lp, g), XentStatus::InvalidShape);
    assert_eq!(
        call(l, cols, ok_t, off4(lp).cast_mut(), g),
        XentStatus::InvalidShape
    );
    assert_eq!(
        call(l, cols, ok_t, lp, off4(g).cast_mut()),
        XentStatus::InvalidShape
    );
    // SAFETY: the lse is refused (misaligned) before anything is read.
    let status = unsafe {
        xent_cross_entropy_backward_f64(
            l,
            rows,
            cols,
            cols,
            ok_t,
            ptr::null(),
            off4(lse_in.as_ptr()),
            dloss.as_ptr(),
            g,
            cols,
        )
    };
    assert_eq!(status, XentStatus::InvalidShape, "misaligned lse");
    // SAFETY: y is refused (misaligned) before anything is read or written.
    let status = unsafe { xent_softmax_f64(l, rows, cols, cols, off4(g).cast_mut(), cols) };
    assert_eq!(
        status,
        XentStatus::InvalidShape,
        "misaligned softmax output"
    );
    assert_eq!(call(l, cols, t, lp, g), XentStatus::TargetOutOfRange);
    // The gradient one element (8 bytes) into the logits, or over their last element only,
    // overlaps them.
    let mut shared = [0.5f64; 24];
    let s = shared.as_mut_ptr();
    assert_eq!(
        call(s, cols, ok_t, lp, s.wrapping_add(1)),
        XentStatus::OverlappingBuffers
    );
    assert_eq!(
        call(s, cols, ok_t, lp, s.wrapping_add(11)),
        XentStatus::OverlappingBuffers
    );
    // The loss over the last element of the logits.
    assert_eq!(
        call(s, cols, ok_t, s.wrapping_add(11), g),
        XentStatus::OverlappingBuffers
    );
    // SAFETY: refused (overlap) before anything is read or written.
    let status = unsafe { xent_softmax_f64(s, rows, cols, cols, s.wrapping_add(11), cols) };
    assert_eq!(status, XentStatus::OverlappingBuffers, "softmax overlap");
    assert_eq!(loss, [7.0], "a refused call wrote the loss");
    assert_eq!(
        bits64(&grad),
        bits64(&[PAD64; 12]),
        "a refused call wrote the gradient"
    );
    assert_eq!(shared, [0.5f64; 24], "a refused call wrote the logits");
    // Touching the logits' end is no overlap.
    assert_eq!(call(s, cols, ok_t, lp, s.wrapping_add(12)), XentStatus::Ok);
}
