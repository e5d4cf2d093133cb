//! Which kernel tier runs: detected once per process, overridable with `XENT_SIMD`
//! (BLAKE3's `Platform` pattern: one enum, one detection, match-based dispatch).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::kernels::RowKernels;
use crate::kernels::Simd;
use crate::kernels::portable::Portable;
use crate::kernels::scalar::Scalar;
#[cfg(target_arch = "x86_64")]
use crate::kernels::{avx2, avx512};

/// A piece of a call (a chunk of rows, a conversion) written once, generic over the kernel
/// tier, and run on the tier in force by [`on_tier`] (pulp's `WithSimd`): the one place
/// where the tier chosen at run time becomes a type, so that everything below calls its
/// kernels directly.
pub(crate) trait Work {
    /// What the work returns.
    type Output;

    /// Does the work with the kernels `k`.
    fn run<K: RowKernels>(self, k: K) -> Self::Output;
}

/// The instruction-set tiers, from the most capable down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// `core::arch` AVX-512F over 512-bit vectors, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The AVX2 kernels compiled with AVX-512F/VL too (256-bit vectors, 32 registers).
    #[cfg(target_arch = "x86_64")]
    Avx512Vl,
    /// `core::arch` AVX2 + FMA, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// `wide` vectors with the instructions of the compilation target (SSE2, NEON).
    Portable,
    /// The same passes over one-lane vectors; runs everywhere.
    Scalar,
}

impl Tier {
    /// The best tier this CPU supports.
    fn detect() -> Tier {
        #[cfg(target_arch = "x86_64")]
        if avx512::supported() {
            return Tier::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2::supported() {
            return Tier::Avx2;
        }
        Tier::Portable
    }

    /// Every tier of this build, from the most capable down.
    const ALL: &'static [Tier] = &[
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512Vl,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2,
        Tier::Portable,
        Tier::Scalar,
    ];

    /// The tier a name denotes, whether or not this CPU has it: the name [`Tier::name`]
    /// prints, or the short one (`avx512`, `avx512vl`, `avx2`, `portable`, `scalar`), in any
    /// case, with surrounding spaces ignored.
    fn from_name(name: &str) -> Option<Tier> {
        let name = name.trim();
        Tier::ALL.iter().copied().find(|tier| {
            name.eq_ignore_ascii_case(tier.name()) || name.eq_ignore_ascii_case(tier.short_name())
        })
    }

    /// Whether this CPU can run the tier.
    fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => avx512::supported(),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vl => avx2::supported_avx512vl(),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => avx2::supported(),
            Tier::Portable | Tier::Scalar => true,
        }
    }

    /// The short name `XENT_SIMD` takes.
    fn short_name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vl => "avx512vl",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => "avx2",
            Tier::Portable => "portable",
            Tier::Scalar => "scalar",
        }
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vl => "avx512vl",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => "avx2+fma",
            Tier::Portable if cfg!(target_feature = "avx2") => "portable-avx2",
            Tier::Portable if cfg!(target_feature = "sse2") => "sse2",
            Tier::Portable if cfg!(target_feature = "neon") => "neon",
            Tier::Portable => "portable",
            Tier::Scalar => "scalar",
        }
    }

    /// Runs `work` on this tier's kernels.
    ///
    /// # Safety
    ///
    /// [`Tier::supported`] has returned true for `self` in this process.
    unsafe fn run<W: Work>(self, work: W) -> W::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => {
                // SAFETY: the function's contract.
                work.run(unsafe { Simd::<avx512::Avx512>::new_unchecked() })
            }
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vl => {
                // SAFETY: the function's contract.
                work.run(unsafe { Simd::<avx2::Avx512Vl>::new_unchecked() })
            }
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => {
                // SAFETY: the function's contract.
                work.run(unsafe { Simd::<avx2::Avx2>::new_unchecked() })
            }
            // SAFETY: the portable tier needs nothing but the build's target.
            Tier::Portable => work.run(unsafe { Simd::<Portable>::new_unchecked() }),
            // SAFETY: the scalar tier needs nothing but the build's target.
            Tier::Scalar => work.run(unsafe { Simd::<Scalar>::new_unchecked() }),
        }
    }
}

/// What `XENT_SIMD` asks for: `Ok(None)` when it is unset or empty, `Err` with the line to
/// print when it names no tier, or a tier this CPU lacks.
fn requested(value: Option<&str>) -> Result<Option<Tier>, String> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match Tier::from_name(value) {
        Some(tier) if tier.supported() => Ok(Some(tier)),
        Some(tier) => Err(format!(
            "XENT_SIMD={value:?}: this CPU lacks the {} tier",
            tier.name()
        )),
        None => {
            let names: Vec<String> = Tier::ALL
                .iter()
                .map(|t| match (t.short_name(), t.name()) {
                    (short, name) if short == name => short.to_owned(),
                    (short, name) => format!("{short} or {name}"),
                })
                .collect();
            Err(format!(
                "XENT_SIMD={value:?} names no kernel tier (it takes {})",
                names.join(", ")
            ))
        }
    }
}

/// The tier in force: `XENT_SIMD` when it names a tier this CPU has, else the detected one.
/// Chosen once; an `XENT_SIMD` that cannot be honoured writes one line to stderr, once.
///
/// An atomic rather than a `OnceLock`: a process that forks while another thread is in
/// the middle of the first call must not leave its child waiting on a lock nobody will
/// release. Two threads racing here compute the same tier.
fn active() -> Tier {
    const UNSET: u8 = u8::MAX;
    static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Some(&tier) = Tier::ALL.get(usize::from(ACTIVE.load(Ordering::Relaxed))) {
        return tier;
    }
    let value = std::env::var("XENT_SIMD").ok();
    let tier = match requested(value.as_deref()) {
        Ok(tier) => tier.unwrap_or_else(Tier::detect),
        Err(why) => {
            let tier = Tier::detect();
            if !WARNED.swap(true, Ordering::Relaxed) {
                // Not `eprintln!`, which panics when stderr is closed.
                let _ = writeln!(std::io::stderr(), "xent: {why}; using {}", tier.name());
            }
            tier
        }
    };
    let index = Tier::ALL
        .iter()
        .position(|&t| t == tier)
        .expect("a tier of ALL");
    ACTIVE.store(index as u8, Ordering::Relaxed);
    tier
}

/// Runs `work(name)` on every tier this CPU has, by the tier's name, for tests that run
/// each in one process.
#[cfg(test)]
pub(crate) fn on_every_tier<W: Work>(mut work: impl FnMut(&'static str) -> W) {
    for &tier in Tier::ALL.iter().filter(|tier| tier.supported()) {
        // SAFETY: filtered on `supported` just now.
        unsafe { tier.run(work(tier.name())) };
    }
}

/// Runs `work` on the tier in force.
pub(crate) fn on_tier<W: Work>(work: W) -> W::Output {
    // SAFETY: `active` returns a forced tier only after `supported`, and otherwise the
    // detected one.
    unsafe { active().run(work) }
}

/// The name of the kernel tier this process runs: `"avx512"` (512-bit vectors),
/// `"avx512vl"` (256-bit vectors with AVX-512's registers, taken only when forced) or
/// `"avx2+fma"` (detected at run time), `"sse2"` or `"neon"` (the portable `wide` tier,
/// compiled for the target), or `"scalar"`.
///
/// The environment variable `XENT_SIMD` (read once, at the first call) forces a tier: it
/// takes the names this function returns and the short ones `avx512`, `avx512vl`, `avx2`,
/// `portable` and `scalar`, in any case. A tier the CPU lacks, or a name of none, is
/// ignored after one line on stderr; an empty value counts as unset. This function is how
/// to check what runs.
///
/// ```
/// let tiers = ["avx512", "avx512vl", "avx2+fma", "portable-avx2", "sse2", "neon", "portable"];
/// assert!(tiers.contains(&xent::simd_level()) || xent::simd_level() == "scalar");
/// ```
pub fn simd_level() -> &'static str {
    active().name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xent_simd_takes_every_printed_and_short_name_in_any_case() {
        for &tier in Tier::ALL {
            for name in [tier.name(), tier.short_name()] {
                for spelling in [
                    name.to_owned(),
                    name.to_uppercase(),
                    format!(" {name}\n"),
                    name.chars()
                        .enumerate()
                        .map(|(i, c)| {
                            if i % 2 == 0 {
                                c.to_ascii_uppercase()
                            } else {
                                c
                            }
                        })
                        .collect(),
                ] {
                    assert_eq!(Tier::from_name(&spelling), Some(tier), "{spelling:?}");
                    match requested(Some(&spelling)) {
                        Ok(got) => assert_eq!(got, Some(tier)),
                        Err(why) => {
                            assert!(!tier.supported(), "{spelling:?}: {why}");
                            assert!(why.contains("lacks"), "{why}");
                        }
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Tier::from_name("AVX2+FMA"), Some(Tier::Avx2));
        assert_eq!(Tier::from_name("Scalar"), Some(Tier::Scalar));
    }

    #[test]
    fn an_unknown_or_empty_xent_simd_is_not_a_tier() {
        for name in ["avx", "avx-512", "sse", "fast", "avx2fma", "scalar2", "0"] {
            assert_eq!(Tier::from_name(name), None, "{name}");
            let why = requested(Some(name)).unwrap_err();
            assert!(why.contains("names no kernel tier"), "{why}");
        }
        assert_eq!(requested(None), Ok(None));
        assert_eq!(requested(Some("")), Ok(None));
        assert_eq!(requested(Some("  ")), Ok(None));
    }
}
