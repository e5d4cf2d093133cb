//! The logits of a call and where its output goes: nowhere, a separate buffer, or the
//! logits themselves.

use half::{bf16, f16};

use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::kernels::{GROUP, RowIo, StridedIo, StridedRows};
use crate::rows::{Rows, RowsMut};
use crate::schedule::SplitRows;

/// A pass of f32 or 16-bit logits by its element type: where the kernels' instances, one
/// per type and tier, are chosen, so that they are compiled once, in this crate.
pub(crate) enum Typed<'a> {
    F32(Pass<'a, f32>),
    Bf16(Pass<'a, bf16>),
    F16(Pass<'a, f16>),
}

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

    /// The same pass over f64 rows, or back unchanged when `T` is another type.
    pub(crate) fn into_f64(self) -> core::result::Result<Pass<'a, f64>, Self> {
        match self {
            Pass::Forward(x) => T::f64_rows(x).map(Pass::Forward).map_err(Pass::Forward),
            Pass::Separate(x, out) => match (T::f64_rows(x), T::f64_rows_mut(out)) {
                (Ok(x), Ok(out)) => Ok(Pass::Separate(x, out)),
                (Err(x), Err(out)) => Err(Pass::Separate(x, out)),
                _ => unreachable!("both views have the same element type"),
            },
            Pass::InPlace(x) => T::f64_rows_mut(x).map(Pass::InPlace).map_err(Pass::InPlace),
        }
    }

    /// The same pass over rows of `U`, or back unchanged when `T` is another type.
    pub(crate) fn cast<U: Logit>(self) -> core::result::Result<Pass<'a, U>, Self> {
        if core::any::TypeId::of::<T>() != core::any::TypeId::of::<U>() {
            return Err(self);
        }
        let pass = core::mem::ManuallyDrop::new(self);
        // SAFETY: `T` and `U` are the same type (checked above), so `Pass<'a, T>` and
        // `Pass<'a, U>` are too; the original is not dropped.
        Ok(unsafe { core::ptr::read((&*pass as *const Pass<'a, T>).cast::<Pass<'a, U>>()) })
    }

    /// This pass by element type, for the f32 kernels (f64 passes take the f64 path first).
    pub(crate) fn typed(self) -> Typed<'a> {
        let pass = match self.cast::<f32>() {
            Ok(p) => return Typed::F32(p),
            Err(p) => p,
        };
        let pass = match pass.cast::<bf16>() {
            Ok(p) => return Typed::Bf16(p),
            Err(p) => p,
        };
        match pass.cast::<f16>() {
            Ok(p) => Typed::F16(p),
            Err(_) => unreachable!("f64 passes take the f64 path"),
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
            Pass::InPlace(x) => Some(RowIo::InPlace(x.row_mut(i))),
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
