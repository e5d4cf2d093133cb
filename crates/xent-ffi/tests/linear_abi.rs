//! The fused linear + cross-entropy exports (`xent_linear_cross_entropy_f32`, `_bf16`,
//! `_f16`), called through the rlib exactly as C calls them, give the core crate's
//! `linear_cross_entropy` results bit for bit — loss, lse, ∂H, ∂W and ∂b — the 16-bit ones
//! over the core crate's `bf16` and `f16` views of the same bit patterns: over odd dims (1,
//! 3, 17, 65), several option sets, no bias, a finite bias and one with −∞ entries, strided
//! buffers whose NaN-payload padding must survive, each gradient and `lse` NULL in turn,
//! no rows, and a batch large enough for several vocabulary chunks. Every refused call
//! gets its status and leaves every byte of every buffer as it was (one arena, compared
//! byte for byte), in the header's order of checks. The backward exports
//! (`xent_linear_cross_entropy_backward_<dtype>`) and the `next_token` shift give the core
//! crate's bits too, and refuse a missing or overlapping `lse` or `dloss`.

mod common;

use std::ptr;
use std::sync::{Mutex, PoisonError};

use xent::{LinearGrads, LinearHead, Logit, Reduction, Rows, RowsMut, bf16, f16};
use xent_ffi::{
    XentOptions, XentReduction, XentStatus, xent_linear_cross_entropy_backward_bf16,
    xent_linear_cross_entropy_backward_f16, xent_linear_cross_entropy_backward_f32,
    xent_linear_cross_entropy_bf16, xent_linear_cross_entropy_f16, xent_linear_cross_entropy_f32,
    xent_options_default, xent_set_num_threads,
};

use common::abi::{OptionSet, PAD, Rng, bits, option_sets};

/// The same for the 16-bit formats (a NaN in both).
const PAD16: u16 = 0x7fa5;

/// The elements a `rows × cols` batch with `stride` spans.
fn span(rows: usize, cols: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    }
}

// ---------------------------------------------------------------------------------------
// The three exports behind one interface.

/// The signature the three exports share, over the element type `C` C passes.
type Linear<C> = unsafe extern "C" fn(
    *const C,
    usize,
    usize,
    usize,
    *const C,
    usize,
    usize,
    *const C,
    *const i64,
    usize,
    *const XentOptions,
    *mut f32,
    *mut C,
    usize,
    *mut C,
    usize,
    *mut C,
    *mut f32,
) -> XentStatus;

/// An export: the core crate's element type `T`, the type `C` its values cross the C ABI
/// as (f32 itself, the bits of bf16 and f16), and the function.
struct Abi<T, C> {
    name: &'static str,
    pad: C,
    /// An f32 value rounded to the type (exact for the refusal tests' values).
    round: fn(f32) -> C,
    to_core: fn(C) -> T,
    from_core: fn(T) -> C,
    bits: fn(C) -> u32,
    linear: Linear<C>,
    backward: Backward<C>,
}

const F32: Abi<f32, f32> = Abi {
    name: "f32",
    pad: PAD,
    round: |v| v,
    to_core: |v| v,
    from_core: |v| v,
    bits: f32::to_bits,
    linear: xent_linear_cross_entropy_f32,
    backward: xent_linear_cross_entropy_backward_f32,
};

const BF16: Abi<bf16, u16> = Abi {
    name: "bf16",
    pad: PAD16,
    round: |v| bf16::from_f32(v).to_bits(),
    to_core: bf16::from_bits,
    from_core: bf16::to_bits,
    bits: u32::from,
    linear: xent_linear_cross_entropy_bf16,
    backward: xent_linear_cross_entropy_backward_bf16,
};

const F16: Abi<f16, u16> = Abi {
    name: "f16",
    pad: PAD16,
    round: |v| f16::from_f32(v).to_bits(),
    to_core: f16::from_bits,
    from_core: f16::to_bits,
    bits: u32::from,
    linear: xent_linear_cross_entropy_f16,
    backward: xent_linear_cross_entropy_backward_f16,
};

/// The signature the three backward exports share.
type Backward<C> = unsafe extern "C" fn(
    *const C,
    usize,
    usize,
    usize,
    *const C,
    usize,
    usize,
    *const C,
    *const i64,
    usize,
    *const XentOptions,
    *const f32,
    *const f32,
    *mut C,
    usize,
    *mut C,
    usize,
    *mut C,
) -> XentStatus;

/// The arguments of one call, as C passes them.
struct Args<C> {
    hidden: *const C,
    rows: usize,
    dim: usize,
    hidden_stride: usize,
    weight: *const C,
    classes: usize,
    weight_stride: usize,
    bias: *const C,
    targets: *const i64,
    next_token: usize,
    options: *const XentOptions,
    loss: *mut f32,
    grad_hidden: *mut C,
    grad_hidden_stride: usize,
    grad_weight: *mut C,
    grad_weight_stride: usize,
    grad_bias: *mut C,
    lse: *mut f32,
}

impl<C> Clone for Args<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Args<C> {}

impl<T, C> Abi<T, C> {
    /// Calls the export.
    ///
    /// # Safety
    ///
    /// Every pointer is NULL or valid for what the other arguments describe, or the call
    /// refuses it before any access; the options outlive the call.
    unsafe fn call(&self, a: Args<C>) -> XentStatus {
        // SAFETY: forwarded to the caller.
        unsafe {
            (self.linear)(
                a.hidden,
                a.rows,
                a.dim,
                a.hidden_stride,
                a.weight,
                a.classes,
                a.weight_stride,
                a.bias,
                a.targets,
                a.next_token,
                a.options,
                a.loss,
                a.grad_hidden,
                a.grad_hidden_stride,
                a.grad_weight,
                a.grad_weight_stride,
                a.grad_bias,
                a.lse,
            )
        }
    }
}

impl<T, C: Copy> Abi<T, C> {
    fn bit_vec(&self, values: &[C]) -> Vec<u32> {
        values.iter().map(|&v| (self.bits)(v)).collect()
    }

    /// f32 values (`cols` of every `stride`) rounded to the type, the padding `pad`.
    fn input(&self, values: &[f32], cols: usize, stride: usize) -> Vec<C> {
        values
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                if k % stride < cols {
                    (self.round)(v)
                } else {
                    self.pad
                }
            })
            .collect()
    }

    /// Asserts that every element of `buf` but the first `rows` rows' `cols` (at `stride`)
    /// holds `pad`'s bits.
    fn assert_padding(&self, buf: &[C], rows: usize, cols: usize, stride: usize, what: &str) {
        for (k, &v) in buf.iter().enumerate() {
            if k / stride >= rows || k % stride >= cols {
                assert_eq!(
                    (self.bits)(v),
                    (self.bits)(self.pad),
                    "{what}: element {k} was written"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options.

// ---------------------------------------------------------------------------------------
// Results against the core crate.

/// A layer and batch, in f32 values (rounded to each export's type), strided with PAD.
struct Case {
    name: String,
    rows: usize,
    dim: usize,
    classes: usize,
    hidden_stride: usize,
    weight_stride: usize,
    hidden: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    targets: Vec<i64>,
}

/// The kinds of bias a case has.
#[derive(Debug, Clone, Copy)]
enum Bias {
    None,
    Finite,
    /// Every class `c % 5 == 2` masked with −∞.
    Masked,
}

#[allow(clippy::too_many_arguments, reason = "one case's whole shape")]
fn case(
    rows: usize,
    dim: usize,
    classes: usize,
    hidden_pad: usize,
    weight_pad: usize,
    bias: Bias,
    ignore_index: i64,
    seed: u64,
) -> Case {
    let mut rng = Rng(seed);
    let name =
        format!("{rows}×{dim}·({classes}×{dim})ᵀ, {bias:?} bias, pads {hidden_pad}/{weight_pad}");
    let (hidden_stride, weight_stride) = (dim + hidden_pad, dim + weight_pad);
    let mut strided = |rows: usize, cols: usize, stride: usize, scale: f32| -> Vec<f32> {
        (0..span(rows, cols, stride))
            .map(|k| {
                if k % stride < cols {
                    rng.range(-scale, scale)
                } else {
                    PAD
                }
            })
            .collect()
    };
    let hidden = strided(rows, dim, hidden_stride, 2.0);
    let weight = strided(classes, dim, weight_stride, 0.75);
    let bias = match bias {
        Bias::None => None,
        Bias::Finite => Some((0..classes).map(|_| rng.range(-1.0, 1.0)).collect()),
        Bias::Masked => Some(
            (0..classes)
                .map(|c| {
                    if c % 5 == 2 {
                        f32::NEG_INFINITY
                    } else {
                        rng.range(-1.0, 1.0)
                    }
                })
                .collect(),
        ),
    };
    let targets = (0..rows)
        .map(|i| {
            if i % 4 == 3 {
                ignore_index
            } else {
                rng.below(classes) as i64
            }
        })
        .collect();
    Case {
        name,
        rows,
        dim,
        classes,
        hidden_stride,
        weight_stride,
        hidden,
        weight,
        bias,
        targets,
    }
}

/// The output strides of the gradients (their padding must survive).
fn grad_hidden_stride(dim: usize) -> usize {
    dim + 2
}

fn grad_weight_stride(dim: usize) -> usize {
    dim + 1
}

/// Which outputs a call asks for.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    hidden: bool,
    weight: bool,
    bias: bool,
    lse: bool,
}

/// Every subset of the gradients with `lse`, then all and none of them without it.
fn wanted() -> Vec<Wanted> {
    let mut out: Vec<Wanted> = (0..8)
        .map(|m| Wanted {
            hidden: m & 1 != 0,
            weight: m & 2 != 0,
            bias: m & 4 != 0,
            lse: true,
        })
        .collect();
    for all in [true, false] {
        out.push(Wanted {
            hidden: all,
            weight: all,
            bias: all,
            lse: false,
        });
    }
    out
}

/// What a call wrote, as bits: the elements of each output (the padding excluded).
#[derive(Debug, PartialEq, Eq)]
struct Outputs {
    loss: Vec<u32>,
    lse: Option<Vec<u32>>,
    grad_hidden: Option<Vec<u32>>,
    grad_weight: Option<Vec<u32>>,
    grad_bias: Option<Vec<u32>>,
}

/// The elements (not the padding) of a strided buffer.
fn elements<V: Copy>(buf: &[V], rows: usize, cols: usize, stride: usize) -> Vec<V> {
    (0..rows)
        .flat_map(|i| buf[i * stride..i * stride + cols].iter().copied())
        .collect()
}

/// The core crate's results, on the case's values rounded to `T`.
fn core_outputs<T: Logit<Stat = f32>, C: Copy>(
    abi: &Abi<T, C>,
    c: &Case,
    set: &OptionSet,
    want: Wanted,
) -> Outputs {
    let (rows, dim, classes) = (c.rows, c.dim, c.classes);
    let core = |v: &[f32], cols: usize, stride: usize| -> Vec<T> {
        abi.input(v, cols, stride)
            .into_iter()
            .map(abi.to_core)
            .collect()
    };
    let hidden = core(&c.hidden, dim, c.hidden_stride);
    let weight = core(&c.weight, dim, c.weight_stride);
    let bias = c.bias.as_ref().map(|b| core(b, classes, classes.max(1)));
    let head = LinearHead {
        hidden: Rows::new(&hidden, rows, dim, c.hidden_stride).unwrap(),
        weight: Rows::new(&weight, classes, dim, c.weight_stride).unwrap(),
        bias: bias.as_deref(),
        next_token: None,
    };
    let zero = (abi.to_core)((abi.round)(0.0));
    let (ghs, gws) = (grad_hidden_stride(dim), grad_weight_stride(dim));
    let mut gh = vec![zero; span(rows, dim, ghs)];
    let mut gw = vec![zero; span(classes, dim, gws)];
    let mut gb = vec![zero; classes];
    let mut loss = vec![0.0f32; set.reduction().loss_len(rows)];
    let mut lse = vec![0.0f32; rows];
    let options = set.core_options();
    let grads = LinearGrads {
        hidden: want
            .hidden
            .then(|| RowsMut::new(&mut gh, rows, dim, ghs).unwrap()),
        weight: want
            .weight
            .then(|| RowsMut::new(&mut gw, classes, dim, gws).unwrap()),
        bias: want.bias.then_some(&mut gb[..]),
    };
    xent::linear_cross_entropy(
        head,
        &c.targets[..],
        &options,
        &mut loss,
        grads,
        want.lse.then_some(&mut lse[..]),
    )
    .unwrap_or_else(|e| panic!("{} ({}): core refused: {e}", c.name, set.name));
    let out_bits = |v: Vec<T>| -> Vec<u32> {
        v.into_iter()
            .map(|x| (abi.bits)((abi.from_core)(x)))
            .collect()
    };
    Outputs {
        loss: bits(&loss),
        lse: want.lse.then(|| bits(&lse)),
        grad_hidden: want.hidden.then(|| out_bits(elements(&gh, rows, dim, ghs))),
        grad_weight: want
            .weight
            .then(|| out_bits(elements(&gw, classes, dim, gws))),
        grad_bias: want.bias.then(|| out_bits(gb)),
    }
}

/// The export's results on the same values; every output has a guard after its last
/// element (a padded row for the gradients) that must keep PAD's bits, and every input
/// must be unchanged.
fn c_outputs<T, C: Copy>(abi: &Abi<T, C>, c: &Case, set: &OptionSet, want: Wanted) -> Outputs {
    let (rows, dim, classes) = (c.rows, c.dim, c.classes);
    let what = format!("{} {} ({}, {want:?})", abi.name, c.name, set.name);
    let hidden = abi.input(&c.hidden, dim, c.hidden_stride);
    let weight = abi.input(&c.weight, dim, c.weight_stride);
    let bias = c
        .bias
        .as_ref()
        .map(|b| abi.input(b, classes, classes.max(1)));
    let inputs_before = (
        abi.bit_vec(&hidden),
        abi.bit_vec(&weight),
        bias.as_ref().map(|b| abi.bit_vec(b)),
        c.targets.clone(),
    );
    let (ghs, gws) = (grad_hidden_stride(dim), grad_weight_stride(dim));
    // One more padded row after each gradient: a guard.
    let mut gh = vec![abi.pad; (rows + 1) * ghs];
    let mut gw = vec![abi.pad; (classes + 1) * gws];
    let mut gb = vec![abi.pad; classes + 1];
    let loss_len = set.reduction().loss_len(rows);
    let mut loss = vec![PAD; loss_len + 1];
    let mut lse = vec![PAD; rows + 1];
    let options = set.c_options();
    let out = |on: bool, buf: &mut Vec<C>| {
        if on {
            buf.as_mut_ptr()
        } else {
            ptr::null_mut()
        }
    };
    let args = Args {
        hidden: if rows == 0 {
            ptr::null()
        } else {
            hidden.as_ptr()
        },
        rows,
        dim,
        hidden_stride: c.hidden_stride,
        weight: weight.as_ptr(),
        classes,
        weight_stride: c.weight_stride,
        bias: bias.as_ref().map_or(ptr::null(), |b| b.as_ptr()),
        targets: c.targets.as_ptr(),
        next_token: 0,
        options: &options,
        loss: loss.as_mut_ptr(),
        grad_hidden: out(want.hidden, &mut gh),
        // A NULL gradient's stride is not looked at.
        grad_hidden_stride: if want.hidden { ghs } else { 0 },
        grad_weight: out(want.weight, &mut gw),
        grad_weight_stride: if want.weight { gws } else { 0 },
        grad_bias: out(want.bias, &mut gb),
        lse: if want.lse {
            lse.as_mut_ptr()
        } else {
            ptr::null_mut()
        },
    };
    // SAFETY: every buffer holds what the arguments describe (plus guards); the options
    // and their weights outlive the call.
    let status = unsafe { abi.call(args) };
    assert_eq!(status, XentStatus::Ok, "{what}");

    assert_eq!(bits(&loss[loss_len..]), bits(&[PAD]), "{what}: after loss");
    let lse_written = if want.lse { rows } else { 0 };
    assert!(
        lse[lse_written..]
            .iter()
            .all(|v| v.to_bits() == PAD.to_bits()),
        "{what}: lse written beyond its values"
    );
    let shown = |on: bool, rows: usize| if on { rows } else { 0 };
    abi.assert_padding(
        &gh,
        shown(want.hidden, rows),
        dim,
        ghs,
        &format!("{what}: grad_hidden"),
    );
    abi.assert_padding(
        &gw,
        shown(want.weight, classes),
        dim,
        gws,
        &format!("{what}: grad_weight"),
    );
    abi.assert_padding(
        &gb,
        shown(want.bias, 1),
        classes,
        classes + 1,
        &format!("{what}: grad_bias"),
    );
    let inputs_after = (
        abi.bit_vec(&hidden),
        abi.bit_vec(&weight),
        bias.as_ref().map(|b| abi.bit_vec(b)),
        c.targets.clone(),
    );
    assert!(
        inputs_after == inputs_before,
        "{what}: an input was written"
    );

    Outputs {
        loss: bits(&loss[..loss_len]),
        lse: want.lse.then(|| bits(&lse[..rows])),
        grad_hidden: want
            .hidden
            .then(|| abi.bit_vec(&elements(&gh, rows, dim, ghs))),
        grad_weight: want
            .weight
            .then(|| abi.bit_vec(&elements(&gw, classes, dim, gws))),
        grad_bias: want.bias.then(|| abi.bit_vec(&gb[..classes])),
    }
}

/// Every combination of outputs on one case: the export's bits are the core crate's.
fn check_case<T: Logit<Stat = f32>, C: Copy>(abi: &Abi<T, C>, c: &Case, set: &OptionSet) {
    for want in wanted() {
        let got = c_outputs(abi, c, set, want);
        let expected = core_outputs(abi, c, set, want);
        assert!(
            got == expected,
            "{} {} ({}, {want:?}): the export differs from the core crate:\n{got:?}\n{expected:?}",
            abi.name,
            c.name,
            set.name
        );
    }
}

/// Odd dims and vocabularies, one to nine rows, every option set, the three kinds of bias,
/// padded and packed inputs.
fn check_matches_the_core<T: Logit<Stat = f32>, C: Copy>(abi: &Abi<T, C>) {
    let mut k = 0usize;
    for dim in [1usize, 3, 17, 65] {
        for classes in [1usize, 3, 17, 65, 130] {
            for rows in [1usize, 4, 9] {
                let sets = option_sets(classes);
                for set in &sets {
                    k += 1;
                    let bias = [Bias::None, Bias::Finite, Bias::Masked][k % 3];
                    let c = case(
                        rows,
                        dim,
                        classes,
                        (k / 3) % 3,
                        (k / 9) % 3,
                        bias,
                        set.options.ignore_index,
                        k as u64,
                    );
                    check_case(abi, &c, set);
                }
            }
        }
    }
}

#[test]
fn f32_matches_the_core_bit_for_bit() {
    check_matches_the_core(&F32);
}

#[test]
fn bf16_matches_the_core_bit_for_bit() {
    check_matches_the_core(&BF16);
}

#[test]
fn f16_matches_the_core_bit_for_bit() {
    check_matches_the_core(&F16);
}

/// Held by the tests whose batches are cut into several chunks: the chunks depend on the
/// thread count, and the thread setting is process-wide. (The other tests' batches are one
/// chunk whatever the thread count.)
static THREAD_SETTING: Mutex<()> = Mutex::new(());

/// A batch whose automatic chunking cuts the vocabulary into several chunks (more than 1M
/// logits per thread: 1728 + 372 classes on 2 threads), a masked bias, every option.
fn several_chunks() -> (Case, OptionSet) {
    let mut sets = option_sets(2100);
    let set = sets.swap_remove(3);
    let c = case(
        1200,
        5,
        2100,
        1,
        2,
        Bias::Masked,
        set.options.ignore_index,
        99,
    );
    (c, set)
}

const ALL: Wanted = Wanted {
    hidden: true,
    weight: true,
    bias: true,
    lse: true,
};

#[test]
fn several_chunks_match_the_core_bit_for_bit() {
    let _setting = THREAD_SETTING
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (c, set) = several_chunks();
    assert!(c_outputs(&F32, &c, &set, ALL) == core_outputs(&F32, &c, &set, ALL));
    assert!(c_outputs(&BF16, &c, &set, ALL) == core_outputs(&BF16, &c, &set, ALL));
    assert!(c_outputs(&F16, &c, &set, ALL) == core_outputs(&F16, &c, &set, ALL));
}

/// The header: calls "give the same results, bit for bit, ... whatever
/// xent_set_num_threads chose".
#[test]
fn several_chunks_give_the_same_bits_under_every_thread_setting() {
    let _setting = THREAD_SETTING
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (c, set) = several_chunks();
    let f32_default = c_outputs(&F32, &c, &set, ALL);
    let bf16_default = c_outputs(&BF16, &c, &set, ALL);
    let mut differ = Vec::new();
    for threads in [1usize, 3, 4] {
        assert_eq!(xent_set_num_threads(threads), XentStatus::Ok);
        if c_outputs(&F32, &c, &set, ALL) != f32_default {
            differ.push(format!("f32 under xent_set_num_threads({threads})"));
        }
        if c_outputs(&BF16, &c, &set, ALL) != bf16_default {
            differ.push(format!("bf16 under xent_set_num_threads({threads})"));
        }
    }
    assert_eq!(xent_set_num_threads(0), XentStatus::Ok);
    assert!(
        differ.is_empty(),
        "results differ from those of the default setting: {differ:?}"
    );
}

// ---------------------------------------------------------------------------------------
// No rows.

/// rows = 0: `loss` is the loss of nothing (mean NaN, sum 0, none no value), ∂W and ∂b
/// zeros, the core crate's bits; the hidden states and the targets may be NULL, their
/// strides are not looked at. `loss` is still required.
fn check_zero_rows<T: Logit<Stat = f32>, C: Copy>(abi: &Abi<T, C>) {
    for (dim, classes) in [(3usize, 5usize), (1, 1), (17, 2), (4, 0)] {
        for set in &option_sets(classes.max(1))[..3] {
            let set = OptionSet {
                weights: set.weights.as_ref().map(|w| w[..classes].to_vec()),
                ..*set
            };
            let c = case(0, dim, classes, 1, 2, Bias::Finite, -100, 5);
            let what = format!("{}: no rows, {dim}×{classes}, {}", abi.name, set.name);
            for want in wanted() {
                let got = c_outputs(abi, &c, &set, want);
                assert!(got == core_outputs(abi, &c, &set, want), "{what}, {want:?}");
                let zero = (abi.bits)((abi.round)(0.0));
                for g in [&got.grad_weight, &got.grad_bias].into_iter().flatten() {
                    assert!(g.iter().all(|&b| b == zero), "{what}: not zeros: {g:?}");
                }
                match set.reduction() {
                    Reduction::Mean => assert!(f32::from_bits(got.loss[0]).is_nan(), "{what}"),
                    Reduction::Sum => assert_eq!(got.loss, [0], "{what}"),
                    Reduction::None => assert!(got.loss.is_empty(), "{what}"),
                }
            }
        }
    }
    // Everything NULL but loss, no classes either; then loss NULL too.
    for (dim, stride) in [(0usize, 0usize), (3, 0), (3, 7)] {
        let mut loss = [PAD];
        let none = XentOptions {
            reduction: XentReduction::None as u32,
            ..xent_options_default()
        };
        let args = Args::<C> {
            hidden: ptr::null(),
            rows: 0,
            dim,
            hidden_stride: stride,
            weight: ptr::null(),
            classes: 0,
            weight_stride: stride,
            bias: ptr::null(),
            targets: ptr::null(),
            next_token: 0,
            options: ptr::null(),
            loss: loss.as_mut_ptr(),
            grad_hidden: ptr::null_mut(),
            grad_hidden_stride: stride,
            grad_weight: ptr::null_mut(),
            grad_weight_stride: stride,
            grad_bias: ptr::null_mut(),
            lse: ptr::null_mut(),
        };
        // SAFETY: no rows and no classes: only loss (one value) may be written.
        let status = unsafe { abi.call(args) };
        assert_eq!(status, XentStatus::Ok, "{}: all NULL, dim {dim}", abi.name);
        assert!(loss[0].is_nan(), "{}: the mean of nothing is NaN", abi.name);
        let no_loss = Args {
            loss: ptr::null_mut(),
            options: &none,
            ..args
        };
        // SAFETY: refused: nothing is read or written.
        let status = unsafe { abi.call(no_loss) };
        assert_eq!(status, XentStatus::NullPointer, "{}: NULL loss", abi.name);
    }
}

#[test]
fn zero_rows_give_the_core_results() {
    check_zero_rows(&F32);
    check_zero_rows(&BF16);
    check_zero_rows(&F16);
}

/// The header: "rows == 0 is valid: then every pointer but `loss` ... may be NULL" — the
/// weight and the bias too: without rows ∂W and ∂b are zeros whatever W holds.
fn check_zero_rows_null_weight<T, C: Copy>(abi: &Abi<T, C>) {
    let (dim, classes) = (3usize, 5usize);
    let mut loss = [PAD];
    let mut gw = vec![abi.pad; classes * dim];
    let mut gb = vec![abi.pad; classes];
    let args = Args::<C> {
        hidden: ptr::null(),
        rows: 0,
        dim,
        hidden_stride: 0,
        weight: ptr::null(),
        classes,
        weight_stride: 0,
        bias: ptr::null(),
        targets: ptr::null(),
        next_token: 0,
        options: ptr::null(),
        loss: loss.as_mut_ptr(),
        grad_hidden: ptr::null_mut(),
        grad_hidden_stride: 0,
        grad_weight: gw.as_mut_ptr(),
        grad_weight_stride: dim,
        grad_bias: gb.as_mut_ptr(),
        lse: ptr::null_mut(),
    };
    // SAFETY: no rows: only loss (1 value), grad_weight (classes × dim) and grad_bias
    // (classes) may be written, and they hold that much.
    let status = unsafe { abi.call(args) };
    // The weight's rows are the vocabulary: it is required whenever classes > 0 (the
    // header says so), and the refused call writes nothing.
    assert_eq!(
        status,
        XentStatus::NullPointer,
        "{}: rows = 0, classes = {classes}, weight NULL",
        abi.name
    );
    let pad = (abi.bits)(abi.pad);
    assert!(abi.bit_vec(&gw).iter().all(|&b| b == pad));
    assert!(abi.bit_vec(&gb).iter().all(|&b| b == pad));
    assert_eq!(loss[0].to_bits(), PAD.to_bits());
}

#[test]
fn zero_rows_still_need_the_weight() {
    check_zero_rows_null_weight(&F32);
    check_zero_rows_null_weight(&BF16);
    check_zero_rows_null_weight(&F16);
}

// ---------------------------------------------------------------------------------------
// Refusals: every buffer lives in one arena, compared byte for byte around each call.

/// The layer of the refusal tests: ROWS rows of DIM features at HS, CLASSES classes at WS;
/// the gradients at GHS and GWS.
const ROWS: usize = 3;
const DIM: usize = 3;
const HS: usize = 5;
const CLASSES: usize = 4;
const WS: usize = 4;
const GHS: usize = 4;
const GWS: usize = 5;
const H_SPAN: usize = (ROWS - 1) * HS + DIM;
const W_SPAN: usize = (CLASSES - 1) * WS + DIM;
const GH_SPAN: usize = (ROWS - 1) * GHS + DIM;
const GW_SPAN: usize = (CLASSES - 1) * GWS + DIM;

/// Byte offsets of the buffers in the arena (16-byte aligned, apart from each other, all
/// in the first half: an output moved onto any of them stays inside the arena).
const H_AT: usize = 0; // hidden, H_SPAN values
const W_AT: usize = 128; // weight, W_SPAN values
const B_AT: usize = 256; // bias, CLASSES values
const T_AT: usize = 320; // targets, ROWS i64
const CW_AT: usize = 384; // class weights, CLASSES f32
const LOSS_AT: usize = 448; // ROWS f32
const LSE_AT: usize = 512; // ROWS f32
const GH_AT: usize = 576; // grad_hidden, GH_SPAN values
const GW_AT: usize = 704; // grad_weight, GW_SPAN values
const GB_AT: usize = 832; // grad_bias, CLASSES values
const ARENA_BYTES: usize = 2048;

/// Memory every buffer of a refused call is carved from, reached only through `base`.
struct Arena {
    _memory: Vec<u64>,
    base: *mut u8,
}

impl Arena {
    fn new<T, C: Copy>(abi: &Abi<T, C>) -> Arena {
        let mut memory = vec![0u64; ARENA_BYTES / 8];
        let base = memory.as_mut_ptr().cast::<u8>();
        let arena = Arena {
            _memory: memory,
            base,
        };
        arena.reset(abi);
        arena
    }

    fn at<P>(&self, offset: usize) -> *mut P {
        self.base.wrapping_add(offset).cast::<P>()
    }

    /// Sentinel bytes everywhere, then valid inputs: H, W, b in steps of 1/8, targets 1,
    /// ignore_index and 3, class weights.
    fn reset<T, C: Copy>(&self, abi: &Abi<T, C>) {
        // SAFETY: every write stays inside the arena, at offsets aligned for its type.
        unsafe {
            ptr::write_bytes(self.base, 0xA5, ARENA_BYTES);
            for k in 0..H_SPAN {
                let v = (abi.round)((k % 9) as f32 * 0.125 - 0.5);
                self.at::<C>(H_AT).add(k).write(v);
            }
            for k in 0..W_SPAN {
                let v = (abi.round)(0.5 - (k % 7) as f32 * 0.125);
                self.at::<C>(W_AT).add(k).write(v);
            }
            for c in 0..CLASSES {
                let v = (abi.round)(c as f32 * 0.25);
                self.at::<C>(B_AT).add(c).write(v);
                self.at::<f32>(CW_AT).add(c).write(1.0 + c as f32 * 0.125);
            }
            for (i, t) in [1i64, -100, 3].into_iter().enumerate() {
                self.at::<i64>(T_AT).add(i).write(t);
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        // SAFETY: the arena's bytes, all initialized; no write is in flight.
        unsafe { std::slice::from_raw_parts(self.base, ARENA_BYTES) }.to_vec()
    }

    /// Runs `args`, expects `want`, and that no byte of the arena changed.
    fn refused<T, C: Copy>(&self, abi: &Abi<T, C>, want: XentStatus, what: &str, args: Args<C>) {
        let before = self.bytes();
        // SAFETY: every pointer is NULL or inside the arena with room for what the other
        // arguments describe, or the call refuses it before any access.
        let got = unsafe { abi.call(args) };
        assert_eq!(got, want, "{}: {what}", abi.name);
        let after = self.bytes();
        if let Some(k) = (0..ARENA_BYTES).find(|&k| before[k] != after[k]) {
            panic!(
                "{}: {what}: the refused call changed byte {k} of the arena",
                abi.name
            );
        }
    }

    /// Runs `args`, expects OK, then resets the arena.
    fn accepted<T, C: Copy>(&self, abi: &Abi<T, C>, what: &str, args: Args<C>) {
        // SAFETY: as in `refused`.
        let got = unsafe { abi.call(args) };
        assert_eq!(got, XentStatus::Ok, "{}: {what}", abi.name);
        self.reset(abi);
    }
}

/// `p` moved by `bytes` (a misaligned pointer for any of the element types).
fn shifted<P>(p: *mut P, bytes: usize) -> *mut P {
    p.cast::<u8>().wrapping_add(bytes).cast::<P>()
}

/// A valid call on the arena: every output, mean.
fn valid<C>(a: &Arena) -> Args<C> {
    Args {
        hidden: a.at(H_AT),
        rows: ROWS,
        dim: DIM,
        hidden_stride: HS,
        weight: a.at(W_AT),
        classes: CLASSES,
        weight_stride: WS,
        bias: a.at(B_AT),
        targets: a.at(T_AT),
        next_token: 0,
        options: ptr::null(),
        loss: a.at(LOSS_AT),
        grad_hidden: a.at(GH_AT),
        grad_hidden_stride: GHS,
        grad_weight: a.at(GW_AT),
        grad_weight_stride: GWS,
        grad_bias: a.at(GB_AT),
        lse: a.at(LSE_AT),
    }
}

/// An invalid option: the options, and for a bad class weight, which one to spoil.
struct BadOption {
    what: String,
    options: XentOptions,
    weight: Option<(usize, f32)>,
}

/// Every invalid option value (class weights: the arena's).
fn bad_options(a: &Arena) -> Vec<BadOption> {
    let d = xent_options_default();
    let mut cases = Vec::new();
    let mut push = |what: String, options: XentOptions| {
        cases.push(BadOption {
            what,
            options,
            weight: None,
        });
    };
    for r in [3u32, 7, u32::MAX] {
        push(format!("reduction {r}"), XentOptions { reduction: r, ..d });
    }
    for v in [-0.1f32, 1.5, f32::NAN, f32::INFINITY] {
        let o = XentOptions {
            label_smoothing: v,
            ..d
        };
        push(format!("label_smoothing {v}"), o);
    }
    for v in [-1.0f32, -1e-30, f32::NAN, f32::INFINITY] {
        push(format!("z_loss {v}"), XentOptions { z_loss: v, ..d });
        push(format!("softcap {v}"), XentOptions { softcap: v, ..d });
    }
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        push(
            format!("grad_scale {v}"),
            XentOptions { grad_scale: v, ..d },
        );
    }
    let weighted = XentOptions {
        class_weights: a.at(CW_AT),
        ..d
    };
    for (class, v) in [(0, -1.0f32), (CLASSES - 1, f32::NAN), (1, f32::INFINITY)] {
        cases.push(BadOption {
            what: format!("class weight {class} = {v}"),
            options: weighted,
            weight: Some((class, v)),
        });
    }
    cases
}

/// An output of the call, by the field it is passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Loss,
    Lse,
    GradHidden,
    GradWeight,
    GradBias,
}

impl Output {
    const ALL: [Output; 5] = [
        Output::Loss,
        Output::Lse,
        Output::GradHidden,
        Output::GradWeight,
        Output::GradBias,
    ];

    /// Where the valid call has it, its bytes and its element's alignment.
    fn place<C>(self) -> (usize, usize, usize) {
        let (f, c) = (size_of::<f32>(), size_of::<C>());
        match self {
            Output::Loss => (LOSS_AT, f, f),
            Output::Lse => (LSE_AT, ROWS * f, f),
            Output::GradHidden => (GH_AT, GH_SPAN * c, c),
            Output::GradWeight => (GW_AT, GW_SPAN * c, c),
            Output::GradBias => (GB_AT, CLASSES * c, c),
        }
    }

    /// `args` with this output at byte `offset` of the arena.
    fn moved<C>(self, a: &Arena, args: Args<C>, offset: usize) -> Args<C> {
        match self {
            Output::Loss => Args {
                loss: a.at(offset),
                ..args
            },
            Output::Lse => Args {
                lse: a.at(offset),
                ..args
            },
            Output::GradHidden => Args {
                grad_hidden: a.at(offset),
                ..args
            },
            Output::GradWeight => Args {
                grad_weight: a.at(offset),
                ..args
            },
            Output::GradBias => Args {
                grad_bias: a.at(offset),
                ..args
            },
        }
    }
}

fn check_refusals<T, C: Copy>(abi: &Abi<T, C>) {
    use XentStatus::{InvalidOption, InvalidShape, NullPointer, OverlappingBuffers};
    let a = Arena::new(abi);
    let ok = valid::<C>(&a);
    let none = XentOptions {
        reduction: XentReduction::None as u32,
        ..xent_options_default()
    };
    let weighted = XentOptions {
        class_weights: a.at(CW_AT),
        ..xent_options_default()
    };
    let reduction_3 = XentOptions {
        reduction: 3,
        ..xent_options_default()
    };
    let misaligned_weights = XentOptions {
        class_weights: shifted(a.at(CW_AT), 1),
        ..weighted
    };
    let no_grads = Args {
        grad_hidden: ptr::null_mut(),
        grad_hidden_stride: 0,
        grad_weight: ptr::null_mut(),
        grad_weight_stride: 0,
        grad_bias: ptr::null_mut(),
        ..ok
    };
    let c = |p: *mut C| p.cast_const();
    a.accepted(abi, "valid", ok);
    a.accepted(
        abi,
        "valid, none",
        Args {
            options: &none,
            ..ok
        },
    );
    a.accepted(
        abi,
        "valid, weighted",
        Args {
            options: &weighted,
            ..ok
        },
    );
    a.accepted(abi, "valid, no gradients", no_grads);
    a.accepted(
        abi,
        "valid, no bias, no lse",
        Args {
            bias: ptr::null(),
            lse: ptr::null_mut(),
            ..ok
        },
    );

    #[rustfmt::skip]
    let mut cases: Vec<(XentStatus, String, Args<C>)> = [
        (NullPointer, "NULL hidden", Args { hidden: ptr::null(), ..ok }),
        (NullPointer, "NULL weight", Args { weight: ptr::null(), ..ok }),
        (NullPointer, "NULL targets", Args { targets: ptr::null(), ..ok }),
        (InvalidShape, "next_token not tiling the rows", Args { next_token: ROWS + 1, ..ok }),
        (NullPointer, "NULL loss", Args { loss: ptr::null_mut(), ..ok }),
        (NullPointer, "NULL loss, no gradients", Args { loss: ptr::null_mut(), ..no_grads }),
        (NullPointer, "NULL loss, no rows",
         Args { rows: 0, loss: ptr::null_mut(), options: &none, ..ok }),
        (InvalidShape, "hidden_stride < dim", Args { hidden_stride: DIM - 1, ..ok }),
        (InvalidShape, "weight_stride < dim", Args { weight_stride: DIM - 1, ..ok }),
        (InvalidShape, "weight_stride < dim, no gradients", Args { weight_stride: DIM - 1, ..no_grads }),
        (InvalidShape, "weight_stride < dim, no rows",
         Args { rows: 0, weight_stride: DIM - 1, ..no_grads }),
        (InvalidShape, "weight_stride 0", Args { weight_stride: 0, ..ok }),
        (InvalidShape, "dim 0 with rows", Args { dim: 0, ..ok }),
        (InvalidShape, "classes 0 with rows", Args { classes: 0, ..ok }),
        (InvalidShape, "classes 0 with rows, no gradients", Args { classes: 0, ..no_grads }),
        (InvalidShape, "grad_hidden_stride < dim", Args { grad_hidden_stride: DIM - 1, ..ok }),
        (InvalidShape, "grad_weight_stride < dim", Args { grad_weight_stride: DIM - 1, ..ok }),
        (InvalidShape, "grad_weight_stride 0", Args { grad_weight_stride: 0, ..ok }),
        (InvalidShape, "misaligned hidden", Args { hidden: c(shifted(a.at(H_AT), 1)), ..ok }),
        (InvalidShape, "misaligned weight", Args { weight: c(shifted(a.at(W_AT), 1)), ..ok }),
        (InvalidShape, "misaligned bias", Args { bias: c(shifted(a.at(B_AT), 1)), ..ok }),
        (InvalidShape, "misaligned targets", Args { targets: shifted(a.at(T_AT), 4), ..ok }),
        (InvalidShape, "misaligned loss", Args { loss: shifted(a.at(LOSS_AT), 1), ..ok }),
        (InvalidShape, "misaligned lse", Args { lse: shifted(a.at(LSE_AT), 2), ..ok }),
        (InvalidShape, "misaligned grad_hidden", Args { grad_hidden: shifted(a.at(GH_AT), 1), ..ok }),
        (InvalidShape, "misaligned grad_weight", Args { grad_weight: shifted(a.at(GW_AT), 1), ..ok }),
        (InvalidShape, "misaligned grad_bias", Args { grad_bias: shifted(a.at(GB_AT), 1), ..ok }),
        (InvalidShape, "misaligned class weights", Args { options: &misaligned_weights, ..ok }),
        (InvalidShape, "rows overflow", Args { rows: usize::MAX, ..ok }),
        (InvalidShape, "hidden's bytes overflow", Args { rows: usize::MAX / 8, ..no_grads }),
        (InvalidShape, "hidden_stride overflows", Args { hidden_stride: usize::MAX / 2, ..ok }),
        (InvalidShape, "classes overflow", Args { classes: usize::MAX, ..ok }),
        (InvalidShape, "weight's bytes overflow", Args { classes: usize::MAX / 8, ..no_grads }),
        (InvalidShape, "weight_stride overflows", Args { weight_stride: usize::MAX / 2, ..ok }),
        (InvalidShape, "grad_hidden_stride overflows",
         Args { grad_hidden_stride: usize::MAX / 2, ..ok }),
        (InvalidShape, "grad_weight_stride overflows",
         Args { grad_weight_stride: usize::MAX / 2, ..ok }),
        (InvalidShape, "dim overflows", Args { dim: usize::MAX, hidden_stride: usize::MAX, ..ok }),
        // A shape comes before an overlap (the header's order of checks).
        (InvalidShape, "grad_weight_stride < dim and loss over lse",
         Args { grad_weight_stride: DIM - 1, loss: a.at(LSE_AT), ..ok }),
        (InvalidShape, "misaligned lse and grad_hidden over hidden",
         Args { lse: shifted(a.at(LSE_AT), 2), grad_hidden: a.at(H_AT), ..ok }),
        // An unknown reduction is an argument of step 1, before overlaps.
        (InvalidOption, "reduction 3 and loss over lse",
         Args { options: &reduction_3, loss: a.at(LSE_AT), ..ok }),
        (OverlappingBuffers, "loss in hidden's padding",
         Args { loss: a.at(H_AT + (DIM * size_of::<C>()).div_ceil(4) * 4), ..ok }),
        (OverlappingBuffers, "grad_hidden = hidden, same stride",
         Args { grad_hidden: a.at(H_AT), grad_hidden_stride: HS, ..ok }),
        (OverlappingBuffers, "grad_weight = weight, same stride",
         Args { grad_weight: a.at(W_AT), grad_weight_stride: WS, ..ok }),
        (OverlappingBuffers, "grad_bias = bias", Args { grad_bias: a.at(B_AT), ..ok }),
        (OverlappingBuffers, "loss = lse, none", Args { loss: a.at(LSE_AT), options: &none, ..ok }),
    ]
    .into_iter()
    .map(|(want, what, args)| (want, what.to_owned(), args))
    .collect();

    // Every output over every other buffer: starting at its first byte, starting inside
    // its last element, and ending inside its first element.
    let inputs = [
        ("hidden", H_AT, H_SPAN * size_of::<C>()),
        ("weight", W_AT, W_SPAN * size_of::<C>()),
        ("bias", B_AT, CLASSES * size_of::<C>()),
        ("targets", T_AT, ROWS * size_of::<i64>()),
        ("class weights", CW_AT, CLASSES * size_of::<f32>()),
    ];
    for out in Output::ALL {
        let (_, bytes, align) = out.place::<C>();
        let others = inputs
            .into_iter()
            .chain(Output::ALL.into_iter().filter(|&o| o != out).map(|o| {
                let (at, n, _) = o.place::<C>();
                (
                    ["loss", "lse", "grad_hidden", "grad_weight", "grad_bias"][o as usize],
                    at,
                    n,
                )
            }));
        for (name, at, n) in others {
            let base = if name == "class weights" {
                Args {
                    options: &weighted,
                    ..ok
                }
            } else {
                ok
            };
            let mut starts = vec![at, (at + n - 1) / align * align];
            if at >= bytes {
                starts.push((at + 1 - bytes).div_ceil(align) * align);
            }
            for start in starts {
                let what = format!("{out:?} at byte {start}, over {name} ({at}..{})", at + n);
                cases.push((OverlappingBuffers, what, out.moved(&a, base, start)));
            }
        }
    }
    for (want, what, args) in cases {
        a.refused(abi, want, &what, args);
    }

    // Targets: the first out of range is refused, after any overlap.
    for t in [
        CLASSES as i64,
        CLASSES as i64 + 1,
        -1,
        -99,
        i64::MAX,
        i64::MIN,
    ] {
        a.reset(abi);
        // SAFETY: inside the arena, aligned.
        unsafe { a.at::<i64>(T_AT).add(2).write(t) };
        for (args, style) in [(ok, "all outputs"), (no_grads, "no gradients")] {
            let what = format!("target {t}, {style}");
            a.refused(abi, XentStatus::TargetOutOfRange, &what, args);
            let per_row = Args {
                options: &none,
                ..args
            };
            a.refused(
                abi,
                XentStatus::TargetOutOfRange,
                &format!("{what}, none"),
                per_row,
            );
        }
        let overlap = Args {
            lse: a.at(LOSS_AT),
            ..ok
        };
        a.refused(
            abi,
            OverlappingBuffers,
            &format!("target {t} and an overlap"),
            overlap,
        );
    }
    for bad in bad_options(&a) {
        a.reset(abi);
        if let Some((class, v)) = bad.weight {
            // SAFETY: inside the arena, aligned.
            unsafe { a.at::<f32>(CW_AT).add(class).write(v) };
        }
        for (args, style) in [(ok, "all outputs"), (no_grads, "no gradients")] {
            let args = Args {
                options: &bad.options,
                ..args
            };
            a.refused(abi, InvalidOption, &format!("{}, {style}", bad.what), args);
        }
        // Option values are checked after overlaps (the reduction before them).
        let overlap = Args {
            options: &bad.options,
            grad_bias: a.at(B_AT),
            ..ok
        };
        let want = if bad.what.starts_with("reduction") {
            InvalidOption
        } else {
            OverlappingBuffers
        };
        a.refused(abi, want, &format!("{} and an overlap", bad.what), overlap);
    }

    // Buffers that only touch are no overlap; NULL gradients' strides and the class
    // weights' memory without weights are not looked at.
    a.reset(abi);
    let size = size_of::<C>();
    #[rustfmt::skip]
    let touching = [
        ("grad_hidden just after hidden",
         Args { grad_hidden: a.at(H_AT + H_SPAN * size), ..ok }),
        ("grad_weight just before grad_bias",
         Args { grad_weight: a.at(GB_AT - GW_SPAN * size), ..ok }),
        ("grad_bias just after weight", Args { grad_bias: a.at(W_AT + W_SPAN * size), ..ok }),
        ("loss just after the targets", Args { loss: a.at(T_AT + ROWS * 8), ..ok }),
        ("lse over the unused class weights' memory", Args { lse: a.at(CW_AT), ..ok }),
        ("NULL gradients with strides 0", no_grads),
        ("NULL grad_hidden, stride 1",
         Args { grad_hidden: ptr::null_mut(), grad_hidden_stride: 1, ..ok }),
        ("packed hidden", Args { hidden_stride: DIM, ..ok }),
        ("packed gradients", Args { grad_hidden_stride: DIM, grad_weight_stride: DIM, ..ok }),
    ];
    for (what, args) in touching {
        a.accepted(abi, what, args);
    }
}

#[test]
fn f32_refusals_write_nothing() {
    check_refusals(&F32);
}

#[test]
fn bf16_refusals_write_nothing() {
    check_refusals(&BF16);
}

#[test]
fn f16_refusals_write_nothing() {
    check_refusals(&F16);
}

/// The header's order: a shape — `classes == 0` with rows is `cols == 0` with rows for the
/// logits — comes before an overlap.
fn check_no_classes_is_a_shape_before_overlaps<T, C: Copy>(abi: &Abi<T, C>) {
    let a = Arena::new(abi);
    let ok = valid::<C>(&a);
    let args = Args {
        classes: 0,
        lse: a.at(LOSS_AT),
        ..ok
    };
    a.refused(
        abi,
        XentStatus::InvalidShape,
        "classes 0 with rows, loss over lse",
        args,
    );
}

#[test]
fn no_classes_is_a_shape_before_overlaps() {
    check_no_classes_is_a_shape_before_overlaps(&F32);
    check_no_classes_is_a_shape_before_overlaps(&BF16);
    check_no_classes_is_a_shape_before_overlaps(&F16);
}

// ---------------------------------------------------------------------------------------
// The backward from a saved lse, and the next-token shift.

/// The core crate's forward (loss and lse) and backward (∂H, ∂W, ∂b from that lse and
/// `dloss`) on the case's values rounded to `T`, with the shift `next_token` (0: none).
fn core_backward<T: Logit<Stat = f32>, C: Copy>(
    abi: &Abi<T, C>,
    c: &Case,
    set: &OptionSet,
    next_token: usize,
    dloss: &[f32],
) -> (Vec<u32>, Vec<u32>, [Vec<u32>; 3]) {
    let (rows, dim, classes) = (c.rows, c.dim, c.classes);
    let core = |v: &[f32], cols: usize, stride: usize| -> Vec<T> {
        abi.input(v, cols, stride)
            .into_iter()
            .map(abi.to_core)
            .collect()
    };
    let hidden = core(&c.hidden, dim, c.hidden_stride);
    let weight = core(&c.weight, dim, c.weight_stride);
    let bias = c.bias.as_ref().map(|b| core(b, classes, classes.max(1)));
    let head = LinearHead {
        hidden: Rows::new(&hidden, rows, dim, c.hidden_stride).unwrap(),
        weight: Rows::new(&weight, classes, dim, c.weight_stride).unwrap(),
        bias: bias.as_deref(),
        next_token: (next_token > 0).then_some(next_token),
    };
    let options = set.core_options();
    let mut loss = vec![0.0f32; set.reduction().loss_len(rows)];
    let mut lse = vec![0.0f32; rows];
    let targets = &c.targets[..];
    xent::linear_cross_entropy(
        head,
        targets,
        &options,
        &mut loss,
        LinearGrads::default(),
        Some(&mut lse),
    )
    .unwrap();
    let zero = (abi.to_core)((abi.round)(0.0));
    let mut gh = vec![zero; rows * dim];
    let mut gw = vec![zero; classes * dim];
    let mut gb = vec![zero; classes];
    let grads = LinearGrads {
        hidden: Some(RowsMut::packed(&mut gh, dim).unwrap()),
        weight: Some(RowsMut::packed(&mut gw, dim).unwrap()),
        bias: Some(&mut gb),
    };
    xent::linear_cross_entropy_backward(head, targets, &options, &lse, dloss, grads).unwrap();
    let out_bits = |v: Vec<T>| -> Vec<u32> {
        v.into_iter()
            .map(|x| (abi.bits)((abi.from_core)(x)))
            .collect()
    };
    (
        bits(&loss),
        bits(&lse),
        [out_bits(gh), out_bits(gw), out_bits(gb)],
    )
}

/// The same through the exports: the forward (loss, lse), then the backward from its lse;
/// then the backward's refusals, each of which leaves the gradients as they were.
fn check_backward<T: Logit<Stat = f32>, C: Copy>(abi: &Abi<T, C>) {
    let (rows, dim, classes) = (9, 17, 65);
    for set in &option_sets(classes) {
        for next_token in [0, 3] {
            let what = format!("{}: {}, next_token {next_token}", abi.name, set.name);
            let c = case(
                rows,
                dim,
                classes,
                1,
                2,
                Bias::Finite,
                set.options.ignore_index,
                11,
            );
            let loss_len = set.reduction().loss_len(rows);
            let dloss: Vec<f32> = (0..loss_len).map(|i| 0.75 - 0.25 * i as f32).collect();
            let want = core_backward(abi, &c, set, next_token, &dloss);

            let hidden = abi.input(&c.hidden, dim, c.hidden_stride);
            let weight = abi.input(&c.weight, dim, c.weight_stride);
            let bias = abi.input(c.bias.as_ref().unwrap(), classes, classes);
            let options = set.c_options();
            let mut loss = vec![PAD; loss_len];
            let mut lse = vec![PAD; rows];
            let args = Args {
                hidden: hidden.as_ptr(),
                rows,
                dim,
                hidden_stride: c.hidden_stride,
                weight: weight.as_ptr(),
                classes,
                weight_stride: c.weight_stride,
                bias: bias.as_ptr(),
                targets: c.targets.as_ptr(),
                next_token,
                options: &options,
                loss: loss.as_mut_ptr(),
                grad_hidden: ptr::null_mut(),
                grad_hidden_stride: 0,
                grad_weight: ptr::null_mut(),
                grad_weight_stride: 0,
                grad_bias: ptr::null_mut(),
                lse: lse.as_mut_ptr(),
            };
            // SAFETY: every buffer holds what the arguments describe.
            assert_eq!(unsafe { abi.call(args) }, XentStatus::Ok, "{what}: forward");
            assert_eq!(bits(&loss), want.0, "{what}: loss");
            assert_eq!(bits(&lse), want.1, "{what}: lse");

            let mut gh = vec![abi.pad; rows * dim];
            let mut gw = vec![abi.pad; classes * dim];
            let mut gb = vec![abi.pad; classes];
            let backward =
                |lse: *const f32, dloss: *const f32, gh: &mut [C], gw: &mut [C], gb: *mut C| {
                    // SAFETY: every buffer holds what the arguments describe, or is NULL.
                    unsafe {
                        (abi.backward)(
                            hidden.as_ptr(),
                            rows,
                            dim,
                            c.hidden_stride,
                            weight.as_ptr(),
                            classes,
                            c.weight_stride,
                            bias.as_ptr(),
                            c.targets.as_ptr(),
                            next_token,
                            &options,
                            lse,
                            dloss,
                            gh.as_mut_ptr(),
                            dim,
                            gw.as_mut_ptr(),
                            dim,
                            gb,
                        )
                    }
                };
            let untouched = |gh: &[C], gw: &[C], gb: &[C]| {
                let pad = (abi.bits)(abi.pad);
                [gh, gw, gb]
                    .iter()
                    .all(|g| abi.bit_vec(g).iter().all(|&b| b == pad))
            };
            // Refusals first, while the gradients hold PAD.
            let refusals: [(XentStatus, &str, *const f32, *const f32); 4] = [
                (
                    XentStatus::NullPointer,
                    "NULL lse",
                    ptr::null(),
                    dloss.as_ptr(),
                ),
                (
                    XentStatus::NullPointer,
                    "NULL dloss",
                    lse.as_ptr(),
                    ptr::null(),
                ),
                (
                    XentStatus::OverlappingBuffers,
                    "dloss in grad_bias",
                    lse.as_ptr(),
                    gb.as_ptr().cast(),
                ),
                (
                    XentStatus::OverlappingBuffers,
                    "lse in grad_bias",
                    gb.as_ptr().cast(),
                    dloss.as_ptr(),
                ),
            ];
            for (status, why, l, d) in refusals {
                let gb_ptr = gb.as_mut_ptr();
                assert_eq!(
                    backward(l, d, &mut gh, &mut gw, gb_ptr),
                    status,
                    "{what}: {why}"
                );
                assert!(
                    untouched(&gh, &gw, &gb),
                    "{what}: {why}: a gradient was written"
                );
            }
            let gb_ptr = gb.as_mut_ptr();
            assert_eq!(
                backward(lse.as_ptr(), dloss.as_ptr(), &mut gh, &mut gw, gb_ptr),
                XentStatus::Ok,
                "{what}"
            );
            assert_eq!(abi.bit_vec(&gh), want.2[0], "{what}: grad_hidden");
            assert_eq!(abi.bit_vec(&gw), want.2[1], "{what}: grad_weight");
            assert_eq!(abi.bit_vec(&gb), want.2[2], "{what}: grad_bias");
        }
    }
}

#[test]
fn backward_and_next_token_match_the_core_f32() {
    check_backward(&F32);
}

#[test]
fn backward_and_next_token_match_the_core_bf16() {
    check_backward(&BF16);
}

#[test]
fn backward_and_next_token_match_the_core_f16() {
    check_backward(&F16);
}
