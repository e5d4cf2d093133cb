#![doc = include_str!("../../../README.md")]
//!
//! # API at a glance
//!
//! - [`Options`] and [`Reduction`]: PyTorch's options with PyTorch's defaults.
//! - [`Rows`] / [`RowsMut`]: checked views of `rows × cols` values with a stride; logits
//!   may be `f32`, `f64`, `half::bf16` or `half::f16` ([`Logit`]; losses in [`Logit::Stat`]).
//! - [`Targets`]: hard class indices (`i64`, `i32`, `u32`) or soft target rows.
//! - [`cross_entropy`], [`cross_entropy_grad`], [`cross_entropy_grad_in_place`]: the fused
//!   forward, without a gradient, with it in a separate buffer, or over the logits.
//! - [`cross_entropy_backward`], [`cross_entropy_backward_in_place`]: the gradient from a
//!   saved logsumexp.
//! - [`softmax`], [`log_softmax`] and their `_in_place` forms.
//! - [`shard_stats`], [`merge_shard_rows`], [`shard_finish`] (and its `_grad` forms): a
//!   vocabulary split across processes (tensor parallel), merged with one all-reduce.
//! - [`linear_cross_entropy`]: a language-model head's loss and gradients from the hidden
//!   states, weight and bias, without holding the logits.
//! - [`Error`]: why a call was refused; nothing is written when a call fails.
//! - [`simd_level`], [`on_calling_thread`]: which kernels run, and where.

/// The reference pages the README links to (`docs/` in the repository), one module each, so
/// that rustdoc shows them and runs their Rust examples as doc tests.
pub mod docs {
    #[doc = include_str!("../../../docs/semantics.md")]
    pub mod semantics {}
    #[doc = include_str!("../../../docs/bad-input.md")]
    pub mod bad_input {}
    #[doc = include_str!("../../../docs/c-abi.md")]
    pub mod c_abi {}
    #[doc = include_str!("../../../docs/shards.md")]
    pub mod shards {}
    #[doc = include_str!("../../../docs/linear-head.md")]
    pub mod linear_head {}
    #[doc = include_str!("../../../docs/reliability.md")]
    pub mod reliability {}
    #[doc = include_str!("../../../docs/performance.md")]
    pub mod performance {}
}

mod batch_io;
mod dispatch;
mod dtype;
mod error;
mod fpenv;
mod kernels;
mod loss;
mod matmul;
mod options;
mod row;
mod rows;
mod schedule;
mod softmax;

pub use dispatch::simd_level;
pub use dtype::{Logit, Stat};
pub use error::{Error, Result};
#[doc(hidden)]
pub use fpenv::set_default_on_this_thread;
pub use half::{bf16, f16};
pub use loss::linear::{
    Chunking, LinearGrads, LinearHead, linear_cross_entropy, linear_cross_entropy_backward,
    linear_cross_entropy_backward_chunked, linear_cross_entropy_chunked,
};
pub use loss::shard::{
    Shard, ShardRow, merge_shard_rows, shard_finish, shard_finish_grad, shard_finish_grad_in_place,
    shard_stats,
};
pub use loss::{
    cross_entropy, cross_entropy_backward, cross_entropy_backward_in_place, cross_entropy_grad,
    cross_entropy_grad_in_place,
};
pub use matmul::{Matrix, matmul};
pub use options::{Options, Reduction};
pub use rows::{Rows, RowsMut, Targets};
pub use schedule::on_calling_thread;
pub use softmax::{log_softmax, log_softmax_in_place, softmax, softmax_in_place};
