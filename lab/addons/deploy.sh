#!/bin/sh
# Deploy the lab add-ons into a running lab (lab/up.sh): CoreDNS (kube-dns
# Service at 10.96.0.10) and Rancher's local-path-provisioner (default
# StorageClass "local-path", volumes under STATE_DIR/volumes).
# Usage: sh lab/addons/deploy.sh [STATE_DIR]      (default: <repo>/.pgdrill/lab)
#   needs: sh lab/build.sh and sh lab/addons/build.sh done; the lab up.
#   env:   PGDRILL_ADDONS_TIMEOUT=180   seconds to wait for each Deployment
#          PGDRILL_ADDONS_SETTLE=3      seconds its pods must then stay Ready without restarts
#          PGDRILL_LAB_VOLUMES=DIR      host dir for PVs (default STATE_DIR/volumes)
#          PGDRILL_DNS_UPSTREAM=/etc/resolv.conf   CoreDNS "forward ." target, or "none"
#          (pods have no masquerade to the outside in this lab, so external
#          names do not resolve either way; cluster.local always does).
# Rendered manifests: STATE_DIR/addons/*.yaml. Idempotent (re-import + apply).
set -eu
AD=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$AD")
REPO=$(dirname "$LAB")
S=$(cd "${1:-$REPO/.pgdrill/lab}" && pwd)
. "$AD/versions.env"
BIN=$(sh "$LAB/build.sh" --print-bin)
OUT=$(sh "$AD/build.sh" --print-dir)
TIMEOUT=${PGDRILL_ADDONS_TIMEOUT:-180}
SETTLE=${PGDRILL_ADDONS_SETTLE:-3}
VOLS=${PGDRILL_LAB_VOLUMES:-$S/volumes}
UP=${PGDRILL_DNS_UPSTREAM:-/etc/resolv.conf}
SOCK="$S/containerd/containerd.sock"
log() { echo "[$(date -u +%H:%M:%S)] addons-deploy: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

k() { "$BIN/kubectl" --kubeconfig "$S/kubeconfig" "$@"; }
[ -x "$BIN/kubectl" ] && [ -x "$BIN/ctr" ] || die "missing $BIN/kubectl or ctr: run sh lab/build.sh"
[ -S "$SOCK" ] || die "no containerd socket $SOCK: is the lab up (sh lab/up.sh)?"
k get --raw /readyz >/dev/null 2>&1 || die "API server not ready (kubeconfig $S/kubeconfig)"

CD_REF="pgdrill.local/coredns:$COREDNS_VERSION"
LP_REF="pgdrill.local/local-path-provisioner:$LOCAL_PATH_VERSION"
CD_TAR="$OUT/images/coredns-$COREDNS_VERSION.tar"
LP_TAR="$OUT/images/local-path-provisioner-$LOCAL_PATH_VERSION.tar"
for t in "$CD_TAR" "$LP_TAR"; do [ -s "$t" ] || die "missing image $t: run sh lab/addons/build.sh"; done

# ---- images -> containerd namespace k8s.io ----
mkdir -p "$S/addons" "$S/log"
for t in "$CD_TAR" "$LP_TAR"; do
  log "importing $t"
  "$BIN/ctr" --address "$SOCK" -n k8s.io images import "$t" >>"$S/log/addons-import.log" 2>&1 \
    || { tail -5 "$S/log/addons-import.log" >&2; die "ctr images import $t failed (log: $S/log/addons-import.log)"; }
done
for r in "$CD_REF" "$LP_REF" pgdrill.local/busybox:lab; do
  "$BIN/ctr" --address "$SOCK" -n k8s.io images ls -q 2>/dev/null | grep -qx "$r" \
    || die "image $r not in containerd namespace k8s.io (busybox:lab is imported by lab/up.sh)"
done

# ---- render + apply ----
mkdir -p "$VOLS"
if [ "$UP" = none ]; then fwd="# no upstream (PGDRILL_DNS_UPSTREAM=none)"; else fwd="forward . $UP"; fi
sed -e "s|@COREDNS_IMAGE@|$CD_REF|g" -e "s|@UPSTREAM@|$fwd|g" "$AD/coredns.yaml" > "$S/addons/coredns.yaml"
sed -e "s|@LOCAL_PATH_IMAGE@|$LP_REF|g" -e "s|@VOLUMES_DIR@|$VOLS|g" "$AD/local-path.yaml" > "$S/addons/local-path.yaml"
if grep -n '@[A-Z_]*@' "$S/addons/coredns.yaml" "$S/addons/local-path.yaml"; then die "unsubstituted placeholder"; fi
log "applying $S/addons/coredns.yaml"
k apply -f "$S/addons/coredns.yaml" >&2
log "applying $S/addons/local-path.yaml (volumes: $VOLS)"
k apply -f "$S/addons/local-path.yaml" >&2

# ---- wait (deadline) and explain failures ----
explain() { # ns selector
  ns=$1 sel=$2
  pods=$(k -n "$ns" get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null || true)
  [ -n "$pods" ] || { log "no pods match -n $ns -l $sel; ReplicaSet events:"; k -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -10 >&2; return; }
  for p in $pods; do
    log "pod $ns/$p: $(k -n "$ns" get pod "$p" -o jsonpath='phase={.status.phase} {range .status.containerStatuses[*]}ready={.ready} restarts={.restartCount} waiting={.state.waiting.reason}:{.state.waiting.message} lastTerminated={.lastState.terminated.reason}/{.lastState.terminated.exitCode}{end}' 2>&1)"
    log "pod $ns/$p: last events:"
    k -n "$ns" get events --field-selector "involvedObject.name=$p" --sort-by=.lastTimestamp \
      -o custom-columns=LAST:.lastTimestamp,TYPE:.type,REASON:.reason,MESSAGE:.message 2>&1 | tail -8 >&2
    log "pod $ns/$p: last log lines:"
    k -n "$ns" logs "$p" --all-containers --tail=15 2>&1 | sed 's/^/    /' >&2 || true
    k -n "$ns" logs "$p" --all-containers --tail=15 --previous 2>/dev/null | sed 's/^/    (previous) /' >&2 || true
  done
}
# snap ns selector: one line per live (not terminating) pod: name phase ready... restarts...
snap() {
  k -n "$1" get pods -l "$2" -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}} {{.status.phase}}{{range .status.containerStatuses}} ready={{.ready}} restarts={{.restartCount}}{{end}}{{"\n"}}{{end}}{{end}}' 2>/dev/null
}
wait_deploy() { # ns name selector
  log "waiting up to ${TIMEOUT}s for deployment $1/$2 to be Available"
  t0=$(date +%s)
  # Available + rollout complete, then the live pods must stay Running/Ready with
  # no new restarts for SETTLE seconds (a crashing pod without a readiness probe
  # can look Available for a moment).
  if k -n "$1" wait --for=condition=Available "deployment/$2" --timeout="${TIMEOUT}s" >/dev/null 2>&1 \
     && k -n "$1" rollout status "deployment/$2" --timeout="${TIMEOUT}s" >/dev/null 2>&1 \
     && s1=$(snap "$1" "$3") && sleep "$SETTLE" && s2=$(snap "$1" "$3") \
     && [ -n "$s2" ] && [ "$s1" = "$s2" ] && ! echo "$s2" | grep -qv ' Running .*ready=true' \
     && ! echo "$s2" | grep -q 'ready=false'; then
    log "deployment $1/$2 Available in $(( $(date +%s) - t0 ))s: $(echo "$s2" | tr '\n' ' ')"
  else
    log "ERROR: deployment $1/$2 not Available and steadily Ready within ${TIMEOUT}s (+${SETTLE}s settle)"
    explain "$1" "$3"; return 1
  fi
}
rc=0
wait_deploy kube-system coredns k8s-app=kube-dns || rc=1
wait_deploy local-path-storage local-path-provisioner app=local-path-provisioner || rc=1
[ $rc = 0 ] || die "add-ons not ready (see above)"
log "ok: CoreDNS $COREDNS_VERSION at 10.96.0.10 (set kubelet clusterDNS: [10.96.0.10], clusterDomain: cluster.local);"
log "ok: StorageClass local-path (default, $LOCAL_PATH_VERSION) -> $VOLS"
