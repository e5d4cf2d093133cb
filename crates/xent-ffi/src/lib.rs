//! The C ABI of xent: the functions `crates/libxent` links into `libxent.so` and
//! `libxent.a`, declared by the generated header `include/xent.h`.
//!
//! Each exported function turns its C pointers into the core crate's checked views and calls
//! it; it has no arithmetic of its own, so C gets exactly the Rust crate's results. Around
//! that call:
//!
//! - a panic boundary (`boundary`): no panic unwinds into C; it becomes
//!   `XENT_STATUS_INTERNAL_PANIC`;
//! - the pointer checks (`raw`, `args`): NULL, shape, size, alignment and overlap, all
//!   before the first slice exists and before anything is written (docs/bad-input.md's table);
//! - the thread setting (`threads`): a pool owned by the library, or the calling thread.
//!
//! The Rust items are public so that Rust tests can call the C functions as C does; C
//! programs use the header, whose text is generated from these doc comments (see
//! `crates/libxent/cbindgen.toml` and `crates/libxent/tests/header.rs`).

// The modules that export C functions, one per operation (each exports its element types'
// forms from one definition). The header declares their functions in this order, so each
// is its own group (rustfmt sorts a group of `mod` items).
mod status; // xent_status_string

mod options; // xent_options_default

mod info; // xent_version, xent_simd_level

mod threads; // xent_set_num_threads

mod cross_entropy; // xent_cross_entropy_<dtype>

mod soft; // xent_cross_entropy_soft_<dtype>

mod backward; // xent_cross_entropy_backward_<dtype>

mod softmax; // xent_softmax_<dtype>, xent_log_softmax_<dtype>

mod shard; // a vocabulary split across processes (tensor parallel)

mod linear; // the fused linear + cross-entropy of a language-model head

// The machinery behind them.
mod args;
mod boundary;
mod raw;

pub use backward::*;
pub use cross_entropy::*;
pub use info::{xent_simd_level, xent_version};
pub use linear::*;
pub use options::{XentOptions, XentReduction, xent_options_default};
pub use shard::{XentShardRow, xent_merge_shard_rows, xent_shard_finish_f32, xent_shard_stats_f32};
pub use soft::*;
pub use softmax::*;
pub use status::{XentStatus, XentStatusCode, xent_status_string};
pub use threads::xent_set_num_threads;
