//! The Rust API under arbitrary input: views, every loss call style, softmax and
//! log_softmax, the sharded calls and the fused linear head, for every logit type.
//!
//! For each call the fuzzer draws shapes, strides, options, targets, logit bit patterns and
//! buffer lengths, some of them wrong. The target asserts that
//! - nothing panics;
//! - the verdict is the model's: a call is refused exactly when its input has a fault, and
//!   the error names one of the faults found;
//! - a refused call leaves every buffer (the logits of an in-place call included) with its
//!   exact bits;
//! - an accepted f32 call agrees with the f64 oracle within docs/semantics.md's tolerances, in every
//!   call style (`common::check_case`); a 16-bit call gives the f32 call's results on the
//!   widened logits, each output rounded once; an f64 call agrees with the oracle within a
//!   millionth of the f32 tolerance.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xent::{
    Chunking, Error, LinearGrads, LinearHead, Logit, Options, Reduction, Rows, RowsMut, Shard,
    ShardRow, Stat, Targets, bf16, f16,
};
use xent_fuzz::common::{self, Case, CaseTargets, PAD};
use xent_fuzz::{Bits, Faults, Gen, assert_same, assert_same_values, assert_verdict};

fuzz_target!(|data: &[u8]| {
    let mut g = Gen::new(data);
    match g.below(6) {
        0 => views(&mut g),
        1 | 2 => loss_call(&mut g),
        3 => normalize_call(&mut g),
        4 => shard_calls(&mut g),
        _ => linear_call(&mut g),
    }
});

/// A logit type as the fuzzer handles it.
trait Elem: Logit<Stat: Bits> + Bits {
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
}

impl Elem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Elem for f64 {
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Elem for bf16 {
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
}

impl Elem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
}

/// The value every output holds before a call, so that a write shows.
fn sentinel<S: Stat>() -> S {
    S::from_f64(f64::from(PAD))
}

/// `Rows::new` and `RowsMut::new` accept exactly the shapes the model does.
fn views(g: &mut Gen<'_>) {
    let rows = if g.one_in(8) {
        g.u64() as usize
    } else {
        g.below(5)
    };
    let cols = if g.one_in(8) {
        g.u64() as usize
    } else {
        g.below(6)
    };
    let stride = match g.below(4) {
        0 => g.u64() as usize,
        1 => cols.saturating_sub(1 + g.below(2)),
        _ => cols.saturating_add(g.below(3)),
    };
    let len = g.below(40);
    check_view::<f32>(len, rows, cols, stride);
    check_view::<f64>(len, rows, cols, stride);
    check_view::<bf16>(len, rows, cols, stride);
}

fn check_view<T: Elem>(len: usize, rows: usize, cols: usize, stride: usize) {
    let needed = if stride < cols || (rows > 0 && cols == 0) {
        None
    } else if rows == 0 {
        Some(0)
    } else {
        (rows - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(cols))
            .filter(|n| {
                n.checked_mul(size_of::<T>())
                    .is_some_and(|b| b <= isize::MAX as usize)
            })
    };
    let faults = Faults {
        shape: needed.is_none_or(|n| n > len),
        ..Faults::default()
    };
    let mut data = vec![T::from_f32(0.0); len];
    let read = Rows::new(&data, rows, cols, stride).map(|_| ());
    assert_verdict(&read, &faults, "Rows::new");
    let write = RowsMut::new(&mut data, rows, cols, stride).map(|_| ());
    assert_verdict(&write, &faults, "RowsMut::new");
}

/// A loss call: the case it computes (valid or not) and the sizes of its buffers.
struct LossCall {
    case: Case,
    /// Hard targets as given (their count may be wrong).
    hard: Vec<i64>,
    /// The soft targets' rows and columns (either may be wrong).
    soft_shape: (usize, usize),
    /// Whether hard targets are passed as i32 or u32 (when every value fits).
    narrow_targets: Option<bool>,
    loss_len: usize,
    lse_len: Option<usize>,
    /// The separate gradient buffer's rows, columns and stride.
    grad_shape: (usize, usize, usize),
    dloss_len: usize,
    backward_lse_len: usize,
}

/// The call styles of a loss.
#[derive(Clone, Copy, Debug)]
enum Style {
    Forward,
    Grad,
    GradInPlace,
    Backward,
    BackwardInPlace,
}

const STYLES: [Style; 5] = [
    Style::Forward,
    Style::Grad,
    Style::GradInPlace,
    Style::Backward,
    Style::BackwardInPlace,
];

/// Options drawn with mostly valid values.
fn options(g: &mut Gen<'_>, classes: usize) -> (Reduction, i64, [f32; 4], Option<Vec<f32>>) {
    let reduction = g.pick(&[Reduction::Mean, Reduction::Sum, Reduction::None]);
    let ignore_index = match g.below(8) {
        0 => g.below(classes.max(1)) as i64,
        1 => g.u64() as i64,
        _ => -100,
    };
    let values = [
        g.option(&[0.0, 0.0, 0.1, 1.0]),
        g.option(&[0.0, 0.0, 1e-4, 0.5]),
        g.option(&[0.0, 0.0, 1.0, 30.0]),
        g.option(&[1.0, 1.0, 0.5, -2.0, 0.0]),
    ];
    let weights = g.one_in(3).then(|| {
        let n = g.len_near(classes, 10);
        (0..n).map(|_| g.option(&[1.0, 0.5, 2.0, 0.0])).collect()
    });
    (reduction, ignore_index, values, weights)
}

/// Class indices: mostly in range, some ignored, some anything.
fn hard_targets(g: &mut Gen<'_>, n: usize, classes: usize, ignore_index: i64) -> Vec<i64> {
    (0..n)
        .map(|_| match g.below(12) {
            0 => ignore_index,
            1 => g.u64() as i64,
            2 => classes as i64 - g.below(3) as i64 + 1,
            _ => g.below(classes.max(1)) as i64,
        })
        .collect()
}

fn loss_call(g: &mut Gen<'_>) {
    let rows = g.below(6);
    let cols = if g.one_in(16) {
        g.pick(&[129, 257, 1000])
    } else {
        1 + g.below(67)
    };
    let stride = cols + g.below(4);
    let logits = common::padded(rows, cols, stride, |_, _| g.logit());
    let (reduction, ignore_index, [label_smoothing, z_loss, softcap, grad_scale], weights) =
        options(g, cols);
    let soft = g.one_in(4);
    let t_rows = g.len_near(rows, 12);
    let hard = hard_targets(g, t_rows, cols, ignore_index);
    let soft_shape = (t_rows, g.len_near(cols, 12));
    let t_stride = soft_shape.1 + g.below(2);
    // Rows of probabilities (each summing to 1, as PyTorch's soft targets are meant to), and
    // now and then any values.
    let mut probs = common::padded(soft_shape.0, soft_shape.1, t_stride, |_, _| {
        g.below(5) as f32
    });
    for i in 0..soft_shape.0 {
        let row = &mut probs[i * t_stride..i * t_stride + soft_shape.1];
        if g.one_in(8) {
            row.iter_mut().for_each(|v| *v = g.logit());
            continue;
        }
        let sum: f32 = row.iter().sum();
        row.iter_mut()
            .for_each(|v| *v = if sum > 0.0 { *v / sum } else { 1.0 });
    }
    let targets = if soft {
        CaseTargets::Soft {
            probs,
            stride: t_stride,
        }
    } else {
        CaseTargets::Hard(hard.clone())
    };
    let case = Case {
        rows,
        cols,
        stride,
        logits,
        targets,
        weights,
        reduction,
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        grad_scale,
    };
    let loss_rows = reduction.loss_len(rows);
    let call = LossCall {
        narrow_targets: (!soft && g.one_in(3)).then(|| g.one_in(2)),
        hard,
        soft_shape,
        loss_len: g.len_near(loss_rows, 16),
        lse_len: g.one_in(2).then(|| g.len_near(rows, 16)),
        grad_shape: {
            let g_cols = g.len_near(cols, 16);
            (g.len_near(rows, 16), g_cols, g_cols + g.below(3))
        },
        dloss_len: g.len_near(loss_rows, 16),
        backward_lse_len: g.len_near(rows, 16),
        case,
    };

    let style = g.pick(&STYLES);
    let faults = loss_faults(&call, style);
    if std::env::var_os("XENT_FUZZ_DEBUG").is_some() {
        eprintln!("{:?}\n{style:?} {faults:?}", call.case);
    }
    match g.below(4) {
        0 => check_loss::<f32>(&call, style, &faults),
        1 => check_loss::<f64>(&call, style, &faults),
        2 => check_loss::<bf16>(&call, style, &faults),
        _ => check_loss::<f16>(&call, style, &faults),
    }
}

/// The faults of a loss call in `style`.
fn loss_faults(call: &LossCall, style: Style) -> Faults {
    let case = &call.case;
    let mut f = Faults::default();
    f.check_options(&case.options(), case.cols);
    match &case.targets {
        CaseTargets::Hard(_) => {
            f.shape |= call.hard.len() != case.rows;
            f.check_targets(&call.hard, case.ignore_index, case.cols);
        }
        CaseTargets::Soft { .. } => f.shape |= call.soft_shape != (case.rows, case.cols),
    }
    let loss_rows = case.reduction.loss_len(case.rows);
    match style {
        Style::Forward | Style::Grad | Style::GradInPlace => {
            f.shape |= call.loss_len != loss_rows;
            f.shape |= call.lse_len.is_some_and(|n| n != case.rows);
        }
        Style::Backward | Style::BackwardInPlace => {
            f.shape |= call.dloss_len != loss_rows;
            f.shape |= call.backward_lse_len != case.rows;
        }
    }
    if matches!(style, Style::Grad | Style::Backward) {
        f.shape |= call.grad_shape.0 != case.rows || call.grad_shape.1 != case.cols;
    }
    f
}

/// What a call wrote: the loss, the lse and the gradient (or the logits it overwrote).
struct Written<T: Elem> {
    result: Result<(), Error>,
    loss: Vec<T::Stat>,
    lse: Vec<T::Stat>,
    grad: Vec<T>,
}

/// Runs `call` in `style` over `logits` (the case's logits in type `T`), with `lse_in` as
/// the saved logsumexp of a backward call and every output filled with the sentinel.
fn run<T: Elem>(
    call: &LossCall,
    style: Style,
    logits: &[T],
    lse_in: &[T::Stat],
    narrow: Option<bool>,
) -> Written<T> {
    let case = &call.case;
    let (rows, cols) = (case.rows, case.cols);
    let options = case.options();
    let narrowed_i32: Vec<i32>;
    let narrowed_u32: Vec<u32>;
    // A soft target or gradient view of a wrong shape may not even be a view; its error is
    // then the call's verdict.
    let targets = match (&case.targets, narrow) {
        (CaseTargets::Soft { probs, stride }, _) => {
            Rows::new(probs, call.soft_shape.0, call.soft_shape.1, *stride).map(Targets::Soft)
        }
        (CaseTargets::Hard(_), Some(true))
            if call.hard.iter().all(|&y| i32::try_from(y).is_ok()) =>
        {
            narrowed_i32 = call.hard.iter().map(|&y| y as i32).collect();
            Ok(Targets::I32(&narrowed_i32))
        }
        (CaseTargets::Hard(_), Some(false))
            if call.hard.iter().all(|&y| u32::try_from(y).is_ok()) =>
        {
            narrowed_u32 = call.hard.iter().map(|&y| y as u32).collect();
            Ok(Targets::U32(&narrowed_u32))
        }
        (CaseTargets::Hard(_), _) => Ok(Targets::I64(&call.hard)),
    };
    let mut loss = vec![sentinel::<T::Stat>(); call.loss_len];
    let mut lse = vec![sentinel::<T::Stat>(); call.lse_len.unwrap_or(0)];
    let lse_out = call.lse_len.map(|_| &mut lse[..]);
    let dloss = vec![T::Stat::from_f64(f64::from(case.grad_scale)); call.dloss_len];
    let (g_rows, g_cols, g_stride) = call.grad_shape;
    let g_len = if g_rows == 0 {
        0
    } else {
        (g_rows - 1) * g_stride + g_cols
    };
    let mut grad = vec![T::from_f32(PAD); g_len];
    let mut in_place = logits.to_vec();
    let x = Rows::new(logits, rows, cols, case.stride).unwrap();
    let x_mut = RowsMut::new(&mut in_place, rows, cols, case.stride).unwrap();
    let grad_view = RowsMut::new(&mut grad, g_rows, g_cols, g_stride);
    let result = (|| match style {
        Style::Forward => xent::cross_entropy(x, targets?, &options, &mut loss, lse_out),
        Style::Grad => {
            xent::cross_entropy_grad(x, targets?, &options, &mut loss, grad_view?, lse_out)
        }
        Style::GradInPlace => {
            xent::cross_entropy_grad_in_place(x_mut, targets?, &options, &mut loss, lse_out)
        }
        Style::Backward => {
            xent::cross_entropy_backward(x, targets?, &options, lse_in, &dloss, grad_view?)
        }
        Style::BackwardInPlace => {
            xent::cross_entropy_backward_in_place(x_mut, targets?, &options, lse_in, &dloss)
        }
    })();
    let grad = match style {
        Style::GradInPlace | Style::BackwardInPlace => in_place,
        Style::Grad | Style::Backward => grad,
        Style::Forward => Vec::new(),
    };
    Written {
        result,
        loss,
        lse,
        grad,
    }
}

/// `n` saved lse values for a backward call: `lse`'s where it has them, NaN beyond.
fn saved_lse<S: Stat>(n: usize, lse: &[f32]) -> Vec<S> {
    (0..n)
        .map(|i| S::from_f64(f64::from(lse.get(i).copied().unwrap_or(f32::NAN))))
        .collect()
}

fn check_loss<T: Elem>(call: &LossCall, style: Style, faults: &Faults) {
    let case = &call.case;
    let logits: Vec<T> = case.logits.iter().map(|&v| T::from_f32(v)).collect();
    if faults.any() {
        let lse_in = saved_lse::<T::Stat>(call.backward_lse_len, &[]);
        let w = run(call, style, &logits, &lse_in, call.narrow_targets);
        assert_verdict(&w.result, faults, &format!("{style:?}"));
        let untouched = |v: &[T::Stat], what| {
            assert_same(v, &vec![sentinel::<T::Stat>(); v.len()], what);
        };
        untouched(&w.loss, "loss of a refused call");
        untouched(&w.lse, "lse of a refused call");
        let want_grad = match style {
            Style::GradInPlace | Style::BackwardInPlace => logits.clone(),
            Style::Grad | Style::Backward => vec![T::from_f32(PAD); w.grad.len()],
            Style::Forward => Vec::new(),
        };
        assert_same(&w.grad, &want_grad, "gradient buffer of a refused call");
        return;
    }

    // A valid call. The f32 case of the logits as this type holds them goes through every
    // style against the oracle.
    // (check_case wants PAD in the padding, which a 16-bit type does not hold.)
    let mut case32 = case.clone();
    case32.logits = common::padded(case.rows, case.cols, case.stride, |i, c| {
        logits[i * case.stride + c].to_f64() as f32
    });
    if size_of::<T::Stat>() == size_of::<f64>() {
        if within_f32_range(case) {
            check_f64(case);
        }
        return;
    }
    if within_f32_range(&case32) {
        common::check_case(&case32);
    }
    let mut loss32 = vec![0.0; case.reduction.loss_len(case.rows)];
    let mut lse32 = vec![0.0; case.rows];
    let targets = case32.targets();
    xent::cross_entropy(
        case32.logits_view(),
        targets,
        &case32.options(),
        &mut loss32,
        Some(&mut lse32),
    )
    .expect("a valid f32 call");
    if call.narrow_targets.is_some() && !loss_faults(call, Style::Forward).any() {
        let narrow = run::<f32>(
            call,
            Style::Forward,
            &case32.logits,
            &[],
            call.narrow_targets,
        );
        let wide = run::<f32>(call, Style::Forward, &case32.logits, &[], None);
        narrow.result.as_ref().expect("valid i32/u32 targets");
        assert_same(&narrow.loss, &wide.loss, "loss with i32/u32 targets vs i64");
    }
    if size_of::<T>() == size_of::<f32>() {
        return; // check_case covered f32
    }
    // Every style on 16-bit logits gives the f32 results on the widened logits, each
    // output rounded once (the padding, PAD in both, rounds to itself).
    let lse_in = saved_lse::<T::Stat>(case.rows, &lse32);
    for style in STYLES.into_iter().filter(|&s| !loss_faults(call, s).any()) {
        let got = run(call, style, &logits, &lse_in, call.narrow_targets);
        let want = run::<f32>(call, style, &case32.logits, &lse32, call.narrow_targets);
        got.result.as_ref().expect("a valid call");
        let stat = |v: &[f32]| {
            v.iter()
                .map(|&v| T::Stat::from_f64(f64::from(v)))
                .collect::<Vec<_>>()
        };
        assert_same_values(&got.loss, &stat(&want.loss), "loss vs f32");
        assert_same_values(&got.lse, &stat(&want.lse), "lse vs f32");
        let rounded: Vec<T> = want.grad.iter().map(|&v| T::from_f32(v)).collect();
        assert_same_values(&got.grad, &rounded, "gradient vs f32 rounded");
    }
}

/// Whether every value the f32 computation of `case` meets stays far inside f32's range
/// (and soft targets are probabilities), so that its results can be held to the f64
/// oracle's within docs/semantics.md's tolerances.
///
/// Valid input can exceed it, for instance z_loss·lse² or a mean's g/W beyond 3.4e38: the
/// f32 result is then ±∞ or NaN where the f64 oracle is finite, which no tolerance covers.
/// Such calls are still run in every style and checked for their verdict, for bit-identical
/// results across styles and types, and for untouched padding; only the oracle comparison
/// is left out. `l` bounds |lse − x'| and |lse| of every row with a finite value.
fn within_f32_range(case: &Case) -> bool {
    const LIMIT: f64 = 1e30;
    // The largest |x'| of a value that enters a sum: a softcap maps ±∞ to ±c.
    let cap = f64::from(case.softcap);
    let bound = case
        .logits
        .iter()
        .filter(|v| !v.is_nan())
        .fold(0.0f64, |m, &v| {
            let v = f64::from(v).abs();
            m.max(if cap > 0.0 {
                v.min(cap)
            } else if v.is_finite() {
                v
            } else {
                0.0
            })
        });
    let l = 2.0 * bound + 20.0;
    let w = case.max_weight();
    // docs/semantics.md's gradient tolerance does not grow with Σ_c t_c: it holds for rows of
    // probabilities, whose terms p·Σt − t_c do not cancel beyond f32's rounding of 1.
    if let CaseTargets::Soft { probs, stride } = &case.targets {
        let distributions = (0..case.rows).all(|i| {
            let row = &probs[i * stride..i * stride + case.cols];
            let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
            row.iter().all(|&v| v >= 0.0) && (sum - 1.0).abs() < 1e-5
        });
        if !distributions {
            return false;
        }
    }
    let t = 1.0;
    let (total_weight, counted) = case.divisors();
    let g = f64::from(case.grad_scale).abs();
    let z = f64::from(case.z_loss);
    let n = (case.rows * case.cols) as f64 + 1.0;
    let mean_scale = match case.reduction {
        Reduction::Mean if total_weight > 0.0 => g / total_weight.min(counted),
        _ => g,
    };
    // A grad_scale below 1e-30 puts docs/semantics.md's gradient tolerance under f32's subnormal spacing
    // (1.4e-45), where no f32 result can be that close.
    // docs/semantics.md's absolute gradient tolerance scales with |s|·max(1, max w), the size of the
    // cross-entropy part; the z-loss part s_z·2z·lse·p must not dwarf it, or the rounding
    // of the larger term (cancelling against p − t, or through a softcap's 1 − (x'/c)²)
    // exceeds the bound. PaLM's z = 1e-4 keeps 2z·|lse| far below 1.
    // And the oracle itself: beyond |x'| ≈ 1e9 its f64 lse = m + ln Σ loses ln Σ's last
    // digits (at m = 1e30 all of it), and p = exp(x' − lse) with them.
    // A softcap's own f32 rounding (≈ 2.5 ulp of |x'| ≤ c, which the (1 + c/2) absolute
    // term covers for p ≤ 1) lands in the exponent of p = exp(x' − lse): beyond c ≈ 1e6 it
    // is no longer small there, and p (from a saved lse) can exceed 1 by e^(that error).
    (g == 0.0 || g > 1e-30)
        && bound <= 1e9
        && cap <= 1e6
        && 2.0 * z * l <= 1.0
        && n * t * w * l + n * z * l * l < LIMIT
        && mean_scale * n * t * w * (1.0 + 2.0 * z * l) < LIMIT
        && t.is_finite()
}

/// f64 logits (the case's, exactly): loss, lse and gradient, fused and from the saved lse,
/// within a millionth of docs/semantics.md's f32 tolerances of the oracle.
fn check_f64(case: &Case) {
    const SCALE: f64 = 1e-6;
    let r = case.reference();
    let close = |got: f64, want: f64, tol: f64| {
        if want.is_nan() {
            got.is_nan()
        } else if want.is_infinite() {
            got == want
        } else {
            (got - want).abs() <= tol * SCALE
        }
    };
    let x: Vec<f64> = case.logits.iter().map(|&v| f64::from(v)).collect();
    let view = Rows::new(&x, case.rows, case.cols, case.stride).unwrap();
    let options = case.options();
    let loss_tol = common::loss_tolerances(case, &r);
    let mut loss = vec![0.0; case.reduction.loss_len(case.rows)];
    let mut lse = vec![0.0; case.rows];
    let mut grad = vec![0.0; x.len()];
    let grad_view = RowsMut::new(&mut grad, case.rows, case.cols, case.stride).unwrap();
    xent::cross_entropy_grad(
        view,
        case.targets(),
        &options,
        &mut loss,
        grad_view,
        Some(&mut lse),
    )
    .expect("a valid f64 call");
    for (k, &got) in loss.iter().enumerate() {
        assert!(
            close(got, r.loss[k], loss_tol[k]),
            "f64 loss[{k}] = {got}, oracle {}",
            r.loss[k]
        );
    }
    for (i, &got) in lse.iter().enumerate() {
        let m = if r.row_max[i].is_finite() {
            r.row_max[i].abs()
        } else {
            0.0
        };
        let tol = 1e-6 * (1.0 + m) + 1e-6 * r.lse[i].abs();
        assert!(
            close(got, r.lse[i], tol),
            "f64 lse[{i}] = {got}, oracle {}",
            r.lse[i]
        );
    }
    let dloss = vec![f64::from(case.grad_scale); loss.len()];
    let mut back = vec![0.0; x.len()];
    let back_view = RowsMut::new(&mut back, case.rows, case.cols, case.stride).unwrap();
    xent::cross_entropy_backward(view, case.targets(), &options, &lse, &dloss, back_view)
        .expect("a valid f64 backward call");
    for (what, g) in [("fused", &grad), ("backward", &back)] {
        for i in 0..case.rows {
            for c in 0..case.cols {
                let (got, want) = (g[i * case.stride + c], r.grad[i * case.cols + c]);
                // The oracle's own p = exp(x − lse) is off by ~ε·|m| (its lse's ulp).
                let m = r.row_max[i].abs();
                let oracle = if m.is_finite() {
                    4.0 * f64::EPSILON * (1.0 + m)
                } else {
                    0.0
                };
                let s = r.ce_scale.abs().max(r.z_scale.abs());
                let s = if s.is_finite() { s } else { 0.0 };
                let tol = common::grad_tolerance(case, &r, want)
                    + oracle * (want.abs() + s * case.max_weight()) / SCALE;
                assert!(
                    close(got, want, tol),
                    "f64 {what} grad[{i}][{c}] = {got}, oracle {want}"
                );
            }
        }
    }
}

/// softmax or log_softmax, into a separate buffer or in place.
fn normalize_call(g: &mut Gen<'_>) {
    let rows = g.below(6);
    let cols = if g.one_in(16) { 1000 } else { 1 + g.below(67) };
    let stride = cols + g.below(3);
    let x = common::padded(rows, cols, stride, |_, _| g.logit());
    let y_cols = g.len_near(cols, 12);
    let y_shape = (g.len_near(rows, 12), y_cols, y_cols + g.below(3));
    let call = Normalize {
        rows,
        cols,
        stride,
        y_shape,
        log: g.one_in(2),
        in_place: g.one_in(3),
    };
    match g.below(4) {
        0 => check_normalize::<f32>(&call, &x),
        1 => check_normalize::<f64>(&call, &x),
        2 => check_normalize::<bf16>(&call, &x),
        _ => check_normalize::<f16>(&call, &x),
    }
}

/// A softmax or log_softmax call.
struct Normalize {
    rows: usize,
    cols: usize,
    stride: usize,
    y_shape: (usize, usize, usize),
    log: bool,
    in_place: bool,
}

impl Normalize {
    /// Runs the call over `x` (this call's shape), returning the verdict and the buffer
    /// written (the output filled with PAD first, or the logits overwritten in place).
    fn run<T: Elem>(&self, x: &[T]) -> (Result<(), Error>, Vec<T>) {
        let (rows, cols, stride) = (self.rows, self.cols, self.stride);
        if self.in_place {
            let mut buf = x.to_vec();
            let view = RowsMut::new(&mut buf, rows, cols, stride).unwrap();
            let result = if self.log {
                xent::log_softmax_in_place(view)
            } else {
                xent::softmax_in_place(view)
            };
            return (result, buf);
        }
        let (y_rows, y_cols, y_stride) = self.y_shape;
        let len = if y_rows == 0 {
            0
        } else {
            (y_rows - 1) * y_stride + y_cols
        };
        let mut y = vec![T::from_f32(PAD); len];
        let x = Rows::new(x, rows, cols, stride).unwrap();
        let result = RowsMut::new(&mut y, y_rows, y_cols, y_stride).and_then(|y| {
            if self.log {
                xent::log_softmax(x, y)
            } else {
                xent::softmax(x, y)
            }
        });
        (result, y)
    }

    /// The stride of the buffer `run` returns.
    fn out_stride(&self) -> usize {
        if self.in_place {
            self.stride
        } else {
            self.y_shape.2
        }
    }
}

fn check_normalize<T: Elem>(call: &Normalize, x32: &[f32]) {
    let x: Vec<T> = x32.iter().map(|&v| T::from_f32(v)).collect();
    if std::env::var_os("XENT_FUZZ_DEBUG").is_some() {
        eprintln!(
            "softmax {} {}x{} stride {} in place {}: {x32:?}",
            call.log, call.rows, call.cols, call.stride, call.in_place
        );
    }
    let faults = Faults {
        shape: !call.in_place && (call.y_shape.0, call.y_shape.1) != (call.rows, call.cols),
        ..Faults::default()
    };
    let (result, out) = call.run(&x);
    assert_verdict(&result, &faults, "softmax");
    if faults.any() {
        assert_same(
            &out,
            &vec![T::from_f32(PAD); out.len()],
            "output of a refused softmax",
        );
        return;
    }
    let (rows, cols) = (call.rows, call.cols);
    let s = call.out_stride();
    // Padding (PAD, or the logits' own PAD in place) is never written.
    for (k, v) in out.iter().enumerate() {
        if k % s >= cols {
            assert_eq!(
                v.bits(),
                T::from_f32(PAD).bits(),
                "softmax wrote padding element {k}"
            );
        }
    }
    if size_of::<T>() == size_of::<u16>() {
        // 16-bit: the f32 call on the widened values, each output rounded once.
        let widened: Vec<f32> = x.iter().map(|&v| v.to_f64() as f32).collect();
        let (_, want) = call.run::<f32>(&widened);
        let rounded: Vec<T> = want.iter().map(|&v| T::from_f32(v)).collect();
        assert_same_values(&out, &rounded, "16-bit softmax vs f32 rounded");
        return;
    }
    let packed: Vec<f64> = (0..rows)
        .flat_map(|i| (0..cols).map(move |c| (i, c)))
        .map(|(i, c)| x[i * call.stride + c].to_f64())
        .collect();
    let want = if call.log {
        xent_oracle::log_softmax(&packed, rows, cols)
    } else {
        xent_oracle::softmax(&packed, rows, cols)
    };
    // f64 is held to a millionth of f32's tolerance.
    let scale = if size_of::<T>() == size_of::<f64>() {
        1e-6
    } else {
        1.0
    };
    for i in 0..rows {
        let row = &packed[i * cols..(i + 1) * cols];
        let m = row
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, &v| m.max(v.abs()));
        if !call.log && m > 1e9 {
            // The oracle's p = exp(x − lse) is no better than ulp(lse) there (see
            // within_f32_range); log_softmax's tolerance grows with |m| and covers it.
            continue;
        }
        for c in 0..cols {
            let (got, want) = (out[i * s + c].to_f64(), want[i * cols + c]);
            // Plus the oracle's own error: its p = exp(x − lse) is off by ~ε·|m|.
            let tol = scale * (1e-5 * want.abs() + if call.log { 1e-6 * (1.0 + m) } else { 1e-6 })
                + 4.0 * f64::EPSILON * (1.0 + m) * (1.0 + want.abs());
            let ok = if want.is_nan() {
                got.is_nan()
            } else if want.is_infinite() {
                got == want
            } else if want.abs() > f64::from(f32::MAX) && got.is_infinite() {
                // Beyond f32's range the f32 result may overflow to the same infinity.
                got.signum() == want.signum() && scale == 1.0
            } else {
                (got - want).abs() <= tol
            };
            assert!(
                ok,
                "softmax (log {}) [{i}][{c}] = {got}, oracle {want}",
                call.log
            );
        }
    }
}

/// A whole batch computed as 1 to 3 shards of its vocabulary: `shard_stats` on each, the
/// rows merged, then `shard_finish` on each; against the oracle of the unsharded batch.
fn shard_calls(g: &mut Gen<'_>) {
    let rows = g.below(5);
    let cols = 1 + g.below(67);
    let logits = common::padded(rows, cols, cols, |_, _| g.logit());
    let (reduction, ignore_index, [label_smoothing, z_loss, softcap, grad_scale], weights) =
        options(g, cols);
    let targets = hard_targets(g, rows, cols, ignore_index);
    let case = Case {
        rows,
        cols,
        stride: cols,
        logits,
        targets: CaseTargets::Hard(targets.clone()),
        weights,
        reduction,
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        grad_scale,
    };
    let options = case.options();

    // Uneven slices, each in its own padded buffer; now and then a shard description that
    // reaches past the vocabulary.
    let mut cuts: Vec<usize> = (0..g.below(3)).map(|_| 1 + g.below(cols)).collect();
    cuts.extend([0, cols]);
    cuts.sort_unstable();
    cuts.dedup();
    let slices: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let total_cols = if g.one_in(16) { cols - 1 } else { cols };
    // Options and targets are checked against the vocabulary the call is told of.
    let mut faults = Faults::default();
    faults.check_options(&options, total_cols);
    faults.check_targets(&targets, ignore_index, total_cols);
    let slice_strides: Vec<usize> = slices.iter().map(|&(a, b)| b - a + g.below(3)).collect();
    let buffers: Vec<Vec<f32>> = slices
        .iter()
        .zip(&slice_strides)
        .map(|(&(a, b), &st)| common::padded(rows, b - a, st, |i, c| case.logits[i * cols + a + c]))
        .collect();
    let view = |k: usize| {
        Rows::new(
            &buffers[k],
            rows,
            slices[k].1 - slices[k].0,
            slice_strides[k],
        )
        .unwrap()
    };
    let shard = |k: usize| Shard {
        class_offset: slices[k].0,
        total_cols,
    };
    let past_end = |k: usize| slices[k].1 > total_cols;
    let soft_probs = vec![0.5f32; rows * cols];

    // 1. The summaries of each slice.
    let sentinel_row = ShardRow {
        max: PAD,
        sumexp: PAD,
        target_logit: PAD,
        smooth_sum: PAD,
    };
    let mut summaries = Vec::new();
    for k in 0..slices.len() {
        let out_len = g.len_near(rows, 16);
        let soft = g.one_in(16);
        let mut f = faults;
        f.shape |= out_len != rows || past_end(k) || soft;
        let mut out = vec![sentinel_row; out_len];
        let targets_arg = if soft {
            Targets::Soft(
                Rows::packed(
                    &soft_probs[..rows * (slices[k].1 - slices[k].0)],
                    slices[k].1 - slices[k].0,
                )
                .unwrap_or(Rows::new(&[], 0, 1, 1).unwrap()),
            )
        } else {
            Targets::I64(&targets)
        };
        let result = xent::shard_stats(view(k), shard(k), targets_arg, &options, &mut out);
        assert_verdict(&result, &f, "shard_stats");
        if result.is_err() {
            assert_same(
                &out,
                &vec![sentinel_row; out_len],
                "summaries of a refused shard_stats",
            );
            return;
        }
        summaries.push(out);
    }

    // 2. The merge, with each pair's operands one way and the other: the same bits (merge
    // is commutative, which an all-reduce needs; it is not associative in f32, so the
    // order of the pairs is kept).
    let mut merged = vec![ShardRow::EMPTY; rows];
    let mut swapped = vec![ShardRow::EMPTY; rows];
    for s in &summaries {
        xent::merge_shard_rows(s, &mut merged).expect("rows of one length");
        let mut other = s.clone();
        xent::merge_shard_rows(&swapped, &mut other).expect("rows of one length");
        swapped = other;
    }
    assert_same(&merged, &swapped, "merge with swapped operands");
    let mut short = vec![sentinel_row; rows + 1];
    let refused = xent::merge_shard_rows(&merged, &mut short);
    assert_verdict(
        &refused,
        &Faults {
            shape: true,
            ..Faults::default()
        },
        "merge lengths",
    );
    assert_same(
        &short,
        &vec![sentinel_row; rows + 1],
        "inout of a refused merge",
    );

    // 3. The finish of each slice: loss and lse the same bits on every slice, and the
    // slices' gradients together the gradient of the whole rows.
    let loss_rows = reduction.loss_len(rows);
    let mut grad = vec![f32::NAN; rows * cols];
    let mut have_grad = vec![false; slices.len()];
    let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
    for k in 0..slices.len() {
        let width = slices[k].1 - slices[k].0;
        let merged_len = g.len_near(rows, 16);
        let merged_arg: Vec<ShardRow> = (0..merged_len)
            .map(|i| merged.get(i).copied().unwrap_or(ShardRow::EMPTY))
            .collect();
        let loss_len = g.len_near(loss_rows, 16);
        let lse_len = g.len_near(rows, 16);
        let style = g.below(3);
        let mut f = faults;
        f.shape |= merged_len != rows || loss_len != loss_rows || lse_len != rows || past_end(k);
        let mut loss = vec![PAD; loss_len];
        let mut lse = vec![PAD; lse_len];
        let st = width + g.below(2);
        let mut out = common::padded(rows, width, st, |_, _| PAD);
        let mut in_place = buffers[k].clone();
        let result = match style {
            0 => xent::shard_finish(
                view(k),
                shard(k),
                &targets[..],
                &options,
                &merged_arg,
                &mut loss,
                Some(&mut lse),
            ),
            1 => xent::shard_finish_grad(
                view(k),
                shard(k),
                &targets[..],
                &options,
                &merged_arg,
                &mut loss,
                RowsMut::new(&mut out, rows, width, st).unwrap(),
                Some(&mut lse),
            ),
            _ => xent::shard_finish_grad_in_place(
                RowsMut::new(&mut in_place, rows, width, slice_strides[k]).unwrap(),
                shard(k),
                &targets[..],
                &options,
                &merged_arg,
                &mut loss,
                Some(&mut lse),
            ),
        };
        assert_verdict(&result, &f, "shard_finish");
        if result.is_err() {
            assert_same(
                &loss,
                &vec![PAD; loss_len],
                "loss of a refused shard_finish",
            );
            assert_same(&lse, &vec![PAD; lse_len], "lse of a refused shard_finish");
            assert_same(
                &out,
                &common::padded(rows, width, st, |_, _| PAD),
                "grad of a refused shard_finish",
            );
            assert_same(
                &in_place,
                &buffers[k],
                "logits of a refused in-place shard_finish",
            );
            return;
        }
        match &first {
            Some((l, e)) => {
                assert_same(&loss, l, "loss on another shard");
                assert_same(&lse, e, "lse on another shard");
            }
            None => first = Some((loss, lse)),
        }
        let (written, ws) = match style {
            1 => (&out, st),
            2 => (&in_place, slice_strides[k]),
            _ => continue,
        };
        common::assert_padding_intact(written, rows, width, ws, "shard gradient");
        have_grad[k] = true;
        for i in 0..rows {
            for c in 0..width {
                grad[i * cols + slices[k].0 + c] = written[i * ws + c];
            }
        }
    }

    // 4. Against the oracle of the unsharded batch.
    if !within_f32_range(&case) {
        return;
    }
    let r = case.reference();
    let (loss, lse) = first.expect("at least one slice");
    let tolerances = common::loss_tolerances(&case, &r);
    for (k, &got) in loss.iter().enumerate() {
        assert!(
            common::agrees(got, r.loss[k], tolerances[k]),
            "sharded loss[{k}] = {got}, oracle {}",
            r.loss[k]
        );
    }
    for (i, &got) in lse.iter().enumerate() {
        let m = if r.row_max[i].is_finite() {
            r.row_max[i].abs()
        } else {
            0.0
        };
        let tol = 1e-6 * (1.0 + m) + 1e-6 * r.lse[i].abs();
        assert!(
            common::agrees(got, r.lse[i], tol),
            "sharded lse[{i}] = {got}, oracle {}",
            r.lse[i]
        );
    }
    for (k, &(a, b)) in slices.iter().enumerate().filter(|&(k, _)| have_grad[k]) {
        let _ = k;
        for i in 0..rows {
            for c in a..b {
                let (got, want) = (grad[i * cols + c], r.grad[i * cols + c]);
                let tol = common::grad_tolerance(&case, &r, want);
                assert!(
                    common::agrees(got, want, tol),
                    "sharded grad[{i}][{c}] = {got}, oracle {want}"
                );
            }
        }
    }
}

/// A fused linear-head call as drawn: the values in f32, the shapes (some possibly wrong).
struct Head<'a> {
    rows: usize,
    dim: usize,
    classes: usize,
    hidden: &'a [f32],
    h_stride: usize,
    weight: &'a [f32],
    w_cols: usize,
    w_stride: usize,
    bias: Option<&'a [f32]>,
    targets: &'a [i64],
    next_token: Option<usize>,
    options: &'a Options<'a>,
    gh_shape: Option<(usize, usize)>,
    gw_shape: Option<(usize, usize)>,
    gb_len: Option<usize>,
    loss_len: usize,
    lse_len: Option<usize>,
    chunking: Chunking,
}

/// What a linear-head call returned and wrote (every output PAD before the call).
struct LinearOut<T> {
    result: Result<(), Error>,
    loss: Vec<f32>,
    lse: Vec<f32>,
    gh: Vec<T>,
    gw: Vec<T>,
    gb: Vec<T>,
}

impl Head<'_> {
    /// Runs the call with the head's values in type `T`.
    fn run<T: Elem + Logit<Stat = f32>>(&self) -> LinearOut<T> {
        let to = |v: &[f32]| -> Vec<T> { v.iter().map(|&x| T::from_f32(x)).collect() };
        let (h, w, b) = (to(self.hidden), to(self.weight), self.bias.map(to));
        let pads =
            |shape: Option<(usize, usize)>| vec![T::from_f32(PAD); shape.map_or(0, |(r, c)| r * c)];
        let mut out = LinearOut {
            result: Ok(()),
            loss: vec![PAD; self.loss_len],
            lse: vec![PAD; self.lse_len.unwrap_or(0)],
            gh: pads(self.gh_shape),
            gw: pads(self.gw_shape),
            gb: vec![T::from_f32(PAD); self.gb_len.unwrap_or(0)],
        };
        out.result = (|| {
            let head = LinearHead {
                hidden: Rows::new(&h, self.rows, self.dim, self.h_stride)?,
                weight: Rows::new(&w, self.classes, self.w_cols, self.w_stride)?,
                bias: b.as_deref(),
                next_token: self.next_token,
            };
            let grads = LinearGrads {
                hidden: rows_mut(&mut out.gh, self.gh_shape)?,
                weight: rows_mut(&mut out.gw, self.gw_shape)?,
                bias: self.gb_len.map(|_| &mut out.gb[..]),
            };
            let lse = self.lse_len.map(|_| &mut out.lse[..]);
            xent::linear_cross_entropy_chunked(
                head,
                self.targets,
                self.options,
                &mut out.loss,
                grads,
                lse,
                self.chunking,
            )
        })();
        out
    }
}

/// `v` as a packed gradient view of `shape`, when one is asked for.
fn rows_mut<T>(
    v: &mut [T],
    shape: Option<(usize, usize)>,
) -> Result<Option<RowsMut<'_, T>>, Error> {
    shape.map(|(r, c)| RowsMut::new(v, r, c, c)).transpose()
}

/// The fused linear head against the composition it replaces: logits H·Wᵀ + b through the
/// oracle, then ∂H = G·W, ∂W = Gᵀ·H and ∂b = Σ_rows G in f64.
fn linear_call(g: &mut Gen<'_>) {
    match g.below(3) {
        0 => check_linear::<f32>(g),
        1 => check_linear::<bf16>(g),
        _ => check_linear::<f16>(g),
    }
}

/// A linear-head value: a multiple of 1/8 in [−2, 2] (so every logit and every product is
/// exact in f32, bf16 and f16, and the GEMMs' order cannot round), or now and then any
/// value, which leaves the oracle comparison out.
fn head_value(g: &mut Gen<'_>, exact: &mut bool) -> f32 {
    if g.one_in(32) {
        *exact = false;
        g.logit()
    } else {
        (g.below(33) as f32 - 16.0) / 8.0
    }
}

fn check_linear<T: Elem + Logit<Stat = f32>>(g: &mut Gen<'_>) {
    let rows = g.below(5);
    let dim = 1 + g.below(6);
    let classes = if g.one_in(16) { 0 } else { 1 + g.below(40) };
    let mut exact = true;
    let h_stride = dim + g.below(2);
    let hidden = common::padded(rows, dim, h_stride, |_, _| head_value(g, &mut exact));
    let w_cols = g.len_near(dim, 24);
    let w_stride = w_cols + g.below(2);
    let weight = common::padded(classes, w_cols, w_stride, |_, _| head_value(g, &mut exact));
    let bias: Option<Vec<f32>> = g.one_in(2).then(|| {
        (0..g.len_near(classes, 24))
            .map(|_| {
                if g.one_in(16) {
                    f32::NEG_INFINITY
                } else {
                    head_value(g, &mut exact)
                }
            })
            .collect()
    });
    let (reduction, ignore_index, [label_smoothing, z_loss, softcap, grad_scale], weights) =
        options(g, classes);
    let t_len = g.len_near(rows, 24);
    let targets = hard_targets(g, t_len, classes, ignore_index);
    let options = Options {
        reduction,
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        class_weights: weights.as_deref(),
        grad_scale,
    };
    let gh_shape = g
        .one_in(2)
        .then(|| (g.len_near(rows, 24), g.len_near(dim, 24)));
    let gw_shape = g
        .one_in(2)
        .then(|| (g.len_near(classes, 24), g.len_near(dim, 24)));
    let gb_len = g.one_in(2).then(|| g.len_near(classes, 24));
    let loss_len = g.len_near(reduction.loss_len(rows), 24);
    let lse_len = g.one_in(2).then(|| g.len_near(rows, 24));
    let chunking = if g.one_in(2) {
        Chunking::Auto
    } else {
        Chunking::Classes(1 + g.below(classes.max(1)))
    };
    // Next-token prediction: sequences of `len` positions; the scored targets are the
    // next tokens, ignore_index at each sequence's last position.
    let next_token = g.one_in(4).then(|| g.below(rows + 2));
    let tiles = next_token.is_none_or(|len| len > 0 && rows.is_multiple_of(len));
    let scored: Vec<i64> = match next_token {
        Some(len) if tiles && targets.len() == rows => (0..rows)
            .map(|i| {
                if (i + 1).is_multiple_of(len) {
                    ignore_index
                } else {
                    targets[i + 1]
                }
            })
            .collect(),
        _ => targets.clone(),
    };

    let mut f = Faults::default();
    f.check_options(&options, classes);
    f.check_targets(&scored, ignore_index, classes);
    f.shape |= !tiles;
    // A weight of no classes may have any number of columns (the core crate's choice: it
    // holds no row whose length could disagree).
    f.shape |=
        targets.len() != rows || (w_cols != dim && classes > 0) || (rows > 0 && classes == 0);
    f.shape |= bias.as_ref().is_some_and(|b| b.len() != classes);
    f.shape |=
        gh_shape.is_some_and(|s| s != (rows, dim)) || gw_shape.is_some_and(|s| s != (classes, dim));
    f.shape |= gb_len.is_some_and(|n| n != classes) || loss_len != reduction.loss_len(rows);
    f.shape |= lse_len.is_some_and(|n| n != rows);

    let head = Head {
        rows,
        dim,
        classes,
        hidden: &hidden,
        h_stride,
        weight: &weight,
        w_cols,
        w_stride,
        bias: bias.as_deref(),
        targets: &targets,
        next_token,
        options: &options,
        gh_shape,
        gw_shape,
        gb_len,
        loss_len,
        lse_len,
        chunking,
    };
    if std::env::var_os("XENT_FUZZ_DEBUG").is_some() {
        eprintln!(
            "rows {rows} dim {dim} classes {classes} w_cols {w_cols} bias {bias:?} targets {targets:?} \
             {options:?} grads {gh_shape:?} {gw_shape:?} {gb_len:?} loss {loss_len} lse {lse_len:?} \
             {chunking:?} next_token {next_token:?}\nhidden {hidden:?}\nweight {weight:?}"
        );
    }
    let out = head.run::<T>();
    assert_verdict(&out.result, &f, "linear_cross_entropy");
    if out.result.is_err() {
        let pad = |v: &[T]| vec![T::from_f32(PAD); v.len()];
        assert_same(
            &out.loss,
            &vec![PAD; out.loss.len()],
            "loss of a refused linear call",
        );
        assert_same(
            &out.lse,
            &vec![PAD; out.lse.len()],
            "lse of a refused linear call",
        );
        assert_same(
            &out.gh,
            &pad(&out.gh),
            "grad_hidden of a refused linear call",
        );
        assert_same(
            &out.gw,
            &pad(&out.gw),
            "grad_weight of a refused linear call",
        );
        assert_same(&out.gb, &pad(&out.gb), "grad_bias of a refused linear call");
        return;
    }
    if size_of::<T>() == size_of::<u16>() {
        // 16-bit heads: the f32 head's results, each gradient rounded once. The head values
        // are multiples of 1/8 (exact in 16 bits) unless one was drawn freely. The 16-bit
        // call runs its GEMMs on packed f32 copies; gemm's summation order follows the
        // strides, so the f32 head must be packed too for the same bits (fuzzer-found: a
        // padded W moved ∂H by an f32 rounding).
        if exact && h_stride == dim && w_stride == w_cols {
            let want = head.run::<f32>();
            // The sign of an exact zero is the gemm crate's to choose (it came out −0 from
            // the f32 call and +0 from the bf16 one for 0·(−1.5)), so zeros compare as +0.
            let zero = |v: T| {
                if v.to_f64() == 0.0 {
                    T::from_f32(0.0)
                } else {
                    v
                }
            };
            let round = |v: &[f32]| v.iter().map(|&x| zero(T::from_f32(x))).collect::<Vec<T>>();
            let out = LinearOut {
                gh: out.gh.iter().map(|&v| zero(v)).collect(),
                gw: out.gw.iter().map(|&v| zero(v)).collect(),
                gb: out.gb.iter().map(|&v| zero(v)).collect(),
                ..out
            };
            assert_same_values(&out.loss, &want.loss, "16-bit head loss vs f32");
            assert_same_values(&out.lse, &want.lse, "16-bit head lse vs f32");
            assert_same_values(
                &out.gh,
                &round(&want.gh),
                "16-bit grad_hidden vs f32 rounded",
            );
            assert_same_values(
                &out.gw,
                &round(&want.gw),
                "16-bit grad_weight vs f32 rounded",
            );
            assert_same_values(&out.gb, &round(&want.gb), "16-bit grad_bias vs f32 rounded");
        }
        return;
    }
    let LinearOut {
        loss, gh, gw, gb, ..
    } = out;
    if !exact {
        return;
    }
    // The logits, exact in f32 (sums of at most 6 products of multiples of 1/8), as a case
    // for the oracle.
    let logits: Vec<f32> = (0..rows)
        .flat_map(|i| (0..classes).map(move |c| (i, c)))
        .map(|(i, c)| {
            let dot: f32 = (0..dim)
                .map(|k| hidden[i * h_stride + k] * weight[c * w_stride + k])
                .sum();
            dot + bias.as_ref().map_or(0.0, |b| b[c])
        })
        .collect();
    let case = Case {
        rows,
        cols: classes,
        stride: classes,
        logits,
        targets: CaseTargets::Hard(scored),
        weights: weights.clone(),
        reduction,
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        grad_scale,
    };
    if !within_f32_range(&case) {
        return;
    }
    let r = case.reference();
    let tolerances = common::loss_tolerances(&case, &r);
    for (k, &got) in loss.iter().enumerate() {
        assert!(
            common::agrees(got, r.loss[k], tolerances[k]),
            "linear loss[{k}] = {got}, oracle {}",
            r.loss[k]
        );
    }
    // Each gradient entry is a sum of products with G: its tolerance is G's tolerance
    // carried through the sum plus f32's accumulation over the terms' magnitudes.
    let g_at = |i: usize, c: usize| r.grad[i * classes + c];
    let g_tol = |i: usize, c: usize| common::grad_tolerance(&case, &r, g_at(i, c));
    let check_sum = |got: f32, terms: &mut dyn Iterator<Item = (f64, f64, f64)>, what: &str| {
        let (mut want, mut tol, mut magnitude) = (0.0, 0.0, 0.0);
        for (gv, gt, factor) in terms {
            want += gv * factor;
            tol += gt * factor.abs();
            magnitude += (gv * factor).abs();
        }
        assert!(
            common::agrees(got, want, tol + 1e-6 * magnitude),
            "{what} = {got}, composition {want}"
        );
    };
    if gh_shape.is_some() {
        for i in 0..rows {
            for d in 0..dim {
                let mut terms = (0..classes)
                    .map(|c| (g_at(i, c), g_tol(i, c), f64::from(weight[c * w_stride + d])));
                check_sum(
                    gh[i * dim + d].to_f64() as f32,
                    &mut terms,
                    &format!("grad_hidden[{i}][{d}]"),
                );
            }
        }
    }
    if gw_shape.is_some() {
        for c in 0..classes {
            for d in 0..dim {
                let mut terms = (0..rows)
                    .map(|i| (g_at(i, c), g_tol(i, c), f64::from(hidden[i * h_stride + d])));
                check_sum(
                    gw[c * dim + d].to_f64() as f32,
                    &mut terms,
                    &format!("grad_weight[{c}][{d}]"),
                );
            }
        }
    }
    if gb_len.is_some() {
        for (c, &got) in gb.iter().enumerate() {
            let mut terms = (0..rows).map(|i| (g_at(i, c), g_tol(i, c), 1.0));
            check_sum(got.to_f64() as f32, &mut terms, &format!("grad_bias[{c}]"));
        }
    }
}
