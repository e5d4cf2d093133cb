//! The logits of a call and where its output goes: nowhere, a separate buffer, or the
//! logits themselves.

use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::kernels::{GROUP, RowIo, StridedIo, StridedRows};
use crate::rows::{Rows, RowsMut};
use crate::schedule::{SplitAtRow, SplitRows};

/// The logits of a call and where its output (a gradient, probabilities) goes: the
/// batch's [`RowIo`], which its rows yield one by one.
pub(crate) enum BatchIo<'a, T = f32> {
    /// Read the logits, write no gradient.
    Forward(Rows<'a, T>),
    /// Read the logits, write the gradient into a separate buffer.
    Separate(Rows<'a, T>, RowsMut<'a, T>),
    /// Overwrite the logits with the gradient.
    InPlace(RowsMut<'a, T>),
}

impl<'a, T: Logit> BatchIo<'a, T> {
    pub(crate) fn cols(&self) -> usize {
        match self {
            BatchIo::Forward(x) | BatchIo::Separate(x, _) => x.cols(),
            BatchIo::InPlace(x) => x.cols(),
        }
    }

    pub(crate) fn input(&self, i: usize) -> &[T] {
        match self {
            BatchIo::Forward(x) | BatchIo::Separate(x, _) => x.row(i),
            BatchIo::InPlace(x) => x.row(i),
        }
    }

    /// Checks that a separate output buffer (named `output` in the error) has the
    /// logits' shape.
    pub(crate) fn check(&self, output: &'static str) -> Result<()> {
        if let BatchIo::Separate(x, out) = self
            && (out.rows(), out.cols()) != (x.rows(), x.cols())
        {
            return Err(Error::shape(
                output,
                format!(
                    "is {}×{}, the logits are {}×{}",
                    out.rows(),
                    out.cols(),
                    x.rows(),
                    x.cols()
                ),
            ));
        }
        Ok(())
    }
}

impl<T: Logit> BatchIo<'_, T> {
    pub(crate) fn io(&mut self, i: usize) -> Option<RowIo<'_, T>> {
        match self {
            BatchIo::Forward(_) => None,
            BatchIo::Separate(x, out) => Some(RowIo::Separate(x.row(i), out.row_mut(i))),
            BatchIo::InPlace(x) => Some(RowIo::in_place(x.row_mut(i))),
        }
    }

    /// Rows `first..first + GROUP·groups` for the short-row kernels (`groups ≥ 1`).
    pub(crate) fn groups(&mut self, first: usize, groups: usize) -> StridedRows<'_, T> {
        let (n, cols) = (GROUP * groups, self.cols());
        let (io, stride) = match self {
            BatchIo::Forward(x) => (StridedIo::Read(x.span(first, n)), x.stride()),
            BatchIo::Separate(x, out) => {
                let out_stride = out.stride();
                let io = StridedIo::Separate(x.span(first, n), out.span_mut(first, n), out_stride);
                (io, x.stride())
            }
            BatchIo::InPlace(x) => {
                let stride = x.stride();
                (StridedIo::InPlace(x.span_mut(first, n)), stride)
            }
        };
        StridedRows::new(io, cols, stride, groups)
    }
}

impl<T: Logit> SplitRows for BatchIo<'_, T> {
    fn rows(&self) -> usize {
        match self {
            BatchIo::Forward(x) | BatchIo::Separate(x, _) => x.rows(),
            BatchIo::InPlace(x) => x.rows(),
        }
    }
}

impl<T> SplitAtRow for BatchIo<'_, T> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        match self {
            BatchIo::Forward(x) => {
                let (a, b) = x.split_at_row(at);
                (BatchIo::Forward(a), BatchIo::Forward(b))
            }
            BatchIo::Separate(x, out) => {
                let (xa, xb) = x.split_at_row(at);
                let (oa, ob) = out.split_at_row(at);
                (BatchIo::Separate(xa, oa), BatchIo::Separate(xb, ob))
            }
            BatchIo::InPlace(x) => {
                let (a, b) = x.split_at_row(at);
                (BatchIo::InPlace(a), BatchIo::InPlace(b))
            }
        }
    }
}
