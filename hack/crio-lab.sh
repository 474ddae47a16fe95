#!/usr/bin/env bash
# A throw-away CRI-O (CRI v1) instance in a directory of its own, the second real runtime of
# the opt-in CRI-O suite (tests/it/crio.rs). The counterpart of hack/containerd-lab.sh: several
# instances (different DIR, bridge and subnet) can run side by side; nothing is written outside
# DIR except the CNI bridge, its veths and iptables rules, libcni's result cache, the pods'
# cgroups, and pulls' and imports' temporary blobs (/var/tmp/container_images_*, left at
# containers/image's default so that podvisor's default pull-progress watch is the one tested).
#
#   hack/crio-lab.sh config DIR [BRIDGE_NAME SUBNET]   write DIR/crio.conf, storage.conf, CNI conf
#   hack/crio-lab.sh start  DIR                        start crio, wait for its socket
#   hack/crio-lab.sh import DIR TARBALL...             copy OCI tarballs into its storage (skopeo)
#   hack/crio-lab.sh status DIR                        is it running
#   hack/crio-lab.sh stop   DIR [--all]                stop crio (--all: and its pods)
#
# The CRI endpoint is unix://DIR/crio.sock. Needs root, a CRI-O built from source
# (CRIO_BIN_DIR, default /opt/crio/bin: crio and pinns; see ../shared/RUNTIME-LAB.md), and
# Debian's conmon, runc, skopeo, containernetworking-plugins, iptables, iproute2.
#
# Two things of this machine kind are worked around here, both in `config`:
# - Debian's crun 1.8.1 rejects CRI-O's runtime-spec 1.3 configs, and CRI-O always adds a
#   "crun" handler: it is pointed at a missing binary, which drops it.
# - Without CAP_SYS_RESOURCE no process may lower its oom_score_adj, and CRI-O (unlike
#   containerd) cannot be told to leave it alone: runc is wrapped (DIR/bin/runc) so that a
#   negative oomScoreAdj in a bundle's config.json or an exec's process.json becomes 0.
set -euo pipefail

PROG=${0##*/}
CRIO_BIN_DIR=${CRIO_BIN_DIR:-/opt/crio/bin}
RUNC_BIN=${RUNC_BIN:-/usr/sbin/runc}
CONMON_BIN=${CONMON_BIN:-/usr/bin/conmon}
SKOPEO_BIN=${SKOPEO_BIN:-/usr/bin/skopeo}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-podvisor.local/pause:3.10}
DEFAULT_BRIDGE=pvcrio0
DEFAULT_SUBNET=10.89.0.0/16
START_TIMEOUT_S=${START_TIMEOUT_S:-20}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-10}

# shellcheck source=hack/lab-common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lab-common.sh"

usage() {
	cat >&2 <<EOF
usage:
  $PROG config DIR [BRIDGE_NAME SUBNET]
        Write DIR/crio.conf (every path under DIR), DIR/storage.conf, DIR/policy.json,
        the runc wrapper DIR/bin/runc and DIR/cni/net.d/10-podvisor-lab.conflist (bridge
        BRIDGE_NAME, default $DEFAULT_BRIDGE, host-local IPAM on SUBNET, default $DEFAULT_SUBNET).
        Handlers: runc (default) and runc-alt (same runc, its own state root).
        POD_EVENTS=false turns CRI-O's GetContainerEvents off (its own default).
  $PROG start DIR
        Start $CRIO_BIN_DIR/crio --config DIR/crio.conf in the background
        (log DIR/crio.log, pid DIR/crio.pid); wait until it answers.
  $PROG import DIR TARBALL...
        skopeo copy each OCI tarball into CRI-O's storage, named by its index.json's
        io.containerd.image.name annotation (as hack/build-images.sh writes it).
  $PROG status DIR
        Say whether the instance runs.
  $PROG stop DIR [--all]   (or: stop --all DIR)
        SIGTERM crio and wait. Pods (conmon + runc) survive and CRI-O re-attaches on the
        next start, unless --all: then also delete the pods' containers, their conmon
        processes, every mount under DIR, this network's iptables rules, CRI-O's hostPort
        chains of its subnet and the bridge, so that DIR can be rm -rf'ed.

CRI endpoint: unix://DIR/crio.sock
Trusting a registry's CA: DIR/home/.config/containers/certs.d/HOST:PORT/ca.crt (read per pull).
EOF
	exit 2
}

# The environment crio and skopeo need so that containers/image and containers/storage read
# this instance's files, not /etc/containers.
lab_env() {
	local dir=$1
	export CONTAINERS_STORAGE_CONF=$dir/storage.conf
	export CONTAINERS_REGISTRIES_CONF=$dir/registries.conf
	export REGISTRIES_CONFIG_PATH=$dir/registries.conf
	# containers/image looks for per-registry CAs in ~/.config/containers/certs.d/HOST:PORT
	# first (then /etc/containers/certs.d), and for default credentials in ~ too: a home of
	# its own keeps root's out and lets a test trust a registry's CA for this instance only.
	export HOME=$dir/home
}

# PID of this DIR's crio, if it is running (pid file checked against /proc).
crio_pid() {
	local dir=$1 pid
	[[ -f $dir/crio.pid ]] || return 1
	pid=$(<"$dir/crio.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config $dir/crio.conf " || return 1
	printf '%s' "$pid"
}

# Does crio answer on its socket? (its info endpoint shares the CRI socket)
answers() {
	local sock=$1/crio.sock
	[[ -S $sock ]] || return 1
	"$CRIO_BIN_DIR/crio" status --socket "$sock" info >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- config
cmd_config() {
	[[ $# -eq 1 || $# -eq 3 ]] || usage
	need_root
	local dir bridge=${2:-$DEFAULT_BRIDGE} subnet=${3:-$DEFAULT_SUBNET} driver netname
	dir=$(abs_dir "$1" create)
	check_network "$bridge" "$subnet"
	[[ ${POD_EVENTS:-true} == true || ${POD_EVENTS:-true} == false ]] || die "POD_EVENTS must be true or false"
	# unix socket paths are limited to 107 bytes; conmon's attach sockets are the longest
	((${#dir} < 40)) || die "DIR path too long for CRI-O's attach sockets: $dir"
	if crio_pid "$dir" >/dev/null; then
		log "warning: crio of $dir is running; restart it to apply the new config"
	fi
	if [[ -n ${STORAGE_DRIVER:-} ]]; then
		driver=$STORAGE_DRIVER
	elif probe_overlay "$dir"; then
		driver=overlay
	else
		driver=vfs
		log "warning: overlay mounts fail under $dir: using the vfs storage driver"
	fi
	netname="podvisor-lab-$bridge"

	mkdir -p "$dir"/{storage,run,log,lib,exits,attach,ns,nri,bin,hooks,cdi,tmp,runc,runc-alt} \
		"$dir"/{cni/net.d,cni/ipam,auth,sigstore,home/.config/containers/certs.d}
	rm -f "$dir"/cni/net.d/*.conflist "$dir"/cni/net.d/*.conf

	cat >"$dir/bin/runc" <<EOF
#!/bin/sh
# Written by hack/crio-lab.sh: runc, with negative oom_score_adj raised to 0 (this machine
# cannot lower it: no CAP_SYS_RESOURCE). Bundles come as --bundle/-b DIR (create, run),
# exec processes as --process/-p FILE.
prev=
for a in "\$@"; do
	case \$prev in
	--bundle | -b) f=\$a/config.json ;;
	--process | -p) f=\$a ;;
	*) f= ;;
	esac
	case \$a in
	--bundle=*) f=\${a#--bundle=}/config.json ;;
	--process=*) f=\${a#--process=} ;;
	esac
	if [ -n "\$f" ] && [ -f "\$f" ]; then
		sed -i -E 's/"oomScoreAdj": ?-[0-9]+/"oomScoreAdj":0/g' "\$f"
	fi
	prev=\$a
done
exec $RUNC_BIN "\$@"
EOF
	chmod 0755 "$dir/bin/runc"

	cat >"$dir/storage.conf" <<EOF
# Written by hack/crio-lab.sh config.
[storage]
driver = "$driver"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
	: >"$dir/registries.conf"
	echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$dir/policy.json"

	cat >"$dir/crio.conf" <<EOF
# Written by hack/crio-lab.sh config. Everything this CRI-O owns lives under $dir,
# so that several instances can run side by side.
[crio]
root = "$dir/storage"
runroot = "$dir/run"
storage_driver = "$driver"
log_dir = "$dir/log"
version_file = "$dir/run/version"
version_file_persist = "$dir/lib/version"
clean_shutdown_file = "$dir/lib/clean.shutdown"

[crio.api]
listen = "$dir/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
enable_pod_events = ${POD_EVENTS:-true}
selinux = false
apparmor_profile = ""
seccomp_profile = ""
container_exits_dir = "$dir/exits"
container_attach_socket_dir = "$dir/attach"
namespaces_dir = "$dir/ns"
pinns_path = "$CRIO_BIN_DIR/pinns"
hooks_dir = ["$dir/hooks"]
cdi_spec_dirs = ["$dir/cdi"]
irqbalance_config_file = ""
irqbalance_config_restore_file = "disable"

[crio.runtime.runtimes.runc]
runtime_path = "$dir/bin/runc"
runtime_type = "oci"
runtime_root = "$dir/runc"
monitor_path = "$CONMON_BIN"
monitor_cgroup = "pod"

# A second handler (runtimeClassName: runc-alt), the same runc with a state root of its own.
[crio.runtime.runtimes.runc-alt]
runtime_path = "$dir/bin/runc"
runtime_type = "oci"
runtime_root = "$dir/runc-alt"
monitor_path = "$CONMON_BIN"
monitor_cgroup = "pod"

# CRI-O always adds a crun handler; Debian's crun is too old for its configs. A handler
# whose binary is missing is dropped.
[crio.runtime.runtimes.crun]
runtime_path = "$dir/bin/no-such-crun"

[crio.image]
pause_image = "$SANDBOX_IMAGE"
signature_policy = "$dir/policy.json"
signature_policy_dir = "$dir/sigstore"
global_auth_file = ""
namespaced_auth_dir = "$dir/auth"

[crio.network]
network_dir = "$dir/cni/net.d"
plugin_dirs = ["$CNI_BIN_DIR"]

[crio.nri]
enable_nri = false
nri_listen = "$dir/nri/nri.sock"
nri_plugin_dir = "$dir/nri/plugins"
nri_plugin_config_dir = "$dir/nri/conf.d"

[crio.metrics]
enable_metrics = false
EOF

	write_conflist "$dir/cni/net.d/10-podvisor-lab.conflist" "$netname" "$bridge" "$subnet" "$dir/cni/ipam"

	{
		printf 'LAB_BRIDGE=%q\n' "$bridge"
		printf 'LAB_SUBNET=%q\n' "$subnet"
		printf 'LAB_NETNAME=%q\n' "$netname"
		printf 'LAB_DRIVER=%q\n' "$driver"
	} >"$dir/lab.env"

	log "wrote $dir/crio.conf and $dir/cni/net.d/10-podvisor-lab.conflist" \
		"(bridge $bridge, subnet $subnet, storage $driver)"
}

# ---------------------------------------------------------------------------- start
cmd_start() {
	[[ $# -eq 1 ]] || usage
	need_root
	local dir pid
	dir=$(abs_dir "$1")
	[[ -f $dir/crio.conf ]] || die "$dir/crio.conf missing (run '$PROG config $dir' first)"
	[[ -x $CRIO_BIN_DIR/crio ]] || die "$CRIO_BIN_DIR/crio missing (build CRI-O: ../shared/RUNTIME-LAB.md)"
	[[ -x $CONMON_BIN ]] || die "$CONMON_BIN missing (apt-get install conmon)"
	if pid=$(crio_pid "$dir"); then
		log "crio of $dir already running (pid $pid)"
		return 0
	fi
	rm -f "$dir/crio.sock"
	load_env "$dir"
	loopback_hostports
	lab_env "$dir"
	# setsid: not in the caller's process group, so a ^C or a job kill there does not reach it.
	setsid "$CRIO_BIN_DIR/crio" --config "$dir/crio.conf" --config-dir "$dir/crio.conf.d" \
		</dev/null >>"$dir/crio.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/crio.pid"

	await_start crio "$pid" "$dir" "$dir/crio.log" "$dir/crio.pid" "unix://$dir/crio.sock" answers
}

# ---------------------------------------------------------------------------- import
cmd_import() {
	[[ $# -ge 2 ]] || usage
	local dir tarball name
	dir=$(abs_dir "$1")
	shift
	load_env "$dir"
	[[ -x $SKOPEO_BIN ]] || die "$SKOPEO_BIN missing (apt-get install skopeo)"
	lab_env "$dir"
	for tarball in "$@"; do
		[[ -f $tarball ]] || die "$tarball: no such file"
		name=$(tar -xOf "$tarball" index.json |
			jq -r '.manifests[0].annotations["io.containerd.image.name"] // empty')
		[[ -n $name ]] || die "$tarball: index.json names no image (io.containerd.image.name)"
		"$SKOPEO_BIN" --policy "$dir/policy.json" copy --quiet "oci-archive:$tarball" \
			"containers-storage:[$LAB_DRIVER@$dir/storage+$dir/run]$name" >&2 ||
			die "import of $tarball failed"
		log "imported $name"
	done
}

# ---------------------------------------------------------------------------- status
cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir pid
	dir=$(abs_dir "$1")
	if pid=$(crio_pid "$dir"); then
		echo "crio: running, pid $pid, unix://$dir/crio.sock"
		"$RUNC_BIN" --root "$dir/runc" list 2>/dev/null || true
	else
		echo "crio: not running"
		return 3
	fi
}

# ---------------------------------------------------------------------------- stop
# Is IPv4 address $1 in CIDR $2?
in_subnet() {
	local ip=$1 net=${2%/*} len=${2#*/} a b c d e mask
	IFS=. read -r a b c d <<<"$ip"
	a=$(((a << 24) | (b << 16) | (c << 8) | d))
	IFS=. read -r b c d e <<<"$net"
	b=$(((b << 24) | (c << 16) | (d << 8) | e))
	mask=$(((0xFFFFFFFF << (32 - len)) & 0xFFFFFFFF))
	(((a & mask) == (b & mask)))
}

# CRI-O maps hostPorts itself, never through CNI's portmap: per pod and port a nat chain
# KUBE-HP-* (DNAT to the pod) jumped to from KUBE-HOSTPORTS, and CRIO-MASQ-* (hairpin SNAT)
# jumped to from CRIO-HOSTPORTS-MASQ. It removes them when a pod is stopped through CRI, not
# when the pod is killed under it, and a stale one makes its host port a black hole for
# every later user of the machine (127.0.0.1 included). Removes those of pods in SUBNET $1.
hostport_cleanup() {
	local subnet=$1 line c n=0
	local -A stale=()
	command -v iptables >/dev/null || return 0
	local dnat='^-A ((KUBE-HP|CRIO-MASQ)-[A-Z0-9]+) .*(--to-destination |-s )([0-9.]+)[:/]'
	while IFS= read -r line; do
		if [[ $line =~ $dnat ]] && in_subnet "${BASH_REMATCH[4]}" "$subnet"; then
			stale[${BASH_REMATCH[1]}]=1
		fi
	done < <(iptables -w -t nat -S 2>/dev/null || true)
	((${#stale[@]})) || return 0
	while IFS= read -r line; do
		[[ $line =~ -j\ ([A-Z0-9-]+)$ && -n ${stale[${BASH_REMATCH[1]}]:-} ]] || continue
		[[ $line == "-A KUBE-HOSTPORTS "* || $line == "-A CRIO-HOSTPORTS-MASQ "* ]] || continue
		eval "iptables -w -t nat ${line/#-A /-D }" 2>/dev/null || true
	done < <(iptables -w -t nat -S 2>/dev/null || true)
	for c in "${!stale[@]}"; do
		iptables -w -t nat -F "$c" 2>/dev/null || true
		iptables -w -t nat -X "$c" 2>/dev/null && n=$((n + 1))
	done
	log "removed $n hostPort chain(s) of $subnet"
}

# 127.0.0.1:HOSTPORT: CRI-O's DNAT rules match it (OUTPUT, dst-type LOCAL), but a packet
# from a loopback address may only leave through the bridge with route_localnet, and the pod
# must see a source it can answer. containerd's portmap plugin ("snat": true) sets up both;
# CRI-O does not (kubernetes/kubernetes#80591: its hostport code cannot know the bridge).
# Done here for this lab's bridge only (made now if CNI has not made it yet; the bridge
# plugin adopts it); iptables_cleanup removes the rule, which carries the network's name.
loopback_hostports() {
	local rule
	ip link show "$LAB_BRIDGE" >/dev/null 2>&1 || ip link add name "$LAB_BRIDGE" type bridge
	ip link set "$LAB_BRIDGE" up
	sysctl -qw "net.ipv4.conf.$LAB_BRIDGE.route_localnet=1"
	command -v iptables >/dev/null || return 0
	rule=(POSTROUTING -s 127.0.0.0/8 -o "$LAB_BRIDGE"
		-m comment --comment "name: \"$LAB_NETNAME\" id: \"loopback-hostports\"" -j MASQUERADE)
	iptables -w -t nat -C "${rule[@]}" 2>/dev/null || iptables -w -t nat -A "${rule[@]}"
}

cmd_stop() {
	local dir all pid
	parse_stop "$@"
	dir=$STOP_DIR all=$STOP_ALL
	stop_daemon crio "$dir" "$(crio_pid "$dir" || true)"
	rm -f "$dir/crio.pid" "$dir/crio.sock"
	((all)) || return 0

	# 1. Containers: runc delete --force kills every process of a container's cgroup and
	#    removes that cgroup.
	runc_delete_all "$dir/runc" "$dir/runc-alt"

	# 2. conmon processes (they exit with their container; what is left is killed).
	local conmons=()
	mapfile -t conmons < <(pids_under conmon "$dir")
	if ((${#conmons[@]})); then
		kill -KILL "${conmons[@]}" 2>/dev/null || true
		for pid in "${conmons[@]}"; do
			wait_gone "$pid" 2 || log "warning: conmon $pid does not die"
		done
		log "stopped ${#conmons[@]} conmon(s)"
	fi

	# 3. cgroups CRI-O made and never removed because the pods were not stopped through CRI:
	#    crio-<id> (containers, and sandboxes even without an infra container) and
	#    crio-conmon-<id>, for every id in this instance's storage; then their pod-level
	#    parents (linux.cgroup_parent) if empty. rmdir never removes a cgroup with processes.
	local f name id cg ids=("${RUNC_IDS[@]}")
	for f in "$dir"/storage/overlay-containers/*; do
		name=${f##*/}
		if [[ $name =~ ^[0-9a-f]{64}$ ]]; then
			ids+=("$name")
		fi
	done
	if ((${#ids[@]})); then
		local -A known=()
		for id in "${ids[@]}"; do known[$id]=1; done
		while read -r cg; do
			name=${cg##*/}
			id=${name#crio-conmon-}
			id=${id#crio-}
			[[ -n ${known[$id]:-} ]] || continue
			rmdir "$cg" 2>/dev/null || continue
			CGROUP_PARENTS+=("${cg%/*}")
		done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -name 'crio-*' 2>/dev/null || true)
	fi
	rmdir_pod_cgroups

	# 4. Mounts under DIR: container rootfs, shm, network namespaces, storage; deepest first.
	unmount_under "$dir"

	# 5. Network: iptables rules of this network, the bridge, and CRI-O's own hostPort chains.
	network_cleanup "$dir"
	[[ -z ${LAB_SUBNET:-} ]] || hostport_cleanup "$LAB_SUBNET"
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
