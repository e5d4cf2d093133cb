//! Trains a linear softmax classifier on 8×8 handwritten digits with xent's fused
//! loss + gradient.
//!
//! The 1797 images of `examples/data/digits.csv.gz` (see `examples/data/README.md`) are
//! scaled to [0, 1], shuffled with a fixed seed and split 80/20 into a training and a
//! held-out set. The model is `logits = x·Wᵀ + b` (W is 10×64), trained by minibatch SGD:
//! each step computes the batch's logits, lets [`xent::cross_entropy_grad_in_place`]
//! overwrite them with ∂loss/∂logits (mean reduction), and back-propagates with
//! `dW = Gᵀ·X`, `db = Σ G`.
//!
//! It prints the mean training loss of every epoch, the held-out accuracy and the share of
//! the training time spent inside xent, and fails when the held-out accuracy is not above
//! 90%, so it doubles as an end-to-end check.
//!
//! ```text
//! cargo run --release --example digits
//! ```

use std::error::Error;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use xent::{Options, RowsMut};

const PIXELS: usize = 64;
const CLASSES: usize = 10;
const MAX_PIXEL: f32 = 16.0;
const BATCH_SIZE: usize = 64;
const EPOCHS: usize = 30;
const LEARNING_RATE: f32 = 1.0;
const SEED: u64 = 0x5eed_d161;
const MIN_ACCURACY: f64 = 0.90;

/// Images (row-major, `PIXELS` values in [0, 1] each) and their labels.
struct Digits {
    pixels: Vec<f32>,
    labels: Vec<i64>,
}

impl Digits {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }
}

/// Reads the gzipped CSV: per line 64 pixels in `0..=16`, then the label in `0..=9`.
fn load_digits(path: &Path) -> Result<Digits, Box<dyn Error>> {
    let mut csv = String::new();
    GzDecoder::new(File::open(path)?).read_to_string(&mut csv)?;
    let mut digits = Digits {
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    for (line_no, line) in csv.lines().enumerate() {
        let invalid = |why: String| format!("line {}: {why}", line_no + 1);
        let fields: Vec<u8> = line
            .split(',')
            .map(|field| field.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        match fields.split_last() {
            Some((&label, pixels))
                if pixels.len() == PIXELS
                    && usize::from(label) < CLASSES
                    && pixels.iter().all(|&p| f32::from(p) <= MAX_PIXEL) =>
            {
                let scaled = pixels.iter().map(|&p| f32::from(p) / MAX_PIXEL);
                digits.pixels.extend(scaled);
                digits.labels.push(i64::from(label));
            }
            _ => return Err(invalid("expected 64 pixels in 0..=16, then a digit".into()).into()),
        }
    }
    Ok(digits)
}

/// SplitMix64: a tiny, good-enough PRNG for a reproducible shuffle.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates (the slight modulo bias is irrelevant here).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// `logits = x·Wᵀ + b`, with `weights` holding W's `CLASSES` rows of `PIXELS`.
struct LinearModel {
    weights: Vec<f32>,
    bias: [f32; CLASSES],
}

impl LinearModel {
    fn new() -> Self {
        LinearModel {
            weights: vec![0.0; CLASSES * PIXELS],
            bias: [0.0; CLASSES],
        }
    }

    fn logits(&self, image: &[f32], out: &mut [f32]) {
        for ((logit, w), b) in out
            .iter_mut()
            .zip(self.weights.chunks_exact(PIXELS))
            .zip(self.bias)
        {
            *logit = b + w.iter().zip(image).map(|(w, x)| w * x).sum::<f32>();
        }
    }

    fn predict(&self, image: &[f32]) -> usize {
        let mut logits = [0.0; CLASSES];
        self.logits(image, &mut logits);
        (0..CLASSES)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0)
    }

    /// One SGD step from the batch's gradient with respect to its logits.
    fn step(&mut self, digits: &Digits, batch: &[usize], grad_logits: &[f32], lr: f32) {
        let mut grad_weights = [0.0f32; CLASSES * PIXELS];
        let mut grad_bias = [0.0f32; CLASSES];
        for (&i, grad_row) in batch.iter().zip(grad_logits.chunks_exact(CLASSES)) {
            let image = digits.image(i);
            for ((dw, db), &g) in grad_weights
                .chunks_exact_mut(PIXELS)
                .zip(&mut grad_bias)
                .zip(grad_row)
            {
                *db += g;
                for (dw, &x) in dw.iter_mut().zip(image) {
                    *dw += g * x;
                }
            }
        }
        for (w, dw) in self.weights.iter_mut().zip(grad_weights) {
            *w -= lr * dw;
        }
        for (b, db) in self.bias.iter_mut().zip(grad_bias) {
            *b -= lr * db;
        }
    }
}

fn accuracy(model: &LinearModel, digits: &Digits, indices: &[usize]) -> f64 {
    let correct = indices
        .iter()
        .filter(|&&i| model.predict(digits.image(i)) as i64 == digits.labels[i])
        .count();
    correct as f64 / indices.len() as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/digits.csv.gz");
    let digits = load_digits(&path).map_err(|e| format!("{}: {e}", path.display()))?;

    let mut rng = SplitMix64(SEED);
    let mut indices: Vec<usize> = (0..digits.len()).collect();
    rng.shuffle(&mut indices);
    let (train, held_out) = indices.split_at_mut(digits.len() * 4 / 5);
    println!(
        "{} digits: {} to train, {} held out; xent kernels: {}",
        digits.len(),
        train.len(),
        held_out.len(),
        xent::simd_level()
    );

    let mut model = LinearModel::new();
    let options = Options::default();
    let mut logits = vec![0.0f32; BATCH_SIZE * CLASSES];
    let mut labels = Vec::with_capacity(BATCH_SIZE);
    let mut time_in_xent = Duration::ZERO;
    let training = Instant::now();
    for epoch in 1..=EPOCHS {
        rng.shuffle(train);
        let mut loss_sum = 0.0f64;
        for batch in train.chunks(BATCH_SIZE) {
            let logits = &mut logits[..batch.len() * CLASSES];
            for (&i, out) in batch.iter().zip(logits.chunks_exact_mut(CLASSES)) {
                model.logits(digits.image(i), out);
            }
            labels.clear();
            labels.extend(batch.iter().map(|&i| digits.labels[i]));

            let mut loss = [0.0f32];
            let xent_call = Instant::now();
            xent::cross_entropy_grad_in_place(
                RowsMut::packed(logits, CLASSES)?,
                &labels,
                &options,
                &mut loss,
                None,
            )?;
            time_in_xent += xent_call.elapsed();

            // The logits now hold ∂(mean loss)/∂logits.
            model.step(&digits, batch, logits, LEARNING_RATE);
            loss_sum += f64::from(loss[0]) * batch.len() as f64;
        }
        println!(
            "epoch {epoch:2}  mean train loss {:.4}",
            loss_sum / train.len() as f64
        );
    }
    let training_time = training.elapsed();

    let held_out_accuracy = accuracy(&model, &digits, held_out);
    println!(
        "train accuracy {:.2}%, held-out accuracy {:.2}%",
        100.0 * accuracy(&model, &digits, train),
        100.0 * held_out_accuracy
    );
    println!(
        "time in xent loss+grad: {:.1}% of training ({:.2} ms of {:.2} ms)",
        100.0 * time_in_xent.as_secs_f64() / training_time.as_secs_f64(),
        time_in_xent.as_secs_f64() * 1e3,
        training_time.as_secs_f64() * 1e3
    );
    if held_out_accuracy <= MIN_ACCURACY {
        return Err(format!(
            "held-out accuracy {:.2}% is not above {:.0}%",
            100.0 * held_out_accuracy,
            100.0 * MIN_ACCURACY
        )
        .into());
    }
    Ok(())
}
