//! The C ABI of xent: `libxent.so` and `libxent.a`, declared by the generated
//! header `include/xent.h`.
//!
//! Each exported function turns its C pointers into the core crate's checked views and calls
//! it; it has no arithmetic of its own, so C gets exactly the Rust crate's results. Around
//! that call:
//!
//! - a panic boundary (`boundary`): no panic unwinds into C; it becomes
//!   `XENT_STATUS_INTERNAL_PANIC`;
//! - the pointer checks (`raw`, `calls`): NULL, shape, size, alignment and overlap, all
//!   before the first slice exists and before anything is written (the README's bad-input table);
//! - the thread setting (`threads`): a pool owned by the library, or the calling thread.
//!
//! The Rust items are public so that Rust tests can call the C functions through the rlib;
//! C programs use the header, whose text is generated from these doc comments (see
//! `cbindgen.toml` and `tests/header.rs`).

// The modules that export C functions. The header declares their functions in this order,
// so each is its own group (rustfmt sorts a group of `mod` items).
mod status; // xent_status_string

mod options; // xent_options_default

mod info; // xent_version, xent_simd_level

mod threads; // xent_set_num_threads

mod abi_f32; // the computing functions over float logits

mod abi_bf16; // the same over bf16 logits (uint16_t bit patterns)

mod abi_f16; // the same over f16 logits (uint16_t bit patterns)

mod abi_f64; // the same over double logits, with double loss, lse and dloss

mod abi_shard; // a vocabulary split across processes (tensor parallel)

mod abi_linear; // the fused linear + cross-entropy of a language-model head

// The machinery behind them.
mod boundary;
mod calls;
mod dtype;
mod raw;

pub use abi_bf16::{
    xent_cross_entropy_backward_bf16, xent_cross_entropy_bf16, xent_cross_entropy_soft_bf16,
    xent_log_softmax_bf16, xent_softmax_bf16,
};
pub use abi_f16::{
    xent_cross_entropy_backward_f16, xent_cross_entropy_f16, xent_cross_entropy_soft_f16,
    xent_log_softmax_f16, xent_softmax_f16,
};
pub use abi_f32::{
    xent_cross_entropy_backward_f32, xent_cross_entropy_f32, xent_cross_entropy_soft_f32,
    xent_log_softmax_f32, xent_softmax_f32,
};
pub use abi_f64::{
    xent_cross_entropy_backward_f64, xent_cross_entropy_f64, xent_cross_entropy_soft_f64,
    xent_log_softmax_f64, xent_softmax_f64,
};
pub use abi_linear::{
    xent_linear_cross_entropy_bf16, xent_linear_cross_entropy_f16, xent_linear_cross_entropy_f32,
};
pub use abi_shard::{
    XentShardRow, xent_merge_shard_rows, xent_shard_finish_f32, xent_shard_stats_f32,
};
pub use info::{xent_simd_level, xent_version};
pub use options::{XentOptions, XentReduction, xent_options_default};
pub use status::{XentStatus, XentStatusCode, xent_status_string};
pub use threads::xent_set_num_threads;
