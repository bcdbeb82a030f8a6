#!/usr/bin/env bash
# Runs every libFuzzer target for longer than CI does (default 600 s each), keeping the
# corpus in build-fuzz/fuzz/corpus. A crash is written to build-fuzz/fuzz/crash-*: add it as a
# regression test (see tests/unit/conninfo_test.cpp) and to fuzz/corpus/<target>/.
#   fuzz/run.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DTXBOX_FUZZ=ON -DTXBOX_BUILD_TESTS=OFF -DTXBOX_FUZZ_SECONDS="${1:-600}" -DTXBOX_FUZZ_RUNS=-1 >/dev/null
cmake --build build-fuzz --target fuzz_all
ctest --test-dir build-fuzz -L fuzz --output-on-failure
