//! Matrix products over checked strided views: packed into the panels of the kernel tier's
//! micro-tile and multiplied by its kernel, rayon-parallel over blocks of rows.

use crate::dispatch::{Work, on_tier};
use crate::error::{Error, Result};
use crate::kernels::{GemmBlock, RowKernels};
use crate::rows::{Rows, RowsMut};
use crate::schedule::{calling_thread_only, map_parts};

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

/// The stride of a dimension of `len` elements as a matrix keeps it: a dimension of one
/// element never steps, and its stride can be anything a view accepts (a one-row batch with
/// stride `usize::MAX` is valid), so it becomes 1 (found by the fuzzer: such a hidden-state
/// view panicked in `fits`).
fn unused_step(len: usize, stride: usize) -> usize {
    if len <= 1 { 1 } else { stride }
}

/// A read-only matrix inside a slice: element (i, j) at `i·row_stride + j·col_stride`.
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

/// An operand of [`matmul`]: a batch of f32 rows as the matrix it holds, or transposed.
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'a> {
    /// The `rows × cols` matrix the view holds.
    Rows(Rows<'a, f32>),
    /// Its transpose, `cols × rows` (no data moves: the product reads the view by columns).
    Transposed(Rows<'a, f32>),
}

impl<'a> Matrix<'a> {
    fn mat(self) -> Mat<'a> {
        match self {
            Matrix::Rows(x) => Mat::row_major(x.span(0, x.rows()), x.rows(), x.cols(), x.stride()),
            Matrix::Transposed(x) => Matrix::Rows(x).mat().t(),
        }
    }
}

/// `out = a·b`, or `out += a·b` with `accumulate`: the f32 matrix product the
/// [linear head](crate::docs::linear_head) runs, on the active kernel tier and the current
/// rayon pool. Each operand can be a view's transpose, read in place.
///
/// Every entry of `out` is summed in blocks of 256 products along the inner dimension, each
/// block one chain of FMAs in order, then added to the entry: on one kernel tier the result
/// is the same bits on any number of threads and whatever the strides or transposition of
/// the operands.
///
/// ```
/// use xent::{Matrix, Rows, RowsMut};
///
/// let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
/// let b = [1.0f32, 0.0, 1.0, 1.0, 0.0, 2.0]; // 2 × 3, used transposed (3 × 2)
/// let mut out = [0.0f32; 4];
/// xent::matmul(
///     RowsMut::packed(&mut out, 2)?,
///     Matrix::Rows(Rows::packed(&a, 3)?),
///     Matrix::Transposed(Rows::packed(&b, 3)?),
///     false,
/// )?;
/// assert_eq!(out, [4.0, 7.0, 10.0, 16.0]);
/// # Ok::<(), xent::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] when the shapes do not chain: `a` is `m × k`, `b` must be
/// `k × n` and `out` `m × n`.
pub fn matmul(out: RowsMut<'_, f32>, a: Matrix<'_>, b: Matrix<'_>, accumulate: bool) -> Result<()> {
    let (a, b) = (a.mat(), b.mat());
    if b.rows != a.cols {
        return Err(Error::shape(
            "b",
            format!("has {} rows, a has {} columns", b.rows, a.cols),
        ));
    }
    if (out.rows(), out.cols()) != (a.rows, b.cols) {
        return Err(Error::shape(
            "out",
            format!(
                "is {}×{}, it must be {}×{}",
                out.rows(),
                out.cols(),
                a.rows,
                b.cols
            ),
        ));
    }
    let (rows, cols, stride) = (out.rows(), out.cols(), out.stride());
    let mut out = out;
    let dst = MatMut::row_major(out.span_mut(0, rows), rows, cols, stride);
    let _fp = crate::fpenv::enter();
    multiply(dst, a, b, accumulate);
    Ok(())
}

/// `dst = a·b`, or `dst += a·b` with `accumulate`, on the active kernel tier and the
/// current rayon pool.
pub(crate) fn multiply(dst: MatMut<'_>, a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    on_tier(Product {
        dst,
        a,
        b,
        accumulate,
    });
}

/// The depth of one block of a product: each C entry is summed in blocks of this many
/// products (an FMA chain each, in order), whatever the shapes, layouts and threads. A
/// packed B panel of this depth (32 KiB at 32 columns) stays in L1.
const DEPTH: usize = 256;

/// The rows of C one task computes, about: its packed A (96 KiB at depth 256) stays in L2.
const BLOCK_ROWS: usize = 96;

/// The columns of one packed B block: 2 MiB at depth 256, for the last-level cache.
const BLOCK_COLS: usize = 2048;

/// A product with its operands, for [`on_tier`].
struct Product<'a> {
    dst: MatMut<'a>,
    a: Mat<'a>,
    b: Mat<'a>,
    accumulate: bool,
}

impl Work for Product<'_> {
    type Output = ();

    fn run<K: RowKernels>(self, k: K) {
        product(k, self);
    }
}

/// The blocked product (the BLIS loop order): for each block of B's columns and each block
/// of the depth, B packed once into panels of the tile's width, then the rows of C in
/// blocks, in parallel, each packing its rows of A and running the tier's kernel.
fn product<K: RowKernels>(k: K, p: Product<'_>) {
    let Product {
        dst,
        a,
        b,
        accumulate,
    } = p;
    let (m, n, depth) = (dst.rows, dst.cols, a.cols);
    assert!(
        a.rows == m && b.cols == n && b.rows == depth,
        "matmul shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if depth == 0 {
        if !accumulate {
            for i in 0..m {
                dst.data[i * dst.stride..i * dst.stride + n].fill(0.0);
            }
        }
        return;
    }
    let (mr, nr) = k.gemm_tile();
    let threads = if calling_thread_only() {
        1
    } else {
        rayon::current_num_threads()
    };
    // Row blocks of whole tiles, as many as a multiple of the threads and differing by at
    // most one tile, so that every depth block keeps the threads equally busy (the cut
    // changes no sum, only who computes it).
    let tiles = m.div_ceil(mr);
    let blocks = m.div_ceil(BLOCK_ROWS).next_multiple_of(threads).min(tiles);
    let block_start = |q: usize| (q * tiles / blocks * mr).min(m);
    let block_cols = BLOCK_COLS.min(n.next_multiple_of(nr));
    let mut packed_b = vec![0.0f32; block_cols * DEPTH.min(depth)];
    // A single row's stride is never stepped (and may be anything): its blocks are one row.
    let stride = if m == 1 { n } else { dst.stride };
    for col in (0..n).step_by(block_cols) {
        let cols = block_cols.min(n - col);
        for first in (0..depth).step_by(DEPTH) {
            let steps = DEPTH.min(depth - first);
            let packed_b = &mut packed_b[..cols.next_multiple_of(nr) * steps];
            // Bᵀ's rows are B's columns: panel q holds columns col + q·nr ...
            let pack_panel = |(q, panel): (usize, &mut [f32])| {
                let here = nr.min(cols - q * nr);
                pack(panel, b.t(), col + q * nr, here, first, steps, nr);
            };
            map_parts(
                packed_b.chunks_mut(nr * steps).enumerate().collect(),
                false,
                pack_panel,
            );
            let overwrite = first == 0 && !accumulate;
            let packed_b = &*packed_b;
            let task = |(row, c): (usize, &mut [f32])| {
                let rows = c.len().div_ceil(stride).min(m - row);
                let mut packed_a = vec![0.0f32; rows.next_multiple_of(mr) * steps];
                pack(&mut packed_a, a, row, rows, first, steps, mr);
                k.gemm_block(GemmBlock {
                    a: &packed_a,
                    b: packed_b,
                    depth: steps,
                    c: &mut c[col..],
                    ldc: stride,
                    m: rows,
                    n: cols,
                    overwrite,
                });
            };
            // C's rows end at its last element (the slice may hold more), cut at each
            // block's first row.
            let mut rest = &mut dst.data[..(m - 1) * stride + n];
            let mut parts = Vec::with_capacity(blocks);
            for q in 0..blocks {
                let (row, end) = (block_start(q), block_start(q + 1));
                let len = if end == m {
                    rest.len()
                } else {
                    (end - row) * stride
                };
                let (part, tail) = rest.split_at_mut(len);
                parts.push((row, part));
                rest = tail;
            }
            map_parts(parts, false, task);
        }
    }
}

/// Packs rows `row .. row + rows` of `x`, columns `first .. first + steps`, into panels of
/// `width` rows: step `p` of panel `q` holds rows `q·width ..` at `(q·steps + p)·width`,
/// rows past the end zero. (B is packed as Bᵀ, its columns as rows.)
fn pack(
    out: &mut [f32],
    x: Mat<'_>,
    row: usize,
    rows: usize,
    first: usize,
    steps: usize,
    width: usize,
) {
    let part = Part {
        row,
        rows,
        first,
        steps,
    };
    // A width known to the compiler makes each step a few vector moves.
    match width {
        2 => pack_panels::<2>(out, x, part),
        4 => pack_panels::<4>(out, x, part),
        6 => pack_panels::<6>(out, x, part),
        14 => pack_panels::<14>(out, x, part),
        16 => pack_panels::<16>(out, x, part),
        32 => pack_panels::<32>(out, x, part),
        _ => panic!("no packing for panels of {width}"),
    }
}

/// The rows and columns of a matrix that [`pack`] packs.
#[derive(Clone, Copy)]
struct Part {
    row: usize,
    rows: usize,
    first: usize,
    steps: usize,
}

/// [`pack`] into panels of `W` rows.
fn pack_panels<const W: usize>(out: &mut [f32], x: Mat<'_>, part: Part) {
    let Part {
        row,
        rows,
        first,
        steps,
    } = part;
    let (rs, cs) = (x.row_stride, x.col_stride);
    for (q, panel) in out.chunks_exact_mut(steps * W).enumerate() {
        let top = row + q * W;
        let here = W.min(rows - q * W);
        if here == W && rs == 1 {
            // A step's values are contiguous (a transposed view): one move per step.
            for (p, step) in panel.chunks_exact_mut(W).enumerate() {
                let start = top + (first + p) * cs;
                step.copy_from_slice(&x.data[start..start + W]);
            }
        } else if here == W && cs == 1 {
            // W rows read along themselves, a value of each per step (the steps stay in
            // L1: a panel is at most 32 KiB).
            let src: [&[f32]; W] =
                core::array::from_fn(|r| &x.data[(top + r) * rs + first..][..steps]);
            for (p, step) in panel.chunks_exact_mut(W).enumerate() {
                for (v, src) in step.iter_mut().zip(&src) {
                    *v = src[p];
                }
            }
        } else {
            // The last panel's rows, zero past them.
            for (p, step) in panel.chunks_exact_mut(W).enumerate() {
                for (r, v) in step.iter_mut().enumerate() {
                    *v = if r < here {
                        x.data[(top + r) * rs + (first + p) * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
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

    /// The products of [`products_match_the_triple_loop_on_every_tier`] on one tier.
    struct Check {
        tier: &'static str,
    }

    impl Work for Check {
        type Output = ();

        fn run<K: RowKernels>(self, k: K) {
            // Odd sizes around the tiles (up to 14 × 32), the depth blocks (256), the row
            // blocks (96) and the column blocks (2048). Under Miri, which interprets each
            // operation about a million times slower, smaller products of odd shapes.
            let shapes: &[(usize, usize, usize)] = if cfg!(miri) {
                &[
                    (1, 1, 1),
                    (1, 40, 3),
                    (3, 5, 7),
                    (17, 5, 9),
                    (9, 3, 40),
                    (5, 0, 3),
                    (4, 3, 0),
                ]
            } else {
                &[
                    (1, 1, 1),
                    (1, 70, 5),
                    (3, 5, 7),
                    (17, 65, 33),
                    (64, 3, 130),
                    (15, 33, 257),
                    (197, 40, 300),
                    (5, 2061, 3),
                    (5, 0, 3),
                    (4, 3, 0),
                ]
            };
            for &(m, n, depth) in shapes {
                for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
                    check(k, self.tier, (m, n, depth), a_t, b_t);
                }
            }
        }
    }

    /// One product of small integers (exact in f32, so every tier must give the triple
    /// loop's values exactly), with `a` or `b` stored transposed, into a padded `dst`.
    fn check<K: RowKernels>(
        k: K,
        tier: &str,
        (m, n, depth): (usize, usize, usize),
        a_t: bool,
        b_t: bool,
    ) {
        let value = |v: usize, modulus: usize| (v % modulus) as f32 - (modulus / 2) as f32;
        // Stored as rows of `depth + 2` (a) and `n + 1` (b) values, or of their transposes.
        let stored = |rows: usize, cols: usize, t: bool, pad: usize, modulus: usize| {
            let (r, c) = if t { (cols, rows) } else { (rows, cols) };
            let data: Vec<f32> = (0..r * (c + pad)).map(|v| value(v, modulus)).collect();
            (data, r, c, c + pad)
        };
        let (a_data, ar, ac, a_stride) = stored(m, depth, a_t, 2, 13);
        let (b_data, br, bc, b_stride) = stored(depth, n, b_t, 1, 7);
        let a = Mat::row_major(&a_data, ar, ac, a_stride);
        let a = if a_t { a.t() } else { a };
        let b = Mat::row_major(&b_data, br, bc, b_stride);
        let b = if b_t { b.t() } else { b };
        let want = naive(&a, &b);
        for accumulate in [false, true] {
            let stride = n + 3;
            let mut out = vec![1.0f32; m * stride];
            let dst = MatMut::row_major(&mut out, m, n, stride);
            product(
                k,
                Product {
                    dst,
                    a,
                    b,
                    accumulate,
                },
            );
            let what = format!("{tier}: {m}×{n}×{depth}, a_t {a_t}, b_t {b_t}, acc {accumulate}");
            for i in 0..m {
                for j in 0..n {
                    let expected = want[i * n + j] + if accumulate { 1.0 } else { 0.0 };
                    assert_eq!(
                        f64::from(out[i * stride + j]),
                        expected,
                        "{what}: ({i}, {j})"
                    );
                }
                let padding = &out[i * stride + n..(i + 1) * stride];
                assert!(padding.iter().all(|&v| v == 1.0), "{what}: padding");
            }
        }
    }

    #[test]
    fn products_match_the_triple_loop_on_every_tier() {
        crate::dispatch::on_every_tier(|tier| Check { tier });
    }

    #[test]
    #[should_panic]
    fn a_matrix_outside_its_slice_is_refused() {
        let data = [0.0f32; 10];
        let _ = Mat::row_major(&data, 3, 4, 4);
    }
}
