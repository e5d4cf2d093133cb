//! What both fuzz targets share: drawing values from the fuzzer's bytes, the expected
//! verdict of a call, and bitwise comparison.
//!
//! The core crate's test machinery (`crates/xent/tests/common`: the f64 oracle, docs/semantics.md's
//! tolerances and `check_case`, which runs a case through every call style) is compiled in
//! as [`common`], so the fuzzer judges results exactly as the test suite does.

#[path = "../../crates/xent/tests/common/mod.rs"]
#[allow(missing_docs, clippy::all)]
pub mod common;

use libfuzzer_sys::arbitrary::Unstructured;
use xent::{Error, bf16, f16};

/// Values drawn from the fuzzer's bytes. Once the bytes run out every draw returns its
/// smallest choice, so a short input still describes a whole (small) call.
pub struct Gen<'a>(Unstructured<'a>);

impl<'a> Gen<'a> {
    /// A generator over one fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Gen(Unstructured::new(data))
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0 && n > 0
    }

    /// Any 64 bits.
    pub fn u64(&mut self) -> u64 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any 32 bits.
    pub fn u32(&mut self) -> u32 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// One of `choices`.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    /// A logit: mostly moderate values on a 1/256 grid, and now and then any bit pattern,
    /// an IEEE special (NaN, ±∞, ±0, the extremes, a subnormal) or a large magnitude.
    pub fn logit(&mut self) -> f32 {
        match self.below(16) {
            0 => f32::from_bits(self.u32()),
            1 => self.pick(&[
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                f32::MAX,
                -f32::MAX,
                f32::MIN_POSITIVE,
                1e-40,
            ]),
            2 => self.pick(&[-1.0, 1.0]) * self.pick(&[1e3, 1e6, 3e10, 1e30, 88.5, 104.0]),
            3 => f32::NEG_INFINITY,
            _ => f32::from(self.u32() as i16) / 256.0,
        }
    }

    /// A value for an option whose usual values are `usual`: one of them, or (one time in
    /// four) any value [`Gen::logit`] draws, valid or not.
    pub fn option(&mut self, usual: &[f32]) -> f32 {
        if self.one_in(4) {
            self.logit()
        } else {
            self.pick(usual)
        }
    }

    /// `n`, or (one time in `one_in`) a length off by 1 to 3 either way.
    pub fn len_near(&mut self, n: usize, one_in: usize) -> usize {
        if !self.one_in(one_in) {
            return n;
        }
        let delta = 1 + self.below(3);
        if self.one_in(2) {
            n + delta
        } else {
            n.saturating_sub(delta)
        }
    }
}

/// The kinds of refusal a call may give: every fault the model found in its input. A
/// refused call must name one of them, and a call with none must succeed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// A buffer's size or layout (docs/bad-input.md's INVALID_SHAPE).
    pub shape: bool,
    /// A hard target outside the classes that is not ignore_index.
    pub target: bool,
    /// An option outside its domain.
    pub option: bool,
    /// Buffers that share memory where they must not.
    pub overlap: bool,
    /// A required pointer is NULL (C only).
    pub null: bool,
}

impl Faults {
    /// Whether any fault was found.
    pub fn any(&self) -> bool {
        self.shape || self.target || self.option || self.overlap || self.null
    }

    /// Whether `err` names one of the faults.
    pub fn allows(&self, err: &Error) -> bool {
        match err {
            Error::InvalidShape { .. } => self.shape,
            Error::TargetOutOfRange { .. } => self.target,
            Error::InvalidOption { .. } => self.option,
            Error::OverlappingBuffers { .. } => self.overlap,
            _ => false,
        }
    }

    /// The option checks of docs/bad-input.md (with the core crate's documented extensions: an
    /// infinite z_loss or softcap, and a subnormal softcap, are refused too) for `classes`
    /// classes.
    pub fn check_options(&mut self, options: &xent::Options<'_>, classes: usize) {
        let eps = options.label_smoothing;
        let non_negative = |v: f32| v >= 0.0 && v.is_finite();
        if !(0.0..=1.0).contains(&eps)
            || !non_negative(options.z_loss)
            || !non_negative(options.softcap)
            || (options.softcap > 0.0 && options.softcap < f32::MIN_POSITIVE)
            || !options.grad_scale.is_finite()
        {
            self.option = true;
        }
        if let Some(w) = options.class_weights {
            if w.len() != classes {
                self.shape = true;
            } else if !w.iter().all(|&w| non_negative(w)) {
                self.option = true;
            }
        }
    }

    /// The target checks: `targets` are class indices in `0..classes` or `ignore_index`.
    pub fn check_targets(&mut self, targets: &[i64], ignore_index: i64, classes: usize) {
        let outside =
            |&y: &i64| y != ignore_index && !usize::try_from(y).is_ok_and(|c| c < classes);
        if targets.iter().any(outside) {
            self.target = true;
        }
    }
}

/// Asserts the verdict of a call against the faults the model found.
pub fn assert_verdict(result: &Result<(), Error>, faults: &Faults, what: &str) {
    match result {
        Ok(()) => assert!(
            !faults.any(),
            "{what}: accepted, but the input has {faults:?}"
        ),
        Err(err) => assert!(
            faults.allows(err),
            "{what}: refused with {err:?}, but the input has {faults:?}"
        ),
    }
}

/// Values whose exact bits can be compared (NaN payloads included).
pub trait Bits: Copy {
    /// The value's bits, widened.
    fn bits(self) -> u128;

    /// Whether the value is a NaN (a float's; never for a struct of them).
    fn is_nan(self) -> bool {
        false
    }
}

impl Bits for f32 {
    fn bits(self) -> u128 {
        self.to_bits().into()
    }

    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Bits for f64 {
    fn bits(self) -> u128 {
        self.to_bits().into()
    }

    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

impl Bits for bf16 {
    fn bits(self) -> u128 {
        self.to_bits().into()
    }

    fn is_nan(self) -> bool {
        bf16::is_nan(self)
    }
}

impl Bits for f16 {
    fn bits(self) -> u128 {
        self.to_bits().into()
    }

    fn is_nan(self) -> bool {
        f16::is_nan(self)
    }
}

impl Bits for u8 {
    fn bits(self) -> u128 {
        self.into()
    }
}

impl Bits for xent::ShardRow {
    fn bits(self) -> u128 {
        [self.max, self.sumexp, self.target_logit, self.smooth_sum]
            .iter()
            .fold(0, |all, v| all << 32 | u128::from(v.to_bits()))
    }
}

/// Asserts that two buffers hold the same bits.
pub fn assert_same<T: Bits>(got: &[T], want: &[T], what: &str) {
    assert_matching(got, want, what, |a, b| a.bits() == b.bits());
}

/// Asserts that two results are the same values: the same bits, where every NaN is one
/// value. Rust leaves the sign and payload of a NaN that arithmetic makes to the compiler,
/// so code compiled for another element type may give a NaN of the other sign
/// (docs/semantics.md); untouched buffers and the shard merge are held to [`assert_same`].
pub fn assert_same_values<T: Bits>(got: &[T], want: &[T], what: &str) {
    assert_matching(got, want, what, |a, b| {
        a.bits() == b.bits() || (a.is_nan() && b.is_nan())
    });
}

fn assert_matching<T: Bits>(got: &[T], want: &[T], what: &str, same: impl Fn(T, T) -> bool) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(k) = (0..got.len()).find(|&k| !same(got[k], want[k])) {
        panic!(
            "{what}: element {k} differs ({:#x} vs {:#x})",
            got[k].bits(),
            want[k].bits()
        );
    }
}
