//! Which kernel tier runs: detected once per process, overridable with `XENT_SIMD`.

use std::sync::OnceLock;

use crate::kernels::RowKernels;
use crate::kernels::scalar::Scalar;

/// The instruction-set tiers, from the most capable down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// One element at a time; runs everywhere.
    Scalar,
}

impl Tier {
    /// The best tier this CPU supports.
    fn detect() -> Tier {
        Tier::Scalar
    }

    /// The tier named by `XENT_SIMD`, when the CPU supports it.
    fn from_name(name: &str) -> Option<Tier> {
        match name {
            "scalar" => Some(Tier::Scalar),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
        }
    }

    fn kernels(self) -> &'static dyn RowKernels {
        match self {
            Tier::Scalar => &Scalar,
        }
    }
}

/// The tier in force: `XENT_SIMD` when it names a tier this CPU has, else the detected one.
fn active() -> Tier {
    static ACTIVE: OnceLock<Tier> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        std::env::var("XENT_SIMD")
            .ok()
            .and_then(|name| Tier::from_name(name.trim()))
            .unwrap_or_else(Tier::detect)
    })
}

/// The kernels of the tier in force.
pub(crate) fn kernels() -> &'static dyn RowKernels {
    active().kernels()
}

/// The name of the kernel tier this process runs: `"scalar"` on every CPU for now; the
/// environment variable `XENT_SIMD` (read once) can force a lower tier.
///
/// ```
/// assert!(!xent::simd_level().is_empty());
/// ```
pub fn simd_level() -> &'static str {
    active().name()
}
