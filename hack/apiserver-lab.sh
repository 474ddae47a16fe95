#!/usr/bin/env bash
# A throw-away etcd + kube-apiserver on loopback for podvisor's opt-in suite against a real API
# server (tests/it/real_apiserver.rs). No registry ships these binaries; build them from public
# source as ../shared/RUNTIME-LAB.md ("Real Kubernetes binaries") describes and point
# PODVISOR_K8S_BIN at the directory holding kube-apiserver, etcd and kubectl.
#
#   hack/apiserver-lab.sh start DIR          etcd + kube-apiserver under DIR; prints DIR/admin.conf
#   hack/apiserver-lab.sh node DIR NAME      a kubeconfig for node NAME (system:node:NAME), printed
#   hack/apiserver-lab.sh csr DIR            kube-controller-manager approving and signing node
#                                            CSRs as kubeadm sets it up, and a bootstrap token;
#                                            prints DIR/bootstrap-kubelet.conf
#   hack/apiserver-lab.sh stop DIR           stops them all (by pid)
#
# The API server runs as kubeadm sets it up where it matters to a node: authorization Node,RBAC,
# admission NodeRestriction, X.509 client certificates from one CA, a kubelet client certificate
# (kube-apiserver-kubelet-client, system:masters) and nodes reached at their InternalIP first. Certificates are X.509 v3
# (rustls refuses v1). Ports are chosen free at random; DIR/env records them.
set -euo pipefail

bin=${PODVISOR_K8S_BIN:?set PODVISOR_K8S_BIN to a directory with kube-apiserver, etcd and kubectl}
cmd=${1:?usage: $0 start|node|stop DIR [NAME]}
dir=${2:?usage: $0 start|node|stop DIR [NAME]}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pki=$dir/pki

log() { echo "apiserver-lab: $*" >&2; }
die() { log "$*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sign NAME CN O EKU SANS: a key and a v3 certificate from the lab's CA.
sign() {
	local name=$1 cn=$2 o=$3 eku=$4 sans=$5 subj="/CN=$2"
	[ -f "$pki/$name.crt" ] && return 0
	[ -n "$o" ] && subj="/O=$o$subj"
	openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
	openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[ -n "$sans" ] && echo "subjectAltName=$sans"
	} >"$pki/$name.ext"
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
	rm -f "$pki/$name.csr"
}

kubeconfig() { # kubeconfig FILE CERTNAME
	local b64
	b64() { base64 -w0 <"$1"; }
	# shellcheck disable=SC1091
	. "$dir/env"
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority-data: $(b64 "$pki/ca.crt")}
users:
- name: $2
  user: {client-certificate-data: $(b64 "$pki/$2.crt"), client-key-data: $(b64 "$pki/$2.key")}
contexts:
- name: lab
  context: {cluster: lab, user: $2}
current-context: lab
EOF
	chmod 600 "$1"
}

case $cmd in
start)
	mkdir -p "$pki" "$dir/logs" "$dir/etcd"
	chmod 700 "$dir/etcd"
	if [ ! -f "$pki/ca.crt" ]; then
		openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
		openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=podvisor-lab-ca" -days 365 -sha256 \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" -out "$pki/ca.crt" 2>/dev/null
		openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
		openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	fi
	sign apiserver kube-apiserver "" serverAuth "DNS:localhost,DNS:kubernetes,IP:127.0.0.1,IP:10.96.0.1"
	sign admin kubernetes-admin system:masters clientAuth ""
	sign kubelet-client kube-apiserver-kubelet-client system:masters clientAuth ""
	API_PORT=$(free_port) ETCD_PORT=$(free_port) PEER_PORT=$(free_port)
	printf 'API_PORT=%s\nETCD_PORT=%s\nPEER_PORT=%s\n' "$API_PORT" "$ETCD_PORT" "$PEER_PORT" >"$dir/env"
	setsid "$bin/etcd" --name=lab --data-dir="$dir/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
		--initial-cluster="lab=http://127.0.0.1:$PEER_PORT" </dev/null >"$dir/logs/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	for _ in $(seq 150); do
		curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q true && break
		kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || { tail "$dir/logs/etcd.log" >&2; die "etcd exited"; }
		sleep 0.2
	done
	setsid "$bin/kube-apiserver" --advertise-address=127.0.0.1 --bind-address=127.0.0.1 \
		--secure-port="$API_PORT" --cert-dir="$pki" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range=10.96.0.0/12 --authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction --allow-privileged=true \
		--endpoint-reconciler-type=none --profiling=false --enable-bootstrap-token-auth \
		</dev/null >"$dir/logs/kube-apiserver.log" 2>&1 &
	echo $! >"$dir/kube-apiserver.pid"
	kubeconfig "$dir/admin.conf" admin
	for i in $(seq 240); do
		"$bin/kubectl" --kubeconfig "$dir/admin.conf" get --raw /readyz >/dev/null 2>&1 && break
		kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || { tail -30 "$dir/logs/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
		[ "$i" = 240 ] && die "kube-apiserver not ready after 120 s"
		sleep 0.5
	done
	echo "$dir/admin.conf"
	;;
node)
	name=${3:?usage: $0 node DIR NAME}
	sign "node-$name" "system:node:$name" system:nodes clientAuth ""
	kubeconfig "$dir/node-$name.conf" "node-$name"
	echo "$dir/node-$name.conf"
	;;
csr)
	# What kubeadm sets up for TLS bootstrap: the csrapproving and csrsigning controllers (the
	# cluster CA signs, CSR_DURATION long), a bootstrap token in the
	# system:bootstrappers:kubeadm:default-node-token group, and the bindings that let that
	# group file node CSRs approved at once, and let nodes renew their own.
	# shellcheck disable=SC1091
	. "$dir/env"
	KCM_PORT=$(free_port)
	setsid "$bin/kube-controller-manager" --kubeconfig="$dir/admin.conf" \
		--authentication-kubeconfig="$dir/admin.conf" --authorization-kubeconfig="$dir/admin.conf" \
		--bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
		--controllers=csrapproving,csrsigning,csrcleaner,tokencleaner \
		--cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
		--cluster-signing-duration="${CSR_DURATION:-8760h}" --use-service-account-credentials=false \
		</dev/null >"$dir/logs/kube-controller-manager.log" 2>&1 &
	echo $! >"$dir/kube-controller-manager.pid"
	id=$(head -c 512 /dev/urandom | tr -dc 'a-z0-9' | head -c 6)
	secret=$(head -c 1024 /dev/urandom | tr -dc 'a-z0-9' | head -c 16)
	"$bin/kubectl" --kubeconfig "$dir/admin.conf" apply -f - >/dev/null <<-YAML
	apiVersion: v1
	kind: Secret
	metadata: {name: bootstrap-token-$id, namespace: kube-system}
	type: bootstrap.kubernetes.io/token
	stringData:
	  token-id: "$id"
	  token-secret: "$secret"
	  usage-bootstrap-authentication: "true"
	  usage-bootstrap-signing: "true"
	  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
	---
	apiVersion: rbac.authorization.k8s.io/v1
	kind: ClusterRoleBinding
	metadata: {name: "kubeadm:kubelet-bootstrap"}
	roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node-bootstrapper"}
	subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:bootstrappers:kubeadm:default-node-token"}]
	---
	apiVersion: rbac.authorization.k8s.io/v1
	kind: ClusterRoleBinding
	metadata: {name: "kubeadm:node-autoapprove-bootstrap"}
	roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"}
	subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:bootstrappers:kubeadm:default-node-token"}]
	---
	apiVersion: rbac.authorization.k8s.io/v1
	kind: ClusterRoleBinding
	metadata: {name: "kubeadm:node-autoapprove-certificate-rotation"}
	roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"}
	subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}]
	YAML
	cat >"$dir/bootstrap-kubelet.conf" <<-YAML
	apiVersion: v1
	kind: Config
	clusters:
	- name: lab
	  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")}
	users:
	- name: tls-bootstrap-token-user
	  user: {token: $id.$secret}
	contexts:
	- name: tls-bootstrap-token-user@lab
	  context: {cluster: lab, user: tls-bootstrap-token-user}
	current-context: tls-bootstrap-token-user@lab
	YAML
	chmod 600 "$dir/bootstrap-kubelet.conf"
	for i in $(seq 120); do
		curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null | grep -q ok && break
		kill -0 "$(cat "$dir/kube-controller-manager.pid")" 2>/dev/null || { tail -30 "$dir/logs/kube-controller-manager.log" >&2; die "kube-controller-manager exited"; }
		[ "$i" = 120 ] && die "kube-controller-manager not healthy after 60 s"
		sleep 0.5
	done
	echo "$dir/bootstrap-kubelet.conf"
	;;
stop)
	for p in kube-controller-manager kube-apiserver etcd; do
		[ -f "$dir/$p.pid" ] || continue
		pid=$(cat "$dir/$p.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$dir/$p.pid"
	done
	;;
*) die "unknown command $cmd" ;;
esac
