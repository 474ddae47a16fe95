#!/usr/bin/env bash
# Build the two local test images as byte-reproducible OCI image-layout tarballs,
# with no network and no registry:
#
#   OUTDIR/pause.tar    podvisor.local/pause:3.10    /pause (hack/pause.c, gcc -static), user 65535
#   OUTDIR/busybox.tar  podvisor.local/busybox:1.35  /bin/busybox (Debian busybox-static) + applet links
#   OUTDIR/spare-N.tar  podvisor.local/spare:N       the same files, another image ID (N = 1, 2)
#
# Import them with:  hack/containerd-lab.sh import DIR OUTDIR/pause.tar OUTDIR/busybox.tar
# (or: ctr -n k8s.io images import --snapshotter overlayfs FILE).
#
# With --kubernetes BINDIR, it writes instead the images kubeadm's manifests name, from
# binaries built from public source (../shared/RUNTIME-LAB.md, "Real Kubernetes binaries"):
#
#   OUTDIR/kube-apiserver.tar ...  registry.k8s.io/kube-apiserver:VERSION, and the controller
#                                  manager and scheduler: BINDIR/<name> in /usr/local/bin + busybox
#   OUTDIR/etcd.tar                registry.k8s.io/etcd:<kubeadm's tag>, BINDIR/etcd likewise
#   OUTDIR/pause.tar               registry.k8s.io/pause:<kubeadm's tag> (hack/pause.c)
#
# The names are what `BINDIR/kubeadm config images list` prints for VERSION (BINDIR/kubeadm
# version); an image is rebuilt only when its binary or this script is newer than its tarball.
#
# Needs only bash, coreutils, GNU tar, gzip, gcc with static libc, and /bin/busybox
# (apt-get install busybox-static gcc libc6-dev). Running it twice gives identical tarballs.
set -euo pipefail

PAUSE_IMAGE="podvisor.local/pause:3.10"
BUSYBOX_IMAGE="podvisor.local/busybox:1.35"
BUSYBOX_BIN="${BUSYBOX_BIN:-/bin/busybox}"
CC="${CC:-gcc}"

usage() {
	cat >&2 <<EOF
usage: $0 OUTDIR
       $0 --kubernetes BINDIR OUTDIR

Writes OUTDIR/pause.tar ($PAUSE_IMAGE) and OUTDIR/busybox.tar ($BUSYBOX_IMAGE),
OCI image layouts that 'ctr -n k8s.io images import' accepts. Byte-reproducible.
With --kubernetes: kubeadm's control-plane, etcd and pause images from BINDIR's binaries.
Environment: CC (default gcc), BUSYBOX_BIN (default /bin/busybox).
EOF
	exit 2
}

die() {
	echo "build-images: $*" >&2
	exit 1
}

K8S_BIN=""
if [[ $# -eq 3 && $1 == --kubernetes ]]; then
	K8S_BIN=$(cd "$2" && pwd) || die "no directory $2"
	shift 2
fi
[[ $# -eq 1 && $1 != -* ]] || usage
OUTDIR=$1

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PAUSE_SRC="$HACK_DIR/pause.c"

[[ -f $PAUSE_SRC ]] || die "missing $PAUSE_SRC"
[[ -x $BUSYBOX_BIN ]] || die "missing $BUSYBOX_BIN (apt-get install busybox-static)"
command -v "$CC" >/dev/null || die "missing C compiler $CC"

case "$(uname -m)" in
x86_64) ARCH=amd64 ;;
aarch64 | arm64) ARCH=arm64 ;;
*) die "unsupported architecture $(uname -m)" ;;
esac

# Everything below must not depend on the caller's environment.
umask 022
export LC_ALL=C TZ=UTC

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/podvisor-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Deterministic tar of directory $1 (its contents, as ./...) to stdout.
det_tar() {
	local dir=$1
	shift
	tar --create --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
		--no-acls --no-selinux --no-xattrs -C "$dir" --file=- "$@"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# Minimal JSON string escaping (backslash and double quote; our strings have no control chars).
json_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}

# Store file $1 as a blob in layout $2; prints its digest hex.
put_blob() {
	local file=$1 layout=$2 hex
	hex=$(sha256_of "$file")
	mkdir -p "$layout/blobs/sha256"
	cp "$file" "$layout/blobs/sha256/$hex"
	chmod 0644 "$layout/blobs/sha256/$hex"
	printf '%s' "$hex"
}

# make_image NAME ROOTFS OUTFILE CONFIG_FRAGMENT
#   CONFIG_FRAGMENT: the members of the image config's "config" object, as JSON text
#   (e.g. "Entrypoint":["/pause"],"User":"65535").
make_image() {
	local name=$1 rootfs=$2 out=$3 cfg_fragment=$4
	local tag=${name##*:}
	local w
	w="$WORK/$(basename "$out" .tar)"
	local layout="$w/layout"
	mkdir -p "$layout/blobs/sha256"

	# 1. Layer: deterministic tar of the rootfs; its sha256 is the diff_id.
	det_tar "$rootfs" . >"$w/layer.tar"
	local diff_id
	diff_id=$(sha256_of "$w/layer.tar")

	# 2. Compressed layer (gzip -n: no name, no timestamp); its sha256 is the layer digest.
	gzip -n "-${GZIP_LEVEL:-9}" -c "$w/layer.tar" >"$w/layer.tar.gz"
	local layer_hex layer_size
	layer_hex=$(put_blob "$w/layer.tar.gz" "$layout")
	layer_size=$(size_of "$w/layer.tar.gz")

	# 3. Image config.
	printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"podvisor hack/build-images.sh"}]}' \
		"$ARCH" "$cfg_fragment" "$diff_id" >"$w/config.json"
	local cfg_hex cfg_size
	cfg_hex=$(put_blob "$w/config.json" "$layout")
	cfg_size=$(size_of "$w/config.json")

	# 4. Manifest.
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
		"$cfg_hex" "$cfg_size" "$layer_hex" "$layer_size" >"$w/manifest.json"
	local man_hex man_size
	man_hex=$(put_blob "$w/manifest.json" "$layout")
	man_size=$(size_of "$w/manifest.json")

	# 5. Layout: oci-layout + index.json naming the image.
	printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":%s,"org.opencontainers.image.ref.name":%s}}]}' \
		"$man_hex" "$man_size" "$ARCH" "$(json_str "$name")" "$(json_str "$tag")" >"$layout/index.json"
	chmod 0644 "$layout/oci-layout" "$layout/index.json"
	chmod 0755 "$layout/blobs" "$layout/blobs/sha256"

	# 6. The tarball (written next to the target, then renamed: never a half-written image).
	det_tar "$layout" oci-layout index.json blobs >"$out.tmp.$$"
	mv -f "$out.tmp.$$" "$out"
	printf '%s  %s  %s\n' "$(sha256_of "$out")" "$out" "$name" >&2
}

# ---- pause -----------------------------------------------------------------
build_pause() {
	local root="$WORK/pause-rootfs"
	mkdir -p "$root"
	# -s: no symbols; no -g, so no source path is embedded: same bytes for the same
	# source and toolchain.
	"$CC" -static -Os -s -Wall -Wextra -o "$root/pause" "$PAUSE_SRC"
	chmod 0755 "$root" "$root/pause"
	make_image "$PAUSE_IMAGE" "$root" "$OUTDIR/pause.tar" \
		"\"User\":\"65535\",\"Entrypoint\":[\"/pause\"],\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"]"
}

# ---- busybox ---------------------------------------------------------------
build_busybox() {
	local root="$WORK/busybox-rootfs" applet
	mkdir -p "$root"/{bin,etc,tmp,root,var/www}
	cp "$BUSYBOX_BIN" "$root/bin/busybox"
	chmod 0755 "$root/bin/busybox"
	while IFS= read -r applet; do
		[[ -n $applet && $applet != busybox && $applet != */* ]] || continue
		ln -sfn busybox "$root/bin/$applet"
	done < <("$BUSYBOX_BIN" --list | sort -u)
	[[ -L $root/bin/sh && -L $root/bin/sleep && -L $root/bin/httpd ]] ||
		die "$BUSYBOX_BIN lacks sh, sleep or httpd"

	cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
	cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
	printf 'podvisor busybox\n' >"$root/var/www/index.html"
	chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/var/www/index.html"
	chmod 0755 "$root" "$root/bin" "$root/etc" "$root/var" "$root/var/www"
	chmod 0700 "$root/root"
	chmod 1777 "$root/tmp"
	make_image "$BUSYBOX_IMAGE" "$root" "$OUTDIR/busybox.tar" \
		"\"Cmd\":[\"sh\"],\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"]"
	# Two more images of the same files, told apart by a label (other image IDs): what image
	# garbage collection may remove, or must keep, in the tests.
	local n
	for n in 1 2; do
		make_image "podvisor.local/spare:$n" "$root" "$OUTDIR/spare-$n.tar" \
			"\"Cmd\":[\"sh\"],\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"],\"Labels\":{\"podvisor.test\":\"spare-$n\"}"
	done
}

# ---- kubeadm's images, from real binaries ----------------------------------
# kube_image NAME BINARY OUTFILE: BINARY as /usr/local/bin/<its name>, beside a busybox.
kube_image() {
	local name=$1 bin=$2 out=$3 root
	if [[ -f $out && $out -nt $bin && $out -nt ${BASH_SOURCE[0]} ]]; then
		echo "build-images: $out is up to date ($name)" >&2
		return 0
	fi
	root="$WORK/$(basename "$out" .tar)-rootfs"
	mkdir -p "$root"/{bin,etc,tmp,usr/local/bin}
	cp "$BUSYBOX_BIN" "$root/bin/busybox"
	ln -sfn busybox "$root/bin/sh"
	cp "$bin" "$root/usr/local/bin/${bin##*/}"
	chmod 0755 "$root/bin/busybox" "$root/usr/local/bin/${bin##*/}"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	chmod 0644 "$root/etc/passwd" "$root/etc/group"
	chmod 1777 "$root/tmp"
	# The binaries are ~100 MB: fast compression, the image is only ever imported locally.
	GZIP_LEVEL=1 make_image "$name" "$root" "$out" \
		"\"Env\":[\"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]"
}

build_kubernetes() {
	local version name component
	[[ -x $K8S_BIN/kubeadm ]] || die "$K8S_BIN/kubeadm missing"
	version=$("$K8S_BIN/kubeadm" version -o short)
	while read -r name; do
		component=${name##*/}
		component=${component%%:*}
		case $component in
		kube-apiserver | kube-controller-manager | kube-scheduler | etcd)
			[[ -x $K8S_BIN/$component ]] || die "$K8S_BIN/$component missing"
			kube_image "$name" "$K8S_BIN/$component" "$OUTDIR/$component.tar"
			;;
		pause)
			if [[ -f $OUTDIR/pause.tar && $OUTDIR/pause.tar -nt $PAUSE_SRC && $OUTDIR/pause.tar -nt ${BASH_SOURCE[0]} ]]; then
				echo "build-images: $OUTDIR/pause.tar is up to date ($name)" >&2
			else
				PAUSE_IMAGE=$name build_pause
			fi
			;;
		*) echo "build-images: skipping $name (it never runs on a podvisor node)" >&2 ;;
		esac
	done < <("$K8S_BIN/kubeadm" config images list --kubernetes-version "$version" 2>/dev/null)
}

if [[ -n $K8S_BIN ]]; then
	build_kubernetes
	exit 0
fi
build_pause
build_busybox
