"""The one way pgdrill talks to an object store: boto3 with credentials from a decrypted SOPS
file (never from the environment or the configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from pgdrill.core.errors import BadInput
from pgdrill.credentials.secret import S3Credentials

CHECKSUM_MODES = ("auto", "when_supported", "when_required")


@dataclass(frozen=True)
class S3Options:
    """How pgdrill (and the barman-cloud it runs) talks to an S3 endpoint, beyond where and
    with which keys:

    - `ca_bundle`: a PEM file of the CA that signed the endpoint's certificate (a private
      MinIO or Ceph RGW); None: the system's trust store.
    - `checksums`: boto3 >= 1.36 sends CRC checksums on every upload and validates them on
      downloads ("when_supported"); S3-compatible stores (Cloudflare R2, Hetzner, Ceph RGW,
      older MinIO) reject or mangle some of those requests. "when_required" sends them only
      where the API requires them. "auto" (default): when_supported for AWS endpoints
      (amazonaws.com, or none given), when_required for any other endpoint."""

    ca_bundle: str | None = None
    checksums: str = "auto"

    def __post_init__(self) -> None:
        if self.checksums not in CHECKSUM_MODES:
            raise BadInput(
                f"s3_checksums {self.checksums!r} is not one of {', '.join(CHECKSUM_MODES)}",
                fix="use auto (the default), when_supported or when_required",
            )
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise BadInput(
                f"the S3 CA bundle {self.ca_bundle} does not exist",
                fix="give the PEM file of the CA that signed the endpoint's "
                "certificate (s3_ca_bundle / --ca-bundle)",
            )

    def checksum_mode(self, endpoint_url: str | None) -> str:
        if self.checksums != "auto":
            return self.checksums
        host = urlparse(endpoint_url or "").hostname or ""
        aws = not endpoint_url or host == "amazonaws.com" or host.endswith(".amazonaws.com")
        return "when_supported" if aws else "when_required"

    def process_env(self, endpoint_url: str | None) -> dict[str, str]:
        """The same settings for barman-cloud, whose boto3 reads them from the environment."""
        mode = self.checksum_mode(endpoint_url)
        env = {"AWS_REQUEST_CHECKSUM_CALCULATION": mode, "AWS_RESPONSE_CHECKSUM_VALIDATION": mode}
        if self.ca_bundle:
            env["AWS_CA_BUNDLE"] = str(Path(self.ca_bundle).resolve())
        return env

    def describe(self, endpoint_url: str | None) -> dict:
        return {"ca_bundle": self.ca_bundle, "checksums": self.checksum_mode(endpoint_url)}


DEFAULT_OPTIONS = S3Options()


def s3_client(endpoint_url: str, credentials: S3Credentials, options: S3Options = DEFAULT_OPTIONS):
    """A boto3 S3 client for `endpoint_url` with `credentials` and `options`; short
    timeouts, two tries."""
    mode = options.checksum_mode(endpoint_url)
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name=credentials.region,
        verify=options.ca_bundle if options.ca_bundle else None,
        config=Config(
            connect_timeout=2,
            read_timeout=30,
            retries={"max_attempts": 2},
            request_checksum_calculation=mode,
            response_checksum_validation=mode,
        ),
    )


def in_cluster_endpoint(endpoint_url: str | None) -> bool:
    """Whether an endpoint names a Kubernetes Service (`*.svc`, `*.svc.cluster.local`, or a
    bare name): reachable from pods, not from a workstation."""
    host = urlparse(endpoint_url or "").hostname or ""
    return bool(host) and (
        host.endswith((".svc", ".svc.cluster.local")) or "." not in host and host != "localhost"
    )


def endpoint_fix(endpoint_url: str | None, override: str | None = None) -> str:
    """The fix for an S3 endpoint pgdrill cannot reach, naming the outside-endpoint setting
    when the endpoint is an in-cluster Service name."""
    if in_cluster_endpoint(endpoint_url) and not override:
        return (
            f"{endpoint_url} is an in-cluster Service address, unreachable from outside "
            f"the cluster: set s3_endpoint_url in the environment file's settings (or "
            f"--endpoint-url) to the address pgdrill can reach, e.g. a port-forward or "
            f"an ingress"
        )
    return (
        "check the endpoint (s3_endpoint_url / --endpoint-url, else the Cluster's "
        "endpointURL or the credentials file's ENDPOINT) and the network to it"
    )


def split_destination(destination_path: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix/")."""
    parsed = urlparse(destination_path)
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix
