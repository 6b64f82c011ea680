"""The one way pgdrill talks to an object store: boto3 with credentials from a decrypted SOPS
file (never from the environment or the configuration)."""

from __future__ import annotations

from urllib.parse import urlparse

import boto3
from botocore.config import Config

from pgdrill.credentials import S3Credentials


def s3_client(endpoint_url: str, credentials: S3Credentials):
    """A boto3 S3 client for `endpoint_url` with `credentials`; short timeouts, two tries."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name=credentials.region,
        config=Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 2}),
    )


def split_destination(destination_path: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix/")."""
    parsed = urlparse(destination_path)
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix
