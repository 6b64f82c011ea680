"""The objects the fake CNPG operator seeds on start, in CNPG's shape: the namespaces and the
operator pod, the source Cluster (plugin style: and its ObjectStore), its credentials Secret and
ScheduledBackup, the app/superuser Secrets and the -rw/-ro/-r Services, one PVC + pod per
sandbox instance; and the pod and PVC documents, also used for recreated and recovered pods."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from pgdrill.targets.cnpg.manifests import read_source
from pgdrill.targets.sandbox.cluster import SandboxCluster

from .cnpg import (
    CNPG_API,
    HEALTHY,
    OPERATOR_NS,
    OPERATOR_POD,
    PLUGIN,
    PLUGIN_API,
    PVC_PROTECTION,
    TIMELINE_SQL,
    b64,
    micro,
    seconds,
)
from .kinds import (
    CLUSTERS,
    NAMESPACES,
    OBJECT_STORES,
    PODS,
    PVCS,
    SCHEDULED_BACKUPS,
    SECRETS,
    SERVICES,
)
from .rebuild import FINALIZER


class SeedMixin:
    """The seeding and the documents of the Cluster's pods and PVCs. A mixin of
    `FakeCnpgOperator` (operator.py): it uses the operator's state and helpers (`store`,
    `sandbox`, `_credentials`, `_create`, `_condition`, `_log`, `_recovery_window`, ...) and
    sets `major`, `image`, `source` and `pods`."""

    @staticmethod
    def _owned(cluster: dict, name: str, labels: dict | None = None, **meta) -> dict:
        """metadata of an object the Cluster owns (garbage-collected with it)."""
        m = cluster["metadata"]
        return {
            "name": name,
            "namespace": m["namespace"],
            "labels": {"cnpg.io/cluster": m["name"], **(labels or {})},
            "ownerReferences": [
                {
                    "apiVersion": CNPG_API,
                    "kind": "Cluster",
                    "name": m["name"],
                    "uid": m["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            **meta,
        }

    def _seed(self, sc: SandboxCluster) -> None:
        """What a CNPG install and the source Cluster would have made, on the sandbox."""
        for ns in (self.namespace, self.restore_namespace, OPERATOR_NS):
            self._create(NAMESPACES, {"metadata": {"name": ns}})
        self._create(
            PODS,
            {
                "metadata": {
                    "name": OPERATOR_POD,
                    "namespace": OPERATOR_NS,
                    "labels": {
                        "app.kubernetes.io/name": "cloudnative-pg",
                        "app.kubernetes.io/instance": "cnpg",
                    },
                },
                "spec": {
                    "containers": [
                        {"name": "manager", "image": "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0"}
                    ]
                },
                "status": self._pod_status("10.244.0.2"),
            },
        )
        version = sc.query_one(sc.state.primary_name, "SHOW server_version").split()[0]
        self.major = int(version.split(".")[0])
        self.image = (
            f"ghcr.io/cloudnative-pg/postgresql:{version}-"
            f"{'system' if self.style == 'in-tree' else 'minimal'}-trixie"
        )
        cluster = self._seed_cluster(sc.state)
        self._app_role(sc, self._secrets_and_services(cluster))
        self._seed_instances(sc, cluster)
        self._recovery_window(self.sandbox.list_backups())
        self._log(
            f"seeded Cluster {self.cluster} ({self.style}) on sandbox instances {self.pods}",
            logger="setup",
        )

    def _seed_cluster(self, state) -> dict:
        """The source Cluster (plugin: and its ObjectStore) archiving to the sandbox's real
        s3://<bucket>/<sandbox serverName>/, its credentials Secret, its ScheduledBackup."""
        c = self._credentials
        self._create(
            SECRETS,
            {
                "metadata": {"name": "cnpg-backup-s3", "namespace": self.namespace},
                "data": b64(
                    {
                        "ACCESS_KEY_ID": c.access_key_id,
                        "ACCESS_SECRET_KEY": c.secret_access_key,
                        "REGION": c.region,
                        "BUCKET": c.bucket,
                        "ENDPOINT": c.endpoint,
                    }
                ),
            },
        )
        archive = {
            "destinationPath": f"s3://{state.bucket}/",
            "endpointURL": state.endpoint_url,
            "s3Credentials": {
                field: {"name": "cnpg-backup-s3", "key": key}
                for field, key in (
                    ("accessKeyId", "ACCESS_KEY_ID"),
                    ("region", "REGION"),
                    ("secretAccessKey", "ACCESS_SECRET_KEY"),
                )
            },
            "wal": {"compression": "gzip"},
            "data": {"compression": "gzip"},
        }
        spec = {
            "instances": len(state.instances),
            "imageName": self.image,
            "storage": {"size": "1Gi"},
            "enableSuperuserAccess": True,
            "failoverDelay": 0,
            "switchoverDelay": 3600,
        }
        method, store = {"method": "barmanObjectStore"}, None
        if self.style == "in-tree":
            spec["backup"] = {
                "retentionPolicy": "30d",
                "barmanObjectStore": {**archive, "serverName": state.archive_server},
            }
        else:  # serverName (the sandbox's, unlike the Cluster's name) goes with the plugin
            spec["plugins"] = [
                {
                    "name": PLUGIN,
                    "isWALArchiver": True,
                    "parameters": {
                        "barmanObjectName": f"{self.cluster}-store",
                        "serverName": state.archive_server,
                    },
                }
            ]
            store = self._create(
                OBJECT_STORES,
                {
                    "apiVersion": PLUGIN_API,
                    "kind": "ObjectStore",
                    "metadata": {"name": f"{self.cluster}-store", "namespace": self.namespace},
                    "spec": {"retentionPolicy": "30d", "configuration": archive},
                },
            )
            method = {"method": "plugin", "pluginConfiguration": {"name": PLUGIN}}
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self._create(
            SCHEDULED_BACKUPS,
            {
                "apiVersion": CNPG_API,
                "kind": "ScheduledBackup",
                "metadata": {"name": f"{self.cluster}-daily", "namespace": self.namespace},
                "spec": {
                    "schedule": "0 0 0 * * *",
                    "cluster": {"name": self.cluster},
                    "backupOwnerReference": "self",
                    **method,
                },
                "status": {
                    "lastCheckTime": seconds(),
                    "lastScheduleTime": seconds(midnight),
                    "nextScheduleTime": seconds(midnight + timedelta(days=1)),
                },
            },
        )
        # the finalizer holds a deleted Cluster until its instances are destroyed (rebuild.py)
        cluster = self._create(
            CLUSTERS,
            {
                "apiVersion": CNPG_API,
                "kind": "Cluster",
                "metadata": {
                    "name": self.cluster,
                    "namespace": self.namespace,
                    "finalizers": [FINALIZER],
                },
                "spec": spec,
            },
        )
        self._source_uid = cluster["metadata"]["uid"]
        self.source = read_source(cluster, store)  # the sandbox's real archive
        return cluster

    def _seed_instances(self, sc: SandboxCluster, cluster: dict) -> None:
        """A PVC + pod per sandbox instance, serials in instance order; the Cluster's status."""
        state = sc.state
        names = sorted(state.instances, key=lambda n: int(n.rsplit("-", 1)[1]))
        self.pods = {f"{self.cluster}-{serial}": name for serial, name in enumerate(names, 1)}
        primary = self.pod_of(state.primary_name)
        for pod in self.pods:
            self._create(PVCS, self._pvc(cluster, pod))
            self._create(PODS, self._pod(cluster, pod, "primary" if pod == primary else "replica"))
        now, pods = micro(), sorted(self.pods)
        self.store.patch(
            CLUSTERS,
            self.namespace,
            self.cluster,
            {
                "status": {
                    "currentPrimary": primary,
                    "currentPrimaryTimestamp": now,
                    "targetPrimary": primary,
                    "targetPrimaryTimestamp": now,
                    "phase": HEALTHY,
                    "instances": len(pods),
                    "readyInstances": len(pods),
                    "instanceNames": pods,
                    "latestGeneratedNode": len(pods),
                    "instancesStatus": {"healthy": pods, "failed": []},
                    "image": self.image,
                    "timelineID": sc.query_one(state.primary_name, TIMELINE_SQL),
                    "writeService": f"{self.cluster}-rw",
                    "readService": f"{self.cluster}-r",
                    "conditions": [
                        self._condition(None, "Ready", True, "ClusterIsReady", "Cluster is Ready"),
                        self._condition(
                            None,
                            "ContinuousArchiving",
                            True,
                            "ContinuousArchivingSuccess",
                            "Continuous archiving is working",
                        ),
                    ],
                }
            },
        )

    def _app_role(self, sc: SandboxCluster, password: str) -> None:
        """CNPG's initdb (pkg/management/postgres/initdb.go): `CREATE ROLE app LOGIN` with the
        `-app` Secret's password, the `app` database owned by it, and no other grant — so
        `app` cannot write a table the superuser created. (The sandbox's pg_hba trusts local
        TCP: the password is set but not checked, unlike a real cluster's.)"""
        from psycopg import sql

        with sc.connect(sc.state.primary_name) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE app LOGIN NOSUPERUSER PASSWORD {}").format(
                    sql.Literal(password)
                )
            )
            conn.execute("ALTER DATABASE app OWNER TO app")

    def _secrets_and_services(self, cluster: dict) -> str:
        """`<c>-app` (user `app`, CNPG's application owner: no superuser) and `<c>-superuser`
        (enableSuperuserAccess, user postgres) and Services -rw/-ro/-r (§8); returns the app
        password."""
        ns, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        host = f"{name}-rw"
        app_password = ""
        for user_type, db, user in (("app", "app", "app"), ("superuser", "*", "postgres")):
            pw = secrets.token_urlsafe(24)
            if user_type == "app":
                app_password = pw
            uri = f"postgresql://{user}:{pw}@{host}.{ns}:5432/{db}"
            self._create(
                SECRETS,
                {
                    "type": "kubernetes.io/basic-auth",
                    "metadata": self._owned(
                        cluster, f"{name}-{user_type}", {"cnpg.io/userType": user_type}
                    ),
                    "data": b64(
                        {
                            "username": user,
                            "user": user,
                            "password": pw,
                            "dbname": db,
                            "host": host,
                            "port": "5432",
                            "uri": uri,
                            "pgpass": f"{host}:5432:{db}:{user}:{pw}\n",
                            "jdbc-uri": f"jdbc:postgresql://{host}.{ns}:5432/{db}?password="
                            f"{pw}&user={user}",
                        }
                    ),
                },
            )
        for suffix, selector in (
            ("rw", {"cnpg.io/instanceRole": "primary"}),
            ("ro", {"cnpg.io/instanceRole": "replica"}),
            ("r", {"cnpg.io/podRole": "instance"}),
        ):
            self._create(
                SERVICES,
                {
                    "metadata": self._owned(cluster, f"{name}-{suffix}"),
                    "spec": {
                        "type": "ClusterIP",
                        "selector": {"cnpg.io/cluster": name, **selector},
                        "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}],
                    },
                },
            )
        return app_password

    def _pvc(self, cluster: dict, name: str) -> dict:
        return {
            "metadata": self._owned(
                cluster,
                name,
                {"cnpg.io/instanceName": name, "cnpg.io/pvcRole": "PG_DATA"},
                finalizers=[PVC_PROTECTION],
                annotations={"cnpg.io/pvcStatus": "ready"},
            ),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
        }

    @staticmethod
    def _pod_status(ip: str) -> dict:
        now = seconds()
        return {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
        }

    def _pod(self, cluster: dict, name: str, role: str) -> dict:
        status = self._pod_status(
            f"10.244.{1 + len(cluster['metadata']['namespace'])}.{10 + int(name.rsplit('-', 1)[1])}"
        )
        status["containerStatuses"] = [
            {
                "name": "postgres",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": self.image,
                "imageID": self.image,
                "state": {"running": {"startedAt": status["startTime"]}},
            }
        ]
        return {
            "metadata": self._owned(
                cluster,
                name,
                {
                    "cnpg.io/instanceName": name,
                    "cnpg.io/podRole": "instance",
                    "cnpg.io/instanceRole": role,
                    "role": role,
                },
            ),
            "spec": {
                "hostname": name,
                "nodeName": "fake-node-1",
                "containers": [
                    {
                        "name": "postgres",
                        "image": self.image,
                        "ports": [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}],
                    }
                ],
                "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": name}}],
            },
            "status": status,
        }
