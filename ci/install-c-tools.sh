#!/usr/bin/env bash
# Installs the tools the C install test (crates/libxent/tests/install.rs) drives besides
# the C compiler: pkg-config and CMake. Debian's packages, as root; a tool already on PATH
# is left alone. Outside CI the test skips a missing tool (and says so); under CI=true it
# fails instead, so CI must run this script first.
set -euo pipefail

missing=()
command -v pkg-config > /dev/null || missing+=(pkg-config)
command -v cmake > /dev/null || missing+=(cmake)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
