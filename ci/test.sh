#!/usr/bin/env bash
# The project's test command (the README's): formatting, clippy with warnings as errors,
# and every test of the workspace (unit, integration, doc and example builds).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
