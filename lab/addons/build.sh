#!/bin/sh
# Build the lab add-ons from their Go modules (static, CGO_ENABLED=0) and pack
# them into single-layer OCI image tars with lab/mkimage.py:
#   ${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/addons-<hash>/bin/{coredns,local-path-provisioner}
#   ${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/addons-<hash>/images/*.tar
# <hash> = sha256 of lab/addons/versions.env only (bump ADDONS_RECIPE there when
# this recipe changes). The main lab key (lab/build.sh --print-bin) is not affected.
# Go module/build caches are the lab's shared ${PGDRILL_LAB_CACHE}/go/{mod,build}.
# Idempotent: a binary / image tar is made only if missing.
# Usage: sh lab/addons/build.sh [coredns|localpath ...]   (default: both)
#        sh lab/addons/build.sh --print-dir     prints the key dir and exits
#        PGDRILL_LAB_NICE=19 (default) sets the nice level.
# Prints, on stdout, one "NAME BINARY IMAGE_TAR IMAGE_REF" line per component.
set -eu

AD=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$AD")
. "$AD/versions.env"

. "$LAB/go-env.sh"
hash=$(sha256sum < "$AD/versions.env" | cut -c1-12)
OUT="$CACHE_ROOT/addons-$hash"
BIN="$OUT/bin"
IMG="$OUT/images"
if [ "${1:-}" = "--print-dir" ]; then echo "$OUT"; exit 0; fi

export CGO_ENABLED=0
mkdir -p "$BIN" "$IMG" "$GOMODCACHE" "$GOCACHE"
TIMES="$OUT/build-times.log"

log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] addons-build: $*" >&2; }
now() { date +%s; }

# gobuild NAME OUTFILE LDFLAGS PKG   (in the current dir; skipped if OUTFILE exists)
gobuild() {
  name=$1 o=$2 ld=$3 pkg=$4
  if [ -x "$o" ]; then log "$name: cached ($o)"; return 0; fi
  log "$name: building $pkg"
  t0=$(now); rm -f "$o.tmp"
  $NICE go build -ldflags="-s -w -extldflags=-static $ld" -o "$o.tmp" "$pkg"
  mv "$o.tmp" "$o"
  dt=$(( $(now) - t0 )); log "$name: done in ${dt}s"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name go-build ${dt}s" >> "$TIMES"
}

# mkimg NAME TAR REF ROOTFS-FILLER [mkimage args...]: rootfs is made in a temp dir
mkimg() {
  name=$1 tar=$2 ref=$3 fill=$4; shift 4
  if [ -s "$tar" ]; then log "$name image: cached ($tar)"; return 0; fi
  t0=$(now)
  r=$(mktemp -d "$OUT/rootfs.XXXXXX")
  mkdir -p "$r/etc"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
  "$fill" "$r"
  python3 "$LAB/mkimage.py" "$r" "$ref" "$tar.tmp" "$@" >/dev/null
  rm -rf "$r"
  mv "$tar.tmp" "$tar"
  dt=$(( $(now) - t0 )); log "$name image: $ref -> $tar ($(du -k "$tar" | cut -f1) KiB) in ${dt}s"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name image ${dt}s" >> "$TIMES"
}

fill_coredns() { install -m 0755 "$BIN/coredns" "$1/coredns"; }
fill_localpath() { mkdir -p "$1/usr/bin"; install -m 0755 "$BIN/local-path-provisioner" "$1/usr/bin/local-path-provisioner"; }

build_coredns() {
  ref="pgdrill.local/coredns:$COREDNS_VERSION"
  ( cd "$(modir "github.com/coredns/coredns@$COREDNS_VERSION")" &&
    gobuild coredns "$BIN/coredns" "-X github.com/coredns/coredns/coremain.GitCommit=module-$COREDNS_VERSION" . )
  # Upstream image: distroless/static nonroot, ENTRYPOINT ["/coredns"]; the
  # manifest passes -conf. (No file capability here: lab/mkimage.py does not
  # carry xattrs, so the pod uses the ip_unprivileged_port_start sysctl.)
  mkimg coredns "$IMG/coredns-$COREDNS_VERSION.tar" "$ref" fill_coredns --entrypoint /coredns --cmd
  echo "coredns $BIN/coredns $IMG/coredns-$COREDNS_VERSION.tar $ref"
}

build_localpath() {
  ref="pgdrill.local/local-path-provisioner:$LOCAL_PATH_VERSION"
  ( cd "$(modir "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION")" &&
    gobuild local-path-provisioner "$BIN/local-path-provisioner" "-X main.VERSION=$LOCAL_PATH_VERSION" . )
  # Upstream image: alpine + /usr/bin/local-path-provisioner, CMD ["local-path-provisioner"].
  # It needs no shell itself (setup/teardown run in helper pods using busybox).
  mkimg local-path-provisioner "$IMG/local-path-provisioner-$LOCAL_PATH_VERSION.tar" "$ref" fill_localpath \
    --cmd /usr/bin/local-path-provisioner
  echo "localpath $BIN/local-path-provisioner $IMG/local-path-provisioner-$LOCAL_PATH_VERSION.tar $ref"
}

comps=${*:-"coredns localpath"}
log "dir=$OUT components: $comps"
T0=$(now)
for c in $comps; do
  case $c in
    coredns|localpath) "build_$c" ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
done
log "all done in $(( $(now) - T0 ))s; dir=$OUT"
