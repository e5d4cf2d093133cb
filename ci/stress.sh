#!/usr/bin/env bash
# Stress and determinism, printing their figures:
# - crates/xent/tests/stress.rs: 10,000 generated calls to every entry point of the core
#   crate (about 10% refused) made one after another, then from 8 threads at once, each
#   result compared bit for bit with the serial one;
# - crates/xent/tests/determinism.rs: every entry point and element type on shapes that take
#   the parallel paths, the same bits in rayon pools of 1, 2, 3, 4 and 8 threads as on the
#   calling thread, and on repeated runs;
# - crates/libxent/tests/c/stress.c (through the c_programs test, against the static and
#   the shared library): 10,000 generated calls to every computing function of xent.h, the
#   serial run against 8 POSIX threads under xent_set_num_threads 1, 2, 0 and 4.
# `bash ci/test.sh` runs the same tests silently on every kernel tier; this reruns them on
# the detected tier with their output, from the same (test-profile) build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build first, apart: on a cold target directory it takes minutes, which the runs'
# timeouts below must not count. The whole workspace, as ci/test.sh selects it: cargo
# unifies the dependencies' features over the packages selected, so selecting fewer would
# build them again.
timeout 1800 cargo test --workspace --locked --no-run

# Each run takes seconds; a timeout means a hang (a deadlock between the callers and the
# pools), which the tests would otherwise turn into a stuck job.
timeout 300 cargo test --workspace --locked --test stress --test determinism -- --nocapture
timeout 300 cargo test --workspace --locked --test c_programs \
    ten_thousand_mixed_calls_from_c_threads_match_serial_calls -- --nocapture
