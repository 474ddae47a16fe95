#!/usr/bin/env bash
# Sets up everything on a fresh machine and runs podvisor on manifests-examples/:
# Debian packages, the local pause and busybox images, a containerd of its own under
# /run/podvisor-lab (socket /run/podvisor-lab/containerd.sock), then podvisor in the
# foreground. Ctrl-C stops podvisor; the pods keep running. `hack/run-examples.sh stop`
# removes the pods and stops that containerd.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run-examples.sh: run as root" >&2; exit 1; }
LAB=${LAB:-/run/podvisor-lab}
if [[ ${1:-} == stop ]]; then
	exec hack/containerd-lab.sh stop --all "$LAB"
fi
hack/deps.sh
hack/build-images.sh target/images
cargo build --release
if ! hack/containerd-lab.sh status "$LAB" >/dev/null 2>&1; then
	[[ -f $LAB/config.toml ]] || hack/containerd-lab.sh config "$LAB" pvexample0 10.77.0.0/16
	hack/containerd-lab.sh start "$LAB"
fi
hack/containerd-lab.sh import "$LAB" target/images/pause.tar target/images/busybox.tar
echo "run-examples.sh: podvisor on manifests-examples/; try: curl localhost:8080, ctr --address $LAB/containerd.sock -n k8s.io containers ls"
exec target/release/podvisor run \
	--manifest-dir manifests-examples \
	--runtime-endpoint "unix://$LAB/containerd.sock" \
	--root-dir "$LAB/podvisor" \
	--pod-log-dir /var/log/pods
