//! The element types of the C ABI: for each, the core crate's functions over its views.
//!
//! Everything between C and these functions — pointer checks, overlap rules, threads — is
//! written once, generic over [`Dtype`] (see `calls.rs`); adding an element type is an
//! `impl Dtype` here and the exported functions with its suffix, each a single call.
//!
//! The core crate's functions are generic over its [`Logit`] types (`f32`, `f64`, `bf16`,
//! `f16`), with loss, lse and `dloss` of type [`Logit::Stat`] (f64 for f64 logits, f32 for
//! the others) and f32 soft targets for all four, so a single `impl Dtype` covers each of
//! them: a new `Logit` type of the core crate only needs its exported functions here.

use xent_core::{Logit, Options, Result, Rows, RowsMut, Targets};

/// Where a call that writes rows writes them.
pub(crate) enum Write<'a, T> {
    /// Read the first batch, write the second (the same shape, any stride).
    Separate(Rows<'a, T>, RowsMut<'a, T>),
    /// Overwrite the batch with the result.
    InPlace(RowsMut<'a, T>),
}

/// What each row is trained towards.
pub(crate) enum TargetRows<'a, S> {
    /// One class index per row (or `ignore_index`).
    Hard(&'a [i64]),
    /// One row of target probabilities per logits row.
    Soft(Rows<'a, S>),
}

/// Which normalization a standalone call writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Normalization {
    /// softmax: each row's probabilities.
    Softmax,
    /// log_softmax: each row's log-probabilities.
    LogSoftmax,
}

/// An element type of the C ABI: the type of the logits and gradients, with the types of
/// what goes with them.
pub(crate) trait Dtype: Sized + Send + Sync + 'static {
    /// The type of `loss`, `lse` and `dloss`.
    type Stat: Send + Sync + 'static;
    /// The type of soft targets.
    type Soft: Send + Sync + 'static;

    /// The loss, without a gradient.
    fn forward(
        logits: Rows<'_, Self>,
        targets: TargetRows<'_, Self::Soft>,
        options: &Options<'_>,
        loss: &mut [Self::Stat],
        lse: Option<&mut [Self::Stat]>,
    ) -> Result<()>;

    /// The loss and its gradient with respect to the logits, in one sweep.
    fn forward_grad(
        logits: Write<'_, Self>,
        targets: TargetRows<'_, Self::Soft>,
        options: &Options<'_>,
        loss: &mut [Self::Stat],
        lse: Option<&mut [Self::Stat]>,
    ) -> Result<()>;

    /// The gradient from a saved `lse` and the upstream `dloss`.
    fn backward(
        logits: Write<'_, Self>,
        targets: TargetRows<'_, Self::Soft>,
        options: &Options<'_>,
        lse: &[Self::Stat],
        dloss: &[Self::Stat],
    ) -> Result<()>;

    /// softmax or log_softmax of each row.
    fn normalize(rows: Write<'_, Self>, normalization: Normalization) -> Result<()>;
}

impl<'a> From<TargetRows<'a, f32>> for Targets<'a> {
    fn from(targets: TargetRows<'a, f32>) -> Self {
        match targets {
            TargetRows::Hard(classes) => Targets::I64(classes),
            TargetRows::Soft(probs) => Targets::Soft(probs),
        }
    }
}

impl<T: Logit> Dtype for T {
    type Stat = T::Stat;
    type Soft = f32;

    fn forward(
        logits: Rows<'_, T>,
        targets: TargetRows<'_, f32>,
        options: &Options<'_>,
        loss: &mut [T::Stat],
        lse: Option<&mut [T::Stat]>,
    ) -> Result<()> {
        xent_core::cross_entropy(logits, targets, options, loss, lse)
    }

    fn forward_grad(
        logits: Write<'_, T>,
        targets: TargetRows<'_, f32>,
        options: &Options<'_>,
        loss: &mut [T::Stat],
        lse: Option<&mut [T::Stat]>,
    ) -> Result<()> {
        match logits {
            Write::Separate(logits, grad) => {
                xent_core::cross_entropy_grad(logits, targets, options, loss, grad, lse)
            }
            Write::InPlace(logits) => {
                xent_core::cross_entropy_grad_in_place(logits, targets, options, loss, lse)
            }
        }
    }

    fn backward(
        logits: Write<'_, T>,
        targets: TargetRows<'_, f32>,
        options: &Options<'_>,
        lse: &[T::Stat],
        dloss: &[T::Stat],
    ) -> Result<()> {
        match logits {
            Write::Separate(logits, grad) => {
                xent_core::cross_entropy_backward(logits, targets, options, lse, dloss, grad)
            }
            Write::InPlace(logits) => {
                xent_core::cross_entropy_backward_in_place(logits, targets, options, lse, dloss)
            }
        }
    }

    fn normalize(rows: Write<'_, T>, normalization: Normalization) -> Result<()> {
        match (rows, normalization) {
            (Write::Separate(x, y), Normalization::Softmax) => xent_core::softmax(x, y),
            (Write::InPlace(x), Normalization::Softmax) => xent_core::softmax_in_place(x),
            (Write::Separate(x, y), Normalization::LogSoftmax) => xent_core::log_softmax(x, y),
            (Write::InPlace(x), Normalization::LogSoftmax) => xent_core::log_softmax_in_place(x),
        }
    }
}
