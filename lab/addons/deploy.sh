#!/bin/sh
# Deploy the lab's add-ons built by lab/addons/build.sh: CoreDNS (Service kube-dns at
# 10.96.0.10, the kubelet's clusterDNS) and Rancher's local-path-provisioner from its own
# manifest (deploy/local-path-storage.yaml of the pinned module), storing volumes under
# STATE_DIR/volumes, its helper pods on the lab's busybox image; StorageClass local-path is
# the default. Usage: sh lab/addons/deploy.sh STATE_DIR
set -eu
D=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$D")
. "$D/versions.env"
S=$(cd "$1" && pwd)
BIN=$(sh "$LAB/build.sh" --print-bin)
K="$BIN/kubectl --kubeconfig $S/kubeconfig"
CTR="$BIN/ctr --address $S/containerd/containerd.sock -n k8s.io"
CACHE_ROOT=${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}
log() { echo "[$(date -u +%H:%M:%S)] addons: $*" >&2; }

sh "$D/build.sh" | while read -r _name _bin tar _ref; do $CTR images import "$tar" >/dev/null 2>&1; done
sed "s|@COREDNS_IMAGE@|pgdrill.local/coredns:$COREDNS_VERSION|" "$D/coredns.yaml" \
  | $K apply --server-side --force-conflicts -f - >/dev/null
mkdir -p "$S/volumes"
UP="$CACHE_ROOT/go/mod/github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION/deploy/local-path-storage.yaml"
sed -e "s|image: rancher/local-path-provisioner:.*|image: pgdrill.local/local-path-provisioner:$LOCAL_PATH_VERSION|" \
    -e "s|^\( *\)- local-path-provisioner$|\1- /usr/bin/local-path-provisioner|" \
    -e "s|/opt/local-path-provisioner|$S/volumes|" \
    -e "s|image: busybox|image: pgdrill.local/busybox:lab|" "$UP" \
  | $K apply --server-side --force-conflicts -f - >/dev/null
$K annotate storageclass local-path storageclass.kubernetes.io/is-default-class=true --overwrite >/dev/null
for d in kube-system/coredns local-path-storage/local-path-provisioner; do
  if ! $K -n "${d%/*}" rollout status "deployment/${d#*/}" --timeout=180s >/dev/null; then
    log "${d#*/} did not become available:"
    $K -n "${d%/*}" get pods -o wide >&2; $K -n "${d%/*}" get events 2>/dev/null | tail -10 >&2
    exit 1
  fi
done
log "CoreDNS $COREDNS_VERSION and local-path-provisioner $LOCAL_PATH_VERSION running"
