#!/usr/bin/env bash
# The project's test command (the README's): formatting, clippy with warnings as errors,
# and every test of the workspace (unit, integration, doc, the C/C++ programs) on every
# kernel tier this CPU has.
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated tests draw from a fixed seed, so a run is reproducible; change it to explore.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261128}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The detected tier (AVX2+FMA where the CPU has it), then each lower tier forced.
cargo test --workspace --locked
for tier in portable scalar; do
    echo "== the whole suite again with XENT_SIMD=$tier"
    XENT_SIMD=$tier cargo test --workspace --locked
done

# The exhaustive exp sweep's figures (it ran above too; this prints them).
cargo test -p xent --lib --locked exp_is_within -- --nocapture | grep -E "^exp,|test result"
