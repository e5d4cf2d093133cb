//! The logits of a call and where its output goes: nowhere, a separate buffer, or the
//! logits themselves.

use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::kernels::{GROUP, RowIo, StridedIo, StridedRows};
use crate::rows::{Rows, RowsMut};
use crate::schedule::{SplitAtRow, SplitRows};

/// The logits of a call and where its output (a gradient, probabilities) goes.
pub(crate) enum Pass<'a, T = f32> {
    /// Read the logits, write no gradient.
    Forward(Rows<'a, T>),
    /// Read the logits, write the gradient into a separate buffer.
    Separate(Rows<'a, T>, RowsMut<'a, T>),
    /// Overwrite the logits with the gradient.
    InPlace(RowsMut<'a, T>),
}

impl<'a, T: Logit> Pass<'a, T> {
    pub(crate) fn cols(&self) -> usize {
        match self {
            Pass::Forward(x) | Pass::Separate(x, _) => x.cols(),
            Pass::InPlace(x) => x.cols(),
        }
    }

    pub(crate) fn input(&self, i: usize) -> &[T] {
        match self {
            Pass::Forward(x) | Pass::Separate(x, _) => x.row(i),
            Pass::InPlace(x) => x.row(i),
        }
    }

    /// Checks that a separate output buffer (named `output` in the error) has the
    /// logits' shape.
    pub(crate) fn check(&self, output: &'static str) -> Result<()> {
        if let Pass::Separate(x, out) = self
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

impl<T: Logit> Pass<'_, T> {
    pub(crate) fn io(&mut self, i: usize) -> Option<RowIo<'_, T>> {
        match self {
            Pass::Forward(_) => None,
            Pass::Separate(x, out) => Some(RowIo::Separate(x.row(i), out.row_mut(i))),
            Pass::InPlace(x) => Some(RowIo::in_place(x.row_mut(i))),
        }
    }

    /// Rows `first..first + GROUP·groups` for the short-row kernels (`groups ≥ 1`).
    pub(crate) fn groups(&mut self, first: usize, groups: usize) -> StridedRows<'_, T> {
        let (n, cols) = (GROUP * groups, self.cols());
        let (io, stride) = match self {
            Pass::Forward(x) => (StridedIo::Read(x.span(first, n)), x.stride()),
            Pass::Separate(x, out) => {
                let out_stride = out.stride();
                let io = StridedIo::Separate(x.span(first, n), out.span_mut(first, n), out_stride);
                (io, x.stride())
            }
            Pass::InPlace(x) => {
                let stride = x.stride();
                (StridedIo::InPlace(x.span_mut(first, n)), stride)
            }
        };
        StridedRows::new(io, cols, stride, groups)
    }
}

impl<T: Logit> SplitRows for Pass<'_, T> {
    fn rows(&self) -> usize {
        match self {
            Pass::Forward(x) | Pass::Separate(x, _) => x.rows(),
            Pass::InPlace(x) => x.rows(),
        }
    }
}

impl<T> SplitAtRow for Pass<'_, T> {
    fn split_at_row(self, at: usize) -> (Self, Self) {
        match self {
            Pass::Forward(x) => {
                let (a, b) = x.split_at_row(at);
                (Pass::Forward(a), Pass::Forward(b))
            }
            Pass::Separate(x, out) => {
                let (xa, xb) = x.split_at_row(at);
                let (oa, ob) = out.split_at_row(at);
                (Pass::Separate(xa, oa), Pass::Separate(xb, ob))
            }
            Pass::InPlace(x) => {
                let (a, b) = x.split_at_row(at);
                (Pass::InPlace(a), Pass::InPlace(b))
            }
        }
    }
}
