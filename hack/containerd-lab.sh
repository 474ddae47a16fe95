#!/usr/bin/env bash
# A throw-away containerd (CRI v1) instance in a directory of its own, for tests and
# experiments on a machine without systemd. Several instances (different DIR, bridge
# and subnet) can run side by side; nothing is written outside DIR except the CNI
# bridge, its veths and iptables rules, and the pods' cgroups.
#
#   hack/containerd-lab.sh config DIR [BRIDGE_NAME SUBNET]   write DIR/config.toml + CNI conflist
#   hack/containerd-lab.sh start  DIR                        start containerd, wait for its socket
#   hack/containerd-lab.sh import DIR TARBALL...             import OCI tarballs into ns k8s.io
#   hack/containerd-lab.sh status DIR                        is it running, which images
#   hack/containerd-lab.sh stop   DIR [--all]                stop containerd (--all: and its pods)
#
# The CRI endpoint is unix://DIR/containerd.sock. Needs root, containerd, runc,
# containernetworking-plugins, iptables, iproute2 (Debian packages of those names).
set -euo pipefail

PROG=${0##*/}
CONTAINERD_BIN=${CONTAINERD_BIN:-/usr/bin/containerd}
CTR_BIN=${CTR_BIN:-/usr/bin/ctr}
RUNC_BIN=${RUNC_BIN:-/usr/sbin/runc}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-podvisor.local/pause:3.10}
DEFAULT_BRIDGE=pvlab0
DEFAULT_SUBNET=10.88.0.0/16
START_TIMEOUT_S=${START_TIMEOUT_S:-10}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-10}

# shellcheck source=hack/lab-common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lab-common.sh"

usage() {
	cat >&2 <<EOF
usage:
  $PROG config DIR [BRIDGE_NAME SUBNET]
        Write DIR/config.toml (containerd config v2, everything under DIR) and
        DIR/cni/net.d/10-podvisor-lab.conflist (bridge BRIDGE_NAME, default $DEFAULT_BRIDGE,
        host-local IPAM on SUBNET, default $DEFAULT_SUBNET, + portmap).
        SNAPSHOTTER=overlayfs|native overrides the probe for a working overlay mount.
        Registry hosts are configured in DIR/certs.d/HOST[:PORT]/hosts.toml (containerd's
        config_path), read at every pull: write one there to trust a test registry's CA.
  $PROG start DIR
        Start $CONTAINERD_BIN --config DIR/config.toml in the background
        (log DIR/containerd.log, pid DIR/containerd.pid); wait until it answers.
  $PROG import DIR TARBALL...
        ctr -n k8s.io images import each OCI tarball (overlayfs, else native).
  $PROG status DIR
        Say whether the instance runs; list its k8s.io images and tasks.
  $PROG stop DIR [--all]   (or: stop --all DIR)
        SIGTERM containerd and wait. Pods' shims survive (containerd re-attaches
        on the next start) unless --all: then also kill the pods' containers and
        shims, unmount everything under DIR (rootfs, shm, network namespaces),
        remove this network's iptables rules and delete the bridge, so that
        DIR can be rm -rf'ed.

CRI endpoint: unix://DIR/containerd.sock
EOF
	exit 2
}

sock() { printf '%s/containerd.sock' "$1"; }

ctr_() {
	local dir=$1
	shift
	"$CTR_BIN" --address "$(sock "$dir")" "$@"
}

# PID of this DIR's containerd, if it is running (pid file checked against /proc).
containerd_pid() {
	local dir=$1 pid
	[[ -f $dir/containerd.pid ]] || return 1
	pid=$(<"$dir/containerd.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config $dir/config.toml " || return 1
	printf '%s' "$pid"
}

# Does containerd answer on its socket?
answers() { [[ -S $(sock "$1") ]] && ctr_ "$1" version >/dev/null 2>&1; }

# ---------------------------------------------------------------------------- config
cmd_config() {
	[[ $# -eq 1 || $# -eq 3 ]] || usage
	need_root
	local dir bridge=${2:-$DEFAULT_BRIDGE} subnet=${3:-$DEFAULT_SUBNET} snap netname
	dir=$(abs_dir "$1" create)
	check_network "$bridge" "$subnet"
	# unix socket paths are limited to 107 bytes; the ttrpc socket is the longest.
	local ttrpc_sock="$dir/containerd.sock.ttrpc"
	((${#ttrpc_sock} < 100)) || die "DIR path too long for a unix socket: $ttrpc_sock"
	if containerd_pid "$dir" >/dev/null; then
		log "warning: containerd of $dir is running; restart it to apply the new config"
	fi

	if [[ -n ${SNAPSHOTTER:-} ]]; then
		snap=$SNAPSHOTTER
		[[ $snap == overlayfs || $snap == native ]] || die "SNAPSHOTTER must be overlayfs or native"
	elif probe_overlay "$dir"; then
		snap=overlayfs
	else
		snap=native
		log "warning: overlay mounts fail under $dir: using the native snapshotter"
	fi
	netname="podvisor-lab-$bridge"

	mkdir -p "$dir"/{root,state,tmp,opt,certs.d,cni/net.d,cni/ipam}
	rm -f "$dir"/cni/net.d/*.conflist "$dir"/cni/net.d/*.conf

	cat >"$dir/config.toml" <<EOF
# Written by hack/containerd-lab.sh config. Everything this containerd owns lives under
# $dir, so that several instances can run side by side.
version = 2
root = "$dir/root"
state = "$dir/state"
temp = "$dir/tmp"
oom_score = 0
# Snapshotters that cannot work here; disabling them only removes start-up noise.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$dir/containerd.sock"
  uid = 0
  gid = 0

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  # /opt/containerd by default: shared between instances otherwise.
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$SANDBOX_IMAGE"
    # No CAP_SYS_RESOURCE here: negative oom_score_adj (pause: -998) would fail.
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    disable_tcp_service = true
    disable_hugetlb_controller = true
    tolerate_missing_hugetlb_controller = true
    # Sandboxes' network namespaces under DIR/state, not the shared /var/run/netns.
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_tls_streaming = false
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "$snap"
      default_runtime_name = "runc"
      disable_snapshot_annotations = true

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$RUNC_BIN"
          SystemdCgroup = false
          # runc's state (--root), per instance: DIR/state/runc/<namespace>.
          Root = "$dir/state/runc"

      # A second handler (runtimeClassName: runc-alt), the same runc with a state root of its
      # own, so that tests can tell which handler a pod runs under.
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc-alt]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc-alt.options]
          BinaryName = "$RUNC_BIN"
          SystemdCgroup = false
          Root = "$dir/state/runc-alt"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$dir/cni/net.d"
      max_conf_num = 1

    # Per-registry hosts.toml files (CA, mirrors), written by tests as they need them; an
    # empty directory changes nothing.
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$dir/certs.d"
EOF

	write_conflist "$dir/cni/net.d/10-podvisor-lab.conflist" "$netname" "$bridge" "$subnet" "$dir/cni/ipam"

	{
		printf 'LAB_BRIDGE=%q\n' "$bridge"
		printf 'LAB_SUBNET=%q\n' "$subnet"
		printf 'LAB_NETNAME=%q\n' "$netname"
		printf 'LAB_SNAPSHOTTER=%q\n' "$snap"
	} >"$dir/lab.env"

	log "wrote $dir/config.toml and $dir/cni/net.d/10-podvisor-lab.conflist" \
		"(bridge $bridge, subnet $subnet, snapshotter $snap)"
}

# ---------------------------------------------------------------------------- start
cmd_start() {
	[[ $# -eq 1 ]] || usage
	need_root
	local dir pid
	dir=$(abs_dir "$1")
	[[ -f $dir/config.toml ]] || die "$dir/config.toml missing (run '$PROG config $dir' first)"
	[[ -x $CONTAINERD_BIN ]] || die "$CONTAINERD_BIN missing (apt-get install containerd)"
	if pid=$(containerd_pid "$dir"); then
		if ctr_ "$dir" version >/dev/null 2>&1; then
			log "containerd of $dir already running (pid $pid)"
			return 0
		fi
		die "containerd of $dir has pid $pid but does not answer; '$PROG stop $dir' first"
	fi
	# A socket left by a killed containerd would make the wait below lie.
	rm -f "$dir/containerd.sock" "$dir/containerd.sock.ttrpc"
	mkdir -p "$dir/tmp"

	# setsid: not in the caller's process group, so a ^C or a job kill there does not reach it.
	setsid "$CONTAINERD_BIN" --config "$dir/config.toml" </dev/null >>"$dir/containerd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/containerd.pid"

	await_start containerd "$pid" "$dir" "$dir/containerd.log" "$dir/containerd.pid" "unix://$dir/containerd.sock" answers
}

# ---------------------------------------------------------------------------- import
cmd_import() {
	[[ $# -ge 2 ]] || usage
	local dir tarball snap
	dir=$(abs_dir "$1")
	shift
	load_env "$dir"
	snap=${LAB_SNAPSHOTTER:-overlayfs}
	containerd_pid "$dir" >/dev/null || die "containerd of $dir is not running ('$PROG start $dir')"
	for tarball in "$@"; do
		[[ -f $tarball ]] || die "$tarball: no such file"
		if ctr_ "$dir" -n k8s.io images import --snapshotter "$snap" "$tarball" >&2; then
			continue
		fi
		[[ $snap != native ]] || die "import of $tarball failed"
		log "warning: import of $tarball with snapshotter $snap failed; retrying with native." \
			"CRI uses '$snap': re-run 'SNAPSHOTTER=native $PROG config $dir ...' and restart."
		ctr_ "$dir" -n k8s.io images import --snapshotter native "$tarball" >&2 ||
			die "import of $tarball failed with native too"
		log "imported $tarball with the native snapshotter"
	done
}

# ---------------------------------------------------------------------------- status
cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir pid
	dir=$(abs_dir "$1")
	if pid=$(containerd_pid "$dir"); then
		echo "containerd: running, pid $pid, unix://$dir/containerd.sock"
		ctr_ "$dir" -n k8s.io images ls -q || true
		ctr_ "$dir" -n k8s.io tasks ls || true
	else
		echo "containerd: not running"
		return 3
	fi
}

# ---------------------------------------------------------------------------- stop
# Direct children of PID $1.
children_of() {
	local parent=$1 s stat ppid
	for s in /proc/[0-9]*/stat; do
		{ stat=$(<"$s"); } 2>/dev/null || continue
		# field 4 (ppid) after the ")" that closes comm
		stat=${stat##*) }
		read -r _ ppid _ <<<"$stat"
		[[ $ppid == "$parent" ]] && { s=${s#/proc/}; printf '%s\n' "${s%/stat}"; }
	done
	return 0
}

cmd_stop() {
	local dir all pid
	parse_stop "$@"
	dir=$STOP_DIR all=$STOP_ALL
	stop_daemon containerd "$dir" "$(containerd_pid "$dir" || true)"
	rm -f "$dir/containerd.pid" "$dir/containerd.sock" "$dir/containerd.sock.ttrpc"
	((all)) || return 0

	# 1. Containers: runc delete --force kills every process of the container's cgroup and
	#    removes the cgroup. The runc root is per instance (config: runc options Root).
	#    Then the pod-level cgroup parents (linux.cgroup_parent), which containerd never
	#    removes, if empty.
	runc_delete_all "$dir"/state/runc/*/
	rmdir_pod_cgroups

	# 2. Shims (and, in case runc state was elsewhere, whatever they still parent).
	local shims=() kids=()
	mapfile -t shims < <(pids_under 'containerd-shim*' "$dir")
	if ((${#shims[@]})); then
		for _ in 1 2 3; do
			kids=()
			for pid in "${shims[@]}"; do
				mapfile -t -O "${#kids[@]}" kids < <(children_of "$pid")
			done
			((${#kids[@]})) || break
			kill -KILL "${kids[@]}" 2>/dev/null || true
			sleep 0.2
		done
		# containerd-shim-runc-v2 ignores SIGTERM (it shuts down on containerd's ttrpc
		# request); its containers are gone by now, so nothing is lost with SIGKILL.
		kill -KILL "${shims[@]}" 2>/dev/null || true
		for pid in "${shims[@]}"; do
			wait_gone "$pid" 2 || log "warning: shim $pid does not die"
		done
		log "stopped ${#shims[@]} shim(s): ${shims[*]}"
	fi

	# 3. Mounts under DIR: container rootfs, sandbox shm, network namespaces (nsfs),
	#    deepest first; lazily if busy.
	unmount_under "$dir"
	# netns files (now plain files) of the CRI sandboxes
	rm -rf "$dir"/state/io.containerd.grpc.v1.cri/netns 2>/dev/null || true

	# 4. Network: iptables rules of this network, then the bridge.
	network_cleanup "$dir"
	log "$dir is free: rm -rf $dir is safe"
}

# ---------------------------------------------------------------------------- main
[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
config) cmd_config "$@" ;;
start) cmd_start "$@" ;;
import) cmd_import "$@" ;;
status) cmd_status "$@" ;;
stop) cmd_stop "$@" ;;
-h | --help | help) usage ;;
*)
	log "unknown command '$cmd'"
	usage
	;;
esac
