//! Which kernel tier runs: detected once per process, overridable with `XENT_SIMD`
//! (BLAKE3's `Platform` pattern: one enum, one detection, match-based dispatch).

use std::sync::OnceLock;

use crate::kernels::RowKernels;
use crate::kernels::portable::Portable;
use crate::kernels::scalar::Scalar;

/// The instruction-set tiers, from the most capable down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// The AVX2 kernels compiled with AVX-512F/VL too (32 registers), chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// `core::arch` AVX2 + FMA, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// `wide` vectors with the instructions of the compilation target (SSE2, NEON).
    Portable,
    /// One element at a time; runs everywhere.
    Scalar,
}

impl Tier {
    /// The best tier this CPU supports.
    fn detect() -> Tier {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::avx2::kernels_avx512().is_some() {
            return Tier::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::avx2::kernels().is_some() {
            return Tier::Avx2;
        }
        Tier::Portable
    }

    /// The tier `XENT_SIMD` names (`avx512`, `avx2`, `portable` or `scalar`), when this CPU
    /// has it.
    fn from_name(name: &str) -> Option<Tier> {
        match name {
            #[cfg(target_arch = "x86_64")]
            "avx512" => crate::kernels::avx2::kernels_avx512().map(|_| Tier::Avx512),
            #[cfg(target_arch = "x86_64")]
            "avx2" => crate::kernels::avx2::kernels().map(|_| Tier::Avx2),
            "portable" => Some(Tier::Portable),
            "scalar" => Some(Tier::Scalar),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => "avx512vl",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => "avx2+fma",
            Tier::Portable if cfg!(target_feature = "avx2") => "portable-avx2",
            Tier::Portable if cfg!(target_feature = "sse2") => "sse2",
            Tier::Portable if cfg!(target_feature = "neon") => "neon",
            Tier::Portable => "portable",
            Tier::Scalar => "scalar",
        }
    }

    fn kernels(self) -> &'static dyn RowKernels {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => crate::kernels::avx2::kernels_avx512().expect("detected before"),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => crate::kernels::avx2::kernels().expect("detected before"),
            Tier::Portable => &Portable,
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

/// The name of the kernel tier this process runs: `"avx512vl"` or `"avx2+fma"` (detected
/// at run time), `"sse2"` or `"neon"` (the portable `wide` tier, compiled for the target),
/// or `"scalar"`.
///
/// The environment variable `XENT_SIMD` (`avx512`, `avx2`, `portable` or `scalar`, read
/// once) forces a tier; a tier the CPU lacks, or an unknown name, is ignored, so this function is how
/// to check what runs.
///
/// ```
/// assert!(["avx512vl", "avx2+fma", "portable-avx2", "sse2", "neon", "portable", "scalar"]
///     .contains(&xent::simd_level()));
/// ```
pub fn simd_level() -> &'static str {
    active().name()
}
