//! Matrix products over checked strided views, done by the `gemm` crate (rayon-parallel on
//! the current pool, kernels chosen at run time).

use gemm::{Parallelism, gemm};

use crate::schedule::calling_thread_only;

/// Whether a `rows × cols` matrix with these strides lies inside `len` elements.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    (rows - 1)
        .checked_mul(row_stride)
        .zip((cols - 1).checked_mul(col_stride))
        .and_then(|(a, b)| a.checked_add(b))
        .is_some_and(|last| last < len && row_stride <= isize::MAX as usize)
        && col_stride <= isize::MAX as usize
}

/// A read-only matrix inside a slice: element (i, j) at `i·row_stride + j·col_stride`.
/// The stride of a dimension of `len` elements, as gemm gets it: a dimension of one element
/// never steps, and its stride can be anything a view accepts (a one-row batch with stride
/// `usize::MAX` is valid, and gemm takes `isize` strides), so it becomes 1 (found by the
/// fuzzer: such a hidden-state view panicked in `fits`).
fn unused_step(len: usize, stride: usize) -> usize {
    if len <= 1 { 1 } else { stride }
}

#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// Panics when the matrix does not lie inside `data` (a bug of the caller's checks).
    pub(crate) fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        let (row_stride, col_stride) =
            (unused_step(rows, row_stride), unused_step(cols, col_stride));
        assert!(fits(data.len(), rows, cols, row_stride, col_stride));
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// Row-major rows of `cols` values, row `i` at `i·stride`.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        Mat::new(data, rows, cols, stride, 1)
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` of a row-major matrix.
    pub(crate) fn row(&self, i: usize) -> &'a [f32] {
        assert!(self.col_stride == 1 && i < self.rows);
        &self.data[i * self.row_stride..i * self.row_stride + self.cols]
    }

    /// The transpose (no data moves).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A writable row-major matrix inside a slice: element (i, j) at `i·stride + j`.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> MatMut<'a> {
    /// Panics when the matrix does not lie inside `data` (a bug of the caller's checks).
    pub(crate) fn row_major(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        let stride = unused_step(rows, stride);
        assert!(fits(data.len(), rows, cols, stride, 1));
        MatMut {
            data,
            rows,
            cols,
            stride,
        }
    }
}

/// `dst = a·b`, or `dst += a·b` with `accumulate`.
pub(crate) fn matmul(dst: MatMut<'_>, a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(a.rows == m && b.cols == n && b.rows == k, "matmul shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst.data[i * dst.stride..i * dst.stride + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if calling_thread_only() {
        Parallelism::None
    } else {
        // 0: every thread of the current rayon pool.
        Parallelism::Rayon(0)
    };
    // Strides fit in isize: checked by `fits`.
    let s = |stride: usize| stride as isize;
    // SAFETY: `fits` checked that every element (i, j) of each matrix lies inside its
    // slice, so gemm reads and writes nothing else; `dst` is an exclusive borrow and `a`
    // and `b` shared ones, so the output aliases neither input.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            s(dst.stride),
            accumulate,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b.data.as_ptr(),
            s(b.col_stride),
            s(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive triple loop.
    fn naive(a: &Mat<'_>, b: &Mat<'_>) -> Vec<f64> {
        let at = |m: &Mat<'_>, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride];
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|k| f64::from(at(a, i, k)) * f64::from(at(b, k, j)))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_over_strides_and_transposes_match_the_triple_loop() {
        // Under Miri, which interprets each operation about a million times slower (40 s
        // for these shapes), smaller products of the same odd shapes.
        let shapes = if cfg!(miri) {
            [(1, 1, 1), (3, 5, 7), (17, 5, 9), (9, 3, 40), (5, 0, 3)]
        } else {
            [(1, 1, 1), (3, 5, 7), (17, 65, 33), (64, 3, 130), (5, 0, 3)]
        };
        for (m, n, k) in shapes {
            let a_data: Vec<f32> = (0..m * (k + 2)).map(|v| (v % 13) as f32 - 6.0).collect();
            let b_data: Vec<f32> = (0..n * (k + 1)).map(|v| (v % 7) as f32 * 0.5).collect();
            let a = Mat::row_major(&a_data, m, k, k + 2);
            // b is given transposed: n rows of k values, read as k × n.
            let b = Mat::row_major(&b_data, n, k, k + 1).t();
            let want = naive(&a, &b);
            for accumulate in [false, true] {
                let stride = n + 3;
                let mut out = vec![1.0f32; m * stride];
                matmul(MatMut::row_major(&mut out, m, n, stride), a, b, accumulate);
                for i in 0..m {
                    for j in 0..n {
                        let expected = want[i * n + j] + if accumulate { 1.0 } else { 0.0 };
                        assert_eq!(f64::from(out[i * stride + j]), expected, "({i}, {j})");
                    }
                    assert!(
                        out[i * stride + n..(i + 1) * stride]
                            .iter()
                            .all(|&v| v == 1.0)
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic]
    fn a_matrix_outside_its_slice_is_refused() {
        let data = [0.0f32; 10];
        let _ = Mat::row_major(&data, 3, 4, 4);
    }
}
