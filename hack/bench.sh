#!/usr/bin/env bash
# The benchmark, in one command: installs what it needs, builds podvisor as it ships (the
# `dist` profile) and podvisor-bench, and runs it against a private containerd. Prints the
# markdown table and writes target/bench/latest.json. Extra arguments go to podvisor-bench
# (e.g. --quick for a smoke run). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench.sh: run as root (containerd needs it)" >&2; exit 1; }
hack/deps.sh
cargo build --profile dist -p podvisor -p podvisor-bench --bins
exec target/dist/podvisor-bench "$@"
