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
        processes, every mount under DIR, this network's iptables rules and the bridge,
        so that DIR can be rm -rf'ed.

CRI endpoint: unix://DIR/crio.sock
Trusting a registry's CA: DIR/home/.config/containers/certs.d/HOST:PORT/ca.crt (read per pull).
EOF
	exit 2
}

log() { echo "$PROG: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# Absolute, normalised DIR. Creates it when $2 is "create".
abs_dir() {
	local d=$1
	[[ -n $d ]] || die "empty DIR"
	if [[ ${2:-} == create ]]; then
		mkdir -p "$d"
	fi
	[[ -d $d ]] || die "$d: no such directory (run '$PROG config $d' first)"
	d=$(cd "$d" && pwd -P)
	[[ $d != / ]] || die "refusing to use / as DIR"
	[[ $d != *[[:space:]]* ]] || die "DIR must not contain whitespace: '$d'"
	printf '%s' "$d"
}

load_env() {
	local dir=$1
	[[ -f $dir/lab.env ]] || die "$dir/lab.env missing (run '$PROG config $dir' first)"
	# shellcheck disable=SC1091
	source "$dir/lab.env"
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

probe_overlay() {
	local dir=$1 p ok=1
	p=$(mktemp -d "$dir/.overlay-probe.XXXXXX")
	mkdir -p "$p"/{l,u,w,m}
	if mount -t overlay overlay -o "lowerdir=$p/l,upperdir=$p/u,workdir=$p/w" "$p/m" 2>/dev/null; then
		umount "$p/m" && ok=0
	fi
	rm -rf "$p"
	return $ok
}

# ---------------------------------------------------------------------------- config
cmd_config() {
	[[ $# -eq 1 || $# -eq 3 ]] || usage
	need_root
	local dir bridge=${2:-$DEFAULT_BRIDGE} subnet=${3:-$DEFAULT_SUBNET} driver netname
	dir=$(abs_dir "$1" create)
	[[ $bridge =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad bridge name '$bridge' (1-15 chars of [A-Za-z0-9_.-])"
	[[ $subnet =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || die "bad IPv4 subnet '$subnet'"
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

	cat >"$dir/cni/net.d/10-podvisor-lab.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$netname",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    }
  ]
}
EOF

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
	local dir pid i
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

	for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$dir/crio.log" >&2 || true
			rm -f "$dir/crio.pid"
			die "crio exited during start-up (log: $dir/crio.log)"
		fi
		if answers "$dir"; then
			log "crio of $dir up (pid $pid) after $((i * 100)) ms: unix://$dir/crio.sock"
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$dir/crio.log" >&2 || true
	die "crio of $dir did not answer within ${START_TIMEOUT_S}s (pid $pid, log $dir/crio.log)"
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
alive() {
	local s
	{ s=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
	s=${s##*) }
	[[ ${s:0:1} != Z ]]
}

wait_gone() { # PID TIMEOUT_S
	local pid=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	return 1
}

# PIDs of conmon processes one of whose arguments is under DIR.
conmon_pids() {
	local dir=$1 p arg
	for p in /proc/[0-9]*; do
		[[ -r $p/cmdline ]] || continue
		local first=1 is_conmon=0 mentions=0
		while IFS= read -r -d '' arg; do
			if ((first)); then
				[[ ${arg##*/} == conmon ]] && is_conmon=1
				first=0
				((is_conmon)) || break
			elif [[ $arg == "$dir"/* || $arg == *=$dir/* ]]; then
				mentions=1
				break
			fi
		done 2>/dev/null <"$p/cmdline" || true
		((is_conmon && mentions)) && printf '%s\n' "${p#/proc/}"
	done
	return 0
}

mounts_under() {
	local dir=$1
	awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -ru
}

iptables_cleanup() {
	local net=$1 table line chains=() c
	command -v iptables >/dev/null || return 0
	for table in nat filter; do
		while IFS= read -r line; do
			[[ -n $line ]] || continue
			if [[ $line =~ -j\ (CNI-[A-Za-z0-9-]+) ]]; then
				case ${BASH_REMATCH[1]} in
				CNI-HOSTPORT-* | CNI-FORWARD | CNI-ADMIN) ;;
				*) chains+=("$table:${BASH_REMATCH[1]}") ;;
				esac
			fi
			eval "iptables -w -t $table ${line/#-A /-D }" 2>/dev/null || true
		done < <(iptables -w -t "$table" -S 2>/dev/null | grep -F "name: \\\"$net\\\"" || true)
	done
	for c in "${chains[@]}"; do
		iptables -w -t "${c%%:*}" -F "${c#*:}" 2>/dev/null || true
		iptables -w -t "${c%%:*}" -X "${c#*:}" 2>/dev/null || true
	done
}

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

cni_cache_cleanup() {
	local net=$1 cache=${CNI_CACHE_DIR:-/var/lib/cni}/results f
	[[ -d $cache ]] || return 0
	for f in "$cache/$net"-*; do
		[[ -f $f ]] && rm -f "$f"
	done
	return 0
}

cmd_stop() {
	local dir="" all=0 pid a
	for a in "$@"; do
		case $a in
		--all) all=1 ;;
		-*) usage ;;
		*) [[ -z $dir ]] || usage; dir=$a ;;
		esac
	done
	[[ -n $dir ]] || usage
	need_root
	dir=$(abs_dir "$dir")

	if pid=$(crio_pid "$dir"); then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" "$STOP_TIMEOUT_S"; then
			log "crio (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || die "crio pid $pid does not die"
		fi
		log "crio of $dir stopped (pid $pid)"
	else
		log "crio of $dir is not running"
	fi
	rm -f "$dir/crio.pid" "$dir/crio.sock"
	((all)) || return 0

	# 1. Containers: runc delete --force kills every process of a container's cgroup and
	#    removes that cgroup.
	local root id n=0 cg parents=() ids=()
	for root in "$dir/runc" "$dir/runc-alt"; do
		[[ -d $root ]] || continue
		while read -r id; do
			[[ -n $id ]] || continue
			ids+=("$id")
			if [[ -f $root/$id/state.json ]]; then
				while read -r cg; do
					cg=${cg//\"/}
					parents+=("${cg%/*}")
				done < <(grep -o '"/sys/fs/cgroup/[^"]*"' "$root/$id/state.json" || true)
			fi
			"$RUNC_BIN" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
			n=$((n + 1))
		done < <("$RUNC_BIN" --root "$root" list -q 2>/dev/null || true)
	done
	((n == 0)) || log "deleted $n runc container(s)"

	# 2. conmon processes (they exit with their container; what is left is killed).
	local conmons=()
	mapfile -t conmons < <(conmon_pids "$dir")
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
	local f name
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
			parents+=("${cg%/*}")
		done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -name 'crio-*' 2>/dev/null || true)
	fi
	if ((${#parents[@]})); then
		printf '%s\n' "${parents[@]}" | sort -u | while read -r cg; do
			[[ $cg == /sys/fs/cgroup/*/*/* ]] || continue
			rmdir "$cg" 2>/dev/null || true
		done
	fi

	# 4. Mounts under DIR: container rootfs, shm, network namespaces, storage; deepest first.
	local m left
	for _ in 1 2 3; do
		left=0
		while read -r m; do
			[[ -n $m ]] || continue
			left=1
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
		done < <(mounts_under "$dir")
		((left)) || break
	done
	[[ -z $(mounts_under "$dir") ]] || log "warning: still mounted under $dir: $(mounts_under "$dir" | tr '\n' ' ')"

	# 5. Network: iptables rules of this network, then the bridge.
	if [[ -f $dir/lab.env ]]; then
		load_env "$dir"
		iptables_cleanup "$LAB_NETNAME"
		hostport_cleanup "$LAB_SUBNET"
		cni_cache_cleanup "$LAB_NETNAME"
		if ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
			ip link del "$LAB_BRIDGE" && log "deleted bridge $LAB_BRIDGE"
		fi
	fi
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
