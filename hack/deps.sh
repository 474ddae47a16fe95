#!/usr/bin/env bash
# Installs the Debian packages podvisor's build, tests and examples need, if missing.
set -euo pipefail
pkgs=(containerd runc protobuf-compiler busybox-static containernetworking-plugins iptables iproute2 gcc libc6-dev tar gzip docker-registry skopeo apache2-utils openssl)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
