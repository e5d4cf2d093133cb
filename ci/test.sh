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

# The detected tier (the best this CPU has), then each lower tier forced. A tier the CPU
# lacks cannot be forced (the suite's forced_tier_is_the_active_one test would fail), so
# the x86 tiers run only where the CPU has them.
cargo test --workspace --locked
tiers="portable scalar"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    tiers="avx2 $tiers"
fi
for tier in $tiers; do
    echo "== the whole suite again with XENT_SIMD=$tier"
    XENT_SIMD=$tier cargo test --workspace --locked
done

# The exhaustive exp and ln sweeps' figures (they ran above too; this prints them).
cargo test -p xent --lib --locked _within_2_ulp_on_every_f32 -- --nocapture |
    grep -E "^(exp|ln),|test result"
