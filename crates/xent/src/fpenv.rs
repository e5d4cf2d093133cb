//! The floating-point environment every call computes in: round to nearest even, subnormal
//! results and inputs kept (no flush to zero), every exception masked. It is what a process
//! starts with (x86-64's MXCSR of `0x1F80`, aarch64's FPCR of 0) and what the kernels and
//! Rust's compiler assume; a caller may have changed it for its own code
//! (`torch.set_flush_denormal(True)` sets FTZ and DAZ, `fesetround` the rounding mode),
//! which would change xent's results and make them depend on the thread they run on.
//!
//! So each call, and each piece of a call that runs on a pool thread, saves the thread's
//! control and status register, sets the default, and restores the saved value when it
//! returns (also when it unwinds): the caller's register, exception flags included, is
//! exactly as it was.
//!
//! Under Miri, which has no such register and runs no inline assembly, and on other
//! architectures, this does nothing.

/// The saved environment of one thread, restored when dropped.
#[must_use = "the default environment lasts as long as the guard"]
pub(crate) struct Guard {
    #[cfg(any(
        all(target_arch = "x86_64", not(miri)),
        all(target_arch = "aarch64", not(miri))
    ))]
    saved: imp::Saved,
}

/// Sets the default environment on this thread until the guard drops.
pub(crate) fn enter() -> Guard {
    Guard {
        #[cfg(any(
            all(target_arch = "x86_64", not(miri)),
            all(target_arch = "aarch64", not(miri))
        ))]
        saved: imp::enter(),
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(any(
            all(target_arch = "x86_64", not(miri)),
            all(target_arch = "aarch64", not(miri))
        ))]
        imp::restore(&self.saved);
    }
}

/// Runs `f` in the default environment (see the module's documentation).
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter();
    f()
}

/// Sets the default environment on the calling thread for good: for the threads of a pool
/// that only ever runs xent's work (the C ABI's), which must not inherit the environment
/// of the thread that happened to start them. Not for threads the caller owns.
#[doc(hidden)]
pub fn set_default_on_this_thread() {
    core::mem::forget(enter());
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod imp {
    use core::arch::asm;

    /// Round to nearest, FTZ and DAZ off, every exception masked, no flag raised.
    const DEFAULT: u32 = 0x1F80;
    /// The control bits (the low six are the sticky exception flags).
    const CONTROL: u32 = 0xFFC0;

    pub(super) struct Saved(pub(super) u32);

    fn read() -> u32 {
        let mut csr = 0u32;
        // SAFETY: stores MXCSR (SSE, part of x86-64) into a local u32.
        unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut csr, options(nostack, preserves_flags)) };
        csr
    }

    fn write(csr: u32) {
        // SAFETY: loads MXCSR from a local u32; every value written is one read from the
        // register or DEFAULT, so no reserved bit is set (which would fault).
        unsafe {
            asm!("ldmxcsr [{p}]", p = in(reg) &csr, options(nostack, preserves_flags, readonly))
        };
    }

    pub(super) fn enter() -> Saved {
        let saved = read();
        if saved & CONTROL != DEFAULT & CONTROL {
            write(DEFAULT);
        }
        Saved(saved)
    }

    pub(super) fn restore(saved: &Saved) {
        // Always: also the flags the call raised go, so that even they are as they were.
        write(saved.0);
    }
}

#[cfg(all(target_arch = "aarch64", not(miri)))]
mod imp {
    use core::arch::asm;

    /// FPCR: round to nearest, no flush to zero (FZ, FZ16), no default NaN, no traps.
    const DEFAULT: u64 = 0;

    pub(super) struct Saved {
        fpcr: u64,
        fpsr: u64,
    }

    pub(super) fn enter() -> Saved {
        let (fpcr, fpsr): (u64, u64);
        // SAFETY: reads the FP control and status registers (always present on aarch64).
        unsafe {
            asm!("mrs {c}, fpcr", "mrs {s}, fpsr", c = out(reg) fpcr, s = out(reg) fpsr,
                 options(nomem, nostack, preserves_flags))
        };
        if fpcr != DEFAULT {
            // SAFETY: writes the default FPCR.
            unsafe { asm!("msr fpcr, {c}", c = in(reg) DEFAULT, options(nomem, nostack)) };
        }
        Saved { fpcr, fpsr }
    }

    pub(super) fn restore(saved: &Saved) {
        // SAFETY: writes back the values read in `enter`.
        unsafe {
            asm!("msr fpcr, {c}", "msr fpsr, {s}", c = in(reg) saved.fpcr, s = in(reg) saved.fpsr,
                 options(nomem, nostack))
        };
    }
}

#[cfg(all(test, target_arch = "x86_64", not(miri)))]
mod tests {
    use super::imp;

    /// MXCSR with FTZ (bit 15), DAZ (bit 6), round toward zero (bits 13–14) and the
    /// inexact flag (bit 5) set.
    const HOSTILE: u32 = 0x1F80 | 1 << 15 | 1 << 6 | 3 << 13 | 1 << 5;

    fn read() -> u32 {
        let saved = imp::enter();
        let csr = saved.0;
        imp::restore(&saved);
        csr
    }

    fn write(csr: u32) {
        imp::restore(&imp::Saved(csr));
    }

    /// 2^−149 · 0.5 · 2 in f32: 2^−149 with subnormals kept, 0 under FTZ or DAZ.
    #[inline(never)]
    fn subnormal_round_trip(x: f32) -> f32 {
        core::hint::black_box(core::hint::black_box(x) * 2.0) * 0.5
    }

    #[test]
    fn the_default_environment_holds_inside_and_the_callers_comes_back() {
        let before = read();
        let tiny = f32::from_bits(1);
        write(HOSTILE);
        assert_eq!(subnormal_round_trip(tiny), 0.0, "FTZ/DAZ are in force");
        let inside = super::run(|| (read(), subnormal_round_trip(tiny)));
        let after = read();
        write(before);
        assert_eq!(inside.0 & 0xFFC0, 0x1F80, "the default control bits inside");
        assert_eq!(inside.1, tiny, "subnormals kept inside");
        assert_eq!(
            after, HOSTILE,
            "the caller's register exactly, flags included"
        );
    }
}
