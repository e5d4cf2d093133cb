//! xent's C library, `libxent.so` and `libxent.a`: every function `xent-ffi` exports (see
//! its documentation and `include/xent.h`), linked into the two libraries C programs use.
//! This crate adds nothing but the libraries' name.

pub use xent_ffi::*;
