//! What the tests of the exported functions called from Rust share: the padding value, a
//! small generator, and the option sets with the class weights they point to.

use std::ptr;

use xent::{Options, Reduction};
use xent_ffi::{XentOptions, XentReduction, xent_options_default};

/// Padding no call may read into a result or overwrite: a NaN with a payload.
pub const PAD: f32 = f32::from_bits(0x7fc0_dead);

/// A small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The bit patterns of `values`, for bit-for-bit comparisons.
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Options as C passes them, with the class weights they point to.
pub struct OptionSet {
    pub name: &'static str,
    pub options: XentOptions,
    pub weights: Option<Vec<f32>>,
}

impl OptionSet {
    pub fn c_options(&self) -> XentOptions {
        XentOptions {
            class_weights: self.weights.as_ref().map_or(ptr::null(), |w| w.as_ptr()),
            ..self.options
        }
    }

    pub fn reduction(&self) -> Reduction {
        match self.options.reduction {
            r if r == XentReduction::Sum as u32 => Reduction::Sum,
            r if r == XentReduction::None as u32 => Reduction::None,
            _ => Reduction::Mean,
        }
    }

    pub fn core_options(&self) -> Options<'_> {
        Options {
            reduction: self.reduction(),
            ignore_index: self.options.ignore_index,
            label_smoothing: self.options.label_smoothing,
            z_loss: self.options.z_loss,
            softcap: self.options.softcap,
            class_weights: self.weights.as_deref(),
            grad_scale: self.options.grad_scale,
        }
    }
}

/// Class weights in [0, 2), one of them 0.
pub fn weights(classes: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut w: Vec<f32> = (0..classes).map(|_| rng.range(0.0, 2.0)).collect();
    w[classes / 3] = 0.0;
    w
}

/// The option sets every case runs under: every option, every reduction.
pub fn option_sets(classes: usize) -> Vec<OptionSet> {
    let d = xent_options_default();
    vec![
        OptionSet {
            name: "defaults",
            options: d,
            weights: None,
        },
        OptionSet {
            name: "sum, smoothing, weights",
            options: XentOptions {
                reduction: XentReduction::Sum as u32,
                label_smoothing: 0.1,
                ..d
            },
            weights: Some(weights(classes, 1)),
        },
        OptionSet {
            name: "none, z_loss, softcap, ignore_index -1",
            options: XentOptions {
                reduction: XentReduction::None as u32,
                z_loss: 1e-3,
                softcap: 5.0,
                ignore_index: -1,
                ..d
            },
            weights: None,
        },
        OptionSet {
            name: "mean, everything, ignore_index 3",
            options: XentOptions {
                label_smoothing: 0.2,
                z_loss: 1e-4,
                softcap: 20.0,
                grad_scale: 0.5,
                ignore_index: 3,
                ..d
            },
            weights: Some(weights(classes, 2)),
        },
        OptionSet {
            name: "none, smoothing 1, weights, grad_scale -2",
            options: XentOptions {
                reduction: XentReduction::None as u32,
                label_smoothing: 1.0,
                grad_scale: -2.0,
                ..d
            },
            weights: Some(weights(classes, 3)),
        },
    ]
}
