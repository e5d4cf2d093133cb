//! The exported functions, called through the rlib exactly as C calls them, give the core
//! crate's results bit for bit — out of place, in place and strided — and those agree with
//! the f64 oracle (`xent_oracle`) within docs/semantics.md's tolerances. The `_bf16` and `_f16`
//! functions give the core crate's results over its `bf16` and `f16` views, bit for bit,
//! and the `_f64` functions its results over `f64` views (with f64 loss, lse and `dloss`).

use std::ptr;

use xent::{Logit, Options, Reduction, Rows, RowsMut, Targets, bf16, f16};
use xent_ffi::{
    XentOptions, XentReduction, XentStatus, xent_cross_entropy_backward_bf16,
    xent_cross_entropy_backward_f16, xent_cross_entropy_backward_f32,
    xent_cross_entropy_backward_f64, xent_cross_entropy_bf16, xent_cross_entropy_f16,
    xent_cross_entropy_f32, xent_cross_entropy_f64, xent_cross_entropy_soft_bf16,
    xent_cross_entropy_soft_f16, xent_cross_entropy_soft_f32, xent_cross_entropy_soft_f64,
    xent_log_softmax_bf16, xent_log_softmax_f16, xent_log_softmax_f32, xent_log_softmax_f64,
    xent_options_default, xent_softmax_bf16, xent_softmax_f16, xent_softmax_f32, xent_softmax_f64,
};
use xent_oracle::RefTargets;

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

    fn oracle(&self) -> xent_oracle::RefOutput {
        let x = xent_oracle::widen(self.logits_view());
        let soft;
        let targets = match &self.targets {
            CaseTargets::Hard(t) => RefTargets::Hard(t),
            CaseTargets::Soft { probs, stride } => {
                soft = xent_oracle::widen(Rows::new(probs, self.rows, self.cols, *stride).unwrap());
                RefTargets::Soft(&soft)
            }
        };
        xent_oracle::cross_entropy(&x, self.rows, self.cols, targets, &self.core_options())
    }

    fn max_weight(&self) -> f64 {
        self.weights
            .iter()
            .flatten()
            .fold(1.0, |m: f64, &w| m.max(f64::from(w)))
    }

    /// docs/semantics.md's loss tolerance per row, combined as the reduction combines rows.
    fn loss_tolerances(&self, r: &xent_oracle::RefOutput) -> Vec<f64> {
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

    fn grad_tolerance(&self, r: &xent_oracle::RefOutput, want: f64) -> f64 {
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
    xent::cross_entropy(
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
    xent::cross_entropy_grad(
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
    xent::cross_entropy_grad_in_place(
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
    xent::cross_entropy(
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
    xent::cross_entropy_backward(
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

    let x = xent_oracle::widen(case.logits_view());
    let dloss64: Vec<f64> = dloss.iter().map(|&v| f64::from(v)).collect();
    let want = xent_oracle::cross_entropy_backward(
        &x,
        rows,
        cols,
        RefTargets::Hard(targets),
        &core_options,
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
    xent::cross_entropy_backward_in_place(
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
    type Core = fn(Rows<'_>, RowsMut<'_>) -> xent::Result<()>;
    type CoreInPlace = fn(RowsMut<'_>) -> xent::Result<()>;
    type Oracle = fn(&[f64], usize, usize) -> Vec<f64>;
    let kernels: [(&str, Exported, Core, CoreInPlace, Oracle); 2] = [
        (
            "softmax",
            xent_softmax_f32,
            xent::softmax,
            xent::softmax_in_place,
            xent_oracle::softmax,
        ),
        (
            "log_softmax",
            xent_log_softmax_f32,
            xent::log_softmax,
            xent::log_softmax_in_place,
            xent_oracle::log_softmax,
        ),
    ];
    let (rows, cols, x_stride, y_stride) = (5, 11, 12, 14);
    let mut rng = Rng(7);
    let x = strided(rows, cols, x_stride, || rng.range(-20.0, 20.0));
    let x64 = xent_oracle::widen(Rows::new(&x, rows, cols, x_stride).unwrap());
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

/// An exported element type other than f32: the core crate's type `T` for it, the type `C`
/// its values cross the C ABI as (their bits for bf16 and f16, f64 itself), and its
/// exported functions, whose losses, lse values and upstream gradients are `T::Stat`.
struct Abi<T: Logit, C> {
    name: &'static str,
    /// A case's logits, padding included, as this type.
    logits: fn(&Case) -> Vec<C>,
    /// softmax's input: `rows` rows of `cols` values with `stride`.
    normalize_input: fn(usize, usize, usize) -> Vec<C>,
    /// The logits of the refusal tests.
    fill: C,
    /// What no call may write into padding: a NaN with a payload.
    pad: C,
    to_core: fn(C) -> T,
    from_core: fn(T) -> C,
    bits: fn(C) -> u64,
    stat: fn(f64) -> T::Stat,
    stat_bits: fn(T::Stat) -> u64,
    forward: Forward<C, T::Stat>,
    soft: Soft<C, T::Stat>,
    backward: Backward<C, T::Stat>,
    softmax: Normalize<C>,
    log_softmax: Normalize<C>,
}

type Forward<C, S> = unsafe extern "C" fn(
    *const C,
    usize,
    usize,
    usize,
    *const i64,
    *const XentOptions,
    *mut S,
    *mut C,
    usize,
    *mut S,
) -> XentStatus;
type Soft<C, S> = unsafe extern "C" fn(
    *const C,
    usize,
    usize,
    usize,
    *const f32,
    usize,
    *const XentOptions,
    *mut S,
    *mut C,
    usize,
    *mut S,
) -> XentStatus;
type Backward<C, S> = unsafe extern "C" fn(
    *const C,
    usize,
    usize,
    usize,
    *const i64,
    *const XentOptions,
    *const S,
    *const S,
    *mut C,
    usize,
) -> XentStatus;
type Normalize<C> =
    unsafe extern "C" fn(*const C, usize, usize, usize, *mut C, usize) -> XentStatus;

/// Bits no call may write into padding: a NaN with a payload, in both 16-bit formats.
const PAD16: u16 = 0x7fa5;

/// Padding no `_f64` call may read into a result or overwrite: a NaN with a payload.
const PAD64: f64 = f64::from_bits(0x7ff8_dead_beef_a5a5);

/// `values` rounded to a 16-bit type, as bits (PAD stays a NaN).
fn narrow<T>(values: &[f32], from_f32: fn(f32) -> T, to_bits: fn(T) -> u16) -> Vec<u16> {
    values.iter().map(|&v| to_bits(from_f32(v))).collect()
}

/// The 16-bit types' softmax input, before rounding.
fn normalize_input16(rows: usize, cols: usize, stride: usize) -> Vec<f32> {
    let mut rng = Rng(8);
    strided(rows, cols, stride, || rng.range(-20.0, 20.0))
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

const BF16: Abi<bf16, u16> = Abi {
    name: "bf16",
    logits: |case| narrow(&case.logits, bf16::from_f32, bf16::to_bits),
    normalize_input: |rows, cols, stride| {
        narrow(
            &normalize_input16(rows, cols, stride),
            bf16::from_f32,
            bf16::to_bits,
        )
    },
    fill: 0x3f80,
    pad: PAD16,
    to_core: bf16::from_bits,
    from_core: bf16::to_bits,
    bits: u64::from,
    stat: |v| v as f32,
    stat_bits: |v| u64::from(v.to_bits()),
    forward: xent_cross_entropy_bf16,
    soft: xent_cross_entropy_soft_bf16,
    backward: xent_cross_entropy_backward_bf16,
    softmax: xent_softmax_bf16,
    log_softmax: xent_log_softmax_bf16,
};

const F16: Abi<f16, u16> = Abi {
    name: "f16",
    logits: |case| narrow(&case.logits, f16::from_f32, f16::to_bits),
    normalize_input: |rows, cols, stride| {
        narrow(
            &normalize_input16(rows, cols, stride),
            f16::from_f32,
            f16::to_bits,
        )
    },
    fill: 0x3f80,
    pad: PAD16,
    to_core: f16::from_bits,
    from_core: f16::to_bits,
    bits: u64::from,
    stat: |v| v as f32,
    stat_bits: |v| u64::from(v.to_bits()),
    forward: xent_cross_entropy_f16,
    soft: xent_cross_entropy_soft_f16,
    backward: xent_cross_entropy_backward_f16,
    softmax: xent_softmax_f16,
    log_softmax: xent_log_softmax_f16,
};

const F64: Abi<f64, f64> = Abi {
    name: "f64",
    logits: logits64,
    normalize_input: |rows, cols, stride| {
        let mut rng = Rng(9);
        strided64(rows, cols, stride, || {
            f64::from(rng.range(-20.0, 20.0)) + f64::from(rng.range(0.0, 1.0)) * 1e-9
        })
    },
    fill: 0.5,
    pad: PAD64,
    to_core: |v| v,
    from_core: |v| v,
    bits: f64::to_bits,
    stat: |v| v,
    stat_bits: f64::to_bits,
    forward: xent_cross_entropy_f64,
    soft: xent_cross_entropy_soft_f64,
    backward: xent_cross_entropy_backward_f64,
    softmax: xent_softmax_f64,
    log_softmax: xent_log_softmax_f64,
};

impl<T: Logit, C: Copy> Abi<T, C> {
    /// C values as the core crate's.
    fn core(&self, values: &[C]) -> Vec<T> {
        values.iter().map(|&v| (self.to_core)(v)).collect()
    }

    fn bits_of(&self, values: &[C]) -> Vec<u64> {
        values.iter().map(|&v| (self.bits)(v)).collect()
    }

    /// The core crate's values as the bits of their C values.
    fn core_bits(&self, values: &[T]) -> Vec<u64> {
        values
            .iter()
            .map(|&v| (self.bits)((self.from_core)(v)))
            .collect()
    }

    fn stat_bits_of(&self, values: &[T::Stat]) -> Vec<u64> {
        values.iter().map(|&v| (self.stat_bits)(v)).collect()
    }

    fn stats(&self, len: usize) -> Vec<T::Stat> {
        vec![(self.stat)(0.0); len]
    }

    /// `rows` rows of `cols` with `stride`, all `pad`.
    fn padded(&self, rows: usize, cols: usize, stride: usize) -> Vec<C> {
        let len = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + cols
        };
        vec![self.pad; len]
    }

    /// The padding of `buf` (rows of `cols` with `stride`) holds the bits `was` held there.
    fn assert_padding_kept(&self, buf: &[C], was: &[C], cols: usize, stride: usize, what: &str) {
        assert_eq!(buf.len(), was.len(), "{what}");
        for (k, (&v, &w)) in buf.iter().zip(was).enumerate() {
            if k % stride >= cols {
                assert_eq!(
                    (self.bits)(v),
                    (self.bits)(w),
                    "{what}: padding {k} was written"
                );
            }
        }
    }
}

/// Every forward and backward call of `abi` on `case` (its logits made this type) agrees with
/// the core crate's generic functions over it, bit for bit: separate with a stride of its
/// own, and in place; padding untouched.
fn check_abi<T: Logit, C: Copy>(abi: &Abi<T, C>, case: &Case) {
    let name = format!("{} {}", abi.name, case.name);
    let (rows, cols, stride) = (case.rows, case.cols, case.stride);
    let x = (abi.logits)(case);
    let x_core = abi.core(&x);
    let view = Rows::new(&x_core, rows, cols, stride).unwrap();
    let options = case.c_options();
    let core_options = case.core_options();
    let loss_len = case.loss_len();
    let forward =
        |logits: *const C, loss: &mut [T::Stat], grad: *mut C, grad_stride, lse: &mut [T::Stat]| {
            // SAFETY: every pointer covers the elements its arguments describe, and the outputs
            // are separate vectors (or the logits themselves, in place).
            unsafe {
                match &case.targets {
                    CaseTargets::Hard(t) => (abi.forward)(
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
                    CaseTargets::Soft { probs, stride: ts } => (abi.soft)(
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
    let (mut loss, mut lse) = (abi.stats(loss_len), abi.stats(rows));
    let status = forward(x.as_ptr(), &mut loss, ptr::null_mut(), 0, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: forward");
    let (mut core_loss, mut core_lse) = (abi.stats(loss_len), abi.stats(rows));
    xent::cross_entropy(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(
        abi.stat_bits_of(&loss),
        abi.stat_bits_of(&core_loss),
        "{name}: loss"
    );
    assert_eq!(
        abi.stat_bits_of(&lse),
        abi.stat_bits_of(&core_lse),
        "{name}: lse"
    );

    // The gradient into a separate buffer with its own stride.
    let grad_stride = cols + 3;
    let blank = abi.padded(rows, cols, grad_stride);
    let mut grad = blank.clone();
    let status = forward(
        x.as_ptr(),
        &mut loss,
        grad.as_mut_ptr(),
        grad_stride,
        &mut lse,
    );
    assert_eq!(status, XentStatus::Ok, "{name}: forward + grad");
    let mut core_grad = abi.core(&blank);
    xent::cross_entropy_grad(
        view,
        case.core_targets(),
        &core_options,
        &mut core_loss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
        Some(&mut core_lse),
    )
    .unwrap();
    assert_eq!(
        abi.stat_bits_of(&loss),
        abi.stat_bits_of(&core_loss),
        "{name}: loss with grad"
    );
    assert_eq!(
        abi.stat_bits_of(&lse),
        abi.stat_bits_of(&core_lse),
        "{name}: lse with grad"
    );
    assert_eq!(
        abi.bits_of(&grad),
        abi.core_bits(&core_grad),
        "{name}: grad"
    );
    abi.assert_padding_kept(&grad, &blank, cols, grad_stride, &format!("{name}: grad"));

    // In place: the core's in-place result, and the separate gradient's values.
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    let status = forward(p, &mut loss, p, stride, &mut lse);
    assert_eq!(status, XentStatus::Ok, "{name}: in place");
    let mut core_in_place = x_core.clone();
    xent::cross_entropy_grad_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &mut core_loss,
        None,
    )
    .unwrap();
    assert_eq!(
        abi.stat_bits_of(&loss),
        abi.stat_bits_of(&core_loss),
        "{name}: in-place loss"
    );
    assert_eq!(
        abi.bits_of(&in_place),
        abi.core_bits(&core_in_place),
        "{name}: in-place grad"
    );
    abi.assert_padding_kept(&in_place, &x, cols, stride, &format!("{name}: in place"));
    for i in 0..rows {
        assert_eq!(
            abi.bits_of(&in_place[i * stride..i * stride + cols]),
            abi.bits_of(&grad[i * grad_stride..i * grad_stride + cols]),
            "{name}: in place differs from separate in row {i}"
        );
    }

    // The backward from the saved lse, separate and in place (hard targets only).
    let CaseTargets::Hard(targets) = &case.targets else {
        return;
    };
    let dloss: Vec<T::Stat> = (0..loss_len)
        .map(|i| (abi.stat)(0.5 + i as f64 * 0.25))
        .collect();
    let backward = |logits: *const C, grad: *mut C, grad_stride: usize| {
        // SAFETY: as for the forward.
        unsafe {
            (abi.backward)(
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
    let mut grad = blank.clone();
    let status = backward(x.as_ptr(), grad.as_mut_ptr(), grad_stride);
    assert_eq!(status, XentStatus::Ok, "{name}: backward");
    let mut core_grad = abi.core(&blank);
    xent::cross_entropy_backward(
        view,
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
        RowsMut::new(&mut core_grad, rows, cols, grad_stride).unwrap(),
    )
    .unwrap();
    assert_eq!(
        abi.bits_of(&grad),
        abi.core_bits(&core_grad),
        "{name}: backward"
    );
    abi.assert_padding_kept(
        &grad,
        &blank,
        cols,
        grad_stride,
        &format!("{name}: backward"),
    );
    let mut in_place = x.clone();
    let p = in_place.as_mut_ptr();
    assert_eq!(
        backward(p, p, stride),
        XentStatus::Ok,
        "{name}: backward in place"
    );
    let mut core_in_place = x_core.clone();
    xent::cross_entropy_backward_in_place(
        RowsMut::new(&mut core_in_place, rows, cols, stride).unwrap(),
        case.core_targets(),
        &core_options,
        &core_lse,
        &dloss,
    )
    .unwrap();
    assert_eq!(
        abi.bits_of(&in_place),
        abi.core_bits(&core_in_place),
        "{name}: backward in place"
    );
}

/// softmax and log_softmax of `abi`, separate (strided) and in place, agree with the core
/// crate's bit for bit, padding untouched.
fn check_abi_normalize<T: Logit, C: Copy>(abi: &Abi<T, C>) {
    type Core<T> = fn(Rows<'_, T>, RowsMut<'_, T>) -> xent::Result<()>;
    type CoreInPlace<T> = fn(RowsMut<'_, T>) -> xent::Result<()>;
    type Kernel<T, C> = (&'static str, Normalize<C>, Core<T>, CoreInPlace<T>);
    let kernels: [Kernel<T, C>; 2] = [
        (
            "softmax",
            abi.softmax,
            xent::softmax,
            xent::softmax_in_place,
        ),
        (
            "log_softmax",
            abi.log_softmax,
            xent::log_softmax,
            xent::log_softmax_in_place,
        ),
    ];
    let (rows, cols, x_stride, y_stride) = (5, 11, 12, 14);
    let x = (abi.normalize_input)(rows, cols, x_stride);
    let x_core = abi.core(&x);
    for (kernel, exported, core, core_in_place) in kernels {
        let name = format!("{} {kernel}", abi.name);
        let blank = abi.padded(rows, cols, y_stride);
        let mut y = blank.clone();
        // SAFETY: x and y cover their shapes and are separate vectors.
        let status =
            unsafe { exported(x.as_ptr(), rows, cols, x_stride, y.as_mut_ptr(), y_stride) };
        assert_eq!(status, XentStatus::Ok, "{name}");
        let mut core_y = abi.core(&blank);
        core(
            Rows::new(&x_core, rows, cols, x_stride).unwrap(),
            RowsMut::new(&mut core_y, rows, cols, y_stride).unwrap(),
        )
        .unwrap();
        assert_eq!(abi.bits_of(&y), abi.core_bits(&core_y), "{name}");
        abi.assert_padding_kept(&y, &blank, cols, y_stride, &name);

        let mut in_place = x.clone();
        let p = in_place.as_mut_ptr();
        // SAFETY: in place: y is x exactly, same stride.
        let status = unsafe { exported(p, rows, cols, x_stride, p, x_stride) };
        assert_eq!(status, XentStatus::Ok, "{name} in place");
        let mut core_y_in_place = x_core.clone();
        core_in_place(RowsMut::new(&mut core_y_in_place, rows, cols, x_stride).unwrap()).unwrap();
        assert_eq!(
            abi.bits_of(&in_place),
            abi.core_bits(&core_y_in_place),
            "{name} in place"
        );
        abi.assert_padding_kept(&in_place, &x, cols, x_stride, &format!("{name} in place"));
    }
}

/// Every case, and softmax and log_softmax, through `abi` agree with the core crate.
fn check_matches_the_core<T: Logit, C: Copy>(abi: &Abi<T, C>) {
    for case in cases() {
        check_abi(abi, &case);
    }
    check_abi_normalize(abi);
}

/// `p` moved by half the size of what it points to: aligned for no value of that size.
fn misaligned<P>(p: *const P) -> *const P {
    p.cast::<u8>().wrapping_add(size_of::<P>() / 2).cast::<P>()
}

/// Room for 24 elements, aligned for any element or stat type.
#[repr(C, align(8))]
struct Aligned<A>(A);

/// `abi` refuses what `_f32` refuses (NULL, short strides, misalignment, a target out of
/// range, overlap), and a refused call writes nothing.
fn check_refusals<T: Logit, C: Copy>(abi: &Abi<T, C>) {
    let name = abi.name;
    let (rows, cols) = (3, 4);
    let logits = [abi.fill; 12];
    let targets = [0i64, 4, 1]; // 4 is out of range
    let fine = [0i64, 1, 2];
    let mut loss = [(abi.stat)(7.0)];
    let mut grad = [abi.pad; 12];
    let lse_in = [(abi.stat)(2.0); 3];
    let dloss = [(abi.stat)(1.0)];
    let call = |logits: *const C, stride, targets: *const i64, loss: *mut T::Stat, grad: *mut C| {
        // SAFETY: each pointer is NULL or covers 3 rows of 4 at its stride (or is refused
        // before anything is read).
        unsafe {
            (abi.forward)(
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
    assert_eq!(
        call(ptr::null(), cols, t, lp, g),
        XentStatus::NullPointer,
        "{name}"
    );
    assert_eq!(
        call(l, cols, t, ptr::null_mut(), g),
        XentStatus::NullPointer,
        "{name}"
    );
    assert_eq!(
        call(l, cols - 1, t, lp, g),
        XentStatus::InvalidShape,
        "{name}"
    );
    // Half an element off: 1 byte for 16-bit types, 4 bytes (aligned for float, not for
    // double) for f64.
    assert_eq!(
        call(misaligned(l), cols, t, lp, g),
        XentStatus::InvalidShape,
        "{name}"
    );
    assert_eq!(
        call(misaligned(l), cols, ok_t, lp, g),
        XentStatus::InvalidShape,
        "{name}"
    );
    assert_eq!(
        call(l, cols, ok_t, misaligned(lp).cast_mut(), g),
        XentStatus::InvalidShape,
        "{name}"
    );
    assert_eq!(
        call(l, cols, ok_t, lp, misaligned(g).cast_mut()),
        XentStatus::InvalidShape,
        "{name}"
    );
    // SAFETY: the lse is refused (misaligned) before anything is read.
    let status = unsafe {
        (abi.backward)(
            l,
            rows,
            cols,
            cols,
            ok_t,
            ptr::null(),
            misaligned(lse_in.as_ptr()),
            dloss.as_ptr(),
            g,
            cols,
        )
    };
    assert_eq!(status, XentStatus::InvalidShape, "{name}: misaligned lse");
    // SAFETY: y is refused (misaligned) before anything is read or written.
    let status = unsafe { (abi.softmax)(l, rows, cols, cols, misaligned(g).cast_mut(), cols) };
    assert_eq!(
        status,
        XentStatus::InvalidShape,
        "{name}: misaligned softmax output"
    );
    assert_eq!(
        call(l, cols, t, lp, g),
        XentStatus::TargetOutOfRange,
        "{name}"
    );
    // The gradient one element into the logits, or over their last element only, overlaps
    // them.
    let mut shared = Aligned([abi.fill; 24]);
    let s = shared.0.as_mut_ptr();
    assert_eq!(
        call(s, cols, ok_t, lp, s.wrapping_add(1)),
        XentStatus::OverlappingBuffers,
        "{name}"
    );
    assert_eq!(
        call(s, cols, ok_t, lp, s.wrapping_add(11)),
        XentStatus::OverlappingBuffers,
        "{name}"
    );
    // The loss over the last element of the logits (its last bytes, aligned).
    let last = s
        .cast::<u8>()
        .wrapping_add(12 * size_of::<C>() - size_of::<T::Stat>())
        .cast::<T::Stat>();
    assert_eq!(
        call(s, cols, ok_t, last, g),
        XentStatus::OverlappingBuffers,
        "{name}"
    );
    // SAFETY: refused (overlap) before anything is read or written.
    let status = unsafe { (abi.softmax)(s, rows, cols, cols, s.wrapping_add(11), cols) };
    assert_eq!(
        status,
        XentStatus::OverlappingBuffers,
        "{name}: softmax overlap"
    );
    assert_eq!(
        abi.stat_bits_of(&loss),
        [(abi.stat_bits)((abi.stat)(7.0))],
        "{name}: a refused call wrote the loss"
    );
    assert_eq!(
        abi.bits_of(&grad),
        abi.bits_of(&[abi.pad; 12]),
        "{name}: a refused call wrote the gradient"
    );
    assert_eq!(
        abi.bits_of(&shared.0),
        abi.bits_of(&[abi.fill; 24]),
        "{name}: a refused call wrote the logits"
    );
    // Touching the logits' end is no overlap.
    assert_eq!(
        call(s, cols, ok_t, lp, s.wrapping_add(12)),
        XentStatus::Ok,
        "{name}"
    );
}

#[test]
fn bf16_matches_the_core() {
    check_matches_the_core(&BF16);
}

#[test]
fn f16_matches_the_core() {
    check_matches_the_core(&F16);
}

#[test]
fn f64_matches_the_core() {
    check_matches_the_core(&F64);
}

#[test]
fn bf16_refuses_what_f32_refuses_and_writes_nothing() {
    check_refusals(&BF16);
}

#[test]
fn f16_refuses_what_f32_refuses_and_writes_nothing() {
    check_refusals(&F16);
}

#[test]
fn f64_refuses_what_f32_refuses_and_writes_nothing() {
    check_refusals(&F64);
}
