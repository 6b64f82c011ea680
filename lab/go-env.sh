# Sourced by lab/build.sh and lab/addons/build.sh (after they define log): Go's module and
# build caches under the lab's cache root, shared across cache keys so that CI keeps one
# directory; the nice level of builds; modir.
CACHE_ROOT=${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOCACHE="$CACHE_ROOT/go/build"
export GOFLAGS="-trimpath -buildvcs=false"
export GOTOOLCHAIN=local
export PATH="/usr/local/go/bin:$PATH"
NICE="nice -n ${PGDRILL_LAB_NICE:-19}"

modir() { # MODULE@VERSION -> its directory in GOMODCACHE (downloads it)
  d=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$d" ] || { log "cannot download $1 (is it served by the module proxy?)"; return 1; }
  echo "$d"
}
