#!/usr/bin/env bash
# The README's control-plane walkthrough, run for real (issue 13.6): kubeadm's own manifests
# for etcd, kube-apiserver, kube-controller-manager and kube-scheduler, podvisor as the only
# node agent, the `kubeadm init` phases from wait-control-plane through addon, and kubectl to
# look at the result. No registry: the images are built from the binaries in
# PODVISOR_K8S_BIN (hack/build-images.sh --kubernetes) and imported into a throw-away containerd.
#
#   PODVISOR_K8S_BIN=/opt/k8s/bin hack/kubeadm-walkthrough.sh [--keep]
#
# Environment:
#   PODVISOR_K8S_BIN   kubeadm, kubectl, kube-apiserver, kube-controller-manager,
#                      kube-scheduler and etcd (required; ../shared/RUNTIME-LAB.md builds them)
#   PODVISOR_BIN       the podvisor binary (default: target/debug/podvisor); copied, so a
#                      rebuild during the run changes nothing
#   KUBEADM_IMAGES     where the images are built and cached (default: target/kubeadm-images)
#   OBSERVE_SECONDS    how long CoreDNS and kube-proxy are watched after `addon` (default 90)
#   --keep             leave the work directory (logs, certificates) for a post-mortem
#
# Isolation. kubeadm refuses a loopback advertise address, so everything runs in a network
# namespace of its own with one end of a veth pair (a private 10.252.x.2/24): containerd,
# podvisor, kubeadm and kubectl, entered with `nsenter --net` (never `ip netns exec`, which
# remounts /sys and hides the cgroup mounts from runc). kubeadm writes /etc/kubernetes,
# /var/lib/etcd and /var/lib/kubelet at fixed paths, so the walkthrough also runs in a private
# mount namespace where directories of the work directory are bind-mounted over those three.
# The host sees only their empty mount points (created if missing, removed again) for the
# length of the run. Everything is stopped and removed on exit, on failure too.
#
# Exit status 0 means every check below held; the summary is printed at the end and kept in
# the work directory's summary.txt.
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HACK/.." && pwd)
SELF="$HACK/$(basename "${BASH_SOURCE[0]}")"
NODE=pv-cp
# The directories kubeadm writes at fixed paths, shadowed inside the private mount namespace.
SHADOWED=(/etc/kubernetes /var/lib/etcd /var/lib/kubelet)

log() { printf '%s kubeadm-walkthrough: %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

# ============================================================================ inside
# Runs in the network namespace and the private mount namespace. $1 = work dir, $2 = address.
inner() {
	# Globals, not locals: the EXIT trap runs after inner has returned.
	dir=$1 cd_dir="$1/cd"
	local addr=$2
	local bin=$PODVISOR_K8S_BIN summary="$dir/summary.txt"
	local kubectl=("$bin/kubectl" --kubeconfig /etc/kubernetes/admin.conf)
	cd "$dir"

	local d
	for d in "${SHADOWED[@]}"; do
		mkdir -p "$dir/fs$d"
		mount --bind "$dir/fs$d" "$d"
	done
	mkdir -p /etc/kubernetes/manifests

	# A stop for everything this side started, whatever happens below.
	inner_cleanup() {
		local rc=$? d
		if [[ -f $dir/podvisor.pid ]]; then
			kill -TERM "$(cat "$dir/podvisor.pid")" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$(cat "$dir/podvisor.pid")" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$(cat "$dir/podvisor.pid")" 2>/dev/null || true
			rm -f "$dir/podvisor.pid"
		fi
		"$HACK/containerd-lab.sh" stop --all "$cd_dir" >/dev/null 2>&1 || true
		for d in "${SHADOWED[@]}"; do umount -l "$d" 2>/dev/null || true; done
		exit "$rc"
	}
	trap inner_cleanup EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT

	# ---- containerd with kubeadm's images ---------------------------------------------------
	local pause
	pause=$("$bin/kubeadm" config images list --kubernetes-version "$VERSION" 2>/dev/null | grep /pause:)
	SANDBOX_IMAGE=$pause "$HACK/containerd-lab.sh" config "$cd_dir" pvkbr0 10.253.0.0/16 >/dev/null 2>&1
	"$HACK/containerd-lab.sh" start "$cd_dir" 2>/dev/null
	local t
	for t in pause etcd kube-apiserver kube-controller-manager kube-scheduler; do
		"$HACK/containerd-lab.sh" import "$cd_dir" "$IMAGES/$t.tar" >/dev/null 2>&1 ||
			die "import of $IMAGES/$t.tar failed"
	done
	log "containerd up in $dir/cd with: $(ctr --address "$cd_dir/containerd.sock" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

	# ---- kubeadm: certificates, kubeconfigs, manifests, with its defaults --------------------
	cat >"$dir/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $addr
  bindPort: 6443
nodeRegistration:
  name: $NODE
  criSocket: unix://$cd_dir/containerd.sock
  imagePullPolicy: Never
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $VERSION
EOF
	local kubeadm=("$bin/kubeadm" init phase)
	local phase
	for phase in "certs all" "kubeconfig all" "etcd local" "control-plane all"; do
		# shellcheck disable=SC2086
		"${kubeadm[@]}" $phase --config "$dir/kubeadm.yaml" >>"$dir/kubeadm.log" 2>&1 ||
			{ tail -20 "$dir/kubeadm.log" >&2; die "kubeadm init phase $phase"; }
		log "kubeadm init phase $phase: ok"
	done
	ls /etc/kubernetes/manifests >"$dir/manifests.txt"
	[[ $(wc -l <"$dir/manifests.txt") == 4 ]] || die "expected 4 manifests, got: $(cat "$dir/manifests.txt")"
	"$PODVISOR" check /etc/kubernetes/manifests --node-name "$NODE" >>"$dir/check.log" 2>&1 ||
		{ cat "$dir/check.log" >&2; die "podvisor check refused kubeadm's manifests"; }

	# ---- podvisor, the only node agent ------------------------------------------------------
	local start
	start=$(date +%s.%N)
	NO_COLOR=1 setsid "$PODVISOR" run --node-name "$NODE" \
		--manifest-dir /etc/kubernetes/manifests \
		--kubeconfig /etc/kubernetes/kubelet.conf \
		--runtime-endpoint "unix://$cd_dir/containerd.sock" \
		--root-dir "$dir/podvisor-root" --pod-log-dir "$dir/pod-logs" \
		--status-socket "$dir/podvisor.sock" \
		--client-ca-file /etc/kubernetes/pki/ca.crt --authentication-token-webhook=true \
		</dev/null >"$dir/podvisor.log" 2>&1 &
	echo $! >"$dir/podvisor.pid"
	log "podvisor started (pid $(cat "$dir/podvisor.pid")) as node $NODE"
	since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }

	# ---- kubeadm init phase wait-control-plane .. addon -------------------------------------
	# wait-control-plane takes no --config: kubeadm's defaults (healthz 127.0.0.1:10248, the
	# address of the default route's interface, which is $addr here).
	# It also asks dl.k8s.io for the "stable-1" version, which here waits 10 s for a timeout
	# before falling back to its own version: a proxy that refuses at once keeps that out of
	# the figure (the API server and the health checks are NO_PROXY).
	HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY="$addr,127.0.0.1,localhost" \
		"${kubeadm[@]}" wait-control-plane >>"$dir/kubeadm.log" 2>&1 ||
		{ tail -30 "$dir/kubeadm.log" >&2; tail -30 "$dir/podvisor.log" >&2; die "kubeadm init phase wait-control-plane"; }
	local t_wait
	t_wait=$(since "$start")
	log "kubeadm init phase wait-control-plane: ok, ${t_wait} s after podvisor started"
	echo "wait-control-plane passed ${t_wait} s after podvisor started" >>"$summary"

	# The four mirror pods, Running with 0 restarts. admin.conf's group (kubeadm:cluster-admins)
	# is bound to cluster-admin only by the first phase that uses a client (upload-config):
	# until then kubectl uses super-admin.conf (system:masters), as kubeadm itself does.
	local super=("$bin/kubectl" --kubeconfig /etc/kubernetes/super-admin.conf)
	local t_mirror="" i
	for ((i = 0; i < 600; i++)); do
		if "${super[@]}" get pods -n kube-system -o json 2>/dev/null | python3 "$HACK/kubeadm-walkthrough.py" control-plane "$NODE" >/dev/null 2>&1; then
			t_mirror=$(since "$start")
			break
		fi
		sleep 0.5
	done
	[[ -n $t_mirror ]] || {
		"${super[@]}" get pods -n kube-system -o wide >&2 || true
		die "the four mirror pods were not Running with 0 restarts within 300 s"
	}
	log "four mirror pods Running, 0 restarts, ${t_mirror} s after podvisor started"
	echo "four mirror pods Running with 0 restarts ${t_mirror} s after podvisor started" >>"$summary"

	sha256sum /etc/kubernetes/kubelet.conf >"$dir/kubelet.conf.sha256"
	for phase in "upload-config all" "upload-certs --upload-certs" "mark-control-plane" \
		"bootstrap-token" "kubelet-finalize all" "addon all"; do
		# shellcheck disable=SC2086
		"${kubeadm[@]}" $phase --config "$dir/kubeadm.yaml" >>"$dir/kubeadm.log" 2>&1 ||
			{ tail -20 "$dir/kubeadm.log" >&2; die "kubeadm init phase $phase"; }
		log "kubeadm init phase $phase: ok"
		echo "kubeadm init phase $phase: ok" >>"$summary"
	done
	# kubelet-finalize rewrites kubelet.conf to a rotated client certificate only when
	# /var/lib/kubelet/pki/kubelet-client-current.pem exists; podvisor does not rotate it.
	{
		echo "  kubelet-finalize: $(grep -c 'kubelet-finalize' "$dir/kubeadm.log" || true) lines of output;" \
			"/var/lib/kubelet/pki/kubelet-client-current.pem $([[ -e /var/lib/kubelet/pki/kubelet-client-current.pem ]] && echo exists || echo absent);" \
			"kubelet.conf $(sha256sum -c --quiet "$dir/kubelet.conf.sha256" >/dev/null 2>&1 && echo unchanged || echo rewritten)"
	} >>"$summary"

	"${kubectl[@]}" get pods -n kube-system -o wide >"$dir/pods-after-init.txt" 2>&1 || true
	"${kubectl[@]}" get nodes -o wide >>"$dir/pods-after-init.txt" 2>&1 || true
	{
		echo "--- kubectl get pods -n kube-system, nodes (after addon all)"
		cat "$dir/pods-after-init.txt"
	} >>"$summary"
	"${kubectl[@]}" get pods -n kube-system -o json | python3 "$HACK/kubeadm-walkthrough.py" control-plane "$NODE" >>"$summary" ||
		die "the control plane is not all Running with 0 restarts after addon"
	"${kubectl[@]}" get node "$NODE" -o json | python3 "$HACK/kubeadm-walkthrough.py" node >>"$summary" ||
		die "the Node is not as expected"

	# ---- an edit: a flag added to kube-apiserver.yaml --------------------------------------
	local before
	before=$("${kubectl[@]}" get pod -n kube-system "kube-apiserver-$NODE" -o jsonpath='{.metadata.annotations.kubernetes\.io/config\.hash}')
	sed 's/^    - --allow-privileged=true$/    - --allow-privileged=true\n    - --v=1/' \
		/etc/kubernetes/manifests/kube-apiserver.yaml >/etc/kubernetes/kube-apiserver.yaml.edited
	grep -q -- '- --v=1' /etc/kubernetes/kube-apiserver.yaml.edited || die "the edit did not apply"
	chmod 0600 /etc/kubernetes/kube-apiserver.yaml.edited
	local edited
	edited=$(date +%s.%N)
	mv /etc/kubernetes/kube-apiserver.yaml.edited /etc/kubernetes/manifests/kube-apiserver.yaml
	log "kube-apiserver.yaml edited (--v=1 added); config.hash was $before"
	# podvisor's own view of the change, twice a second, from its status API.
	(
		while sleep 0.5; do
			curl -sf --unix-socket "$dir/podvisor.sock" http://podvisor/pods |
				python3 -c 'import json,sys,time; print(json.dumps({"t": time.time(), "pods": json.load(sys.stdin)}))' 2>/dev/null
		done >>"$dir/edit-local.jsonl"
	) &
	local watcher=$!
	local t_edit=""
	for ((i = 0; i < 600; i++)); do
		if "${kubectl[@]}" get pods -n kube-system -o json 2>/dev/null |
			python3 "$HACK/kubeadm-walkthrough.py" edited "$NODE" "$before" "$edited" >/dev/null 2>&1 &&
			"${kubectl[@]}" get --raw /readyz >/dev/null 2>&1; then
			t_edit=$(since "$edited")
			break
		fi
		sleep 0.5
	done
	[[ -n $t_edit ]] || {
		"${kubectl[@]}" get pods -n kube-system -o wide >&2 || true
		die "the edited kube-apiserver was not back, Running with 0 restarts, within 300 s"
	}
	log "edited kube-apiserver Running with 0 restarts and /readyz ok ${t_edit} s after the edit"
	{
		echo "edited kube-apiserver (--v=1): new mirror pod Running, 0 restarts, /readyz ok ${t_edit} s after the edit"
		"${kubectl[@]}" get pods -n kube-system -o json | python3 "$HACK/kubeadm-walkthrough.py" edited "$NODE" "$before" "$edited"
	} >>"$summary" || die "the edited kube-apiserver is not as expected"
	sleep 3
	kill "$watcher" 2>/dev/null || true
	wait "$watcher" 2>/dev/null || true
	python3 "$HACK/kubeadm-walkthrough.py" edit-local "$NODE" "$before" "$edited" "$dir/edit-local.jsonl" >>"$summary" || true

	local c
	for c in kube-controller-manager kube-scheduler; do
		echo "  $c: $(cat "$dir"/pod-logs/kube-system_"$c"-"$NODE"_*/"$c"/*.log 2>/dev/null | grep -ci 'leaderelection lost' || true) 'leaderelection lost' in its logs" >>"$summary"
	done

	# ---- CoreDNS and kube-proxy: neither left bound and Pending ----------------------------
	log "watching CoreDNS and kube-proxy for ${OBSERVE_SECONDS} s"
	local observe_start
	observe_start=$(date +%s)
	: >"$dir/observe.jsonl"
	while (($(date +%s) - observe_start < OBSERVE_SECONDS)); do
		"${kubectl[@]}" get pods -n kube-system -o json 2>/dev/null |
			python3 -c 'import json,sys,time; d=json.load(sys.stdin); print(json.dumps({"t": time.time(), "items": d["items"]}))' \
				>>"$dir/observe.jsonl" 2>/dev/null || true
		sleep 1
	done
	"${kubectl[@]}" get events -n kube-system -o json >"$dir/events.json" 2>/dev/null || true
	"${kubectl[@]}" get pods -n kube-system -o wide >"$dir/pods-final.txt" 2>&1 || true
	"${kubectl[@]}" get ds,deploy -n kube-system -o wide >>"$dir/pods-final.txt" 2>&1 || true
	{
		echo "--- kubectl get pods,ds,deploy -n kube-system (after ${OBSERVE_SECONDS} s)"
		cat "$dir/pods-final.txt"
	} >>"$summary"
	"${kubectl[@]}" get pods -n kube-system -o json | python3 "$HACK/kubeadm-walkthrough.py" running "$NODE" >>"$summary" ||
		die "the control plane is not all Running and Ready at the end"
	python3 "$HACK/kubeadm-walkthrough.py" addons "$NODE" "$dir/observe.jsonl" "$dir/events.json" >>"$summary" ||
		die "CoreDNS or kube-proxy is not as expected (see $summary)"

	# ---- podvisor's own view ---------------------------------------------------------------
	{
		echo "--- podvisor ps"
		"$PODVISOR" ps --socket "$dir/podvisor.sock" 2>&1 || true
		echo "--- podvisor: $(grep -c ' WARN ' "$dir/podvisor.log" || true) warnings, $(grep -c ' ERROR ' "$dir/podvisor.log" || true) errors logged;" \
			"RSS $(awk '/VmRSS/ {print $2 " " $3}' "/proc/$(cat "$dir/podvisor.pid")/status")"
	} >>"$summary"
	kill -0 "$(cat "$dir/podvisor.pid")" || die "podvisor is no longer running"
}

# ============================================================================ outside
outer() {
	keep=0
	local a
	for a in "$@"; do
		case $a in
		--keep) keep=1 ;;
		*) die "usage: $0 [--keep]" ;;
		esac
	done
	[[ $(id -u) == 0 ]] || die "needs root"
	: "${PODVISOR_K8S_BIN:?set PODVISOR_K8S_BIN to the directory with kubeadm, kubectl, kube-apiserver, ... and etcd}"
	PODVISOR_K8S_BIN=$(cd "$PODVISOR_K8S_BIN" && pwd)
	local b
	for b in kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler etcd; do
		[[ -x $PODVISOR_K8S_BIN/$b ]] || die "$PODVISOR_K8S_BIN/$b missing"
	done
	for b in nsenter unshare ip ctr python3; do
		command -v "$b" >/dev/null || die "$b missing"
	done
	podvisor=${PODVISOR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/podvisor}
	[[ -x $podvisor ]] || die "no podvisor at $podvisor (cargo build, or set PODVISOR_BIN)"

	export VERSION IMAGES PODVISOR PODVISOR_K8S_BIN OBSERVE_SECONDS=${OBSERVE_SECONDS:-90}
	VERSION=$("$PODVISOR_K8S_BIN/kubeadm" version -o short)
	IMAGES=${KUBEADM_IMAGES:-${CARGO_TARGET_DIR:-$REPO/target}/kubeadm-images}
	log "images for kubeadm $VERSION in $IMAGES"
	"$HACK/build-images.sh" --kubernetes "$PODVISOR_K8S_BIN" "$IMAGES" 2>&1 | sed 's/^/  /' >&2
	[[ ${PIPESTATUS[0]} == 0 ]] || die "building the images failed"

	# Globals, not locals: the EXIT trap runs after outer has returned.
	dir=$(mktemp -d /tmp/pvkadm.XXXXXX)
	cp "$podvisor" "$dir/podvisor"
	PODVISOR=$dir/podvisor
	# One address pair per run: 10.252.<n>.1 (host end) and .2 (the namespace's end).
	n=$(($$ % 250 + 1)) ns="pvkadm$$"
	host_if="pvk${$}h" ns_if="pvk${$}n" addr="10.252.$n.2"
	created=()

	outer_cleanup() {
		local rc=$? pid d
		set +e
		# Whatever the inner side did not stop: podvisor, then containerd and its shims.
		if [[ -f $dir/podvisor.pid ]]; then
			pid=$(cat "$dir/podvisor.pid")
			kill -KILL "$pid" 2>/dev/null
		fi
		"$HACK/containerd-lab.sh" stop --all "$dir/cd" >/dev/null 2>&1
		ip netns del "$ns" 2>/dev/null
		ip link del "$host_if" 2>/dev/null
		for d in "${created[@]}"; do rmdir "$d" 2>/dev/null || log "warning: $d not removed (not empty?)"; done
		if ((keep)); then
			log "kept $dir"
		else
			rm -rf "$dir"
		fi
		if ((rc == 0)); then log "PASSED"; else log "FAILED (exit $rc)"; fi
		exit "$rc"
	}
	inner_pid=""
	trap outer_cleanup EXIT
	# A signal stops the inner side first (its own trap stops what it started), then cleans up.
	stop_inner() {
		if [[ -n $inner_pid ]]; then
			kill -TERM "$inner_pid" 2>/dev/null
			wait "$inner_pid" 2>/dev/null
		fi
		exit "$1"
	}
	trap 'stop_inner 130' INT
	trap 'stop_inner 143' TERM

	for d in "${SHADOWED[@]}"; do
		if [[ ! -e $d ]]; then
			mkdir -p "$d"
			created+=("$d")
		fi
	done
	ip netns add "$ns"
	ip link add "$host_if" type veth peer name "$ns_if"
	ip link set "$ns_if" netns "$ns"
	ip addr add "10.252.$n.1/24" dev "$host_if"
	ip link set "$host_if" up
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$addr/24" dev "$ns_if"
	ip -n "$ns" link set "$ns_if" up
	ip -n "$ns" route add default via "10.252.$n.1"
	log "network namespace $ns, address $addr; work dir $dir"

	local rc=0
	# nsenter and unshare exec (no --fork): $inner_pid is the inner bash itself.
	nsenter --net="/var/run/netns/$ns" unshare --mount --propagation private -- \
		"$SELF" __inner "$dir" "$addr" &
	inner_pid=$!
	wait "$inner_pid" || rc=$?
	inner_pid=""
	if [[ -f $dir/summary.txt ]]; then
		echo "===== summary ($dir/summary.txt)"
		cat "$dir/summary.txt"
	fi
	if ((rc != 0)); then
		for f in podvisor.log kubeadm.log; do
			[[ -f $dir/$f ]] && { echo "===== last lines of $f"; tail -40 "$dir/$f"; }
		done
	fi
	return "$rc"
}

if [[ ${1:-} == __inner ]]; then
	shift
	inner "$@"
else
	outer "$@"
fi
