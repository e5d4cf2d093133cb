//! Checked views of a batch of rows inside a slice: `rows` rows of `cols` elements, row `i`
//! starting at element `i * stride`. The elements between `cols` and `stride` (padding) are
//! never read or written.

use crate::error::{Error, Result};

/// The number of elements a `rows × cols` view with `stride` spans, checking the shape:
/// zero columns with rows, a stride smaller than `cols`, or a byte count that overflows
/// `isize` are refused.
fn span<T>(rows: usize, cols: usize, stride: usize) -> Result<usize> {
    const BUFFER: &str = "rows";
    if stride < cols {
        return Err(Error::shape(
            BUFFER,
            format!("have stride {stride}, smaller than the {cols} columns of a row"),
        ));
    }
    if rows == 0 {
        return Ok(0);
    }
    if cols == 0 {
        return Err(Error::shape(
            BUFFER,
            format!("have 0 columns for {rows} rows"),
        ));
    }
    (rows - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(cols))
        .filter(|&n| {
            n.checked_mul(size_of::<T>())
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| {
            Error::shape(
                BUFFER,
                format!("{rows} × stride {stride} overflows the address space"),
            )
        })
}

fn check_fits<T>(len: usize, rows: usize, cols: usize, stride: usize) -> Result<()> {
    let needed = span::<T>(rows, cols, stride)?;
    if len < needed {
        return Err(Error::shape(
            "rows",
            format!(
                "need {needed} elements for {rows} rows of {cols} with stride {stride}, the slice has {len}"
            ),
        ));
    }
    Ok(())
}

/// A read-only batch of rows inside a slice.
///
/// ```
/// use xent::Rows;
///
/// // Two rows of three values, padded to a stride of four.
/// let data = [1.0f32, 2.0, 3.0, f32::NAN, 4.0, 5.0, 6.0];
/// let batch = Rows::new(&data, 2, 3, 4)?;
/// assert_eq!(batch.row(1), &[4.0, 5.0, 6.0]);
/// assert!(Rows::new(&data, 2, 3, 2).is_err()); // stride < cols
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T = f32> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> Rows<'a, T> {
    /// A view of `rows` rows of `cols` elements, row `i` starting at `data[i * stride]`.
    ///
    /// Fails with [`Error::InvalidShape`] when `cols == 0` while `rows > 0`, when
    /// `stride < cols`, when the span overflows, or when `data` is too short. `data` may be
    /// longer than the span (the last row needs no padding).
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_fits::<T>(data.len(), rows, cols, stride)?;
        Ok(Rows {
            data,
            rows,
            cols,
            stride,
        })
    }

    /// The number of elements a slice must hold for `rows` rows of `cols` elements with
    /// `stride`: `(rows − 1)·stride + cols`, 0 without rows; or the [`Error::InvalidShape`]
    /// [`Rows::new`] gives such a shape whatever the slice.
    ///
    /// ```
    /// use xent::Rows;
    ///
    /// assert_eq!(Rows::<f32>::required_len(3, 4, 6)?, 16);
    /// assert_eq!(Rows::<f32>::required_len(0, 5, 5)?, 0);
    /// assert!(Rows::<f32>::required_len(2, 4, 3).is_err()); // stride < cols
    /// assert!(Rows::<f32>::required_len(2, 0, 0).is_err()); // rows of no columns
    /// assert!(Rows::<f32>::required_len(usize::MAX, 2, 2).is_err()); // overflows
    /// assert!(Rows::<f32>::required_len(2, 1, usize::MAX).is_err());
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn required_len(rows: usize, cols: usize, stride: usize) -> Result<usize> {
        span::<T>(rows, cols, stride)
    }

    /// A view of densely packed rows of `cols` elements: `data.len()` must be a multiple of
    /// `cols` (any length when `cols` is 0 and `data` is empty).
    ///
    /// ```
    /// let data = [0.5f32; 12];
    /// let batch = xent::Rows::packed(&data, 4)?;
    /// assert_eq!((batch.rows(), batch.cols()), (3, 4));
    /// # Ok::<(), xent::Error>(())
    /// ```
    pub fn packed(data: &'a [T], cols: usize) -> Result<Self> {
        let rows = packed_rows(data.len(), cols)?;
        Self::new(data, rows, cols, cols)
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of elements of a row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The distance in elements between the starts of two rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i` (its `cols` elements, without padding). Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &'a [T] {
        assert!(i < self.rows, "row {i} of a {}-row view", self.rows);
        &self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// The elements from row `first`'s start to row `first + n − 1`'s end (padding
    /// included). Panics unless `1 ≤ n` and `first + n ≤ rows`.
    pub(crate) fn span(&self, first: usize, n: usize) -> &'a [T] {
        assert!(n >= 1 && first + n <= self.rows);
        &self.data[first * self.stride..(first + n - 1) * self.stride + self.cols]
    }

    /// The rows `0..at` and `at..rows` as two views. Panics when `at > rows`.
    pub(crate) fn split_at_row(self, at: usize) -> (Self, Self) {
        assert!(at <= self.rows);
        let cut = (at * self.stride).min(self.data.len());
        let (head, tail) = self.data.split_at(cut);
        (
            Rows {
                data: head,
                rows: at,
                ..self
            },
            Rows {
                data: tail,
                rows: self.rows - at,
                ..self
            },
        )
    }
}

/// A writable batch of rows inside a slice: an output, or logits overwritten in place.
///
/// ```
/// use xent::RowsMut;
///
/// let mut data = [0.0f32; 8];
/// let mut out = RowsMut::new(&mut data, 2, 3, 4)?;
/// out.row_mut(1).copy_from_slice(&[1.0, 2.0, 3.0]);
/// assert_eq!(data, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0]);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug)]
pub struct RowsMut<'a, T = f32> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> RowsMut<'a, T> {
    /// A writable view; the same checks as [`Rows::new`].
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_fits::<T>(data.len(), rows, cols, stride)?;
        Ok(RowsMut {
            data,
            rows,
            cols,
            stride,
        })
    }

    /// A writable view of densely packed rows; the same checks as [`Rows::packed`].
    pub fn packed(data: &'a mut [T], cols: usize) -> Result<Self> {
        let rows = packed_rows(data.len(), cols)?;
        Self::new(data, rows, cols, cols)
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of elements of a row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The distance in elements between the starts of two rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i`, read-only. Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &[T] {
        assert!(i < self.rows, "row {i} of a {}-row view", self.rows);
        &self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// Row `i`, writable. Panics when `i >= rows`.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.rows, "row {i} of a {}-row view", self.rows);
        &mut self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// [`Rows::span`], writable.
    pub(crate) fn span_mut(&mut self, first: usize, n: usize) -> &mut [T] {
        assert!(n >= 1 && first + n <= self.rows);
        &mut self.data[first * self.stride..(first + n - 1) * self.stride + self.cols]
    }

    /// A read-only view of the same rows.
    pub fn as_rows(&self) -> Rows<'_, T> {
        Rows {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }

    /// A shorter-lived writable view of the same rows.
    pub fn reborrow(&mut self) -> RowsMut<'_, T> {
        RowsMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }

    /// The rows `0..at` and `at..rows` as two disjoint views. Panics when `at > rows`.
    pub(crate) fn split_at_row(self, at: usize) -> (Self, Self) {
        assert!(at <= self.rows);
        let cut = (at * self.stride).min(self.data.len());
        let (head, tail) = self.data.split_at_mut(cut);
        (
            RowsMut {
                data: head,
                rows: at,
                cols: self.cols,
                stride: self.stride,
            },
            RowsMut {
                data: tail,
                rows: self.rows - at,
                cols: self.cols,
                stride: self.stride,
            },
        )
    }
}

fn packed_rows(len: usize, cols: usize) -> Result<usize> {
    match (len, cols) {
        (0, _) => Ok(0),
        (_, 0) => Err(Error::shape(
            "rows",
            format!("have 0 columns for a slice of {len} elements"),
        )),
        _ if !len.is_multiple_of(cols) => Err(Error::shape(
            "rows",
            format!("of {cols} columns cannot tile a slice of {len} elements"),
        )),
        _ => Ok(len / cols),
    }
}

/// What each row is trained towards.
///
/// Hard targets convert from slices of `i64`, `i32` or `u32` class indices; soft targets
/// are a [`Rows`] view of one probability row per logits row.
///
/// ```
/// use xent::{Rows, Targets};
///
/// let classes: Targets = (&[2i64, 0, -100][..]).into();
/// let probs = [0.25f32, 0.75];
/// let soft: Targets = Rows::packed(&probs, 2)?.into();
/// assert_eq!(classes.len(), 3);
/// assert_eq!(soft.len(), 1);
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// One `i64` class index per row.
    I64(&'a [i64]),
    /// One `i32` class index per row.
    I32(&'a [i32]),
    /// One `u32` class index per row.
    U32(&'a [u32]),
    /// One row of target probabilities per logits row, shaped like the logits.
    Soft(Rows<'a, f32>),
}

impl Targets<'_> {
    /// The number of rows the targets describe.
    pub fn len(&self) -> usize {
        match self {
            Targets::I64(t) => t.len(),
            Targets::I32(t) => t.len(),
            Targets::U32(t) => t.len(),
            Targets::Soft(t) => t.rows(),
        }
    }

    /// Whether the targets describe no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hard target of row `i` as `i64`, `None` for soft targets.
    #[inline]
    pub(crate) fn class(&self, i: usize) -> Option<i64> {
        match self {
            Targets::I64(t) => Some(t[i]),
            Targets::I32(t) => Some(i64::from(t[i])),
            Targets::U32(t) => Some(i64::from(t[i])),
            Targets::Soft(_) => None,
        }
    }

    /// Rows `0..at` and `at..` as two target sets.
    pub(crate) fn split_at_row(self, at: usize) -> (Self, Self) {
        match self {
            Targets::I64(t) => {
                let (a, b) = t.split_at(at);
                (Targets::I64(a), Targets::I64(b))
            }
            Targets::I32(t) => {
                let (a, b) = t.split_at(at);
                (Targets::I32(a), Targets::I32(b))
            }
            Targets::U32(t) => {
                let (a, b) = t.split_at(at);
                (Targets::U32(a), Targets::U32(b))
            }
            Targets::Soft(t) => {
                let (a, b) = t.split_at_row(at);
                (Targets::Soft(a), Targets::Soft(b))
            }
        }
    }
}

impl<'a> From<&'a [i64]> for Targets<'a> {
    fn from(t: &'a [i64]) -> Self {
        Targets::I64(t)
    }
}

impl<'a> From<&'a [i32]> for Targets<'a> {
    fn from(t: &'a [i32]) -> Self {
        Targets::I32(t)
    }
}

impl<'a> From<&'a [u32]> for Targets<'a> {
    fn from(t: &'a [u32]) -> Self {
        Targets::U32(t)
    }
}

impl<'a> From<&'a Vec<i64>> for Targets<'a> {
    fn from(t: &'a Vec<i64>) -> Self {
        Targets::I64(t)
    }
}

impl<'a> From<Rows<'a, f32>> for Targets<'a> {
    fn from(t: Rows<'a, f32>) -> Self {
        Targets::Soft(t)
    }
}
