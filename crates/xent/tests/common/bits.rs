//! Elements of the buffers the stress and determinism tests compare bit for bit.

use std::fmt;

use xent::{bf16, f16};

use super::PAD;

/// An element of a buffer a call reads or writes: its bits, the sentinel that fresh
/// output buffers hold, and conversions for generating values.
pub trait Bits: Copy + Send + Sync + fmt::Debug + 'static {
    /// A NaN with a payload that no computation produces.
    const SENTINEL: Self;
    fn bits(self) -> u64;
    fn of_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `v` in this type, rounded once.
    fn of_f32(v: f32) -> Self {
        Self::of_f64(f64::from(v))
    }
}

impl Bits for f32 {
    const SENTINEL: f32 = PAD;
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn of_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Bits for f64 {
    const SENTINEL: f64 = f64::from_bits(0x7ff8_0000_dead_beef);
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn of_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Bits for bf16 {
    const SENTINEL: bf16 = bf16::from_bits(0x7fad);
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn of_f64(v: f64) -> bf16 {
        bf16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
}

impl Bits for f16 {
    const SENTINEL: f16 = f16::from_bits(0x7ead);
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn of_f64(v: f64) -> f16 {
        f16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
}
