#!/usr/bin/env bash
# Builds and runs the vocabulary-parallel MPI example
# (crates/libxent/examples/mpi/vocab_parallel.c) with Open MPI on 2 and 3 ranks of this
# machine. The example checks the sharded cross-entropy against the unsharded call and
# exits non-zero on any mismatch, which fails this script.
#
# Installs Debian's Open MPI (openmpi-bin, libopenmpi-dev) as root when mpicc or mpirun is
# missing; a toolchain already on PATH is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpicc > /dev/null || ! command -v mpirun > /dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev
fi
mpirun --version | sed -n 1p

cargo build --release --locked -p libxent

# The system libraries a program linking libxent.a needs, as rustc reports them for a
# static library on this target (e.g. -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
: > "$probe/empty.rs"
native_libs=$(rustc --crate-type staticlib --crate-name empty --print native-static-libs \
    -o "$probe/libempty.a" "$probe/empty.rs" 2>&1 | sed -n 's/^.*native-static-libs: //p')

# Cargo's target directory: CARGO_TARGET_DIR when set (relative to this root, as for cargo).
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir/mpi"
exe=$target_dir/mpi/vocab_parallel
# shellcheck disable=SC2206 # native_libs is a list of -l flags, split on purpose
compile=(mpicc -std=c99 -Wall -Wextra -Wpedantic -Werror -I include
    crates/libxent/examples/mpi/vocab_parallel.c "$target_dir/release/libxent.a" $native_libs
    -o "$exe")
echo "\$ ${compile[*]}"
"${compile[@]}"

# CI containers run as root, which mpirun refuses unless told twice.
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# One machine: shared memory between the ranks (btl vader; self for a rank's messages to
# itself) through the ob1 layer, so neither a network nor the UCX/libfabric stacks Debian
# builds in are probed. vader's single-copy mechanism (CMA) needs ptrace rights that
# containers often withhold, so plain copies through the shared segment; mpirun's own
# out-of-band channel stays on loopback. --oversubscribe: 3 ranks may exceed the cores
# (then pinning each rank to a core could only stack them, hence --bind-to none). Open
# MPI 4 (Debian 12 ships 4.1) calls the shared-memory transport vader, Open MPI 5 sm.
shm=vader
if ! ompi_info --parsable | grep -q '^mca:btl:vader:'; then
    shm=sm
fi
mpi_options=(--oversubscribe --bind-to none
    --mca pml ob1 --mca btl "self,$shm" --mca "btl_${shm}_single_copy_mechanism" none
    --mca oob_tcp_if_include lo)
for np in 2 3; do
    echo "\$ mpirun -np $np ${mpi_options[*]} $exe"
    mpirun -np "$np" "${mpi_options[@]}" "$exe"
done
