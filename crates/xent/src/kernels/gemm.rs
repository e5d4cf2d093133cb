//! The matrix product's inner kernel, written once over the vector trait: a block of packed
//! A panels times a block of packed B panels, into C (the packing and the blocking around
//! it are `matmul.rs`'s).
//!
//! A micro-tile is `MR` rows × two vectors of columns, held in `2·MR` accumulators for the
//! whole depth of the block: each step loads two vectors of B and broadcasts `MR` values of
//! A, `2·MR` FMAs for `MR + 2` loads. Every C entry is one FMA chain over the block's depth,
//! in order, so a result does not depend on how the rows and columns were cut.

use super::vector::F32Vector;

/// One block of a product for [`block`]: `m × n` of C from `depth` steps of packed A and B.
///
/// Packed A is `⌈m/MR⌉` panels of `MR` rows: step `p` of panel `q` holds rows
/// `q·MR .. q·MR + MR` at `a[(q·depth + p)·MR ..]`, rows past `m` zero. Packed B is
/// `⌈n/NR⌉` panels of `NR = 2·LANES` columns laid out the same way. C's row `i` starts at
/// `c[i·ldc]`.
pub(crate) struct GemmBlock<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub depth: usize,
    pub c: &'a mut [f32],
    pub ldc: usize,
    pub m: usize,
    pub n: usize,
    /// C = A·B (true) or C += A·B.
    pub overwrite: bool,
}

/// C (+)= A·B over one packed block, micro-tile by micro-tile: each B panel (which stays in
/// L1) against every A panel (in L2).
///
/// # Safety
///
/// The CPU has `V`'s features.
#[inline(always)]
pub(crate) unsafe fn block<V: F32Vector, const MR: usize>(block: GemmBlock<'_>) {
    let GemmBlock {
        a,
        b,
        depth,
        c,
        ldc,
        m,
        n,
        overwrite,
    } = block;
    let nr = 2 * V::LANES;
    if m == 0 || n == 0 {
        return;
    }
    // The bounds every access below stays inside.
    assert!(a.len() >= m.div_ceil(MR) * MR * depth, "packed A too short");
    assert!(b.len() >= n.div_ceil(nr) * nr * depth, "packed B too short");
    assert!(
        (m == 1 || ldc >= n) && c.len() >= (m - 1) * ldc + n,
        "C too short"
    );
    for jp in 0..n.div_ceil(nr) {
        let cols = nr.min(n - jp * nr);
        // SAFETY: panel `jp` lies inside packed B (asserted above).
        let b_panel = unsafe { b.as_ptr().add(jp * nr * depth) };
        for ip in 0..m.div_ceil(MR) {
            let rows = MR.min(m - ip * MR);
            // SAFETY: panel `ip` lies inside packed A (asserted above); the tile's `rows`
            // rows of `cols` values lie inside C, and the CPU has `V`'s features.
            unsafe {
                let a_panel = a.as_ptr().add(ip * MR * depth);
                let acc = tile::<V, MR>(depth, a_panel, b_panel);
                let c_tile = c.as_mut_ptr().add(ip * MR * ldc + jp * nr);
                store_tile(&acc, c_tile, ldc, rows, cols, overwrite);
            }
        }
    }
}

/// The products of one A panel and one B panel over `depth` steps, in registers.
///
/// # Safety
///
/// `a` holds `depth·MR` values and `b` `depth·2·LANES`; the CPU has `V`'s features.
#[inline(always)]
unsafe fn tile<V: F32Vector, const MR: usize>(
    depth: usize,
    a: *const f32,
    b: *const f32,
) -> [[V; 2]; MR] {
    let lanes = V::LANES;
    // SAFETY: every offset stays inside the panels (the function's contract).
    unsafe {
        let mut acc = [[V::splat(0.0); 2]; MR];
        for p in 0..depth {
            let b0 = V::load(b.add(2 * lanes * p));
            let b1 = V::load(b.add(2 * lanes * p + lanes));
            for (r, row) in acc.iter_mut().enumerate() {
                let x = V::splat(*a.add(MR * p + r));
                row[0] = x.mul_add(b0, row[0]);
                row[1] = x.mul_add(b1, row[1]);
            }
        }
        acc
    }
}

/// Writes (or adds) the first `rows × cols` of a tile into C at `c`, row stride `ldc`.
///
/// # Safety
///
/// C holds `rows` rows of `cols` values at `c + i·ldc`; the CPU has `V`'s features.
#[inline(always)]
unsafe fn store_tile<V: F32Vector, const MR: usize>(
    acc: &[[V; 2]; MR],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
) {
    let lanes = V::LANES;
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (v, &value) in row.iter().enumerate() {
            let first = v * lanes;
            if first >= cols {
                break;
            }
            let n = lanes.min(cols - first);
            // SAFETY: the n values at row i, column `first` lie inside C (the contract).
            unsafe {
                let p = c.add(i * ldc + first);
                if n == lanes {
                    let sum = if overwrite {
                        value
                    } else {
                        V::load(p).add(value)
                    };
                    sum.store(p);
                } else {
                    let sum = if overwrite {
                        value
                    } else {
                        V::load_partial(p, n, 0.0).add(value)
                    };
                    sum.store_partial(p, n);
                }
            }
        }
    }
}
