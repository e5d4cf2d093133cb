#!/usr/bin/env bash
# The core crate's tests under Miri, the interpreter that stops at undefined behaviour
# (out-of-bounds, misaligned or uninitialised reads, aliasing violations, data races) in
# the kernels' raw-pointer code, on the portable tier. Miri runs about a million times
# slower than native code, so this is a bounded subset (about 4 minutes on 2 cores, each
# run under a time limit so that CI cannot hang), and the tests shrink their sizes under
# `cfg(miri)`. The AVX2 and AVX-512 tiers cannot run: under Miri the CPU has no features
# beyond the target's (SSE2), so the detected tier is the portable one. The scalar tier
# runs the same passes over one-lane vectors, so CI leaves it to the full runs
# (`-Zmiri-env-set=XENT_SIMD=scalar`); the kernel tests run it here too.
#
# The rest of the suite runs the same way, `cargo +nightly-2026-05-20 miri test -p xent`
# with the flags below (Tree Borrows for the tests that start threads); the five tests
# that need minutes per call even at their Miri sizes are ignored under Miri, and
# `-- --include-ignored` runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# A pinned nightly, so that a new Miri cannot turn CI red on its own.
toolchain=nightly-2026-05-20
rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src
cargo +"$toolchain" miri setup

# Tests that start rayon threads: a pool of their own, the global pool (a call of 131072
# values or more, or on rows of 16384 or more, asks it for its size), or gemm's products.
# Rayon's deque, crossbeam-epoch, breaks Stacked Borrows, Miri's default aliasing model,
# inside its own code (crossbeam-rs/crossbeam#545) but not Tree Borrows, under which
# crossbeam's own CI runs: these tests run under Tree Borrows, every other one under
# Stacked Borrows, the stricter model. An error inside crossbeam_epoch (an aliasing
# violation, or an integer-to-pointer cast under strict provenance) means that a test
# started threads: add it here.
threaded=(
    kernels::exp::tests::exp_is_within_2_ulp_on_every_f32_in_range
    kernels::exp::tests::ln_short_sum_is_within_2_ulp_on_every_f32_in_range
    kernels::exp::tests::tanh_is_accurate
    matmul::tests::products_match_the_triple_loop_on_every_tier
    zero_rows
)
# Left to the full run for time: 40 s of the subset's Miri time, nearly all of it in the f64
# oracle's 240 finite-difference evaluations (its 8 kernel calls are 3 × 5 rows, the shapes
# the subset's other tests run).
slow=(gradient_matches_finite_differences)
# The generated tests of small batches and of short rows (which run 8 at a time through the
# strided short-row kernels), PROPTEST_CASES cases each.
generated=(matches_oracle_small matches_oracle_short_rows masked_entries)

# For every run:
# - the tier, set inside the interpreter: Miri hides the host's environment, and
#   cargo-miri would replace a run-time XENT_SIMD with the one the test binary was built
#   under;
# - -Zmiri-deterministic-floats: Rust leaves the NaN a computation returns and the last
#   bits of exp, ln and tanh unspecified, and Miri draws them at random by default, while
#   the tests check that every call style gives the same bits (as a real CPU does).
common="-Zmiri-env-set=PROPTEST_CASES=2 -Zmiri-deterministic-floats"
# Stacked Borrows with strict provenance (no integer-to-pointer casts), alignment checked
# against what each allocation guarantees (not the address it happened to get), and the
# leak check.
stacked="-Zmiri-strict-provenance -Zmiri-symbolic-alignment-check"
# Tree Borrows. Rayon's pool threads never exit (the global pool lives as long as the
# process, a dropped pool does not join its workers), hence -Zmiri-ignore-leaks; crossbeam
# casts integers to pointers, hence the permissive provenance.
tree="-Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-permissive-provenance"

# Runs `cargo miri test ARGS` for `tier` with `flags` added, within `limit`.
miri_test() {
    local limit=$1 tier=$2 flags=$3
    shift 3
    local start=$SECONDS
    echo "== Miri, XENT_SIMD=$tier, $flags: cargo miri test $*"
    MIRIFLAGS="-Zmiri-env-set=XENT_SIMD=$tier $common $flags" \
        timeout "$limit" cargo +"$toolchain" miri test --locked "$@"
    echo "== Miri: $((SECONDS - start)) s"
}

# Build first, so that the time limits measure the runs; then check that every test named
# above still exists, since a renamed one would silently drop out of the runs.
targets=(-p xent --lib --test edge_cases --test bad_input --test oracle)
cargo +"$toolchain" miri test --locked "${targets[@]}" --no-run
cargo +"$toolchain" miri test --locked -p xent-ffi --lib --no-run
listed=$(cargo +"$toolchain" miri test --locked "${targets[@]}" -- --list 2>/dev/null)
for t in "${threaded[@]}" "${slow[@]}" "${generated[@]}"; do
    if ! grep -qx "$t: test" <<<"$listed"; then
        echo "ci/miri.sh: no test named $t" >&2
        exit 1
    fi
done

skips=()
for t in "${threaded[@]}" "${slow[@]}"; do
    skips+=(--skip "$t")
done

# Two lanes at once: Miri interprets on one core, and CI has two. Each lane's output goes
# to its own log, printed when it ends; a failure in either fails the script. Each limit is
# at least twice its run's time on an idle CI machine (the core lane: 161 s).
lane_core() {
    miri_test 400s portable "$stacked" -p xent --lib --test edge_cases --test bad_input -- \
        "${skips[@]}"
}
lane_rest() {
    # Proptest looks for its file of past failures from the working directory, which
    # isolation hides: the lookup fails with a warning and the cases run (the ordinary runs
    # replay the file) instead of Miri aborting.
    miri_test 200s portable "$stacked -Zmiri-isolation-error=warn-nobacktrace" \
        -p xent --test oracle -- --exact "${generated[@]}"
    miri_test 200s portable "$tree" -p xent --lib --test edge_cases -- \
        --exact "${threaded[@]}"
    # The C ABI's pointer checks (NULL, alignment, size, overlap) do not depend on the tier;
    # the thread-setting test builds pools.
    miri_test 120s portable "$stacked" -p xent-ffi --lib -- --skip threads::
    miri_test 120s portable "$tree" -p xent-ffi --lib -- threads::
}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
lane_core > "$logs/core" 2>&1 &
core=$!
lane_rest > "$logs/rest" 2>&1 &
rest=$!
status=0
wait "$core" || status=1
wait "$rest" || status=1
cat "$logs/core" "$logs/rest"
exit "$status"
