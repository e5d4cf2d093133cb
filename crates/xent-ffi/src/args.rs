//! The arguments several functions share, checked: the logits with where their rows are
//! written, and the targets. Each check runs when its argument's turn comes (the header's
//! order: each argument in turn, then the overlaps), and no view exists before every check
//! has passed.

use core::ops::Range;

use xent::{Rows, RowsMut, Targets};

use crate::raw::{Buffer, StridedBuffer};
use crate::status::XentStatus;

/// The logits of a forward call: only read, or with the gradient written too.
pub(crate) enum BatchIo<'a, T> {
    Read(Rows<'a, T>),
    Write(Write<'a, T>),
}

/// Where a call writes the logits' rows: a separate buffer, or over the logits.
pub(crate) enum Write<'a, T> {
    Separate(Rows<'a, T>, RowsMut<'a, T>),
    InPlace(RowsMut<'a, T>),
}

/// The logits' batch, with where a call writes its rows.
impl<T: Copy> StridedBuffer<T> {
    /// The batch `out` (same shape, `stride`; NULL only without rows) as where the rows are
    /// written: in place when C passed the input's own pointer and stride.
    pub(crate) fn write_to(&self, out: *mut T, stride: usize) -> Result<Written<T>, XentStatus> {
        Ok(Written {
            input: *self,
            output: StridedBuffer::new(out, self.rows(), self.cols(), stride)?,
            in_place: !out.is_null() && self.is_exactly(out, stride),
        })
    }

    /// [`write_to`](Self::write_to), or `None` when `out` is NULL (nothing to write).
    pub(crate) fn write_to_given(
        &self,
        out: *mut T,
        stride: usize,
    ) -> Result<Option<Written<T>>, XentStatus> {
        (!out.is_null())
            .then(|| self.write_to(out, stride))
            .transpose()
    }

    /// The bytes a forward call reads: none when `grad` overwrites the logits.
    pub(crate) fn read_bytes(&self, grad: Option<&Written<T>>) -> Option<Range<usize>> {
        match grad {
            Some(grad) => grad.input_bytes(),
            None => Some(self.bytes()),
        }
    }

    /// A forward call's views: the logits, with `grad`'s when it writes.
    ///
    /// # Safety
    ///
    /// As [`Written::views`].
    pub(crate) unsafe fn pass<'a>(
        &self,
        grad: Option<Written<T>>,
    ) -> Result<BatchIo<'a, T>, XentStatus> {
        // SAFETY: forwarded to the caller.
        Ok(unsafe {
            match grad {
                None => BatchIo::Read(self.as_rows()?),
                Some(grad) => BatchIo::Write(grad.views()?),
            }
        })
    }
}

/// The logits and the batch their rows are written to, checked.
pub(crate) struct Written<T> {
    input: StridedBuffer<T>,
    output: StridedBuffer<T>,
    in_place: bool,
}

impl<T> Written<T> {
    /// The bytes read: none in place, where the input is the output.
    pub(crate) fn input_bytes(&self) -> Option<Range<usize>> {
        (!self.in_place).then(|| self.input.bytes())
    }

    /// The bytes written.
    pub(crate) fn output_bytes(&self) -> Range<usize> {
        self.output.bytes()
    }

    /// The core crate's views.
    ///
    /// # Safety
    ///
    /// The input is readable and the output writable for `'a`, and the output was checked
    /// disjoint from every other buffer of the call (in place, the input has no other view).
    pub(crate) unsafe fn views<'a>(&self) -> Result<Write<'a, T>, XentStatus> {
        // SAFETY: forwarded to the caller.
        Ok(unsafe {
            if self.in_place {
                Write::InPlace(self.output.as_rows_mut()?)
            } else {
                Write::Separate(self.input.as_rows()?, self.output.as_rows_mut()?)
            }
        })
    }
}

/// The targets as C passed them: `rows` class indices, or `rows` rows of `cols`
/// probabilities with a stride.
pub(crate) enum TargetsArg {
    Hard(*const i64),
    Soft(*const f32, usize),
}

/// The targets, checked.
pub(crate) enum CheckedTargets {
    Hard(Buffer<i64>),
    Soft(StridedBuffer<f32>),
}

impl CheckedTargets {
    /// The targets of `rows` rows of `cols` logits.
    pub(crate) fn new(arg: TargetsArg, rows: usize, cols: usize) -> Result<Self, XentStatus> {
        Ok(match arg {
            TargetsArg::Hard(ptr) => CheckedTargets::Hard(Buffer::new(ptr, rows)?),
            TargetsArg::Soft(ptr, stride) => {
                CheckedTargets::Soft(StridedBuffer::new(ptr, rows, cols, stride)?)
            }
        })
    }

    pub(crate) fn bytes(&self) -> Range<usize> {
        match self {
            CheckedTargets::Hard(classes) => classes.bytes(),
            CheckedTargets::Soft(probs) => probs.bytes(),
        }
    }

    /// The core crate's view.
    ///
    /// # Safety
    ///
    /// As [`Buffer::as_slice`].
    pub(crate) unsafe fn view<'a>(&self) -> Result<Targets<'a>, XentStatus> {
        // SAFETY: forwarded to the caller.
        Ok(unsafe {
            match self {
                CheckedTargets::Hard(classes) => Targets::I64(classes.as_slice()),
                CheckedTargets::Soft(probs) => Targets::Soft(probs.as_rows()?),
            }
        })
    }
}
