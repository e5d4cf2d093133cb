//! The f64 oracle: the formulas of docs/semantics.md evaluated literally, one element at a time, with no
//! rewriting for speed or accuracy. Tests, benchmarks and the C ABI's tests compare the fast
//! paths against it. It assumes valid input (the fast path's validation is tested
//! separately) and allocates freely.

use xent::{Options, Reduction, Rows};

/// Targets for the oracle.
#[derive(Debug, Clone, Copy)]
pub enum RefTargets<'a> {
    /// One class index per row (or `ignore_index`).
    Hard(&'a [i64]),
    /// `rows × cols` target probabilities, packed.
    Soft(&'a [f64]),
}

/// Everything the oracle computes for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RefOutput {
    /// The reduced loss (1 value) or one per row (reduction none).
    pub loss: Vec<f64>,
    /// Each row's ce_i + zl_i (0 for ignored rows), whatever the reduction.
    pub row_loss: Vec<f64>,
    /// ∂(reduced loss)/∂x, `rows × cols` packed, scaled by `grad_scale`.
    pub grad: Vec<f64>,
    /// Each row's logsumexp of x'.
    pub lse: Vec<f64>,
    /// Each row's max of x'.
    pub row_max: Vec<f64>,
    /// The upstream scale s of the ce part (g/W under mean).
    pub ce_scale: f64,
    /// The upstream scale s of the z-loss part (g/N under mean).
    pub z_scale: f64,
}

/// Copies a strided f32 batch into packed f64.
pub fn widen(x: Rows<'_, f32>) -> Vec<f64> {
    (0..x.rows())
        .flat_map(|i| x.row(i).iter().map(|&v| f64::from(v)))
        .collect()
}

fn softcapped(x: &[f64], cap: f64) -> Vec<f64> {
    x.iter()
        .map(|&v| if cap > 0.0 { cap * (v / cap).tanh() } else { v })
        .collect()
}

/// max, with any NaN making it NaN.
fn nan_max(x: &[f64]) -> f64 {
    x.iter().fold(f64::NEG_INFINITY, |m, &v| {
        if v.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

/// (m, lse) of one row of x'.
fn row_lse(xp: &[f64]) -> (f64, f64) {
    let m = nan_max(xp);
    let s: f64 = xp.iter().map(|&v| (v - m).exp()).sum();
    (m, m + s.ln())
}

/// Per-row quantities shared by the forward and backward formulas.
struct Setup {
    eps: f64,
    z: f64,
    cap: f64,
    w: Vec<f64>,
    w_sum: f64,
    /// W and N (for soft targets both are R).
    total_weight: f64,
    counted: f64,
}

fn setup(rows: usize, cols: usize, targets: RefTargets<'_>, o: &Options<'_>) -> Setup {
    let w: Vec<f64> = (0..cols)
        .map(|c| o.class_weights.map_or(1.0, |w| f64::from(w[c])))
        .collect();
    let (total_weight, counted) = match targets {
        RefTargets::Hard(y) => y
            .iter()
            .filter(|&&y| y != o.ignore_index)
            .fold((0.0, 0.0), |(tw, n), &y| (tw + w[y as usize], n + 1.0)),
        RefTargets::Soft(_) => (rows as f64, rows as f64),
    };
    Setup {
        eps: f64::from(o.label_smoothing),
        z: f64::from(o.z_loss),
        cap: f64::from(o.softcap),
        w_sum: w.iter().sum(),
        w,
        total_weight,
        counted,
    }
}

/// The gradient (docs/semantics.md) of row `i` with respect to x (softcap derivative included), for a
/// counted row with probabilities `p`, given the ce and z scales.
#[allow(clippy::too_many_arguments)]
fn grad_row(
    st: &Setup,
    cols: usize,
    xp: &[f64],
    p: &[f64],
    lse: f64,
    target: RefRowTarget<'_>,
    s_ce: f64,
    s_z: f64,
) -> Vec<f64> {
    let c_f = cols as f64;
    let t_sum = match target {
        RefRowTarget::Soft(t) => (0..cols)
            .map(|c| st.w[c] * ((1.0 - st.eps) * t[c] + st.eps / c_f))
            .sum(),
        RefRowTarget::Class(_) => 0.0,
    };
    (0..cols)
        .map(|c| {
            let dce = match target {
                RefRowTarget::Class(y) => {
                    let one_hot = if c == y { 1.0 } else { 0.0 };
                    (1.0 - st.eps) * st.w[y] * (p[c] - one_hot)
                        + (st.eps / c_f) * (p[c] * st.w_sum - st.w[c])
                }
                RefRowTarget::Soft(t) => {
                    let tp = (1.0 - st.eps) * t[c] + st.eps / c_f;
                    p[c] * t_sum - st.w[c] * tp
                }
            };
            let dz = 2.0 * st.z * lse * p[c];
            let g = s_ce * dce + s_z * dz;
            if st.cap > 0.0 {
                let r = xp[c] / st.cap;
                g * (1.0 - r * r)
            } else {
                g
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum RefRowTarget<'a> {
    Class(usize),
    Soft(&'a [f64]),
}

fn row_target<'a>(
    targets: RefTargets<'a>,
    i: usize,
    cols: usize,
    o: &Options<'_>,
) -> Option<RefRowTarget<'a>> {
    match targets {
        RefTargets::Hard(y) => (y[i] != o.ignore_index).then(|| RefRowTarget::Class(y[i] as usize)),
        RefTargets::Soft(t) => Some(RefRowTarget::Soft(&t[i * cols..(i + 1) * cols])),
    }
}

/// The fused forward and gradient of docs/semantics.md over packed f64 logits.
pub fn cross_entropy(
    logits: &[f64],
    rows: usize,
    cols: usize,
    targets: RefTargets<'_>,
    o: &Options<'_>,
) -> RefOutput {
    let st = setup(rows, cols, targets, o);
    let c_f = cols as f64;
    let g = f64::from(o.grad_scale);
    let soft = matches!(targets, RefTargets::Soft(_));
    let (s_ce, s_z) = match o.reduction {
        Reduction::Mean => (g / st.total_weight, g / st.counted),
        Reduction::Sum | Reduction::None => (g, g),
    };
    let mean_of_nothing = o.reduction == Reduction::Mean && st.total_weight == 0.0;

    let mut out = RefOutput {
        loss: Vec::new(),
        row_loss: vec![0.0; rows],
        grad: vec![0.0; rows * cols],
        lse: vec![0.0; rows],
        row_max: vec![0.0; rows],
        ce_scale: s_ce,
        z_scale: s_z,
    };
    let (mut ce_sum, mut zl_sum) = (0.0, 0.0);
    for i in 0..rows {
        let xp = softcapped(&logits[i * cols..(i + 1) * cols], st.cap);
        let (m, lse) = row_lse(&xp);
        out.row_max[i] = m;
        out.lse[i] = lse;
        let Some(target) = row_target(targets, i, cols, o) else {
            continue;
        };
        let lp: Vec<f64> = xp.iter().map(|&v| v - lse).collect();
        let p: Vec<f64> = lp.iter().map(|&v| v.exp()).collect();
        let ce = match target {
            RefRowTarget::Class(y) => {
                let mut ce = (1.0 - st.eps) * st.w[y] * (-lp[y]);
                if st.eps > 0.0 {
                    ce += (st.eps / c_f) * (0..cols).map(|c| st.w[c] * (-lp[c])).sum::<f64>();
                }
                ce
            }
            RefRowTarget::Soft(t) => -(0..cols)
                .map(|c| {
                    let tp = (1.0 - st.eps) * t[c] + st.eps / c_f;
                    if tp == 0.0 { 0.0 } else { st.w[c] * tp * lp[c] }
                })
                .sum::<f64>(),
        };
        let zl = st.z * lse * lse;
        ce_sum += ce;
        zl_sum += zl;
        out.row_loss[i] = ce + zl;
        if !mean_of_nothing {
            let grad = grad_row(&st, cols, &xp, &p, lse, target, s_ce, s_z);
            out.grad[i * cols..(i + 1) * cols].copy_from_slice(&grad);
        }
    }
    out.loss = match o.reduction {
        Reduction::None => out.row_loss.clone(),
        Reduction::Sum => vec![ce_sum + zl_sum],
        Reduction::Mean if soft => vec![(ce_sum + zl_sum) / st.total_weight],
        Reduction::Mean if mean_of_nothing => vec![f64::NAN],
        Reduction::Mean => vec![ce_sum / st.total_weight + zl_sum / st.counted],
    };
    out
}

/// The gradient for the upstream `dloss` (1 value, or one per row for reduction none), over
/// packed f64 logits: what the backward from a saved lse computes, exactly (each row's p
/// from its own exact lse, so the saved lse's rounding is not part of the reference).
pub fn cross_entropy_backward(
    logits: &[f64],
    rows: usize,
    cols: usize,
    targets: RefTargets<'_>,
    o: &Options<'_>,
    dloss: &[f64],
) -> Vec<f64> {
    let st = setup(rows, cols, targets, o);
    let mut grad = vec![0.0; rows * cols];
    if o.reduction == Reduction::Mean && st.total_weight == 0.0 {
        return grad;
    }
    for i in 0..rows {
        let Some(target) = row_target(targets, i, cols, o) else {
            continue;
        };
        let (s_ce, s_z) = match o.reduction {
            Reduction::Mean => (dloss[0] / st.total_weight, dloss[0] / st.counted),
            Reduction::Sum => (dloss[0], dloss[0]),
            Reduction::None => (dloss[i], dloss[i]),
        };
        let xp = softcapped(&logits[i * cols..(i + 1) * cols], st.cap);
        let (_, lse) = row_lse(&xp);
        let p: Vec<f64> = xp.iter().map(|&v| (v - lse).exp()).collect();
        let g = grad_row(&st, cols, &xp, &p, lse, target, s_ce, s_z);
        grad[i * cols..(i + 1) * cols].copy_from_slice(&g);
    }
    grad
}

/// softmax of each row of packed f64 values.
pub fn softmax(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|i| {
            let row = &x[i * cols..(i + 1) * cols];
            let (_, lse) = row_lse(row);
            row.iter()
                .map(move |&v| (v - lse).exp())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// log_softmax of each row of packed f64 values.
pub fn log_softmax(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|i| {
            let row = &x[i * cols..(i + 1) * cols];
            let (_, lse) = row_lse(row);
            row.iter().map(move |&v| v - lse).collect::<Vec<_>>()
        })
        .collect()
}
