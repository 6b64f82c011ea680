"""What the cnpg target reads from an experiment's configuration (usually through an
environment file: see environments/staging.example.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pgdrill.errors import BadInput
from pgdrill.targets.cnpg.manifests import check_name

PORT_FORWARD, SERVICE = "port-forward", "service"
CONTAINER = "postgres"  # the PostgreSQL container of CNPG's instance pods
CONNECTIONS = (PORT_FORWARD, SERVICE)


def default_connection() -> str:
    """In a pod (a scheduled drill) PostgreSQL is reached through the Services; from a
    workstation through port-forwards."""
    return SERVICE if os.environ.get("KUBERNETES_SERVICE_HOST") else PORT_FORWARD


@dataclass(frozen=True)
class CnpgConfig:
    """`cluster`/`namespace`: the source Cluster. `restore_namespace`: where the isolated copy
    is created (must exist; default restore-test). `connection`: how PostgreSQL is reached —
    "service" (in-cluster: `<cluster>-rw.<namespace>.svc`, pod IPs) or "port-forward" (from a
    workstation, through the API server). `credentials_file`: the SOPS/age file of the
    cnpg-backup-s3 Secret (S3 credentials for restores and bucket listings)."""

    cluster: str
    namespace: str
    restore_namespace: str = "restore-test"
    restore_cluster: str = ""
    connection: str = PORT_FORWARD
    credentials_file: str | None = None
    age_identity_file: str | None = None
    operator_namespace: str = "cnpg-system"
    port: int = 5432
    sslmode: str = "prefer"

    @classmethod
    def from_configuration(cls, cfg: dict) -> "CnpgConfig":
        cluster = str(cfg.get("cluster") or "")
        namespace = str(cfg.get("namespace") or "")
        if not cluster or not namespace:
            raise BadInput("the cnpg target needs the source Cluster's name and namespace",
                           fix="set `cluster` and `namespace` in the environment file (or the "
                               "experiment's configuration)")
        check_name(cluster, "cluster", cluster=True)
        connection = str(cfg.get("cnpg_connection") or default_connection())
        if connection not in CONNECTIONS:
            raise BadInput(f"cnpg_connection {connection!r} is not one of "
                           f"{', '.join(CONNECTIONS)}",
                           fix="use service inside the cluster, port-forward from a workstation")
        restore_cluster = str(cfg.get("restore_cluster") or f"{cluster}-restore")
        check_name(restore_cluster, "restore_cluster", cluster=True)
        return cls(cluster=cluster, namespace=namespace,
                   restore_namespace=str(cfg.get("restore_namespace") or "restore-test"),
                   restore_cluster=restore_cluster, connection=connection,
                   credentials_file=cfg.get("s3_credentials_file"),
                   age_identity_file=cfg.get("age_identity_file"),
                   operator_namespace=str(cfg.get("cnpg_operator_namespace") or "cnpg-system"),
                   sslmode=str(cfg.get("sslmode") or "prefer"))

    @property
    def selector(self) -> str:
        return f"cnpg.io/cluster={self.cluster},cnpg.io/podRole=instance"

    @property
    def restore_selector(self) -> str:
        return f"cnpg.io/cluster={self.restore_cluster},cnpg.io/podRole=instance"
