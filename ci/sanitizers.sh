#!/usr/bin/env bash
# Memory and undefined-behaviour checks, in two parts:
#
# 1. Every C test program of crates/libxent/tests/c/, the C and C++ examples and the
#    README's C example, built with GCC's AddressSanitizer (leaks included) and
#    UndefinedBehaviorSanitizer against the release libxent.a, run, and judged as
#    crates/libxent/tests/c_programs.rs and examples.rs judge them. This instruments the C
#    side (the programs' own buffers, and every memcpy/memset the library does on them);
#    the Rust code inside libxent.a is not instrumented.
# 2. The Rust tests with the Rust code itself instrumented by AddressSanitizer, on the
#    pinned nightly (-Zsanitizer is unstable), in target/asan so the normal builds stay.
#
# Any sanitizer report, failed check or timeout fails the script. Runs as root on Debian 12
# in CI and installs what is missing (GCC's sanitizer runtimes, the nightly toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated tests draw from a fixed seed, as in ci/test.sh.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261128}"

nightly=nightly-2026-05-20
target=x86_64-unknown-linux-gnu

# abort_on_error: a report ends the program with SIGABRT whatever it did before, so it
# cannot be mistaken for a clean exit; the detect/check/strict options widen what ASan
# looks for. allow_addr2line: the Rust side's ASan runtime (LLVM's) names file:line only
# through llvm-symbolizer, which Debian does not have without LLVM; binutils' addr2line
# comes with gcc.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:strict_init_order=1:allow_addr2line=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

started=$SECONDS
elapsed() { echo "[$((SECONDS - started))s]"; }

scratch=$(mktemp -d /tmp/xent-sanitizers.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# --- Tools --------------------------------------------------------------------------------

# $CC and $CXX as the tests take them (crates/libxent/tests/common/mod.rs).
cc=${CC:-cc}
cxx=${CXX:-c++}

# GCC's sanitizer runtimes (libasan8, libubsan1) usually come with gcc and g++; a fresh
# image may lack one of them, or the compilers.
probe_sanitizers() {
    echo 'int main(void) { return 0; }' > "$scratch/probe.c"
    "$cc" -fsanitize=address,undefined "$scratch/probe.c" -o "$scratch/probe" 2> /dev/null &&
        "$cxx" -fsanitize=address,undefined -x c++ "$scratch/probe.c" -o "$scratch/probe" \
            2> /dev/null
}
if ! probe_sanitizers; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ libasan8 libubsan1
    if ! probe_sanitizers; then
        echo "sanitizers.sh: $cc or $cxx cannot link -fsanitize=address,undefined" >&2
        exit 1
    fi
fi

# The pinned nightly, without rust-src: std is not rebuilt (-Zbuild-std), see part 2.
if ! rustup run "$nightly" rustc --version > /dev/null 2>&1; then
    rustup toolchain install "$nightly" --profile minimal
fi

# --- Part 1: the C and C++ programs under ASan + UBSan -------------------------------------

# The release profile keeps line tables, so reports name the library's lines too; and
# .ci/run's other steps (ci/mpi.sh, the digits job) build the same library.
timeout 600 cargo build --release --locked -p libxent
# Cargo's target directory: CARGO_TARGET_DIR when set (relative to this root, as for cargo).
target_dir=${CARGO_TARGET_DIR:-target}
lib=$target_dir/release/libxent.a

# The system libraries a program linking libxent.a needs, as rustc reports them for a
# static library on this target (e.g. -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).
: > "$scratch/empty.rs"
native_libs=$(rustc --crate-type staticlib --crate-name empty --print native-static-libs \
    -o "$scratch/libempty.a" "$scratch/empty.rs" 2>&1 | sed -n 's/^.*native-static-libs: //p')
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)

# The tests' strict warnings (common::STRICT), then the sanitizers. No recovery: the first
# report ends the program, with a non-zero status.
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
    -Wall -Wextra -Wpedantic -Werror -I include)

failed=()
summary=()

# build NAME COMPILER STD SOURCE [FLAGS...]: compiles and links SOURCE into $scratch/NAME,
# or records the failure in the summary and returns 1.
build() {
    local name=$1 compiler=$2 std=$3 source=$4
    shift 4
    # shellcheck disable=SC2086 # native_libs is a list of -l flags, split on purpose
    if ! "$compiler" "$std" "${sanitize[@]}" "$@" "$source" "$lib" $native_libs \
        -o "$scratch/$name"; then
        failed+=("$name")
        summary+=("$(printf '%-22s %s' "$name" "FAILED (does not compile)")")
        return 1
    fi
}

# run NAME CHECK...: runs $scratch/NAME, keeping its output in $scratch/NAME.out and .err,
# and records one summary line: passed when it exits 0 with no sanitizer report on stderr
# and each CHECK (a shell function given the stdout file) succeeds.
run() {
    local name=$1 status=0 verdict=passed
    shift
    timeout 300 "$scratch/$name" > "$scratch/$name.out" 2> "$scratch/$name.err" || status=$?
    if [ "$status" != 0 ]; then
        verdict="FAILED (exit status $status)"
    elif grep -qE 'Sanitizer|runtime error:' "$scratch/$name.err"; then
        verdict="FAILED (sanitizer report)"
    else
        local check
        for check in "$@"; do
            if ! $check "$scratch/$name.out"; then
                verdict="FAILED (output: $check)"
                break
            fi
        done
    fi
    if [ "$verdict" != passed ]; then
        failed+=("$name")
        echo "=== $name: stdout (last 40 lines)"
        tail -n 40 "$scratch/$name.out"
        echo "=== $name: stderr"
        cat "$scratch/$name.err"
    fi
    summary+=("$(printf '%-22s %s: %s' "$name" "$verdict" "$(tail -n 1 "$scratch/$name.out")")")
}

# The checks of c_programs.rs: no FAIL line, and a last line "<name>.c: N of N checks
# passed" with at least the number of checks the test asks for.
no_fail() { ! grep -q FAIL "$1"; }
all_checks_passed() { # FILE NAME MIN
    local passed total
    read -r passed total < <(sed -n "\$s/^$2\\.c: \\([0-9]*\\) of \\([0-9]*\\) checks passed\$/\\1 \\2/p" "$1")
    [ -n "${total:-}" ] && [ "$passed" = "$total" ] && [ "$total" -gt "$3" ]
}
bad_input_summary() { all_checks_passed "$1" bad_input 300; }
half_dtypes_summary() { all_checks_passed "$1" half_dtypes 2000; }
f64_dtype_summary() { all_checks_passed "$1" f64_dtype 1000; }
shard_summary() { all_checks_passed "$1" shard 3000; }
linear_summary() { all_checks_passed "$1" linear 30000; }
threads_identical() { [ "$(tail -n 1 "$1")" = "threads.c: all results identical" ]; }
# (fork.c leaves out its forks beside another thread's call under ASan, whose allocator
# is not fork-safe: 11 checks instead of 20.)
fork_summary() { all_checks_passed "$1" fork 10; }
fpenv_summary() { all_checks_passed "$1" fpenv 100; }
a_tier_name() { grep -qxE 'avx512|avx512vl|avx2\+fma|sse2|portable-avx2|neon|portable|scalar' "$1"; }
# The last line "stress.c: 10000 calls (N ok, M refused) compared under 4 thread settings
# from 8 threads, 0 differ" with about 10% refused, after "stress.c: T of T checks passed..."
# with T above 20000.
stress_summary() {
    tail -n 2 "$1" | awk '
        NR == 1 && match($0, /^stress\.c: [0-9]+ of [0-9]+ checks passed/) {
            split(substr($0, 11, RLENGTH - 10), w, " "); checks_ok = w[1] == w[3] && w[3] > 20000
        }
        NR == 2 && match($0, /^stress\.c: 10000 calls \([0-9]+ ok, [0-9]+ refused\) compared under 4 thread settings from 8 threads, 0 differ$/) {
            split($0, w, /[ (]+/); calls_ok = w[4] + w[6] == 10000 && w[6] >= 500 && w[6] < 1500
        }
        END { exit !(checks_ok && calls_ok) }'
}

# The checks of examples.rs: the held-out accuracy above 0.9, and each example's own line.
accurate() {
    awk '$1 == "held-out" && $2 == "accuracy" { ok = $3 > 0.9 } END { exit !ok }' "$1"
}
c_example_lines() {
    [ "$(head -c 5 "$1")" = "xent " ] && grep -q "epoch 12  mean training loss" "$1"
}
cpp_example_refusal() {
    grep -q "refused (status 3): xent_cross_entropy_f32: a hard target lies outside \[0, cols)" "$1"
}
# The README's C example prints what the README says it prints (in backquotes).
readme_says() { grep -qF "\`$(cat "$1")\`" README.md; }

# Every program of the directory, each with the -D, -l and -O flags c_programs.rs gives
# it; one without an entry here fails the script rather than go unsanitized.
for source in crates/libxent/tests/c/*.c; do
    name=$(basename "$source" .c)
    case $name in
        bad_input)
            build "$name" "$cc" -std=c99 "$source" "-DXENT_EXPECTED_VERSION=\"$version\"" -lm &&
                run "$name" no_fail bad_input_summary
            ;;
        half_dtypes)
            build "$name" "$cc" -std=c99 "$source" -lm &&
                run "$name" no_fail half_dtypes_summary
            ;;
        f64_dtype)
            build "$name" "$cc" -std=c99 "$source" -lm &&
                run "$name" no_fail f64_dtype_summary
            ;;
        threads)
            build "$name" "$cc" -std=c99 "$source" -pthread &&
                run "$name" threads_identical
            ;;
        shard)
            build "$name" "$cc" -std=c99 "$source" -lm &&
                run "$name" no_fail shard_summary
            ;;
        linear)
            build "$name" "$cc" -std=c99 "$source" -lm &&
                run "$name" no_fail linear_summary
            ;;
        stress)
            build "$name" "$cc" -std=c99 "$source" -pthread -O2 -lm &&
                run "$name" no_fail stress_summary
            ;;
        fork)
            build "$name" "$cc" -std=c99 "$source" -pthread && run "$name" no_fail fork_summary
            ;;
        fpenv)
            build "$name" "$cc" -std=c99 "$source" && run "$name" no_fail fpenv_summary
            ;;
        simd_env)
            build "$name" "$cc" -std=c99 "$source" && run "$name" a_tier_name
            ;;
        thread_limit)
            # Not under ASan: its shadow memory takes terabytes of address space, which the
            # program's RLIMIT_AS of a few GiB refuses at once. It runs in c_programs.rs.
            summary+=("$(printf '%-22s %s' "$name" "not run (RLIMIT_AS against ASan's shadow)")")
            ;;
        *)
            echo "sanitizers.sh: $source has no entry in this script; add one" >&2
            exit 1
            ;;
    esac
done

examples=crates/libxent/examples
build example_c "$cc" -std=c99 "$examples/c/softmax_classifier.c" &&
    run example_c accurate c_example_lines
build example_cpp "$cxx" -std=c++17 "$examples/cpp/softmax_classifier.cpp" -I "$examples/cpp" &&
    run example_cpp accurate cpp_example_refusal
# The first c block of the README's "Use from C" section, as examples.rs takes it.
awk '/^## / { in_section = ($0 == "## Use from C") }
     in_section && /^```/ { if (in_code) exit; if ($0 == "```c") { in_code = 1; next } }
     in_section && in_code' README.md > "$scratch/readme_example.c"
build readme_example "$cc" -std=c99 "$scratch/readme_example.c" &&
    run readme_example readme_says

echo "== C and C++ under AddressSanitizer + UndefinedBehaviorSanitizer $(elapsed)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "sanitizers.sh: failed: ${failed[*]}" >&2
    exit 1
fi

# --- Part 2: the Rust tests under ASan ------------------------------------------------------

# --target keeps build scripts and proc-macros (host code) uninstrumented; ASan needs that.
# Without -Zbuild-std the standard library stays uninstrumented: code of std that is
# generic (Vec, slices, iterators) is instrumented where this workspace instantiates it,
# and allocations still get ASan's redzones; rebuilding std would add minutes to every
# clean CI run for the non-generic rest of it.
# line-tables-only: reports keep file:line for every frame (inlined ones included) at a
# fraction of the compile and link time of full debug info. No incremental state: the
# build is from scratch in CI, where it only costs time.
export CARGO_TARGET_DIR=$target_dir/asan
export RUSTFLAGS=-Zsanitizer=address RUSTDOCFLAGS=-Zsanitizer=address
export CARGO_PROFILE_TEST_DEBUG=line-tables-only CARGO_INCREMENTAL=0
# Both packages in every invocation: cargo unifies the dependencies' features over the
# packages selected, so a run of xent-ffi alone would build most of them a second time.
asan_test() {
    timeout 900 cargo "+$nightly" test --locked --target "$target" -p xent -p xent-ffi "$@"
}

echo "== Rust tests under AddressSanitizer ($nightly) $(elapsed)"
# The core crate's unit and integration tests, and the C ABI through its rlib (its unit
# tests and the Rust callers of the exports). A test file added to crates/xent/tests must
# be added here.
#
# Not run here: libxent's tests (c_programs, examples, install) compile C against libxent.a/.so,
# here ASan-instrumented Rust without the ASan runtime (rustc links it into Rust
# executables only); part 1 runs those programs. header regenerates include/xent.h with
# cbindgen and compares text: nothing to sanitize.
#
# Skipped, to stay within CI's time (measured under ASan here, on two busy cores: about
# 140 s, 90 s and 30 s), each adding no memory access path the rest lacks:
# - the exhaustive exp and ln sweeps (the same vector kernels on every f32, 2^32 calls);
# - oracle::parallel_batches (the f64 oracle over 4000 x 67, 64 x 3000 and 3 x 65537) and
#   oracle::matches_oracle_long_rows (1000 and 32003 columns): rows split across threads
#   and column blocks are covered by edge_cases::long_rows_split_across_threads,
#   oracle::every_column_count (1..=67, 1000 and 32003 columns) and
#   shard::long_rows_in_shards, rayon batches by edge_cases and shard.
asan_test --lib \
    --test bad_input --test dtypes --test edge_cases --test f64 --test fp_env --test linear \
    --test oracle --test shard \
    --test rust_abi --test shard_abi --test linear_abi \
    -- --exact \
    --skip kernels::exp::tests::exp_is_within_2_ulp_on_every_f32_in_range \
    --skip kernels::exp::tests::ln_short_sum_is_within_2_ulp_on_every_f32_in_range \
    --skip parallel_batches \
    --skip matches_oracle_long_rows
echo "== Rust doc tests under AddressSanitizer $(elapsed)"
asan_test --doc

echo "== sanitizers.sh: all passed $(elapsed)"
