#!/bin/sh
# Import the image tarballs that lab/images/build.sh made into containerd's k8s.io
# namespace (the one the kubelet's CRI uses), skipping each image already present there
# under the same name with the same manifest digest.
# Usage: sh lab/images/import.sh SOCKET [IMAGE...]
#   SOCKET: containerd's socket, e.g. .pgdrill/lab/containerd/containerd.sock
#   IMAGE:  as for build.sh (default: all). The tarballs must exist: run build.sh first.
# Env: CTR (default: the lab's ctr, from sh lab/build.sh --print-bin).
set -eu
[ $# -ge 1 ] || { echo "usage: sh lab/images/import.sh SOCKET [IMAGE...]" >&2; exit 2; }
SOCK=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$HERE")
CTR=${CTR:-$(sh "$LAB/build.sh" --print-bin)/ctr}
log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] import: $*" >&2; }
[ -S "$SOCK" ] || { log "no socket at $SOCK (is the lab up?)"; exit 1; }
# ctr's stderr (a cgroup v1 deprecation warning on every call here) is shown only on failure
ERR=$(mktemp); trap 'rm -f "$ERR"' EXIT
ctr() {
  if "$CTR" --address "$SOCK" -n k8s.io "$@" 2> "$ERR"; then :; else
    _rc=$?; log "ctr $* failed (exit $_rc):"; cat "$ERR" >&2; exit $_rc
  fi
}

tars=$(sh "$HERE/build.sh" --print "$@")
for t in $tars; do
  [ -f "$t" ] || { log "missing $t: run sh lab/images/build.sh"; exit 1; }
done
present=$(ctr images ls | awk 'NR > 1 {print $1, $3}')
for t in $tars; do
  idx=$(tar -xOf "$t" index.json)
  ref=$(echo "$idx" | sed -n 's/.*"io.containerd.image.name": "\([^"]*\)".*/\1/p')
  dig=$(echo "$idx" | sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p')
  if [ -z "$ref" ] || [ -z "$dig" ]; then log "cannot read the name/digest in $t"; exit 1; fi
  have=$(echo "$present" | awk -v r="$ref" '$1 == r {print $2}')
  if [ "$have" = "$dig" ]; then
    log "$ref: already present ($dig)"
    continue
  fi
  log "$ref: importing $t${have:+ (replacing $have)}"
  t0=$(date +%s)
  ctr images import "$t" > /dev/null
  now=$(ctr images ls | awk -v r="$ref" 'NR > 1 && $1 == r {print $3}')
  [ "$now" = "$dig" ] || { log "$ref: after import containerd has '$now', expected $dig"; exit 1; }
  log "$ref: imported in $(( $(date +%s) - t0 ))s ($dig)"
done
