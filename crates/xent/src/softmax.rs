//! The standalone row kernels: softmax and log-softmax, in place or out of place.

use crate::dispatch::kernels;
use crate::error::Result;
use crate::kernels::{GradRow, RowKernels};
use crate::pass::Pass;
use crate::rows::{Rows, RowsMut};
use crate::schedule::{SplitRows, for_each_chunk};

/// What a standalone call writes per row.
#[derive(Clone, Copy)]
enum Output {
    Probabilities,
    LogProbabilities,
}

fn run(pass: Pass<'_>, output: Output) -> Result<()> {
    pass.check("output")?;
    let cols = pass.cols();
    let k = kernels();
    for_each_chunk(pass, cols, |chunk| rows_chunk(k, chunk, output));
    Ok(())
}

fn rows_chunk(k: &dyn RowKernels, mut chunk: Pass<'_>, output: Output) {
    for i in 0..chunk.rows() {
        let x = chunk.input(i);
        let m = k.row_max(x, 0.0);
        let sum = k.sum_exp(x, m, 0.0);
        let Some(io) = chunk.io(i) else {
            unreachable!("standalone kernels always write")
        };
        match output {
            // p_c = exp(x_c − m) · (1/S): one rounding of 1/S instead of exp(x − lse),
            // whose argument loses the low bits of large logits.
            Output::Probabilities => k.write_grad(
                io,
                &GradRow {
                    shift: m,
                    scale: (1.0 / sum) as f32,
                    smooth: 0.0,
                    target: None,
                    soft: None,
                    weights: None,
                    cap: 0.0,
                },
            ),
            Output::LogProbabilities => {
                k.write_log_probs(io, m, sum.ln() as f32);
            }
        }
    }
}

/// Writes softmax(x) of each row of `x` into `y` (the same shape, any stride).
///
/// ```
/// use xent::{Rows, RowsMut};
///
/// let x = [0.0f32, 0.0, 1.0, 1.0];
/// let mut y = [0.0f32; 4];
/// xent::softmax(Rows::packed(&x, 2)?, RowsMut::packed(&mut y, 2)?)?;
/// assert_eq!(y, [0.5; 4]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax(x: Rows<'_>, y: RowsMut<'_>) -> Result<()> {
    run(Pass::Separate(x, y), Output::Probabilities)
}

/// Replaces each row of `x` by its softmax.
///
/// ```
/// let mut x = [3.0f32, 3.0, 3.0, 3.0];
/// xent::softmax_in_place(xent::RowsMut::packed(&mut x, 4)?)?;
/// assert_eq!(x, [0.25; 4]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax_in_place(x: RowsMut<'_>) -> Result<()> {
    run(Pass::InPlace(x), Output::Probabilities)
}

/// Writes log_softmax(x) = x − logsumexp(x) of each row of `x` into `y`.
///
/// ```
/// use xent::{Rows, RowsMut};
///
/// let x = [1.0f32, 1.0];
/// let mut y = [0.0f32; 2];
/// xent::log_softmax(Rows::packed(&x, 2)?, RowsMut::packed(&mut y, 2)?)?;
/// assert!((y[0] + 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax(x: Rows<'_>, y: RowsMut<'_>) -> Result<()> {
    run(Pass::Separate(x, y), Output::LogProbabilities)
}

/// Replaces each row of `x` by its log-softmax.
///
/// ```
/// let mut x = [0.0f32, 0.0, 0.0, 0.0];
/// xent::log_softmax_in_place(xent::RowsMut::packed(&mut x, 4)?)?;
/// assert!(x.iter().all(|&v| (v + 4f32.ln()).abs() < 1e-6));
/// # Ok::<(), xent::Error>(())
/// ```
pub fn log_softmax_in_place(x: RowsMut<'_>) -> Result<()> {
    run(Pass::InPlace(x), Output::LogProbabilities)
}
