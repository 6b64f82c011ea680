#!/bin/sh
# Stop everything lab/up.sh started (pid files in STATE_DIR/run), remove the
# pods' containers, network namespaces, mounts, interfaces, kube-proxy's
# iptables rules and the lab's cgroups. Keeps PKI, etcd data and images unless
# --purge is given (then STATE_DIR is removed).
# Usage: sh lab/down.sh [STATE_DIR] [--purge]
set -u
LAB=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$LAB")
S=${1:-$REPO/.pgdrill/lab}
case "$S" in --purge) S=$REPO/.pgdrill/lab; PURGE=1 ;; *) PURGE=0 ;; esac
[ "${2:-}" = --purge ] && PURGE=1
[ -d "$S" ] || { echo "down: no state dir $S" >&2; exit 0; }
S=$(cd "$S" && pwd)
BIN=$(sh "$LAB/build.sh" --print-bin)
log() { echo "[$(date -u +%H:%M:%S)] down: $*" >&2; }

stop() { # name
  f="$S/run/$1.pid"; [ -f "$f" ] || return 0
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    log "stopping $1 (pid $p)"; kill "$p" 2>/dev/null
    i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.25; i=$((i+1)); done
    kill -0 "$p" 2>/dev/null && { log "$1 did not stop: SIGKILL"; kill -9 "$p" 2>/dev/null; }
  fi
  rm -f "$f"
}

stop kube-proxy
stop kubelet
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver
stop etcd

SOCK="$S/containerd/containerd.sock"
if [ -S "$SOCK" ] && [ -f "$S/run/containerd.pid" ] && kill -0 "$(cat "$S/run/containerd.pid")" 2>/dev/null; then
  for ns in k8s.io pgdrill; do
    CTR="$BIN/ctr --address $SOCK -n $ns"
    for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s KILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks rm -f "$t" >/dev/null 2>&1; done
    for c in $($CTR containers ls -q 2>/dev/null); do $CTR containers rm "$c" >/dev/null 2>&1; done
  done
fi
stop containerd
# shims of this containerd (matched on this lab's own socket path, killed by pid)
for d in /proc/[0-9]*; do
  tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -qF -- "-address $SOCK" || continue
  p=${d#/proc/}; log "killing leftover shim $p"; kill -9 "$p" 2>/dev/null
done

# kube-proxy's iptables rules
[ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup --proxy-mode=iptables >/dev/null 2>&1

# the kubelet's own chains (kube-proxy --cleanup leaves them): KUBE-FIREWALL and its jumps,
# the canary and hint chains, in every table and for both IP families
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null 2>&1 || continue
  for t in filter nat mangle; do
    for hook in INPUT OUTPUT; do
      while $ipt -t $t -D $hook -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
      $ipt -t $t -F $c 2>/dev/null && $ipt -t $t -X $c 2>/dev/null
    done
  done
done

# mounts under the state dir (kubelet volumes, overlay snapshots, netns pins), deepest first
grep -F " $S/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done

# interfaces
ip link del pgdlabbr0 2>/dev/null && log "removed bridge pgdlabbr0"
ip addr del 10.250.0.1/32 dev lo 2>/dev/null && log "removed 10.250.0.1/32 from lo"

# cgroups (cgroupRoot of the kubelet, in every v1 hierarchy: the one up.sh recorded, else
# <own memory cgroup>/pgdrill-lab), then the parent levels up.sh had to make, newest first
CGROOT=$(cat "$S/run/cgroup-root" 2>/dev/null || true)
if [ -z "$CGROOT" ]; then
  CGSELF=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
  CGROOT="${CGSELF%/}/pgdrill-lab"
fi
for h in /sys/fs/cgroup/*/; do
  d="${h%/}/${CGROOT#/}"
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [ -f "$S/run/cgroups-made" ]; then
  sort -r "$S/run/cgroups-made" | while read -r d; do rmdir "$d" 2>/dev/null; done
  rm -f "$S/run/cgroups-made"
fi

if [ "$PURGE" = 1 ]; then log "purging $S"; rm -rf "$S"; fi
log "lab down"
