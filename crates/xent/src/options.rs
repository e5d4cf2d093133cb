//! The loss options, their PyTorch defaults and their validation.

use crate::error::{Error, Result};

/// How per-row losses are combined into the `loss` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Reduction {
    /// Σ ce_i / W + Σ zl_i / N, with W the total weight of the counted rows' targets and N
    /// their count (soft targets: both divided by the number of rows). NaN, with an
    /// all-zero gradient, when W = 0. `loss` holds 1 value.
    #[default]
    Mean,
    /// Σ (ce_i + zl_i); 0 for no counted rows. `loss` holds 1 value.
    Sum,
    /// One loss per row (0 for ignored rows). `loss` holds `rows` values.
    None,
}

impl Reduction {
    /// How many values the `loss` output holds for a batch of `rows` rows.
    ///
    /// ```
    /// use xent::Reduction;
    /// assert_eq!(Reduction::Mean.loss_len(8), 1);
    /// assert_eq!(Reduction::None.loss_len(8), 8);
    /// ```
    pub fn loss_len(self, rows: usize) -> usize {
        match self {
            Reduction::Mean | Reduction::Sum => 1,
            Reduction::None => rows,
        }
    }
}

/// The options of a cross-entropy call, with PyTorch's defaults (`Options::default()`).
///
/// Build one with struct-update syntax:
///
/// ```
/// use xent::{Options, Reduction};
///
/// let weights = [1.0f32, 2.0, 0.5];
/// let options = Options {
///     reduction: Reduction::Sum,
///     label_smoothing: 0.1,
///     class_weights: Some(&weights),
///     ..Options::default()
/// };
/// assert_eq!(options.ignore_index, -100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options<'w> {
    /// How row losses are combined. Default: [`Reduction::Mean`].
    pub reduction: Reduction,
    /// Rows whose hard target equals this contribute 0 loss and 0 gradient. Default: -100.
    pub ignore_index: i64,
    /// ε in [0, 1]: the target distribution is mixed with the uniform one. Default: 0.
    pub label_smoothing: f32,
    /// z ≥ 0: adds z·lse² per counted row (PaLM's auxiliary loss). Default: 0.
    pub z_loss: f32,
    /// c ≥ 0: when > 0 logits are first mapped to c·tanh(x/c) (Gemma 2). Default: 0 (off).
    pub softcap: f32,
    /// `cols` finite non-negative weights, one per class; `None` weighs every class 1.
    pub class_weights: Option<&'w [f32]>,
    /// The upstream gradient of the reduced loss (for [`Reduction::None`]: of the sum of the
    /// row losses). Default: 1.
    pub grad_scale: f32,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            reduction: Reduction::Mean,
            ignore_index: -100,
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: 0.0,
            class_weights: None,
            grad_scale: 1.0,
        }
    }
}

impl Options<'_> {
    /// Checks every option against its domain for a batch of `cols` classes.
    ///
    /// Beyond the C header's table, an infinite `z_loss` or `softcap` is refused too: the
    /// first would make every counted loss infinite and the second turns every logit into
    /// NaN (∞·tanh(x/∞)), so neither can be what a caller meant. So is a softcap below
    /// `f32::MIN_POSITIVE` (a subnormal, under 1.2e-38) other than 0: the kernels multiply
    /// by 1/c, which overflows f32 there (found by the fuzzer: the gradient came out −∞
    /// where c·tanh(x/c) has slope 0).
    ///
    /// ```
    /// use xent::{Error, Options};
    ///
    /// let bad = Options { label_smoothing: 1.5, ..Options::default() };
    /// assert!(matches!(bad.validate(10), Err(Error::InvalidOption { option: "label_smoothing", .. })));
    /// assert!(Options::default().validate(10).is_ok());
    /// ```
    pub fn validate(&self, cols: usize) -> Result<()> {
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::option(
                "label_smoothing",
                format!("is {eps}, it must lie in [0, 1]"),
            ));
        }
        for (name, value) in [("z_loss", self.z_loss), ("softcap", self.softcap)] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::option(
                    name,
                    format!("is {value}, it must be finite and >= 0"),
                ));
            }
        }
        let cap = self.softcap;
        if cap > 0.0 && cap < f32::MIN_POSITIVE {
            return Err(Error::option(
                "softcap",
                format!(
                    "is {cap}, a subnormal: it must be 0 (off) or at least {:e}",
                    f32::MIN_POSITIVE
                ),
            ));
        }
        if !self.grad_scale.is_finite() {
            return Err(Error::option(
                "grad_scale",
                format!("is {}, it must be finite", self.grad_scale),
            ));
        }
        if let Some(weights) = self.class_weights {
            if weights.len() != cols {
                return Err(Error::shape(
                    "class_weights",
                    format!("has {} entries, one per class needs {cols}", weights.len()),
                ));
            }
            if let Some((class, w)) = weights
                .iter()
                .enumerate()
                .find(|&(_, &w)| !(w >= 0.0 && w.is_finite()))
            {
                return Err(Error::option(
                    "class_weights",
                    format!("entry {class} is {w}, every weight must be finite and >= 0"),
                ));
            }
        }
        Ok(())
    }

    /// The weight of class `c` (1 without class weights).
    #[inline]
    pub(crate) fn weight(&self, c: usize) -> f32 {
        self.class_weights.map_or(1.0, |w| w[c])
    }
}
