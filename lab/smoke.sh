#!/bin/sh
# Smoke test of a running lab: a busybox pod (local image, never pulled) must
# reach Running and print to its log. Usage: sh lab/smoke.sh [STATE_DIR]
set -eu
LAB=$(cd "$(dirname "$0")" && pwd)
S=${1:-$(dirname "$LAB")/.pgdrill/lab}
BIN=$(sh "$LAB/build.sh" --print-bin)
K="$BIN/kubectl --kubeconfig $S/kubeconfig"
$K get nodes -o wide
$K apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: lab-smoke, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: bb
    image: pgdrill.local/busybox:lab
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo smoke-ok; ip -4 addr show eth0 | grep inet; sleep 3600"]
YAML
$K wait --for=condition=Ready pod/lab-smoke --timeout=120s
$K get pod lab-smoke -o wide
$K logs lab-smoke
