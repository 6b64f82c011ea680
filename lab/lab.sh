#!/bin/sh
# The pgdrill lab (issue 18), one command each way:
#   sh lab/lab.sh up      build (cached outside the clone), start Kubernetes, CoreDNS,
#                         local-path storage, the CNPG operator, the S3 server and the source
#                         Cluster pg-main in namespace staging; reuses whatever already runs
#   sh lab/lab.sh down    stop and remove everything `up` started, .pgdrill/lab included
#                         (the build cache and images in ~/.cache/pgdrill-lab are kept)
#   sh lab/lab.sh status  what runs
# make lab / make lab-down call these.
set -eu
LAB=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$LAB")
S=${PGDRILL_LAB_STATE:-$REPO/.pgdrill/lab}
PY=${PGDRILL_PYTHON:-$REPO/.venv/bin/python}
log() { echo "[$(date -u +%H:%M:%S)] lab: $*" >&2; }
now() { date +%s; }

up() {
  t0=$(now)
  [ "$(id -u)" = 0 ] || { log "the lab needs root (network namespaces, mounts, cgroups, iptables): run it as root"; exit 1; }
  for tool in openssl iptables ip debootstrap; do
    command -v $tool >/dev/null 2>&1 || { log "missing $tool: apt-get install -y openssl iptables iproute2 debootstrap"; exit 1; }
  done
  sh "$LAB/build.sh"
  sh "$LAB/addons/build.sh" >/dev/null
  sh "$LAB/images/build.sh" >/dev/null
  t_build=$(now)
  BINDIR=$(sh "$LAB/build.sh" --print-bin)
  sh "$LAB/up.sh" "$S"
  sh "$LAB/images/import.sh" "$S/containerd/containerd.sock"
  sh "$LAB/addons/deploy.sh" "$S"
  sh "$LAB/cnpg.sh" "$S"
  "$PY" "$LAB/seed.py" s3 "$S"
  "$PY" "$LAB/seed.py" secret "$S"
  "$PY" "$LAB/seed.py" cluster "$S"
  "$PY" "$LAB/seed.py" data "$S"
  "$PY" "$LAB/seed.py" backup "$S"
  "$PY" "$LAB/seed.py" deploy "$S"
  "$PY" "$LAB/plugin.py" "$S"
  $BINDIR/kubectl --kubeconfig "$S/kubeconfig" create namespace restore-test 2>/dev/null || true
  t1=$(now)
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) up build=$((t_build - t0))s start=$((t1 - t_build))s total=$((t1 - t0))s" >> "$S/timings.log"
  log "ready in $((t1 - t0))s (build $((t_build - t0))s, start $((t1 - t_build))s)"
  log "kubeconfig: $S/kubeconfig"
  log "try:  export KUBECONFIG=$S/kubeconfig"
  log "      PGDRILL_ENVIRONMENT_FILE=environments/lab.yaml .venv/bin/chaos run experiments/pvc-loss.json"
}

down() {
  if [ -f "$S/run/s3.pid" ]; then
    p=$(cat "$S/run/s3.pid"); kill "$p" 2>/dev/null && log "stopped the S3 server (pid $p)"; rm -f "$S/run/s3.pid"
  fi
  # the whole state goes (etcd, PKI, volumes, credentials): moto keeps the bucket in memory,
  # so a Cluster kept across a restart would point at an empty bucket. Builds and images stay
  # cached in ~/.cache/pgdrill-lab, so the next `make lab` is a fresh lab in about 3 minutes.
  sh "$LAB/down.sh" "$S" --purge
}

status() {
  for f in "$S"/run/*.pid; do
    [ -f "$f" ] || { log "nothing runs (no pid files in $S/run)"; return 0; }
    n=$(basename "$f" .pid); p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then echo "$n: running (pid $p)"; else echo "$n: DEAD (pid $p)"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: sh lab/lab.sh up|down|status" >&2; exit 2 ;;
esac
