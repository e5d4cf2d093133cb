//! The arguments several functions share, checked: the logits with where their rows are
//! written, and the targets. Each check runs when its argument's turn comes (the header's
//! order: each argument in turn, then the overlaps), and no view exists before every check
//! has passed.

use core::ops::Range;

use xent::{Logit, Rows, RowsMut, Targets};

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
}

/// A forward call's outputs, checked in the header's order: the loss (never NULL), the
/// gradient (NULL for none; over the logits in place) and the lse (NULL for none).
pub(crate) struct ForwardOut<T: Logit> {
    logits: StridedBuffer<T>,
    loss: Buffer<T::Stat>,
    grad: Option<Written<T>>,
    lse: Option<Buffer<T::Stat>>,
}

impl<T: Logit> ForwardOut<T> {
    /// The outputs of a call on `logits`: `loss` holds `loss_len` values, `grad` the logits'
    /// shape with its stride, `lse` one value per row.
    pub(crate) fn new(
        logits: StridedBuffer<T>,
        (loss, loss_len): (*mut T::Stat, usize),
        (grad, grad_stride): (*mut T, usize),
        lse: *mut T::Stat,
    ) -> Result<Self, XentStatus> {
        Ok(ForwardOut {
            loss: Buffer::required(loss, loss_len)?,
            grad: (!grad.is_null())
                .then(|| logits.write_to(grad, grad_stride))
                .transpose()?,
            lse: Buffer::optional(lse, logits.rows())?,
            logits,
        })
    }

    /// The bytes written.
    pub(crate) fn output_bytes(&self) -> [Option<Range<usize>>; 3] {
        [
            Some(self.loss.bytes()),
            self.grad.as_ref().map(Written::output_bytes),
            self.lse.as_ref().map(Buffer::bytes),
        ]
    }

    /// The logits' bytes, read unless the gradient overwrites them.
    pub(crate) fn logit_bytes(&self) -> Option<Range<usize>> {
        match &self.grad {
            Some(grad) => grad.input_bytes(),
            None => Some(self.logits.bytes()),
        }
    }

    /// The core crate's views: the logits (with the gradient's rows when it is written),
    /// the loss and the lse.
    ///
    /// # Safety
    ///
    /// Every buffer is valid for `'a` (the logits readable, the outputs writable), and the
    /// outputs were checked disjoint from each other and from every input of the call.
    #[allow(
        clippy::type_complexity,
        reason = "the three outputs, named by the caller"
    )]
    pub(crate) unsafe fn views<'a>(
        &self,
    ) -> Result<(BatchIo<'a, T>, &'a mut [T::Stat], Option<&'a mut [T::Stat]>), XentStatus> {
        // SAFETY: forwarded to the caller.
        unsafe {
            let io = match &self.grad {
                None => BatchIo::Read(self.logits.as_rows()?),
                Some(grad) => BatchIo::Write(grad.views()?),
            };
            let lse = self.lse.as_ref().map(|lse| lse.as_mut_slice());
            Ok((io, self.loss.as_mut_slice(), lse))
        }
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
