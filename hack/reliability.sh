#!/usr/bin/env bash
# The reliability suite's long form, in one command: 100 kill -9 cycles, 10 containerd
# restarts, the rewrite storm, 500 files, hostile manifests, full and read-only log disks,
# then the manifest-parser fuzzer for FUZZ_SECONDS (default 600). Prints every figure line.
# CI runs the short form of the same tests as part of hack/test.sh. Run as root.
#
#   hack/reliability.sh                 # everything, long form
#   FUZZ_SECONDS=0 hack/reliability.sh  # without the fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "reliability.sh: run as root (containerd needs it)" >&2; exit 1; }
hack/deps.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
PODVISOR_RELIABILITY=long cargo test --test it -- --include-ignored --nocapture \
	--test-threads 1 reliability:: hostile:: disk:: 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
echo
echo "== figures"
grep -aoE 'reliability: .*' "$out" || true
grep -E '^test result:' "$out" || true
[[ $status == 0 ]] || exit "$status"
if [[ ${FUZZ_SECONDS:-600} != 0 ]]; then
	FUZZ_SECONDS=${FUZZ_SECONDS:-600} hack/fuzz.sh
fi
