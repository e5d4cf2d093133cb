#!/usr/bin/env bash
# The project's test command (the README's): formatting, clippy with warnings as errors,
# every test of the workspace (unit, integration, doc, the C/C++ programs), with every
# kernel tier this CPU has tested in one process, and the edge cases on each tier.
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated tests draw from a fixed seed, so a run is reproducible; change it to explore.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261128}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The whole suite once, on the detected tier (the best this CPU has). Its kernel tests
# (`kernels::tests`, and the exp, ln and tanh sweeps) run every tier the CPU has in that
# one process against a naive reference, on every length 1..=67, 1000, 32003, misaligned
# rows, tails and special values; the semantics above the kernels are the same code on
# every tier. The edge cases (−∞/NaN rows, extreme but finite scales) then run once more
# through the whole stack on each lower tier, forced: cheap, and where a tier's kernel
# would first show an overflow. A tier the CPU lacks cannot be forced (the suite's
# forced_tier_is_the_active_one test would fail), so the x86 tiers run only where the CPU
# has them.
#
# Every run selects the whole workspace (naming the test target), so that cargo unifies
# the dependencies' features as for the first run and builds nothing again.
# (The exhaustive exp and ln sweeps run last, alone, to print their figures.)
cargo test --workspace --locked -- --skip _within_2_ulp_on_every_f32
tiers="portable scalar"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    tiers="avx2 $tiers"
    # The 256-bit tier with AVX-512's registers (the detected tier is the 512-bit one).
    if grep -qw avx512f /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
        tiers="avx512vl $tiers"
    fi
fi
for tier in $tiers; do
    echo "== the edge cases again with XENT_SIMD=$tier"
    XENT_SIMD=$tier cargo test --workspace --locked --test edge_cases
done

# The exhaustive exp and ln sweeps on every tier, printing each one's largest error (and
# failing if the filter no longer selects both).
sweeps=$(cargo test --workspace --lib --locked _within_2_ulp_on_every_f32 -- --nocapture |
    grep -E "^(exp|ln),|test result")
echo "$sweeps"
grep -q "^test result: ok. 2 passed" <<<"$sweeps"
