#!/bin/sh
# Build the pgdrill lab binaries (issue 18) from Go modules, into a cache
# outside the clone:
#   ${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/<key>/bin/
# <key> = k8s<version>-<hash of versions.env + lab/go/*/go.{mod,sum} + lab/go/*/*.go>;
# bump LAB_RECIPE in versions.env when build flags here change.
# Go module and build caches live in ${PGDRILL_LAB_CACHE}/go/{mod,build} (shared
# across keys) so CI can restore one directory.
# Idempotent: each binary is built only if missing; a warm run does nothing.
# Usage: sh lab/build.sh [component...]   components: etcd k8s containerd runc cni cnpg barman
#        (default: all).   PGDRILL_LAB_NICE=19 (default) sets the nice level.
#        sh lab/build.sh --print-bin    prints the bin dir and exits.
set -eu

LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/versions.env"

. "$LAB/go-env.sh"
hash=$(cat "$LAB/versions.env" "$LAB"/go/*/go.mod "$LAB"/go/*/go.sum "$LAB"/go/*/*.go 2>/dev/null \
  | sha256sum | cut -c1-12)
KEY="k8s${K8S_VERSION}-${hash}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
if [ "${1:-}" = "--print-bin" ]; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN/cni" "$GOMODCACHE" "$GOCACHE"
TIMES="$OUT/build-times.log"

log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] build: $*" >&2; }
now() { date +%s; }

# step NAME OUTFILE CMD... : run CMD (which must write OUTFILE.tmp) unless OUTFILE exists.
step() {
  name=$1 outf=$2; shift 2
  if [ -x "$outf" ]; then log "$name: cached ($outf)"; return 0; fi
  log "$name: building"
  t0=$(now)
  rm -f "$outf.tmp"
  "$@"
  mv "$outf.tmp" "$outf"
  dt=$(( $(now) - t0 ))
  log "$name: done in ${dt}s"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name ${dt}s" >> "$TIMES"
}

gobuild_static() { # outfile ldflags pkg  (run in the current dir)
  o=$1 ld=$2 pkg=$3
  CGO_ENABLED=0 $NICE go build -ldflags="-s -w $ld" -o "$o.tmp" "$pkg"
}

build_etcd() {
  cd "$LAB/go/etcd"
  step etcd "$BIN/etcd" gobuild_static "$BIN/etcd" "" .
}

build_k8s() {
  cd "$LAB/go/k8s"
  grep -Eq "^(require)?[[:space:]]*k8s.io/kubernetes $K8S_VERSION( |\$)" go.mod \
    || { log "lab/go/k8s/go.mod is not at $K8S_VERSION: run sh lab/go/k8s/gen-gomod.sh"; exit 1; }
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  kv=""
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    kv="$kv -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    step "$c" "$BIN/$c" gobuild_static "$BIN/$c" "$kv" "k8s.io/kubernetes/cmd/$c"
  done
}

build_containerd() {
  cd "$(modir github.com/containerd/containerd/v2@$CONTAINERD_VERSION)"
  ld="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=module"
  for c in containerd containerd-shim-runc-v2 ctr; do
    step "$c" "$BIN/$c" gobuild_static "$BIN/$c" "$ld" "./cmd/$c"
  done
}

runc_build() {
  # runc needs cgo + libseccomp (Debian: libseccomp-dev); linked statically
  # when the static archive is available so the binary is self-contained.
  if ! [ -e /usr/include/seccomp.h ]; then
    log "runc needs libseccomp-dev: apt-get install -y libseccomp-dev"; exit 1
  fi
  CGO_ENABLED=1 $NICE go build -tags "seccomp urfave_cli_no_docs" \
    -ldflags="-s -w -X main.version=${RUNC_VERSION#v} -X main.gitCommit=module -extldflags=-static" \
    -o "$BIN/runc.tmp" .
}
build_runc() {
  cd "$(modir github.com/opencontainers/runc@$RUNC_VERSION)"
  step runc "$BIN/runc" runc_build
}

build_cni() {
  cd "$(modir github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION)"
  for p in main/bridge ipam/host-local main/loopback meta/portmap; do
    n=${p#*/}
    step "cni-$n" "$BIN/cni/$n" gobuild_static "$BIN/cni/$n" \
      "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "./plugins/$p"
  done
}

build_cnpg() {
  cd "$(modir github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION)"
  step cnpg-manager "$BIN/cnpg-manager" gobuild_static "$BIN/cnpg-manager" "" ./cmd/manager
  step kubectl-cnpg "$BIN/kubectl-cnpg" gobuild_static "$BIN/kubectl-cnpg" "" ./cmd/kubectl-cnpg
}

build_barman() {
  cd "$(modir github.com/cloudnative-pg/plugin-barman-cloud@$BARMAN_PLUGIN_VERSION)"
  step barman-cloud-plugin "$BIN/barman-cloud-plugin" gobuild_static "$BIN/barman-cloud-plugin" "" ./cmd/manager
}

comps=${*:-"etcd containerd runc cni k8s cnpg barman"}
log "key=$KEY bin=$BIN components: $comps"
T0=$(now)
for c in $comps; do
  case $c in
    etcd|k8s|containerd|runc|cni|cnpg|barman) ( "build_$c" ) ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
done
log "all done in $(( $(now) - T0 ))s; bin=$BIN"
