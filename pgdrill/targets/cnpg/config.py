"""What the cnpg target reads from an experiment's configuration (usually through an
environment file: see environments/staging.example.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pgdrill.core.errors import BadInput
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
    # pgdrill's own S3 reads (listings, backup.info) from where pgdrill runs: an endpoint
    # that replaces the Cluster's in-cluster endpointURL (e.g. http://minio.ns.svc:9000 is
    # unreachable from a laptop), a CA bundle, the checksum mode (pgdrill.credentials.s3client)
    s3_endpoint_url: str | None = None
    s3_ca_bundle: str | None = None
    s3_checksums: str = "auto"
    # inheritFromIAMRole without a serviceAccountTemplate: the nodes' role reads the bucket
    restore_iam_role_from_node: bool = False

    @classmethod
    def from_configuration(cls, cfg: dict) -> CnpgConfig:
        cluster = str(cfg.get("cluster") or "")
        namespace = str(cfg.get("namespace") or "")
        if not cluster or not namespace:
            raise BadInput(
                "the cnpg target needs the source Cluster's name and namespace",
                fix="set `cluster` and `namespace` in the environment file (or the "
                "experiment's configuration)",
            )
        check_name(cluster, "cluster", cluster=True)
        connection = str(cfg.get("cnpg_connection") or default_connection())
        if connection not in CONNECTIONS:
            raise BadInput(
                f"cnpg_connection {connection!r} is not one of {', '.join(CONNECTIONS)}",
                fix="use service inside the cluster, port-forward from a workstation",
            )
        restore_cluster = str(cfg.get("restore_cluster") or f"{cluster}-restore")
        check_name(restore_cluster, "restore_cluster", cluster=True)
        return cls(
            cluster=cluster,
            namespace=namespace,
            restore_namespace=str(cfg.get("restore_namespace") or "restore-test"),
            restore_cluster=restore_cluster,
            connection=connection,
            credentials_file=cfg.get("s3_credentials_file"),
            age_identity_file=cfg.get("age_identity_file"),
            operator_namespace=str(cfg.get("cnpg_operator_namespace") or "cnpg-system"),
            sslmode=str(cfg.get("sslmode") or "prefer"),
            s3_endpoint_url=cfg.get("s3_endpoint_url") or None,
            s3_ca_bundle=cfg.get("s3_ca_bundle") or None,
            s3_checksums=str(cfg.get("s3_checksums") or "auto"),
            restore_iam_role_from_node=_flag(cfg.get("restore_iam_role_from_node")),
        )

    def s3_options(self):
        from pgdrill.credentials.s3client import S3Options

        return S3Options(self.s3_ca_bundle, self.s3_checksums)

    def s3_endpoint(self, cluster_endpoint: str | None, credentials_endpoint: str) -> str:
        """The endpoint pgdrill's own S3 reads use: s3_endpoint_url when set, else the
        Cluster's endpointURL, else the credentials file's ENDPOINT."""
        return self.s3_endpoint_url or cluster_endpoint or credentials_endpoint

    @property
    def selector(self) -> str:
        return f"cnpg.io/cluster={self.cluster},cnpg.io/podRole=instance"

    @property
    def restore_selector(self) -> str:
        return f"cnpg.io/cluster={self.restore_cluster},cnpg.io/podRole=instance"


def _flag(value) -> bool:
    """A boolean setting as YAML or an environment variable gives it."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
