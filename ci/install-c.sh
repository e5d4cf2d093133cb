#!/usr/bin/env bash
# Installs xent's C library under PREFIX:
#
#   PREFIX/include/xent.h
#   PREFIX/lib/libxent.so, PREFIX/lib/libxent.a
#   PREFIX/lib/pkgconfig/xent.pc                 (pkg-config --cflags --libs xent)
#   PREFIX/lib/cmake/xent/xentConfig.cmake       (find_package(xent) -> xent::xent)
#   PREFIX/lib/cmake/xent/xentConfigVersion.cmake
#
# Usage: bash ci/install-c.sh PREFIX [LIB_DIR]
#   Without LIB_DIR it first builds the release libraries (cargo build --release -p libxent)
#   and installs those; with LIB_DIR it installs the libxent.so and libxent.a found there
#   (the tests pass the directory cargo built them in).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash ci/install-c.sh PREFIX [LIB_DIR]" >&2
    exit 2
fi
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
lib_dir=${2:-}
cd "$(dirname "$0")/.."

if [ -z "$lib_dir" ]; then
    cargo build --release --locked -p libxent
    lib_dir=${CARGO_TARGET_DIR:-target}/release
fi
for lib in libxent.so libxent.a; do
    if [ ! -f "$lib_dir/$lib" ]; then
        echo "install-c.sh: $lib_dir/$lib is missing" >&2
        exit 1
    fi
done

# The workspace's version, from [workspace.package] in Cargo.toml.
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
if [ -z "$version" ]; then
    echo "install-c.sh: no version in Cargo.toml's [workspace.package]" >&2
    exit 1
fi

# The system libraries a program linking libxent.a needs, as rustc reports them for a
# static library on this target (e.g. -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
: > "$probe/empty.rs"
native_libs=$(rustc --crate-type staticlib --crate-name empty --print native-static-libs \
    -o "$probe/libempty.a" "$probe/empty.rs" 2>&1 | sed -n 's/^.*native-static-libs: //p')
native_libs_cmake=$(printf '%s' "$native_libs" | sed -e 's/^-l//' -e 's/ -l/;/g')

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/xent"
install -m 644 include/xent.h "$prefix/include/xent.h"
install -m 755 "$lib_dir/libxent.so" "$prefix/lib/libxent.so"
install -m 644 "$lib_dir/libxent.a" "$prefix/lib/libxent.a"

fill() {
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" \
        -e "s|@NATIVE_STATIC_LIBS@|$native_libs|g" \
        -e "s|@NATIVE_STATIC_LIBS_CMAKE@|$native_libs_cmake|g" "$1" > "$2"
}
templates=crates/libxent/install
fill "$templates/xent.pc.in" "$prefix/lib/pkgconfig/xent.pc"
fill "$templates/xentConfig.cmake.in" "$prefix/lib/cmake/xent/xentConfig.cmake"
fill "$templates/xentConfigVersion.cmake.in" "$prefix/lib/cmake/xent/xentConfigVersion.cmake"

echo "installed xent $version under $prefix"
