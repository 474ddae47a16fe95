#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test, including the ones
# against a real containerd (each test starts its own), and fails if those did not run.
# Run as root: containerd and runc need it.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "test.sh: run as root (containerd tests need it)" >&2; exit 1; }
hack/deps.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# --workspace: the fake API server's own tests (crates/fake-apiserver) too.
cargo test --workspace --all-targets -- --include-ignored --test-threads "${TEST_THREADS:-2}" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
[[ $status == 0 ]] || exit "$status"
# Counted in tests/it's output only: tests/mirror has a lifecycle module of its own.
ran=$(awk '/^ +(Running|Doc-tests) /{it = /Running tests\/it\/main\.rs/} it' "$out" |
	grep -cE '^test (lifecycle|resilience)::.* ok$' || true)
if ((ran < 10)); then
	echo "test.sh: only $ran containerd tests passed; they did not run" >&2
	exit 1
fi
echo "test.sh: all tests passed, $ran of them against a real containerd"
