//! What the short-row kernels take and return: runs of [`GROUP`] rows of at most
//! [`SHORT_COLS`] values, whose per-row work (max, Σ exp, ln, the loss terms) would cost
//! more than the row itself if done row by row. The vector tiers put one row in each lane.

#[cfg(test)]
use super::RowIo;

/// Rows per group in [`super::RowKernels::short_rows`]: one per lane of a 16-lane vector
/// (8-lane tiers take a group in two runs).
pub(crate) const GROUP: usize = 16;
/// The longest rows [`super::RowKernels::short_rows`] takes.
pub(crate) const SHORT_COLS: usize = 16;
/// Groups per [`super::RowKernels::short_rows`] call at most: enough to spread the call's
/// cost, few enough for the callers' per-group arrays to stay small on the stack.
pub(crate) const GROUPS_PER_CALL: usize = 16;

/// What a short-row kernel writes for each row (see [`super::RowKernels::short_rows`]),
/// with m the row max and S = Σ_c exp(x_c − m).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ShortJob<'a> {
    /// Softmax or log-softmax.
    Normalize(Normalization),
    /// The hard-target loss and its gradient ([`ShortLoss`]), with each group's targets.
    Loss(ShortLoss, &'a [ShortTargets]),
}

/// What a standalone row call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Normalization {
    /// Softmax: exp(x_c − m)·(1/S).
    Softmax,
    /// Log-softmax: (x_c − m) − ln S.
    LogSoftmax,
}

/// The hard-target cross-entropy without label smoothing or softcap (docs/semantics.md with ε = 0
/// and c = 0). For a counted row with target y, B = `ShortTargets::scale` (s·w_y) and
/// A = B + z_grad·lse (the z term only when z_grad ≠ 0):
///
/// nll = ln S − (x_y − m),  lse = m + ln S,
/// out_c = A/S·exp(x_c − m) for c ≠ y,  out_y = A·p_y − B,
///
/// where out_y is computed as ((A − B)·exp(x_y − m) − B·Σ_{c≠y} exp(x_c − m))/S, which does
/// not cancel at p_y ≈ 1. The caller turns nll and lse into the row's loss terms in f64
/// (w_y·nll and z·lse², which may leave f32's range where the products below do not).
/// An ignored row has nll = 0 and zeros for its output; every row's lse is its true
/// logsumexp.
///
/// The caller keeps B and z_grad at most 2^100 (larger ones take the row-by-row path), so
/// no f32 product here overflows where the result does not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortLoss {
    /// 2·z·s_z: multiplies lse in the gradient's scale.
    pub z_grad: f32,
    /// Write the gradient; when false an output gets zeros (a mean over nothing has a zero
    /// gradient).
    pub write: bool,
}

/// One group's targets, a lane per row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortTargets {
    /// Each row's target class as f32 (exact: classes are below [`SHORT_COLS`]), −1 for
    /// an ignored row.
    pub class: [f32; GROUP],
    /// B = s·w_y of each counted row, formed in f64 and rounded once (ignored rows: any
    /// value, unused).
    pub scale: [f32; GROUP],
    /// w_y of each counted row, 0 for an ignored row: not read by the kernels, kept beside
    /// the classes for the caller's loss terms.
    pub weight: [f32; GROUP],
}

impl Default for ShortTargets {
    fn default() -> Self {
        ShortTargets {
            class: [-1.0; GROUP],
            scale: [0.0; GROUP],
            weight: [0.0; GROUP],
        }
    }
}

/// One group's per-row results, in f32: a row of at most [`SHORT_COLS`] values sums at
/// most 16 exponentials in [0, 1] and ln S ≤ ln 16, so f32 holds them within the tolerance
/// of docs/semantics.md. Zero where a job has no such term.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShortStats {
    /// −lp_y = ln S − (x_y − m) of each counted row (0 for an ignored row).
    pub nll: [f32; GROUP],
    /// Each row's lse, m + ln S.
    pub lse: [f32; GROUP],
}

/// Where a run of groups reads and writes, in elements of `E`.
pub(crate) enum StridedIo<'r, E = f32> {
    /// Read only: a forward call writes nothing.
    Read(&'r [E]),
    /// Read each row, then overwrite it.
    InPlace(&'r mut [E]),
    /// Read the first rows, write the second; the output has its own stride.
    Separate(&'r [E], &'r mut [E], usize),
}

/// `GROUP·groups` rows of `cols` values: row i of the input starts at `i·stride`, of a
/// separate output at `i·out_stride`. The constructor checks that every row lies inside
/// its slice, which is what lets the vector kernels address rows by pointer arithmetic.
pub(crate) struct StridedRows<'r, E = f32> {
    io: StridedIo<'r, E>,
    cols: usize,
    stride: usize,
    groups: usize,
}

impl<'r, E> StridedRows<'r, E> {
    /// Panics unless `1 ≤ cols ≤ SHORT_COLS`, `cols ≤` each stride (rows never overlap)
    /// and each slice holds all `GROUP·groups` rows.
    pub(crate) fn new(io: StridedIo<'r, E>, cols: usize, stride: usize, groups: usize) -> Self {
        assert!((1..=SHORT_COLS).contains(&cols) && cols <= stride);
        let span = |stride: usize| match groups {
            0 => 0,
            _ => (GROUP * groups - 1) * stride + cols,
        };
        let fits = match &io {
            StridedIo::Read(x) => x.len() >= span(stride),
            StridedIo::InPlace(x) => x.len() >= span(stride),
            StridedIo::Separate(x, out, out_stride) => {
                cols <= *out_stride && x.len() >= span(stride) && out.len() >= span(*out_stride)
            }
        };
        assert!(
            fits,
            "{groups} groups of {cols}-value rows do not fit their slices"
        );
        StridedRows {
            io,
            cols,
            stride,
            groups,
        }
    }

    /// Values per row.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Groups of [`GROUP`] rows.
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// Row `i` of the input (for the tests' naive rows).
    #[cfg(test)]
    pub(crate) fn input(&self, i: usize) -> &[E] {
        let at = i * self.stride;
        match &self.io {
            StridedIo::Read(x) | StridedIo::Separate(x, ..) => &x[at..at + self.cols],
            StridedIo::InPlace(x) => &x[at..at + self.cols],
        }
    }

    /// Row `i`'s input and output, `None` in a read-only run (for the tests' naive rows).
    #[cfg(test)]
    pub(crate) fn io(&mut self, i: usize) -> Option<RowIo<'_, E>> {
        let (cols, at) = (self.cols, i * self.stride);
        match &mut self.io {
            StridedIo::Read(_) => None,
            StridedIo::InPlace(x) => Some(RowIo::in_place(&mut x[at..at + cols])),
            StridedIo::Separate(x, out, out_stride) => {
                let o = i * *out_stride;
                Some(RowIo::Separate(&x[at..at + cols], &mut out[o..o + cols]))
            }
        }
    }

    /// (input, its stride, output and its stride) for pointer arithmetic: rows
    /// `0..GROUP·groups` lie at `i·stride` in each (checked by [`StridedRows::new`]); in
    /// place the output is the input.
    pub(crate) fn raw_parts(&mut self) -> (*const E, usize, Option<(*mut E, usize)>) {
        match &mut self.io {
            StridedIo::Read(x) => (x.as_ptr(), self.stride, None),
            StridedIo::InPlace(x) => {
                let p = x.as_mut_ptr();
                (p.cast_const(), self.stride, Some((p, self.stride)))
            }
            StridedIo::Separate(x, out, out_stride) => (
                x.as_ptr(),
                self.stride,
                Some((out.as_mut_ptr(), *out_stride)),
            ),
        }
    }
}
