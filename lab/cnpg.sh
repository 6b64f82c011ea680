#!/bin/sh
# Deploy the real CloudNativePG operator on the lab from its own release manifest
# (releases/cnpg-<version>.yaml of the pinned Go module: CRDs, RBAC, webhooks, Deployment),
# with one change: the image names point at the operator image built by lab/images/build.sh
# (pgdrill.local/cloudnative-pg:<version>, the same binary as upstream's, never pulled).
# Usage: sh lab/cnpg.sh [STATE_DIR]
set -eu
LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/versions.env"
S=${1:-$(dirname "$LAB")/.pgdrill/lab}
BIN=$(sh "$LAB/build.sh" --print-bin)
K="$BIN/kubectl --kubeconfig $S/kubeconfig"
CACHE_ROOT=${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}
V=${CNPG_VERSION#v}
MANIFEST="$CACHE_ROOT/go/mod/github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION/releases/cnpg-$V.yaml"
log() { echo "[$(date -u +%H:%M:%S)] cnpg: $*" >&2; }
[ -f "$MANIFEST" ] || { log "no $MANIFEST: run sh lab/build.sh cnpg"; exit 1; }

log "applying CloudNativePG $V from $MANIFEST"
sed -e "s|ghcr.io/cloudnative-pg/cloudnative-pg:$V|pgdrill.local/cloudnative-pg:$V|g" \
    -e "s|imagePullPolicy: Always|imagePullPolicy: IfNotPresent|g" "$MANIFEST" \
  | $K apply --server-side --force-conflicts -f - >/dev/null
if ! $K -n cnpg-system rollout status deployment/cnpg-controller-manager --timeout=300s >&2; then
  log "the operator did not become available; its pod and events:"
  $K -n cnpg-system get pods -o wide >&2 || true
  $K -n cnpg-system get events --sort-by=.lastTimestamp 2>/dev/null | tail -15 >&2 || true
  exit 1
fi
# the webhooks answer once the operator made its certificate and patched the configurations
i=0
until $K -n cnpg-system get endpointslices -l kubernetes.io/service-name=cnpg-webhook-service \
        -o jsonpath='{.items[*].endpoints[*].conditions.ready}' 2>/dev/null | grep -q true; do
  i=$((i+1)); [ $i -le 120 ] || { log "the webhook service has no ready endpoint"; exit 1; }
  sleep 1
done
log "operator $V running, webhooks ready"
