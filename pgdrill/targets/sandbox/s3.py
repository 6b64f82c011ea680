"""A real S3 endpoint on loopback: moto's server, kept alive as long as the sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.errors import TargetError
from pgdrill.procs import spawn_detached
from pgdrill.waiting import poll_until

# moto accepts any credentials; these are not secrets, they only satisfy the AWS SDK.
# Real S3 credentials come from SOPS/age files (cnpg target), never from here.
SANDBOX_ACCESS_KEY_ID = "pgdrill-sandbox"
SANDBOX_REGION = "us-east-1"


def sandbox_credentials_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SANDBOX_ACCESS_KEY_ID,
        "AWS_DEFAULT_REGION": SANDBOX_REGION,
    }


def start_server(port: int, log: Path) -> int:
    """Start moto's S3 server detached from our session; return its pid."""
    return spawn_detached([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                           "-p", str(port)], log)


def client(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=SANDBOX_ACCESS_KEY_ID,
        aws_secret_access_key=SANDBOX_ACCESS_KEY_ID,
        region_name=SANDBOX_REGION,
        config=Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 2}),
    )


def wait_and_create_bucket(endpoint_url: str, bucket: str, timeout: float = 30) -> None:
    s3 = client(endpoint_url)

    def ready() -> bool:
        try:
            s3.list_buckets()
            return True
        except (BotoCoreError, ClientError):
            return False

    poll_until(ready, timeout=timeout, what=f"the S3 endpoint at {endpoint_url}")
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                              "BucketAlreadyExists"):
            raise TargetError(f"could not create bucket {bucket!r}: {exc}") from exc
