#!/bin/sh
# Start a single-node Kubernetes lab on this machine from the binaries that
# lab/build.sh made: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (+runc, CNI), kubelet, kube-proxy.
# Usage: sh lab/up.sh [STATE_DIR]     (default: <repo>/.pgdrill/lab)
#   kubeconfig: STATE_DIR/kubeconfig ; pid files: STATE_DIR/run/*.pid ; logs: STATE_DIR/log/
# Network: every listener binds 127.0.0.1, except the API server's advertise
# address, which lives on a dummy interface (pgdlab0, 10.250.0.1/32) made here,
# and the pod bridge (pgdlabbr0, 10.244.0.0/24) whose pods are in network
# namespaces made here. lab/down.sh removes all of it.
set -eu
LAB=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$LAB")
S=$(mkdir -p "${1:-$REPO/.pgdrill/lab}" && cd "${1:-$REPO/.pgdrill/lab}" && pwd)
BIN=$(sh "$LAB/build.sh" --print-bin)
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl containerd ctr runc; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: run sh lab/build.sh" >&2; exit 1; }
done
export PATH="$BIN:$BIN/cni:$PATH"
NODE=${PGDRILL_LAB_NODE:-pgdrill-lab}
ADV=10.250.0.1
SVC_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/24
mkdir -p "$S/pki" "$S/run" "$S/log" "$S/etcd" "$S/cni/net.d" "$S/kubelet" "$S/containerd"
log() { echo "[$(date -u +%H:%M:%S)] up: $*" >&2; }

start() { # name cmd...   (no-op when its pid file points at a live process)
  n=$1; shift
  if [ -f "$S/run/$n.pid" ] && kill -0 "$(cat "$S/run/$n.pid")" 2>/dev/null; then log "$n already running"; return; fi
  log "starting $n"
  "$@" > "$S/log/$n.log" 2>&1 &
  echo $! > "$S/run/$n.pid"
  LAST=$n
}
wait_for() { # desc seconds cmd...   (gives up early when the last started process died)
  d=$1 t=$2; shift 2; i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i+1)); [ $i -le $((t*2)) ] || { log "timeout waiting for $d"; return 1; }; sleep 0.5
    if [ -n "${LAST:-}" ] && ! kill -0 "$(cat "$S/run/$LAST.pid")" 2>/dev/null; then
      log "$LAST exited while waiting for $d; its log ($S/log/$LAST.log) ends:"
      tail -5 "$S/log/$LAST.log" >&2; return 1
    fi
  done
  log "$d: ok (${i} polls)"
}

# ---------- PKI (openssl) ----------
P="$S/pki"
if [ ! -f "$P/ca.crt" ]; then
  log "making PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pgdrill-lab-ca" \
    -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
fi
mkcert() { # name subject [sans]
  [ -f "$P/$1.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$P/$1.key" -out "$P/$1.csr" 2>/dev/null
  ext="$P/$1.ext"
  if [ -n "${3:-}" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$ext"
  fi
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$P/$1.crt" 2>/dev/null
}
mkcert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$ADV,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
mkcert admin "/O=system:masters/CN=pgdrill-admin"
mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
mkcert controller-manager "/CN=system:kube-controller-manager"
mkcert scheduler "/CN=system:kube-scheduler"
mkcert kube-proxy "/CN=system:kube-proxy"
mkcert kubelet "/O=system:nodes/CN=system:node:$NODE" "IP:127.0.0.1,IP:$ADV,DNS:$NODE,DNS:localhost"

mkkubeconfig() { # name cert
  cat > "$S/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://$ADV:6443", certificate-authority: "$P/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$P/$2.crt", client-key: "$P/$2.key"}
contexts:
- name: lab
  context: {cluster: lab, user: $2}
current-context: lab
EOF
}
for c in admin controller-manager scheduler kube-proxy kubelet; do mkkubeconfig "$c" "$c"; done
cp "$S/admin.kubeconfig" "$S/kubeconfig"
K="kubectl --kubeconfig $S/kubeconfig"

# ---------- host network bits (dummy advertise address) ----------
# (this kernel has no dummy link type: the /32 goes on lo, labelled lo:pgdlab)
if ! ip -4 addr show dev lo | grep -q " $ADV/32"; then
  log "adding $ADV/32 to lo (label lo:pgdlab)"
  ip addr add "$ADV/32" dev lo label lo:pgdlab
fi
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || true

# ---------- etcd ----------
start etcd etcd --data-dir "$S/etcd" --listen-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --unsafe-no-fsync
wait_for etcd 30 sh -c "grep -q 'etcd ready' '$S/log/etcd.log'"

# ---------- kube-apiserver ----------
start kube-apiserver kube-apiserver \
  --etcd-servers=http://127.0.0.1:23790 \
  --bind-address=$ADV --secure-port=6443 --advertise-address=$ADV \
  --service-cluster-ip-range=$SVC_CIDR \
  --client-ca-file="$P/ca.crt" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --profiling=false --enable-priority-and-fairness=false
wait_for kube-apiserver 120 $K get --raw /readyz

# ---------- controller-manager, scheduler ----------
start kube-controller-manager kube-controller-manager \
  --kubeconfig="$S/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --allocate-node-cidrs=false --service-cluster-ip-range=$SVC_CIDR \
  --leader-elect=false --profiling=false
start kube-scheduler kube-scheduler \
  --kubeconfig="$S/scheduler.kubeconfig" \
  --authentication-kubeconfig="$S/scheduler.kubeconfig" \
  --authorization-kubeconfig="$S/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false

# ---------- containerd (CRI) + images ----------
sed -e "s|@STATE@|$S|g" -e "s|@BIN@|$BIN|g" "$LAB/conf/containerd.toml.in" > "$S/containerd.toml"
cat > "$S/cni/net.d/10-pgdlab.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pgdlab", "plugins": [
  {"type": "bridge", "bridge": "pgdlabbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$S/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
start containerd containerd --config "$S/containerd.toml"
SOCK="$S/containerd/containerd.sock"
wait_for containerd 30 test -S "$SOCK"
CTR="ctr --address $SOCK -n k8s.io"
R="$S/rootfs"
if [ ! -x "$R/bin/busybox" ]; then
  mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/etc" "$R/tmp"
  cp "$(command -v busybox)" "$R/bin/busybox"
  for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$R/etc/passwd"
fi
for img in busybox pause; do
  if ! $CTR images ls -q | grep -qx "pgdrill.local/$img:lab"; then
    if [ $img = pause ]; then cmd="/bin/sleep 2147483647"; else cmd="/bin/sh"; fi
    python3 "$LAB/mkimage.py" "$R" "pgdrill.local/$img:lab" "$S/$img.tar" --cmd $cmd >/dev/null
    $CTR images import "$S/$img.tar" >/dev/null
    $CTR images label "pgdrill.local/$img:lab" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
  fi
done

# ---------- kubelet ----------
# cgroup v1 hybrid host: kubelet >= 1.35 refuses cgroup v1 unless failCgroupV1=false.
# cgroupRoot nests everything under this session's own memory cgroup path.
CGSELF=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
CGROOT="${CGSELF%/}/pgdrill-lab"
# the kubelet wants cgroupRoot to exist in every v1 hierarchy, even one where this session
# sits at the root (seen: memory:/process_api/<id> but cpuset:/): each missing level is made
# and recorded for lab-down; a new cpuset cgroup starts with no CPUs and no memory nodes, so
# each level copies its parent's
mkdir -p "$S/run"
echo "$CGROOT" > "$S/run/cgroup-root"
for h in /sys/fs/cgroup/*/; do
  case "$h" in */unified/) continue ;; esac
  d=${h%/}
  for part in $(echo "${CGROOT#/}" | tr / ' '); do
    d="$d/$part"
    if [ ! -d "$d" ]; then
      mkdir "$d"
      echo "$d" >> "$S/run/cgroups-made"
    fi
    if [ -f "$d/cpuset.cpus" ] && [ -z "$(cat "$d/cpuset.cpus")" ]; then
      cat "$(dirname "$d")/cpuset.cpus" > "$d/cpuset.cpus"
      cat "$(dirname "$d")/cpuset.mems" > "$d/cpuset.mems"
    fi
  done
done
cat > "$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: "$CGROOT"
containerRuntimeEndpoint: "unix://$SOCK"
address: $ADV
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$P/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$P/kubelet.crt"
tlsPrivateKeyFile: "$P/kubelet.key"
clusterDomain: cluster.local
clusterDNS: ["10.96.0.10"]
failSwapOn: false
podCIDR: "$POD_CIDR"
resolvConf: /etc/resolv.conf
localStorageCapacityIsolation: true   # else no ephemeral-storage capacity: the CronJob (requests 1Gi) never schedules
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
EOF
start kubelet kubelet --config="$S/kubelet/config.yaml" --kubeconfig="$S/kubelet.kubeconfig" \
  --root-dir="$S/kubelet/root" --hostname-override="$NODE" --node-ip=$ADV -v=1
wait_for "kubelet healthz" 60 curl -sf http://127.0.0.1:10248/healthz
wait_for "node $NODE Ready" 180 sh -c "$K get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"

# ---------- kube-proxy (iptables) ----------
start kube-proxy kube-proxy --kubeconfig="$S/kube-proxy.kubeconfig" --hostname-override="$NODE" \
  --cluster-cidr=$POD_CIDR --bind-address=127.0.0.1 --metrics-bind-address=127.0.0.1:10249 \
  --healthz-bind-address=127.0.0.1:10256 --proxy-mode=iptables --conntrack-max-per-core=0

log "lab up: export KUBECONFIG=$S/kubeconfig"
