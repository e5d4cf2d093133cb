//! Benchmarks of xent live here (criterion groups arrive with the SIMD kernels); the
//! package exists now so that the workspace layout is final.
