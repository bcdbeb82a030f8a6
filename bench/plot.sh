#!/usr/bin/env bash
# Draws the benchmark plots from relay_bench's figures (relay.tsv) as PNGs in OUT_DIR.
#   bench/plot.sh build-bench/results/relay.tsv docs
# Installs matplotlib into a venv under build-bench/ (PyPI); not needed by CI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/build-bench/plot-venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib
fi
"$venv/bin/python" "$root/bench/plot.py" "$1" "$2"
