# Shared by hack/containerd-lab.sh and hack/crio-lab.sh (sourced, not run): what a throw-away
# CRI runtime in a directory of its own needs whichever runtime it is. The sourcing script
# sets PROG (its name, for messages), RUNC_BIN, START_TIMEOUT_S and STOP_TIMEOUT_S.

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

# Can we mount an overlay with upper/work dirs under DIR? (fails on overlay-on-overlay etc.)
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

# ---------------------------------------------------------------------------- network
check_network() { # BRIDGE SUBNET
	[[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad bridge name '$1' (1-15 chars of [A-Za-z0-9_.-])"
	[[ $2 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || die "bad IPv4 subnet '$2'"
}

# The lab's CNI network: a bridge with host-local IPAM on its subnet, and portmap.
write_conflist() { # FILE NETNAME BRIDGE SUBNET IPAM_DIR
	cat >"$1" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$2",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$3",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$4" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$5"
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
}

# Remove the iptables rules (and their chains) that the bridge and portmap plugins made for
# network $1: they carry comments 'name: "NET" id: "..."'. Needed when pods were never stopped
# through CRI (which would have run CNI DEL).
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

# libcni caches each ADD result in /var/lib/cni/results/NET-ID-IF (and cni-loopback-ID-lo for
# containerd's own loopback); CNI DEL removes them, a killed pod leaves them behind.
cni_cache_cleanup() {
	local net=$1 cache=${CNI_CACHE_DIR:-/var/lib/cni}/results f id
	[[ -d $cache ]] || return 0
	for f in "$cache/$net"-*; do
		[[ -f $f ]] || continue
		id=${f#"$cache/$net"-}
		id=${id%-*}
		rm -f "$f" "$cache/cni-loopback-$id-lo"
	done
}

# This lab's network, after its pods are gone: iptables rules, libcni's cache, the bridge.
network_cleanup() { # DIR
	[[ -f $1/lab.env ]] || return 0
	load_env "$1"
	iptables_cleanup "$LAB_NETNAME"
	cni_cache_cleanup "$LAB_NETNAME"
	if ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
		ip link del "$LAB_BRIDGE" && log "deleted bridge $LAB_BRIDGE"
	fi
}

# ---------------------------------------------------------------------------- processes
# Is PID $1 alive? A zombie is not: killed shims are reparented to PID 1, which
# may reap them late.
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

# PIDs of processes whose program's name matches the glob $1 and one of whose arguments is
# DIR $2, under it, or an option set to a path under it (--x=DIR/...).
pids_under() { # NAME_GLOB DIR
	local name=$1 dir=$2 p arg
	for p in /proc/[0-9]*; do
		[[ -r $p/cmdline ]] || continue
		local first=1 is_it=0 mentions=0
		while IFS= read -r -d '' arg; do
			if ((first)); then
				# shellcheck disable=SC2053 # a glob on purpose
				[[ ${arg##*/} == $name ]] && is_it=1
				first=0
				((is_it)) || break
			elif [[ $arg == "$dir" || $arg == "$dir"/* || $arg == *=$dir/* ]]; then
				mentions=1
				break
			fi
		done 2>/dev/null <"$p/cmdline" || true
		((is_it && mentions)) && printf '%s\n' "${p#/proc/}"
	done
	return 0
}

# Start-up: wait until `answers DIR` holds, or die with the log's tail if PID exits or the
# timeout passes.
await_start() { # NAME PID DIR LOG PIDFILE ENDPOINT ANSWERS_FN
	local name=$1 pid=$2 dir=$3 logf=$4 pidf=$5 endpoint=$6 answers=$7 i
	for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logf" >&2 || true
			rm -f "$pidf"
			die "$name exited during start-up (log: $logf)"
		fi
		if "$answers" "$dir"; then
			log "$name of $dir up (pid $pid) after $((i * 100)) ms: $endpoint"
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$logf" >&2 || true
	die "$name of $dir did not answer within ${START_TIMEOUT_S}s (pid $pid, log $logf)"
}

# SIGTERM the runtime daemon of DIR and wait, SIGKILL after STOP_TIMEOUT_S.
stop_daemon() { # NAME DIR PID|""
	local name=$1 dir=$2 pid=$3
	if [[ -z $pid ]]; then
		log "$name of $dir is not running"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" "$STOP_TIMEOUT_S"; then
		log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || die "$name pid $pid does not die"
	fi
	log "$name of $dir stopped (pid $pid)"
}

# `stop DIR [--all]` (or `stop --all DIR`): sets STOP_DIR (absolute) and STOP_ALL (0/1).
parse_stop() {
	local a
	STOP_DIR="" STOP_ALL=0
	for a in "$@"; do
		case $a in
		--all) STOP_ALL=1 ;;
		-*) usage ;;
		*) [[ -z $STOP_DIR ]] || usage; STOP_DIR=$a ;;
		esac
	done
	[[ -n $STOP_DIR ]] || usage
	need_root
	STOP_DIR=$(abs_dir "$STOP_DIR")
}

# ---------------------------------------------------------------------------- containers
# runc delete --force of every container under each runc state ROOT: it kills every process
# of a container's cgroup and removes that cgroup. Appends each id to RUNC_IDS and each
# container cgroup's parent (the pod-level linux.cgroup_parent) to CGROUP_PARENTS.
RUNC_IDS=()
CGROUP_PARENTS=()
runc_delete_all() { # ROOT...
	local root id n=0 cg
	for root in "$@"; do
		root=${root%/}
		[[ -d $root ]] || continue
		while read -r id; do
			[[ -n $id ]] || continue
			RUNC_IDS+=("$id")
			if [[ -f $root/$id/state.json ]]; then
				while read -r cg; do
					cg=${cg//\"/}
					CGROUP_PARENTS+=("${cg%/*}")
				done < <(grep -o '"/sys/fs/cgroup/[^"]*"' "$root/$id/state.json" || true)
			fi
			"$RUNC_BIN" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
			n=$((n + 1))
		done < <("$RUNC_BIN" --root "$root" list -q 2>/dev/null || true)
	done
	((n == 0)) || log "deleted $n runc container(s)"
}

# rmdir of the CGROUP_PARENTS that are empty, only pod-level ones: at least two levels below
# a hierarchy's root. rmdir never removes a cgroup with processes or children.
rmdir_pod_cgroups() {
	((${#CGROUP_PARENTS[@]})) || return 0
	printf '%s\n' "${CGROUP_PARENTS[@]}" | sort -u | while read -r cg; do
		[[ $cg == /sys/fs/cgroup/*/*/* ]] || continue
		rmdir "$cg" 2>/dev/null || true
	done
}

# Mount points under DIR, deepest first.
mounts_under() {
	local dir=$1
	awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -ru
}

# Unmount everything under DIR (rootfs, shm, network namespaces, storage), deepest first;
# lazily if busy.
unmount_under() { # DIR
	local dir=$1 m left
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
}
