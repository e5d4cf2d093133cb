#!/usr/bin/env bash
# The project's test command (the README's): formatting, clippy with warnings as errors,
# every test of the workspace (unit, integration, doc, the C/C++ programs), and the core
# crate's tests on every other kernel tier this CPU has.
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated tests draw from a fixed seed, so a run is reproducible; change it to explore.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261128}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The whole suite on the detected tier (the best this CPU has); then the core crate's
# integration tests (the kernels against the f64 oracle, edge cases, dtypes, shards, the
# linear head) again on each lower tier, forced. The C ABI's tests run once: they call the
# same kernels through the same dispatch, and what they check (pointers, statuses,
# threads, fork, the FP environment, the C programs) does not depend on the tier; the lib's
# exp, ln and tanh sweeps test every tier in one process. A tier the CPU lacks cannot be
# forced (the suite's forced_tier_is_the_active_one test would fail), so the x86 tiers run
# only where the CPU has them.
#
# Every run selects the whole workspace (naming the test targets), so that cargo unifies
# the dependencies' features as for the first run and builds nothing again.
cargo test --workspace --locked
core_tests=()
for file in crates/xent/tests/*.rs; do
    core_tests+=(--test "$(basename "$file" .rs)")
done
tiers="portable scalar"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    tiers="avx2 $tiers"
    # The 256-bit tier with AVX-512's registers (the detected tier is the 512-bit one).
    if grep -qw avx512f /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
        tiers="avx512vl $tiers"
    fi
fi
for tier in $tiers; do
    echo "== the core crate's tests again with XENT_SIMD=$tier"
    XENT_SIMD=$tier cargo test --workspace --locked "${core_tests[@]}"
done

# The exhaustive exp and ln sweeps' figures (they ran above too; this prints them).
cargo test --workspace --lib --locked _within_2_ulp_on_every_f32 -- --nocapture |
    grep -E "^(exp|ln),|test result"
