//! The row passes, written once over [`F32Vector`], and [`Simd`], the kernels of every
//! vector tier: each pass over the tier's vectors, inlined into the tier's one
//! `#[target_feature]` function ([`SimdTier::enter`]), so every call here is compiled for
//! that tier's instructions.
//!
//! Full vectors run over the row and the tail (fewer than `LANES` values) goes through the
//! same arithmetic via a masked or padded load: nothing past the row is read or written.
//! Rows are of any [`Elem`]: a 16-bit value is widened as its vector is loaded, and an
//! output is rounded once as its vector is stored.
//!
//! # Safety
//!
//! Every function is `unsafe` for one reason: the caller must run on a CPU with `V`'s
//! features. Pointers come from slices whose lengths the functions respect.

use super::exp::{exp, exp_n, ln_short_sum, softcap};
use super::vector::{F32Vector, MAX_LANES, RowGroups};
use super::{
    ClassWeights, Elem, ExpSums, GROUP, GROUPS_PER_CALL, GemmBlock, GradCoefs32, Normalization,
    RowIo, RowKernels, SHORT_COLS, SMALLEST_SUBNORMAL, ShortJob, ShortStats, SmoothedTargets,
    StridedIo, StridedRows,
};

/// How far ahead of the read position the exp passes prefetch, in bytes: they are
/// compute-bound, and the hardware prefetcher idles meanwhile, so they fetch the data the
/// next (streaming) pass will read.
const PREFETCH_BYTES: usize = 16384;
/// The bytes of a cache line: the passes prefetch each line once.
const LINE_BYTES: usize = 64;

/// How far ahead the passes prefetch, in values of `E`.
#[inline(always)]
const fn ahead<E>() -> usize {
    PREFETCH_BYTES / size_of::<E>()
}

/// Values of `E` per cache line.
#[inline(always)]
const fn line<E>() -> usize {
    LINE_BYTES / size_of::<E>()
}

/// The softcap as vectors, or `None` when it is off.
#[derive(Clone, Copy)]
struct Cap<V> {
    cap: V,
    inv_cap: V,
}

impl<V: F32Vector> Cap<V> {
    #[inline(always)]
    unsafe fn new(cap: f32) -> Option<Self> {
        if cap > 0.0 {
            // SAFETY: forwarded caller contract (V's features).
            Some(unsafe {
                Cap {
                    cap: V::splat(cap),
                    inv_cap: V::splat(1.0 / cap),
                }
            })
        } else {
            None
        }
    }
}

/// x' for one vector.
#[inline(always)]
unsafe fn capped<V: F32Vector>(x: V, cap: Option<Cap<V>>) -> V {
    match cap {
        // SAFETY: forwarded caller contract (V's features).
        Some(c) => unsafe { softcap(x, c.cap, c.inv_cap) },
        None => x,
    }
}

/// A running sum of vectors: f32 lanes for speed, flushed into f64 every
/// [`Sum::FLUSH_EVERY`] vectors so that long rows of similar values (where f32 rounding
/// errors all lean the same way) stay accurate to a few 1e-7.
struct Sum<V> {
    lanes: V,
    count: u32,
    total: f64,
}

impl<V: F32Vector> Sum<V> {
    const FLUSH_EVERY: u32 = 64;

    #[inline(always)]
    unsafe fn new() -> Self {
        Sum {
            // SAFETY: forwarded caller contract (V's features).
            lanes: unsafe { V::splat(0.0) },
            count: 0,
            total: 0.0,
        }
    }

    #[inline(always)]
    unsafe fn add(&mut self, v: V) {
        // SAFETY: forwarded caller contract (V's features).
        unsafe {
            self.lanes = self.lanes.add(v);
            self.count += 1;
            if self.count == Self::FLUSH_EVERY {
                self.total += f64::from(self.lanes.reduce_add());
                self.lanes = V::splat(0.0);
                self.count = 0;
            }
        }
    }

    #[inline(always)]
    unsafe fn finish(self) -> f64 {
        // SAFETY: forwarded caller contract (V's features).
        self.total + f64::from(unsafe { self.lanes.reduce_add() })
    }
}

/// `v` in the first `lanes` lanes, `neutral` in the others (all of `v` for a full vector).
#[inline(always)]
unsafe fn keep_lanes<V: F32Vector>(v: V, lanes: usize, neutral: f32) -> V {
    if lanes == V::LANES {
        v
    } else {
        // SAFETY: forwarded caller contract (V's features).
        unsafe { V::select(V::first_lanes(lanes), v, V::splat(neutral)) }
    }
}

/// Runs `$body` on each full vector `$v` of the slice `$x` and once on the padded tail, with
/// `$i` the index of the vector's first element and `$lanes` how many of its lanes are real.
/// Reading stops at the slice's end; tail lanes hold `$fill`.
///
/// A macro, not a function taking a closure: a closure body is compiled without the
/// caller's `#[target_feature]`s, which would turn every intrinsic into a call.
macro_rules! for_each_vector {
    ($V:ty, $E:ty, $x:expr, $fill:expr, |$i:ident, $v:ident, $lanes:ident| $body:block) => {{
        let x: &[$E] = $x;
        let n = x.len();
        let full = n - n % <$V>::LANES;
        let p = x.as_ptr();
        let mut start = 0;
        // SAFETY (for the loads): `start + LANES <= full <= n` values are readable at
        // `p + start`; the tail loads only the `n - full` remaining values.
        while start < full {
            let $i = start;
            let $v = <$E>::load::<$V>(p.add(start));
            let $lanes = <$V>::LANES;
            $body
            start += <$V>::LANES;
        }
        if full < n {
            let $i = full;
            let $v = <$E>::load_partial::<$V>(p.add(full), n - full, $fill);
            let $lanes = n - full;
            $body
        }
    }};
}

/// max_c x'_c.
#[inline(always)]
pub(crate) unsafe fn row_max<V: F32Vector, E: Elem>(x: &[E], cap: f32) -> f32 {
    // SAFETY: forwarded caller contract (V's features).
    unsafe {
        let cap = Cap::<V>::new(cap);
        let mut acc = [V::splat(f32::NEG_INFINITY); 4];
        let n4 = x.len() - x.len() % (4 * V::LANES);
        let p = x.as_ptr();
        let mut i = 0;
        while i < n4 {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = a.max(capped(E::load(p.add(i + k * V::LANES)), cap));
            }
            i += 4 * V::LANES;
        }
        let mut m = acc[0].max(acc[1]).max(acc[2].max(acc[3]));
        // Tail lanes: −∞ after the softcap too (which maps a −∞ fill to −c).
        for_each_vector!(V, E, &x[n4..], f32::NEG_INFINITY, |_i, v, lanes| {
            m = m.max(keep_lanes(capped(v, cap), lanes, f32::NEG_INFINITY));
        });
        m.reduce_max()
    }
}

/// Vectors per step of the hot loops: four independent exp chains keep the FMA units busy
/// while each chain waits on its own latency.
const UNROLL: usize = 4;

/// The vector-aligned range `a..b` of a row of `n` values that holds `target` (`n..n`
/// without one), so that the passes can take the target's exp apart in one vector and run
/// their unrolled loops over whole vectors on either side.
#[inline(always)]
fn target_vector<V: F32Vector>(target: Option<usize>, n: usize) -> (usize, usize) {
    match target {
        Some(y) if y < n => {
            let a = y - y % V::LANES;
            (a, (a + V::LANES).min(n))
        }
        _ => (n, n),
    }
}

/// Adds exp(x'_c − s) of the values `range` at `p` to `sum`; with `dst`, stores each at
/// the same index there. The range is the whole row or ends at a vector boundary or the
/// row's end.
#[inline(always)]
unsafe fn exp_run<V: F32Vector, E: Elem>(
    p: *const E,
    dst: Option<*mut f32>,
    range: core::ops::Range<usize>,
    s: V,
    cap: Option<Cap<V>>,
    sum: &mut Sum<V>,
) {
    // SAFETY: forwarded caller contract: `range` lies within the values at `p` (and
    // `dst`); V's features.
    unsafe {
        let step = UNROLL * V::LANES;
        let mut i = range.start;
        while i + step <= range.end {
            for at in (0..step).step_by(line::<E>()) {
                V::prefetch(p.wrapping_add(i + at + ahead::<E>()).cast());
            }
            let mut x = [s; UNROLL];
            for (u, x) in x.iter_mut().enumerate() {
                *x = capped(E::load(p.add(i + u * V::LANES)), cap).sub(s);
            }
            let e = exp_n(x);
            let mut total = e[0];
            for (u, e) in e.iter().enumerate() {
                if let Some(dst) = dst {
                    e.store(dst.add(i + u * V::LANES));
                }
                if u > 0 {
                    total = total.add(*e);
                }
            }
            sum.add(total);
            i += step;
        }
        while i < range.end {
            let lanes = V::LANES.min(range.end - i);
            sum.add(exp_vector(p, dst, i, lanes, s, cap));
            i += lanes;
        }
    }
}

/// exp(x'_c − s) of the `lanes` values from `i` at `p` (0 in the other lanes), stored at
/// the same index of `dst` when there is one.
#[inline(always)]
unsafe fn exp_vector<V: F32Vector, E: Elem>(
    p: *const E,
    dst: Option<*mut f32>,
    i: usize,
    lanes: usize,
    s: V,
    cap: Option<Cap<V>>,
) -> V {
    // SAFETY: forwarded caller contract (`lanes` values from `i` at `p` and `dst`; V's
    // features).
    unsafe {
        // Padding lanes are kept out of the sum (the softcap maps any fill to a non-zero
        // exp).
        let e = keep_lanes(
            exp(capped(load_at(p.add(i), lanes, 0.0), cap).sub(s)),
            lanes,
            0.0,
        );
        if let Some(dst) = dst {
            store_lanes(e, dst.add(i), lanes);
        }
        e
    }
}

/// Stores the first `lanes` lanes of `v` at `p` (a full vector or a tail), each rounded
/// once to `O`.
#[inline(always)]
unsafe fn store_lanes<V: F32Vector, O: Elem>(v: V, p: *mut O, lanes: usize) {
    // SAFETY: the caller guarantees `lanes` writable values at `p`; V's features.
    unsafe {
        if lanes == V::LANES {
            O::store(v, p);
        } else {
            O::store_partial(v, p, lanes);
        }
    }
}

/// The passes' sums of exponentials over a row whose hard target is `target`: the rest
/// and the target's (see [`super::ExpSums`]). The target's vector runs apart, its lane
/// taken out of the sum.
#[inline(always)]
unsafe fn exp_sums<V: F32Vector, E: Elem>(
    src: *const E,
    dst: Option<*mut f32>,
    n: usize,
    shift: f32,
    cap: f32,
    target: Option<usize>,
) -> super::ExpSums {
    // SAFETY: forwarded caller contract (`n` values at `src` and `dst`; V's features).
    unsafe {
        let cap = Cap::<V>::new(cap);
        let s = V::splat(shift);
        let mut sum = Sum::<V>::new();
        let (a, b) = target_vector::<V>(target, n);
        exp_run(src, dst, 0..a, s, cap, &mut sum);
        let mut target_exp = 0.0;
        if let Some(y) = target.filter(|_| a < b) {
            let e = exp_vector(src, dst, a, b - a, s, cap);
            let mut lane_values = [0.0f32; super::vector::MAX_LANES];
            e.store(lane_values.as_mut_ptr());
            target_exp = f64::from(lane_values[y - a]);
            sum.add(V::select(V::lane(y - a), V::splat(0.0), e));
        }
        exp_run(src, dst, b..n, s, cap, &mut sum);
        super::ExpSums {
            rest: sum.finish(),
            target: target_exp,
        }
    }
}

/// Σ_c exp(x'_c − shift), the target's apart.
#[inline(always)]
pub(crate) unsafe fn sum_exp<V: F32Vector, E: Elem>(
    x: &[E],
    shift: f32,
    cap: f32,
    target: Option<usize>,
) -> super::ExpSums {
    // SAFETY: `x` holds `x.len()` values; V's features: forwarded caller contract.
    unsafe { exp_sums::<V, E>(x.as_ptr(), None, x.len(), shift, cap, target) }
}

/// out_c = exp(x_c − shift), returning the sums (no softcap).
#[inline(always)]
pub(crate) unsafe fn exp_store_sum<V: F32Vector, E: Elem>(
    io: RowIo<'_, E, f32>,
    shift: f32,
    target: Option<usize>,
) -> super::ExpSums {
    let (src, dst, n) = io.raw_parts();
    // SAFETY: `src` and `dst` each cover `n` values (equal for in place, where every
    // vector is read before it is written); V's features: forwarded caller contract.
    unsafe { exp_sums::<V, E>(src, Some(dst), n, shift, 0.0, target) }
}

/// Folds `$v[..$n]` (n ≥ 1) with the vector method `$op` in pairs: log₂ n dependent steps
/// instead of n − 1, which is what bounds a short group (its whole work is one chain of
/// max, exp, sum, ln). A macro for the same reason as [`for_each_vector!`].
macro_rules! pairwise {
    ($v:expr, $n:expr, $op:ident) => {{
        let mut v = $v;
        let mut n = $n;
        while n > 1 {
            let half = n.div_ceil(2);
            for i in 0..n - half {
                v[i] = v[i].$op(v[i + half]);
            }
            n = half;
        }
        v[0]
    }};
}

/// Runs of [`GROUP`] rows of at most [`SHORT_COLS`] values, a group at a time: loaded row
/// by row, transposed so that lane r holds row r, reduced, exponentiated and turned into
/// `job`'s output and per-row terms lane-wise, transposed back and stored, in runs of
/// `V::LANES` rows (`GROUP` is a multiple of it). f32 rows only: 16-bit ones come through
/// an f32 tile ([`Simd`]'s `short_rows`).
#[inline(always)]
pub(crate) unsafe fn short_rows<V: RowGroups>(
    mut rows: StridedRows<'_>,
    job: &ShortJob<'_>,
    stats: &mut [ShortStats],
) {
    assert_eq!(stats.len(), rows.groups());
    if let ShortJob::Loss(_, targets) = job {
        assert_eq!(targets.len(), rows.groups());
    }
    let cols = rows.cols();
    let (src, stride, dst) = rows.raw_parts();
    // One instantiation per row length: with `COLS` known the column loops unroll and the
    // group's vectors stay in registers (a runtime length kept them on the stack: 1.6×
    // slower on 10-value rows).
    macro_rules! by_cols {
        ($($c:literal)*) => {
            match cols {
                $($c => for (g, stats) in stats.iter_mut().enumerate() {
                    *stats = ShortStats::default();
                    // A group in runs of LANES rows (one run with 16 lanes, two with 8).
                    for lane0 in (0..GROUP).step_by(V::LANES) {
                        // SAFETY: group g's rows are rows GROUP·g.. of `rows`, which lie
                        // at multiples of their strides inside their slices
                        // (StridedRows::new); V's features: forwarded caller contract.
                        unsafe {
                            let first = g * GROUP + lane0;
                            let dst = match dst {
                                Some((p, out_stride)) => Some((p.add(first * out_stride), out_stride)),
                                None => None,
                            };
                            let at = Lanes { group: g, lane0 };
                            short_run::<V, $c>(src.add(first * stride), stride, dst, job, at, stats);
                        }
                    }
                },)*
                _ => unreachable!("short rows have 1..={SHORT_COLS} values"),
            }
        };
    }
    by_cols!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// How far ahead of a short-row group its loads are prefetched, in rows.
const SHORT_PREFETCH_ROWS: usize = 4 * GROUP;

/// Which rows of a group a run of [`short_run`] covers: `lane0..lane0 + LANES` of group
/// `group`.
#[derive(Clone, Copy)]
struct Lanes {
    group: usize,
    lane0: usize,
}

/// `V::LANES` rows of a group of [`short_rows`], rows of exactly `COLS` values: row r of
/// the input at `src + r·stride`, of the output (if any) at `dst.0 + r·dst.1`; their
/// results go to lanes `at.lane0..` of `stats`.
///
/// # Safety
///
/// Those rows are readable (and writable) for `COLS` values each and do not overlap each
/// other; `at.lane0 + V::LANES <= GROUP`; V's features are enabled.
#[inline(always)]
unsafe fn short_run<V: RowGroups, const COLS: usize>(
    src: *const f32,
    stride: usize,
    dst: Option<(*mut f32, usize)>,
    job: &ShortJob<'_>,
    at: Lanes,
    stats: &mut ShortStats,
) {
    let lanes = V::LANES;
    debug_assert!(at.lane0 + lanes <= GROUP);
    let cols = COLS;
    let blocks = cols.div_ceil(lanes);
    // SAFETY: every load and store covers at most the `cols` values of its row (function
    // contract); V's features: forwarded caller contract.
    unsafe {
        let ninf = V::splat(f32::NEG_INFINITY);
        let zero = V::splat(0.0);
        // The rows a few groups ahead: the hardware prefetcher falls behind while a group
        // computes. (`wrapping_add`: past the last group the address may leave the slice;
        // a prefetch never faults.)
        for r in 0..lanes {
            V::prefetch(src.wrapping_add((r + SHORT_PREFETCH_ROWS) * stride).cast());
        }
        let mut x = [ninf; SHORT_COLS];
        for b in 0..blocks {
            let width = lanes.min(cols - b * lanes);
            let mut block = [ninf; MAX_LANES];
            for (r, v) in block.iter_mut().enumerate().take(lanes) {
                *v = load_at::<V, f32>(src.add(r * stride + b * lanes), width, f32::NEG_INFINITY);
            }
            V::transpose(&mut block);
            x[b * lanes..(b + 1) * lanes].copy_from_slice(&block[..lanes]);
        }
        let max = pairwise!(x, cols, max);
        // Columns past `cols` hold −∞: exp gives 0 (or NaN for a row of only −∞, which
        // is NaN anyway), and they are neither summed nor stored.
        let mut shifted = x;
        for v in shifted.iter_mut().take(cols) {
            *v = v.sub(max);
        }
        // x_y − m, picked before the exps so that only log-softmax keeps `shifted` alive
        // across them (32 registers hold one array of a group, not two).
        let mut target = V::splat(-1.0);
        let mut shifted_y = zero;
        if let ShortJob::Loss(_, targets) = job {
            target = V::load(targets[at.group].class.as_ptr().add(at.lane0));
            for (c, v) in shifted.iter().enumerate().take(cols) {
                shifted_y = V::select(target.eq(V::splat(c as f32)), *v, shifted_y);
            }
        }
        let mut e = shifted;
        // Four at a time (interleaved chains), then the last one to three.
        let whole = cols / 4 * 4;
        for quad in e[..whole].chunks_exact_mut(4) {
            quad.copy_from_slice(&exp_n([quad[0], quad[1], quad[2], quad[3]]));
        }
        let rest = &mut e[whole..cols];
        match *rest {
            [a] => rest[0] = exp(a),
            [a, b] => rest.copy_from_slice(&exp_n([a, b])),
            [a, b, c] => rest.copy_from_slice(&exp_n([a, b, c])),
            _ => {}
        }
        let sum = pairwise!(e, cols, add);
        let ln_sum = ln_short_sum(sum);
        let lse = max.add(ln_sum);
        lse.store(stats.lse.as_mut_ptr().add(at.lane0));

        let mut out = e;
        match job {
            ShortJob::Normalize(Normalization::Softmax) => {
                let scale = V::splat(1.0).div(sum);
                for v in out.iter_mut().take(cols) {
                    *v = v.mul(scale);
                }
            }
            ShortJob::Normalize(Normalization::LogSoftmax) => {
                for (o, v) in out.iter_mut().zip(&shifted).take(cols) {
                    *o = v.sub(ln_sum);
                }
            }
            ShortJob::Loss(job, targets) => {
                let counted = V::splat(-0.5).lt(target);
                let nll = ln_sum.sub(shifted_y);
                V::select(counted, nll, zero).store(stats.nll.as_mut_ptr().add(at.lane0));
                // B = s·w, what the one-hot subtracts at the target, and A = B + z_grad·lse.
                let b = V::load(targets[at.group].scale.as_ptr().add(at.lane0));
                let mut a_minus_b = zero;
                if job.z_grad != 0.0 {
                    a_minus_b = V::splat(job.z_grad).mul(lse);
                }
                let scale = b.add(a_minus_b).div(sum);
                // The target's entry A·p_y − B as ((A − B)·e_y − B·Σ_{c≠y} e_c)/S: the
                // one-hot's subtraction would cancel to S's rounding error at p_y ≈ 1.
                let mut e_y = zero;
                let mut others = out;
                for (c, o) in others.iter_mut().enumerate().take(cols) {
                    let is_y = target.eq(V::splat(c as f32));
                    e_y = V::select(is_y, *o, e_y);
                    *o = V::select(is_y, zero, *o);
                }
                let rest = pairwise!(others, cols, add);
                let value = a_minus_b.mul(e_y).sub(b.mul(rest)).div(sum);
                for (c, v) in out.iter_mut().enumerate().take(cols) {
                    let g = V::select(target.eq(V::splat(c as f32)), value, v.mul(scale));
                    *v = if job.write {
                        V::select(counted, g, zero)
                    } else {
                        zero
                    };
                }
            }
        }
        let Some((dst, out_stride)) = dst else {
            return;
        };
        for b in 0..blocks {
            let width = lanes.min(cols - b * lanes);
            let mut block = [ninf; MAX_LANES];
            block[..lanes].copy_from_slice(&out[b * lanes..(b + 1) * lanes]);
            V::transpose(&mut block);
            for (r, v) in block.iter().enumerate().take(lanes) {
                store_lanes(*v, dst.add(r * out_stride + b * lanes), width);
            }
        }
    }
}

/// Σ_c w_c·(x'_c − shift), with w_c = 1 without weights (summed over the scaled weights,
/// returned unscaled).
#[inline(always)]
pub(crate) unsafe fn weighted_shifted_sum<V: F32Vector, E: Elem>(
    x: &[E],
    weights: Option<ClassWeights<'_>>,
    shift: f32,
    cap: f32,
) -> f64 {
    // SAFETY: forwarded caller contract (V's features); weights have x.len() values.
    unsafe {
        let cap = Cap::<V>::new(cap);
        let s = V::splat(shift);
        let mut sum = Sum::<V>::new();
        for_each_vector!(V, E, x, shift, |i, v, lanes| {
            let d = keep_lanes(capped(v, cap).sub(s), lanes, 0.0);
            sum.add(match weights {
                Some(w) => load_weights::<V>(w, i, lanes).mul(d),
                None => d,
            });
        });
        sum.finish() * weights.map_or(1.0, |w| w.unscale())
    }
}

/// The scaled weights of lane block `i..i + lanes` (0 in a tail's other lanes), as
/// [`ClassWeights::scaled`].
#[inline(always)]
unsafe fn load_weights<V: F32Vector>(w: ClassWeights<'_>, i: usize, lanes: usize) -> V {
    // SAFETY: forwarded caller contract (`lanes` values from `i`; V's features).
    unsafe {
        let v = load_lanes::<V>(&w.values[i..], lanes, 0.0);
        v.mul(V::splat(w.scale))
            .max(v.min(V::splat(SMALLEST_SUBNORMAL)))
    }
}

/// Loads `lanes` values of `s` (a full vector or a padded tail).
#[inline(always)]
unsafe fn load_lanes<V: F32Vector>(s: &[f32], lanes: usize, fill: f32) -> V {
    debug_assert!(lanes <= s.len());
    // SAFETY: `lanes` values of `s` are readable; V's features: caller contract.
    unsafe { load_at(s.as_ptr(), lanes, fill) }
}

/// Loads `lanes` values at `p`, widened to f32 (a full vector, or a tail padded with
/// `fill`).
#[inline(always)]
unsafe fn load_at<V: F32Vector, E: Elem>(p: *const E, lanes: usize, fill: f32) -> V {
    // SAFETY: the caller guarantees `lanes` readable values at `p`; V's features.
    unsafe {
        if lanes == V::LANES {
            E::load(p)
        } else {
            E::load_partial(p, lanes, fill)
        }
    }
}

/// (Σ_{t'_c ≠ 0} w_c·t'_c·(x'_c − shift), Σ_c w_c·t'_c).
#[inline(always)]
pub(crate) unsafe fn soft_target_sums<V: F32Vector, E: Elem>(
    x: &[E],
    targets: SmoothedTargets<'_>,
    weights: Option<ClassWeights<'_>>,
    shift: f32,
    cap: f32,
) -> (f64, f64) {
    // SAFETY: forwarded caller contract (V's features); targets and weights have x.len()
    // values.
    unsafe {
        let cap = Cap::<V>::new(cap);
        let s = V::splat(shift);
        let (keep, uniform) = (V::splat(targets.keep), V::splat(targets.uniform));
        let zero = V::splat(0.0);
        let (mut dot, mut total) = (Sum::<V>::new(), Sum::<V>::new());
        for_each_vector!(V, E, x, shift, |i, v, lanes| {
            // Tail lanes: w = 0 and a finite x' − shift, so they add 0 to both sums.
            let t = load_lanes::<V>(&targets.probs[i..], lanes, 0.0).mul_add(keep, uniform);
            let w = match weights {
                Some(w) => load_weights::<V>(w, i, lanes),
                None if lanes == V::LANES => V::splat(1.0),
                None => load_lanes::<V>(&[1.0; super::vector::MAX_LANES], lanes, 0.0),
            };
            total.add(w.mul(t));
            // w·(t·(x' − shift)), PyTorch's order: (w·t)·(x' − shift) would turn a weight
            // times target that underflows f32 (1e-45·0.33) into 0·−∞ = NaN where the
            // loss is +∞ (found by the fuzzer).
            let term = w.mul(t.mul(capped(v, cap).sub(s)));
            // A zero target adds 0 even against a −∞ logit (0·−∞ would be NaN).
            dot.add(V::select(t.eq(zero), zero, term));
        });
        let unscale = weights.map_or(1.0, |w| w.unscale());
        (dot.finish() * unscale, total.finish() * unscale)
    }
}

/// The per-class terms subtracted from the scaled exponentials of lane block `i..i+lanes`:
/// smooth·w_c + w_c·t'_c.
#[inline(always)]
unsafe fn class_terms<V: F32Vector>(coef: &GradCoefs32<'_>, i: usize, lanes: usize) -> V {
    // SAFETY: weights and soft targets have the row's length; V's features: caller contract.
    unsafe {
        #[allow(
            clippy::manual_map,
            reason = "a closure would be compiled without the tier's target features"
        )]
        let w = match coef.weights {
            Some(w) => Some(load_weights::<V>(w, i, lanes)),
            None => None,
        };
        let mut terms = match w {
            Some(w) => w.mul(V::splat(coef.smooth)),
            None => V::splat(coef.smooth),
        };
        if let Some(t) = coef.soft {
            let tp = load_lanes::<V>(&t.probs[i..], lanes, 0.0)
                .mul_add(V::splat(t.keep), V::splat(t.uniform));
            terms = match w {
                Some(w) => w.mul_add(tp, terms),
                None => terms.add(tp),
            };
        }
        terms
    }
}

/// `g` with the hard target's exact value in its lane, when the target lies in lane block
/// `i..i+lanes` (the entry is set as its vector is stored, never patched afterwards), then
/// times the row's rescale factors.
#[inline(always)]
unsafe fn finish<V: F32Vector>(g: V, coef: &GradCoefs32<'_>, i: usize, lanes: usize) -> V {
    // SAFETY: `y - i < lanes <= LANES`; V's features: caller contract.
    unsafe {
        let g = match coef.target {
            Some((y, value)) if (i..i + lanes).contains(&y) => {
                V::select(V::lane(y - i), V::splat(value), g)
            }
            _ => g,
        };
        rescaled(g, coef)
    }
}

/// `g` times the row's rescale factors (see [`GradCoefs32::rescale`]).
#[inline(always)]
unsafe fn rescaled<V: F32Vector>(g: V, coef: &GradCoefs32<'_>) -> V {
    match coef.rescale {
        // SAFETY: V's features: caller contract.
        Some((a, b)) => unsafe { g.mul(V::splat(a)).mul(V::splat(b)) },
        None => g,
    }
}

/// Whether the row needs per-class terms at all (no smoothing and no soft targets).
#[inline(always)]
fn plain(coef: &GradCoefs32<'_>) -> bool {
    coef.smooth == 0.0 && coef.soft.is_none()
}

/// out_c = k·e_c (times the rescale factors when `RESCALE`) over `range` of a row of `n`
/// values, e at `src` and out at `dst` (the same pointer in place); a range of whole
/// vectors, or reaching the row's end. (`RESCALE` a constant: the plain loop is the
/// hottest of an in-place call, and a test of the factors in it cost 5% on the 256-bit
/// tier.)
#[inline(always)]
unsafe fn scale_plain<V: F32Vector, O: Elem, const RESCALE: bool>(
    src: *const f32,
    dst: *mut O,
    range: core::ops::Range<usize>,
    n: usize,
    k: V,
    coef: &GradCoefs32<'_>,
) {
    // SAFETY: `range` lies within the `n` values at `src` and `dst`; V's features: caller
    // contract.
    unsafe {
        let mut i = range.start;
        let step = UNROLL * V::LANES;
        while i + step <= range.end {
            for u in 0..UNROLL {
                let at = i + u * V::LANES;
                let g = V::load(src.add(at)).mul(k);
                O::store(if RESCALE { rescaled(g, coef) } else { g }, dst.add(at));
            }
            i += step;
        }
        while i < range.end {
            let lanes = V::LANES.min(n - i);
            let g = load_at::<V, f32>(src.add(i), lanes, 0.0).mul(k);
            let g = if RESCALE { rescaled(g, coef) } else { g };
            store_lanes(g, dst.add(i), lanes);
            i += lanes;
        }
    }
}

/// out_c = coef.scale·e_c − terms_c: the gradient from stored exponentials (no softcap).
#[inline(always)]
pub(crate) unsafe fn scale_exp<V: F32Vector, O: Elem>(
    io: RowIo<'_, f32, O>,
    coef: &GradCoefs32<'_>,
) {
    let (src, dst, n) = io.raw_parts();
    // SAFETY: `src` and `dst` each cover `n` values (equal in place, where every vector is
    // read before it is written); V's features: forwarded caller contract.
    unsafe {
        let k = V::splat(coef.scale);
        // Without smoothing or soft targets only the target's vector differs: the rest of
        // the row is a plain multiply, and the target's entry is set as that vector is
        // stored (never patched afterwards).
        let terms = if plain(coef) {
            match coef.target {
                Some((y, _)) => {
                    let start = y - y % V::LANES;
                    start..(start + V::LANES).min(n)
                }
                None => n..n,
            }
        } else {
            0..n
        };
        // (A macro, not a closure: see `for_each_vector!`.)
        macro_rules! plain_run {
            ($range:expr) => {
                match coef.rescale {
                    None => scale_plain::<V, O, false>(src, dst, $range, n, k, coef),
                    Some(_) => scale_plain::<V, O, true>(src, dst, $range, n, k, coef),
                }
            };
        }
        plain_run!(0..terms.start);
        let mut i = terms.start;
        while i < terms.end {
            let lanes = V::LANES.min(n - i);
            let mut g = load_at::<V, f32>(src.add(i), lanes, 0.0).mul(k);
            if !plain(coef) {
                g = g.sub(class_terms::<V>(coef, i, lanes));
            }
            store_lanes(finish(g, coef, i, lanes), dst.add(i), lanes);
            i += lanes;
        }
        plain_run!(terms.end..n);
    }
}

/// out_c = (coef.scale·exp(x'_c − coef.shift) − terms_c)·(1 − (x'_c/c)²): the gradient
/// recomputed from the logits (softcap, a backward from a saved lse, or a 16-bit row
/// without room for its exponentials).
#[inline(always)]
pub(crate) unsafe fn write_grad<V: F32Vector, E: Elem>(io: RowIo<'_, E>, coef: &GradCoefs32<'_>) {
    let (src, dst, n) = io.raw_parts();
    // SAFETY: `src` and `dst` each cover `n` values (equal for in place, where every value
    // is read before it is written); V's features: forwarded caller contract.
    unsafe {
        let cap = Cap::<V>::new(coef.cap);
        let (k, s) = (V::splat(coef.scale), V::splat(coef.shift));
        let plain = plain(coef);
        let mut i = 0;
        while i < n {
            V::prefetch(src.wrapping_add(i + ahead::<E>()).cast());
            let lanes = V::LANES.min(n - i);
            let xp = capped(load_at::<V, E>(src.add(i), lanes, 0.0), cap);
            let mut g = exp(xp.sub(s)).mul(k);
            if !plain {
                g = g.sub(class_terms::<V>(coef, i, lanes));
            }
            if let Some(c) = cap {
                let r = xp.mul(c.inv_cap);
                g = g.mul(V::splat(1.0).sub(r.mul(r)));
            }
            store_lanes(finish(g, coef, i, lanes), dst.add(i), lanes);
            i += lanes;
        }
    }
}

/// out_c = (x_c − max) − ln_sum.
#[inline(always)]
pub(crate) unsafe fn write_log_probs<V: F32Vector, E: Elem>(
    io: RowIo<'_, E>,
    max: f32,
    ln_sum: f32,
) {
    let (src, dst, n) = io.raw_parts();
    // SAFETY: as in `write_grad`.
    unsafe {
        let (m, l) = (V::splat(max), V::splat(ln_sum));
        let mut i = 0;
        while i < n {
            let lanes = V::LANES.min(n - i);
            let v = load_at::<V, E>(src.add(i), lanes, 0.0).sub(m).sub(l);
            store_lanes(v, dst.add(i), lanes);
            i += lanes;
        }
    }
}

/// dst_c = src_c converted to `O` (exact, or rounded once).
#[inline(always)]
pub(crate) unsafe fn convert<V: F32Vector, I: Elem, O: Elem>(src: &[I], dst: &mut [O]) {
    assert_eq!(src.len(), dst.len());
    let n = src.len();
    let (p, q) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let lanes = V::LANES.min(n - i);
        // SAFETY: `lanes` values from `i` lie in both slices; V's features: caller contract.
        unsafe { store_lanes(load_at::<V, I>(p.add(i), lanes, 0.0), q.add(i), lanes) };
        i += lanes;
    }
}

/// `rows` rows of `cols` values converted from `src.0` (rows `src.1` apart) into `dst.0`
/// (rows `dst.1` apart): as one run when both are packed (row by row, each short row would
/// be a tail).
///
/// # Safety
///
/// Those rows are readable at `src` and writable at `dst`, and do not overlap; V's
/// features are enabled.
#[inline(always)]
unsafe fn convert_rows<V: F32Vector, I: Elem, O: Elem>(
    src: (*const I, usize),
    dst: (*mut O, usize),
    rows: usize,
    cols: usize,
) {
    // SAFETY: the rows lie where the caller says; V's features: caller contract.
    unsafe {
        if src.1 == cols && dst.1 == cols {
            let from = core::slice::from_raw_parts(src.0, rows * cols);
            convert::<V, I, O>(from, core::slice::from_raw_parts_mut(dst.0, rows * cols));
        } else {
            for r in 0..rows {
                let from = core::slice::from_raw_parts(src.0.add(r * src.1), cols);
                let to = core::slice::from_raw_parts_mut(dst.0.add(r * dst.1), cols);
                convert::<V, I, O>(from, to);
            }
        }
    }
}

/// A vector tier: its vector types and the one function compiled with its target features.
///
/// # Safety
///
/// The vector types' instructions are among the features `enter` enables.
pub(crate) unsafe trait SimdTier: Copy + Send + Sync + 'static {
    /// The tier's vectors: the row passes', and the short-row groups' (a row per lane).
    type Vector: RowGroups;

    /// Runs `f` compiled with the tier's target features (where `f` and what it inlines
    /// are compiled for them).
    ///
    /// # Safety
    ///
    /// This CPU has the tier's features.
    unsafe fn enter<R>(f: impl FnOnce() -> R) -> R;

    /// Rows of the tier's matrix-product micro-tile, whose columns are two vectors: as many
    /// as its registers hold as `2·GEMM_ROWS` accumulators beside two vectors of B and a
    /// broadcast.
    const GEMM_ROWS: usize;

    /// [`gemm::block`] with the tier's vectors and [`SimdTier::GEMM_ROWS`], compiled with
    /// the tier's features.
    ///
    /// # Safety
    ///
    /// This CPU has the tier's features.
    unsafe fn gemm_block(block: GemmBlock<'_>);
}

/// The matrix-product items of a tier's `impl SimdTier`: its micro-tile rows, and the entry
/// that runs [`gemm::block`] with them on the tier's vectors `$vector`.
macro_rules! gemm_entry {
    ($vector:ty, $rows:expr) => {
        const GEMM_ROWS: usize = $rows;

        unsafe fn gemm_block(block: $crate::kernels::GemmBlock<'_>) {
            // SAFETY: the caller's contract: this CPU has the tier's features.
            unsafe {
                Self::enter(
                    #[inline(always)]
                    move || $crate::kernels::gemm::block::<$vector, { Self::GEMM_ROWS }>(block),
                )
            }
        }
    };
}
pub(crate) use gemm_entry;

/// The kernels of the vector tier `T`. A value exists only on a CPU with `T`'s features
/// (see [`Simd::new_unchecked`]), which is what makes its methods safe to call.
#[derive(Clone, Copy)]
pub(crate) struct Simd<T> {
    _tier: core::marker::PhantomData<T>,
}

impl<T: SimdTier> Simd<T> {
    /// The kernels of tier `T`.
    ///
    /// # Safety
    ///
    /// This CPU has `T`'s features.
    pub(crate) unsafe fn new_unchecked() -> Self {
        Simd {
            _tier: core::marker::PhantomData,
        }
    }
}

// Every method is a call into the tier's `#[target_feature]` function with the pass
// inlined there: a direct call (the tier is a type), compiled once per tier.
//
// SAFETY (every method): a `Simd<T>` exists only on a CPU with `T`'s features, which is
// the passes' and `enter`'s one requirement.
impl<T: SimdTier> RowKernels for Simd<T> {
    #[inline]
    fn row_max<E: Elem>(&self, x: &[E], cap: f32) -> f32 {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || row_max::<T::Vector, E>(x, cap),
            )
        }
    }

    #[inline]
    fn sum_exp<E: Elem>(&self, x: &[E], shift: f32, cap: f32, target: Option<usize>) -> ExpSums {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || sum_exp::<T::Vector, E>(x, shift, cap, target),
            )
        }
    }

    #[inline]
    fn exp_store_sum<E: Elem>(
        &self,
        io: RowIo<'_, E, f32>,
        shift: f32,
        target: Option<usize>,
    ) -> ExpSums {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || exp_store_sum::<T::Vector, E>(io, shift, target),
            )
        }
    }

    #[inline]
    fn weighted_shifted_sum<E: Elem>(
        &self,
        x: &[E],
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> f64 {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || weighted_shifted_sum::<T::Vector, E>(x, weights, shift, cap),
            )
        }
    }

    #[inline]
    fn soft_target_sums<E: Elem>(
        &self,
        x: &[E],
        targets: SmoothedTargets<'_>,
        weights: Option<ClassWeights<'_>>,
        shift: f32,
        cap: f32,
    ) -> (f64, f64) {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || soft_target_sums::<T::Vector, E>(x, targets, weights, shift, cap),
            )
        }
    }

    #[inline]
    fn short_rows<E: Elem>(
        &self,
        rows: StridedRows<'_, E>,
        job: &ShortJob<'_>,
        stats: &mut [ShortStats],
    ) {
        let mut rows = match E::f32_rows(rows) {
            Ok(rows) => {
                // SAFETY: see above.
                return unsafe {
                    T::enter(
                        #[inline(always)]
                        move || short_rows::<T::Vector>(rows, job, stats),
                    )
                };
            }
            Err(rows) => rows,
        };
        // 16-bit rows: widened into an f32 tile, run through the f32 kernel, the outputs
        // rounded once from the tile (the bits of the kernel rounding as it stores). The
        // kernel, unrolled for each of the 16 row lengths, is then compiled once per tier
        // rather than once per element type, for a copy of at most 16 KiB in L1.
        assert_eq!(stats.len(), rows.groups());
        let (cols, groups) = (rows.cols(), rows.groups());
        assert!(
            groups <= GROUPS_PER_CALL,
            "{groups} groups in one short-row call"
        );
        let n = GROUP * groups;
        let (src, stride, dst) = rows.raw_parts();
        let mut tile = [0.0f32; GROUPS_PER_CALL * GROUP * SHORT_COLS];
        let tile = &mut tile[..n * cols];
        // SAFETY: rows 0..n lie at multiples of `stride` inside the input (StridedRows::new)
        // and hold `cols` values, the tile holds n packed rows; see above for the features.
        unsafe {
            let to = tile.as_mut_ptr();
            T::enter(
                #[inline(always)]
                || convert_rows::<T::Vector, E, f32>((src, stride), (to, cols), n, cols),
            )
        }
        let io = match dst {
            Some(_) => StridedIo::InPlace(&mut tile[..]),
            None => StridedIo::Read(&tile[..]),
        };
        self.short_rows(StridedRows::new(io, cols, cols, groups), job, stats);
        let Some((dst, out_stride)) = dst else {
            return;
        };
        // SAFETY: rows 0..n lie at multiples of `out_stride` inside the output
        // (StridedRows::new), hold `cols` values and do not overlap; no reference to the
        // rows is alive (the input was read into the tile); see above for the features.
        unsafe {
            let from = tile.as_ptr();
            T::enter(
                #[inline(always)]
                || convert_rows::<T::Vector, f32, E>((from, cols), (dst, out_stride), n, cols),
            )
        }
    }

    #[inline]
    fn convert<I: Elem, O: Elem>(&self, src: &[I], dst: &mut [O]) {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || convert::<T::Vector, I, O>(src, dst),
            )
        }
    }

    #[inline]
    fn write_grad<E: Elem>(&self, io: RowIo<'_, E>, coef: &GradCoefs32<'_>) {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || write_grad::<T::Vector, E>(io, coef),
            )
        }
    }

    #[inline]
    fn scale_exp<O: Elem>(&self, io: RowIo<'_, f32, O>, coef: &GradCoefs32<'_>) {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || scale_exp::<T::Vector, O>(io, coef),
            )
        }
    }

    #[inline]
    fn write_log_probs<E: Elem>(&self, io: RowIo<'_, E>, max: f32, ln_sum: f32) {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || write_log_probs::<T::Vector, E>(io, max, ln_sum),
            )
        }
    }

    #[inline]
    fn gemm_tile(&self) -> (usize, usize) {
        (T::GEMM_ROWS, 2 * T::Vector::LANES)
    }

    #[inline]
    fn gemm_block(&self, block: GemmBlock<'_>) {
        // SAFETY: see above.
        unsafe { T::gemm_block(block) }
    }

    #[inline]
    fn softcap(&self, x: f32, cap: f32) -> f32 {
        // SAFETY: see above.
        unsafe {
            T::enter(
                #[inline(always)]
                move || {
                    let lanes = capped(T::Vector::load_partial(&x, 1, 0.0), Cap::new(cap));
                    let mut out = x;
                    lanes.store_partial(&mut out, 1);
                    out
                },
            )
        }
    }
}
