#!/usr/bin/env bash
# Fuzzing (fuzz/): each cargo-fuzz target for a bounded time, starting from its committed
# seed corpus, on the pinned nightly, under AddressSanitizer (cargo-fuzz's default).
#
# - rust_api: every Rust entry point with drawn shapes, strides, options, targets and logit
#   bit patterns; verdicts against a model of SPEC §4, results against the f64 oracle.
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
for target in rust_api c_abi; do
    echo "== fuzz $target for ${SECONDS_PER_TARGET}s"
    # New inputs go to a scratch directory (the first corpus), so a run never rewrites the
    # committed seeds.
    scratch="$(mktemp -d)"
    log="$(mktemp)"
    if ! timeout $((SECONDS_PER_TARGET + 300)) \
        cargo "+$NIGHTLY" fuzz run --fuzz-dir fuzz "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 80 "$log"
        echo "fuzz $target FAILED (its input is in fuzz/artifacts/$target/)"
        exit 1
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" "$log"
    rm -rf "$scratch" "$log"
done
