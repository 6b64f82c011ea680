#!/bin/sh
# Feasibility probe: start a private containerd (own root/state/socket) and run
# a trivial container from a locally built busybox image, then stop it again.
# Usage: sh lab/probe-runtime.sh [STATE_DIR]   (default /tmp/pgdrill-lab-probe)
# Needs: lab/build.sh done (containerd, ctr, runc), busybox-static from Debian.
set -eu
LAB=$(cd "$(dirname "$0")" && pwd)
BIN=$(sh "$LAB/build.sh" --print-bin)
S=${1:-/tmp/pgdrill-lab-probe}
mkdir -p "$S/containerd"
log() { echo "[$(date -u +%H:%M:%S)] probe: $*" >&2; }

sed -e "s|@STATE@|$S|g" -e "s|@BIN@|$BIN|g" "$LAB/conf/containerd.toml.in" > "$S/containerd.toml"
PATH="$BIN:$PATH" "$BIN/containerd" --config "$S/containerd.toml" > "$S/containerd.log" 2>&1 &
echo $! > "$S/containerd.pid"
trap 'kill "$(cat "$S/containerd.pid")" 2>/dev/null || true' EXIT
SOCK="$S/containerd/containerd.sock"
i=0; until [ -S "$SOCK" ] || [ $i -ge 50 ]; do sleep 0.2; i=$((i+1)); done
CTR="$BIN/ctr --address $SOCK -n pgdrill"
# Keep containers inside this session's own memory cgroup (cgroup v1 hybrid):
# the path is created under the same name in every v1 hierarchy.
CG=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
CG=${CG:-}/pgdrill-lab-probe
$CTR version

# rootfs: busybox-static
R="$S/rootfs"
if [ ! -x "$R/bin/busybox" ]; then
  mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/etc" "$R/tmp"
  cp "$(command -v busybox)" "$R/bin/busybox"
  for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$R/etc/passwd"
fi
python3 "$LAB/mkimage.py" "$R" pgdrill.local/busybox:lab "$S/busybox.tar" >/dev/null

log "1) ctr run --rootfs (no snapshotter)"
PATH="$BIN:$PATH" $CTR run --rm --runc-binary "$BIN/runc" --cgroup "$CG/rootfs" --rootfs "$R" probe-rootfs \
  /bin/sh -c 'echo hello-from-rootfs; id; cat /proc/self/cgroup | head -3' && log "rootfs run: OK" || log "rootfs run: FAILED rc=$?"

log "2) ctr images import + run (overlayfs snapshotter)"
$CTR images import "$S/busybox.tar"
PATH="$BIN:$PATH" $CTR run --rm --runc-binary "$BIN/runc" --cgroup "$CG/image" pgdrill.local/busybox:lab probe-image \
  /bin/sh -c 'echo hello-from-image; uname -r' && log "image run: OK" || log "image run: FAILED rc=$?"

log "3) own network namespace + memory limit (cgroup v1), checked from the host"
PATH="$BIN:$PATH" $CTR run -d --runc-binary "$BIN/runc" --cgroup "$CG/limits" --memory-limit 67108864 \
  pgdrill.local/busybox:lab probe-limits /bin/sh -c 'ip link | grep -c "^[0-9]"; sleep 30' >/dev/null
sleep 1
lim=$(cat "/sys/fs/cgroup/memory$CG/limits/memory.limit_in_bytes" 2>&1 || true)
nl=$($CTR task ls 2>&1 | grep -c probe-limits || true)
$CTR task kill -s KILL probe-limits >/dev/null 2>&1 || true; sleep 1
$CTR task rm probe-limits >/dev/null 2>&1 || true; $CTR container rm probe-limits >/dev/null 2>&1 || true
[ "$lim" = 67108864 ] && log "limits run: OK (memory.limit_in_bytes=$lim, task listed=$nl)" || log "limits run: FAILED ($lim)"

# remove the probe's cgroups from every v1 hierarchy
for h in /sys/fs/cgroup/*/; do
  [ -d "$h${CG#/}" ] || continue
  find "$h${CG#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
log "done; containerd log: $S/containerd.log"
