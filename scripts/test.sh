#!/usr/bin/env bash
# Builds txbox and runs the whole test suite: unit tests, integration tests on a throwaway
# PostgreSQL 15 and Apache Kafka broker (started and stopped by ctest's fixtures), the
# out-of-tree find_package(txbox) build, the unit tests again under ASan+UBSan, and each
# libFuzzer target briefly (clang).
#   scripts/test.sh            (BUILD_DIR=build by default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
jobs=$(nproc)

scripts/install-deps.sh

t0=$(date +%s)
echo "[test] building in $build (-Werror)" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTXBOX_WERROR=ON >/dev/null
cmake --build "$build" -j "$jobs"
t1=$(date +%s)
echo "[test] running the test suite" >&2
ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 600
t2=$(date +%s)

echo "[test] unit tests under AddressSanitizer + UndefinedBehaviorSanitizer" >&2
cmake -S . -B "$build-asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTXBOX_WERROR=ON -DTXBOX_SANITIZE=ON >/dev/null
cmake --build "$build-asan" -j "$jobs" --target txbox_unit_tests
ctest --test-dir "$build-asan" -L unit -j "$jobs" --output-on-failure
t3=$(date +%s)

echo "[test] fuzz targets (libFuzzer, clang), 5,000 inputs each from a fixed seed" >&2
cmake -S . -B "$build-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DTXBOX_FUZZ=ON -DTXBOX_BUILD_TESTS=OFF >/dev/null
cmake --build "$build-fuzz" -j "$jobs" --target fuzz_all
ctest --test-dir "$build-fuzz" -L fuzz --output-on-failure
t4=$(date +%s)
echo "[test] done: build $((t1 - t0)) s, tests $((t2 - t1)) s, sanitizer build+tests $((t3 - t2)) s," \
  "fuzzing $((t4 - t3)) s" >&2
