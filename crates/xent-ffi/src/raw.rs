//! C pointers turned into the core crate's checked views.
//!
//! Every check that needs the pointers themselves runs here — NULL, shape, alignment, size
//! and overlap — and all of them run before the first slice is created, so the views handed
//! to the core crate never alias: no `&mut` ever shares memory with another reference.
//!
//! A strided buffer occupies the bytes from its first element to the end of its last row,
//! the padding between rows included. Overlap checks compare these ranges, which is
//! conservative: an output interleaved with another buffer inside its padding is refused
//! although no element would be shared.

use core::ops::Range;

use xent::{Rows, RowsMut};

use crate::status::XentStatus;

/// A C buffer of `len` elements of `T` that passed every check a slice needs: not NULL
/// unless empty, aligned for `T`, at most `isize::MAX` bytes, and not wrapping around the
/// address space. Whether the memory is really there is the caller's contract.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffer<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Buffer<T> {
    /// `ptr` as a buffer of `len` elements; NULL is accepted for an empty buffer only.
    pub(crate) fn new(ptr: *const T, len: usize) -> Result<Self, XentStatus> {
        if len == 0 {
            return Ok(Buffer {
                ptr: ptr.cast_mut(),
                len,
            });
        }
        if ptr.is_null() {
            return Err(XentStatus::NullPointer);
        }
        let fits = len
            .checked_mul(size_of::<T>())
            .filter(|&bytes| bytes <= isize::MAX as usize)
            .and_then(|bytes| ptr.addr().checked_add(bytes))
            .is_some();
        if !fits || !ptr.is_aligned() {
            return Err(XentStatus::InvalidShape);
        }
        Ok(Buffer {
            ptr: ptr.cast_mut(),
            len,
        })
    }

    /// A buffer that must not be NULL even when empty (the `loss` output).
    pub(crate) fn required(ptr: *const T, len: usize) -> Result<Self, XentStatus> {
        if ptr.is_null() {
            return Err(XentStatus::NullPointer);
        }
        Buffer::new(ptr, len)
    }

    /// An optional buffer: NULL means "not given".
    pub(crate) fn optional(ptr: *const T, len: usize) -> Result<Option<Self>, XentStatus> {
        if ptr.is_null() {
            Ok(None)
        } else {
            Buffer::new(ptr, len).map(Some)
        }
    }

    /// The bytes the buffer occupies (empty for an empty buffer).
    pub(crate) fn bytes(&self) -> Range<usize> {
        let start = self.ptr.addr();
        // Cannot overflow: checked in `new`.
        start..start + self.len * size_of::<T>()
    }

    /// The buffer as a shared slice.
    ///
    /// # Safety
    ///
    /// The buffer's memory must be initialized and valid for reads for `'a`, and nothing may
    /// write it during `'a`.
    pub(crate) unsafe fn as_slice<'a>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `new` checked that the pointer is non-null and aligned and that `len`
        // elements fit in isize::MAX bytes without wrapping; the caller guarantees the
        // memory is valid and not written for 'a.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The buffer as an exclusive slice.
    ///
    /// # Safety
    ///
    /// The buffer's memory must be initialized and valid for reads and writes for `'a`, and
    /// no other reference or access may reach it during `'a` (its range is disjoint from
    /// every other buffer of the call: see [`check_disjoint`]).
    pub(crate) unsafe fn as_mut_slice<'a>(&self) -> &'a mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, and the caller guarantees exclusive access for 'a.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A checked C buffer of `rows` rows of `cols` elements, row `i` starting at element
/// `i * stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StridedBuffer<T> {
    buffer: Buffer<T>,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<T> StridedBuffer<T> {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// `ptr` as a batch of rows. NULL is accepted only for no rows, and then means "no
    /// buffer": its stride is not looked at. Otherwise the shape is checked by
    /// [`Rows::required_len`].
    pub(crate) fn new(
        ptr: *const T,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<Self, XentStatus> {
        let (len, stride) = match (ptr.is_null(), rows) {
            // No buffer: an empty view, whose stride must only be valid for the core crate.
            (true, 0) => (0, cols),
            (true, _) => return Err(XentStatus::NullPointer),
            (false, _) => (Rows::<T>::required_len(rows, cols, stride)?, stride),
        };
        Ok(StridedBuffer {
            buffer: Buffer::new(ptr, len)?,
            rows,
            cols,
            stride,
        })
    }

    /// Whether `ptr` with `stride` names exactly this batch (the in-place case).
    pub(crate) fn is_exactly(&self, ptr: *const T, stride: usize) -> bool {
        ptr.addr() == self.buffer.ptr.addr() && stride == self.stride
    }

    /// The bytes the batch occupies, padding between rows included.
    pub(crate) fn bytes(&self) -> Range<usize> {
        self.buffer.bytes()
    }

    /// The batch as the core crate's read-only view.
    ///
    /// # Safety
    ///
    /// As [`Buffer::as_slice`].
    pub(crate) unsafe fn as_rows<'a>(&self) -> Result<Rows<'a, T>, XentStatus> {
        // SAFETY: forwarded to the caller.
        let data = unsafe { self.buffer.as_slice() };
        Ok(Rows::new(data, self.rows, self.cols, self.stride)?)
    }

    /// The batch as the core crate's writable view.
    ///
    /// # Safety
    ///
    /// As [`Buffer::as_mut_slice`].
    pub(crate) unsafe fn as_rows_mut<'a>(&self) -> Result<RowsMut<'a, T>, XentStatus> {
        // SAFETY: forwarded to the caller.
        let data = unsafe { self.buffer.as_mut_slice() };
        Ok(RowsMut::new(data, self.rows, self.cols, self.stride)?)
    }
}

/// Refuses (OVERLAPPING_BUFFERS) any output whose bytes meet those of another output or of
/// an input. Inputs may share memory with each other; empty buffers meet nothing.
pub(crate) fn check_disjoint(
    outputs: &[Option<Range<usize>>],
    inputs: &[Option<Range<usize>>],
) -> Result<(), XentStatus> {
    let meet = |a: &Range<usize>, b: &Range<usize>| {
        !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
    };
    for (i, output) in outputs.iter().enumerate() {
        let Some(output) = output else { continue };
        let others = outputs[i + 1..].iter().chain(inputs).flatten();
        if others.into_iter().any(|other| meet(output, other)) {
            return Err(XentStatus::OverlappingBuffers);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_refuse_null_misaligned_and_oversized_pointers() {
        let data = [0.0f32; 4];
        let ptr = data.as_ptr();
        assert!(Buffer::new(ptr, 4).is_ok());
        assert!(Buffer::<f32>::new(core::ptr::null(), 0).is_ok());
        assert_eq!(
            Buffer::<f32>::new(core::ptr::null(), 1).unwrap_err(),
            XentStatus::NullPointer
        );
        assert_eq!(
            Buffer::<f32>::required(core::ptr::null(), 0).unwrap_err(),
            XentStatus::NullPointer
        );
        assert!(
            Buffer::<f32>::optional(core::ptr::null(), 3)
                .unwrap()
                .is_none()
        );
        let misaligned = ptr.cast::<u8>().wrapping_add(1).cast::<f32>();
        assert_eq!(
            Buffer::new(misaligned, 1).unwrap_err(),
            XentStatus::InvalidShape
        );
        assert_eq!(
            Buffer::new(ptr, usize::MAX / 2).unwrap_err(),
            XentStatus::InvalidShape
        );
        let near_the_top = core::ptr::without_provenance::<f32>(usize::MAX - 7);
        assert_eq!(
            Buffer::new(near_the_top, 4).unwrap_err(),
            XentStatus::InvalidShape
        );
    }

    #[test]
    fn a_null_batch_of_no_rows_ignores_its_stride() {
        let null = core::ptr::null::<f32>();
        let empty = StridedBuffer::new(null, 0, 5, 0).unwrap();
        // SAFETY: an empty buffer reads no memory.
        let view = unsafe { empty.as_rows() }.unwrap();
        assert_eq!((view.rows(), view.cols()), (0, 5));
        assert_eq!(
            StridedBuffer::new(null, 1, 5, 5).unwrap_err(),
            XentStatus::NullPointer
        );
        let data = [0.0f32; 8];
        assert_eq!(
            StridedBuffer::new(data.as_ptr(), 0, 5, 0).unwrap_err(),
            XentStatus::InvalidShape
        );
        let batch = StridedBuffer::new(data.as_ptr(), 2, 3, 5).unwrap();
        assert_eq!(batch.bytes().len(), 8 * size_of::<f32>());
        assert!(batch.is_exactly(data.as_ptr(), 5));
        assert!(!batch.is_exactly(data.as_ptr(), 4));
    }

    #[test]
    fn only_outputs_must_be_disjoint() {
        let r = |a: usize, b: usize| Some(a..b);
        assert_eq!(check_disjoint(&[r(0, 8)], &[r(8, 16)]), Ok(()));
        assert_eq!(
            check_disjoint(&[r(0, 8)], &[r(4, 5), r(4, 5)]),
            Err(XentStatus::OverlappingBuffers)
        );
        assert_eq!(
            check_disjoint(&[r(0, 8), r(7, 9)], &[]),
            Err(XentStatus::OverlappingBuffers)
        );
        assert_eq!(
            check_disjoint(&[r(0, 8), None], &[r(0, 8).filter(|_| false)]),
            Ok(())
        );
        // Inputs may overlap each other; empty ranges meet nothing.
        assert_eq!(check_disjoint(&[r(20, 24)], &[r(0, 8), r(0, 8)]), Ok(()));
        assert_eq!(check_disjoint(&[r(4, 4)], &[r(0, 8)]), Ok(()));
    }
}
