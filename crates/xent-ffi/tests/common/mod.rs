//! What the tests of the exported functions called from Rust share.
#![allow(dead_code, unreachable_pub)]

pub mod abi;
