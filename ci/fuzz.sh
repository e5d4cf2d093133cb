#!/usr/bin/env bash
# Fuzzing (fuzz/): each cargo-fuzz target for a bounded time, starting from its committed
# seed corpus, on the pinned nightly, under AddressSanitizer (cargo-fuzz's default).
#
# - rust_api: every Rust entry point with drawn shapes, strides, options, targets and logit
#   bit patterns; verdicts against a model of docs/bad-input.md, results against the f64 oracle.
# - c_abi: every C export with pointers anywhere in one allocation (misaligned, overlapping,
#   in place); statuses against the model, refused calls and bytes outside the outputs
#   unchanged, results equal to the same call on separate buffers.
#
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/; replay it with
# `cargo +nightly-2026-05-20 fuzz run <target> <file>` (XENT_FUZZ_DEBUG=1 prints the call).
set -euo pipefail
cd "$(dirname "$0")/.."

# The nightly the targets were written and run on (cargo-fuzz needs -Zsanitizer).
NIGHTLY=nightly-2026-05-20
CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"

rustup toolchain install "$NIGHTLY" --profile minimal
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The fuzz crate is outside the workspace: its own formatting and lint check (stable).
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --manifest-path fuzz/Cargo.toml --locked --all-targets -- -D warnings

cargo "+$NIGHTLY" fuzz build --fuzz-dir fuzz

# Both targets at once: a libFuzzer run uses one core, and CI has two.
# fuzz_one TARGET: the run of one target, its log and scratch corpus in $work/TARGET.*;
# exits non-zero on a crash or a timeout.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fuzz_one() {
    local target=$1
    mkdir -p "$work/$target.corpus"
    # New inputs go to a scratch directory (the first corpus), so a run never rewrites the
    # committed seeds.
    timeout $((SECONDS_PER_TARGET + 300)) \
        cargo "+$NIGHTLY" fuzz run --fuzz-dir fuzz "$target" "$work/$target.corpus" \
        "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -print_final_stats=1 \
        >"$work/$target.log" 2>&1
}
targets=(rust_api c_abi)
pids=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${SECONDS_PER_TARGET}s"
    fuzz_one "$target" &
    pids+=($!)
done
failed=0
for k in "${!targets[@]}"; do
    target=${targets[$k]}
    if wait "${pids[$k]}"; then
        echo "== fuzz $target: no failure"
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" "$work/$target.log"
    else
        tail -n 80 "$work/$target.log"
        echo "fuzz $target FAILED (its input is in fuzz/artifacts/$target/)"
        failed=1
    fi
done
exit "$failed"
