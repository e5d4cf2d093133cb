//! What library is linked: its version and the kernels it runs.

use core::ffi::{CStr, c_char};
use std::ffi::CString;
use std::sync::OnceLock;

use crate::boundary::catch_panic;

/// The crate version, NUL-terminated at compile time.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// What `xent_simd_level` returns if the level cannot be told.
const UNKNOWN_LEVEL: &CStr = c"unknown";

/// The version of the linked library, e.g. "0.1.0": a static string, never NULL, not to be
/// freed.
#[unsafe(no_mangle)]
pub extern "C" fn xent_version() -> *const c_char {
    catch_panic(VERSION.as_ptr(), || VERSION.as_ptr())
}

/// The kernel tier this process runs, e.g. "avx512" (512-bit vectors), "avx512vl" (256-bit
/// vectors with AVX-512's registers, only when forced), "avx2+fma", "sse2", "neon" or
/// "scalar": a static string, never NULL, not to be freed. The environment variable
/// `XENT_SIMD`, read once, forces a tier: it takes these names and `avx2`, `portable`,
/// `scalar`, in any case; one the CPU lacks, or a name of none, is ignored
/// after one line on stderr.
#[unsafe(no_mangle)]
pub extern "C" fn xent_simd_level() -> *const c_char {
    // The core crate's name, made a C string once: the tier is chosen once per process.
    static LEVEL: OnceLock<CString> = OnceLock::new();
    catch_panic(UNKNOWN_LEVEL.as_ptr(), || {
        let level = LEVEL.get_or_init(|| CString::new(xent::simd_level()).unwrap_or_default());
        level.as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_the_crates() {
        // SAFETY: both functions return static NUL-terminated strings.
        let (version, level) = unsafe {
            (
                CStr::from_ptr(xent_version()),
                CStr::from_ptr(xent_simd_level()),
            )
        };
        assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
        assert_eq!(level.to_str(), Ok(xent::simd_level()));
        assert_eq!(
            xent_simd_level(),
            xent_simd_level(),
            "one string, not one per call"
        );
    }
}
