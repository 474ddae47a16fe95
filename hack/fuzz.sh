#!/usr/bin/env bash
# The manifest-parser fuzzer (fuzz/fuzz_targets/manifest.rs: bytes → parse → default →
# validate → bind → hash), for FUZZ_SECONDS (default 60) over the committed seeds in
# fuzz/seeds/manifest/. New inputs go to fuzz/corpus/manifest/ (kept between runs, not
# committed); a crashing input goes to fuzz/artifacts/manifest/. Prints libFuzzer's final
# figures and one summary line, and exits non-zero on a crash (panic, abort, stack overflow,
# timeout over FUZZ_TIMEOUT seconds for one input, over 2 GiB of memory).
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo-fuzz passes.
# Installs g++ (libFuzzer is C++) and cargo-fuzz if they are missing.
#
#   hack/fuzz.sh                     # 60 s
#   FUZZ_SECONDS=600 hack/fuzz.sh    # CI's long form (hack/reliability.sh)
#
# A crash becomes a regression: see fuzz/regressions/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
per_input=${FUZZ_TIMEOUT:-10}
target=manifest
export RUSTC_BOOTSTRAP=1

if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
	# shellcheck source=/dev/null
	source "$HOME/.cargo/env"
fi
if ! command -v c++ >/dev/null; then
	[[ $(id -u) == 0 ]] || { echo "fuzz.sh: install g++ (libFuzzer is C++), or run as root" >&2; exit 1; }
	echo "fuzz.sh: installing g++" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing cargo-fuzz" >&2
	cargo install cargo-fuzz --locked
fi

# Build first, so the time budget is spent fuzzing.
cargo fuzz build "$target"

corpus=fuzz/corpus/$target
artifacts=fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts"
log=$(mktemp)
before=$(mktemp)
trap 'rm -f "$log" "$before"' EXIT
find "$artifacts" -maxdepth 1 -type f | sort >"$before"

start=$SECONDS
set +e
# The first corpus directory is the one written to: the seeds stay as committed.
cargo fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
	-max_total_time="$secs" -timeout="$per_input" -rss_limit_mb=2048 -max_len=65536 \
	-print_final_stats=1 >"$log" 2>&1
status=$?
set -e
elapsed=$((SECONDS - start))

new_artifacts=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
	-o -name 'oom-*' -o -name 'leak-*' \) | sort | comm -13 "$before" -)
crashes=$(grep -c . <<<"$new_artifacts" || true)
if ((status != 0 && crashes == 0)); then
	crashes=1 # failed without leaving an input (e.g. the build or libFuzzer itself)
fi

echo "== libFuzzer figures ($target)"
# The last status line: `#<execs> DONE cov: … ft: … corp: … exec/s: … rss: …`.
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::' "$log" || true
execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
if [[ -z $execs ]]; then
	execs=$(sed -nE 's/^#([0-9]+)[[:space:]].*/\1/p' "$log" | tail -n 1)
fi
if ((status != 0)); then
	echo "== the end of libFuzzer's output"
	tail -n 60 "$log"
	if [[ -n $new_artifacts ]]; then
		echo "== crashing inputs (minimise with RUSTC_BOOTSTRAP=1 cargo fuzz tmin $target <file>)"
		echo "$new_artifacts"
	fi
fi
echo "fuzz: ${execs:-0} executions, $crashes crashes in $elapsed s"
if ((status != 0)); then
	exit "$status"
fi
