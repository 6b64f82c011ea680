"""A real S3 endpoint on loopback: moto's server, kept alive as long as the sandbox.

moto keeps every object in memory: when its process dies, the sandbox's base backups and WAL
archive die with it, and a server restarted on the same port starts empty. A marker object
written at creation (`<cluster>/pgdrill-sandbox.json`) tells an emptied store from ours."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.core.errors import TargetError
from pgdrill.core.procs import pid_alive, spawn_detached
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.s3client import s3_client as client
from pgdrill.credentials.secret import S3Credentials, redact
from pgdrill.targets.sandbox.state import process_runs

SANDBOX_REGION = "us-east-1"


def new_sandbox_credentials(endpoint_url: str, bucket: str) -> dict[str, str]:
    """Fresh random credentials for a new sandbox (moto accepts any): they go straight into
    the sandbox's SOPS-encrypted `cnpg-backup-s3` file, and every drill reads them from
    there, the way it reads a real cluster's."""
    return {
        "ACCESS_KEY_ID": "PGDRILL" + secrets.token_hex(8).upper(),
        "ACCESS_SECRET_KEY": secrets.token_urlsafe(30),
        "BUCKET": bucket,
        "ENDPOINT": endpoint_url,
        "REGION": SANDBOX_REGION,
    }


def start_server(port: int, log: Path) -> int:
    """Start moto's S3 server detached from our session; return its pid."""
    return spawn_detached(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log
    )


def server_running(pid: int | None, port: int) -> bool:
    """The recorded moto pid still runs moto on `port` (cheap: no S3 round trip)."""
    return process_runs(pid, "moto.server", f"-p {port} ")


def wait_ready(
    endpoint_url: str, pid: int, credentials: S3Credentials, timeout: float = 30
) -> None:
    """Wait until the server answers S3 requests; fail fast when its process exits."""
    s3 = client(endpoint_url, credentials)

    def ready() -> bool:
        if not pid_alive(pid):
            raise TargetError(
                f"the S3 server (pid {pid}) exited before answering at {endpoint_url}"
            )
        try:
            s3.list_buckets()
            return True
        except (BotoCoreError, ClientError):
            return False

    poll_until(ready, timeout=timeout, what=f"the S3 endpoint at {endpoint_url}")


MARKER = "pgdrill-sandbox.json"


def marker_key(server_name: str) -> str:
    return f"{server_name}/{MARKER}"


def write_marker(
    endpoint_url: str, bucket: str, server_name: str, content: dict, credentials: S3Credentials
) -> None:
    client(endpoint_url, credentials).put_object(
        Bucket=bucket,
        Key=marker_key(server_name),
        Body=json.dumps(content, sort_keys=True).encode(),
        ContentType="application/json",
    )


def emptied(
    endpoint_url: str, bucket: str, server_name: str, credentials: S3Credentials
) -> str | None:
    """Why the store no longer holds this sandbox's objects, or None when it does.

    Emptied = the bucket is gone, or neither the marker nor any object (backup, WAL) is left
    under `<server_name>/` (a sandbox from before the marker still counts as intact while its
    backups are there). Raises TargetError when the endpoint does not answer."""
    s3 = client(endpoint_url, credentials)
    where = f"s3://{bucket}/{server_name}/"
    try:
        s3.head_object(Bucket=bucket, Key=marker_key(server_name))
        return None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code not in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise TargetError(
                f"cannot read {where}{MARKER} at {endpoint_url}: {_clean(exc, credentials)}"
            ) from exc
    except BotoCoreError as exc:
        raise TargetError(
            f"the S3 endpoint at {endpoint_url} does not answer: {_clean(exc, credentials)}"
        ) from exc
    try:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{server_name}/", MaxKeys=1)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return f"bucket {bucket!r} does not exist at {endpoint_url}"
        raise TargetError(
            f"cannot list {where} at {endpoint_url}: {_clean(exc, credentials)}"
        ) from exc
    except BotoCoreError as exc:
        raise TargetError(
            f"the S3 endpoint at {endpoint_url} does not answer: {_clean(exc, credentials)}"
        ) from exc
    if listing.get("KeyCount", 0) == 0:
        return f"nothing is stored under {where} at {endpoint_url} (its marker {MARKER} is gone)"
    return None


def _clean(exc: Exception, credentials: S3Credentials) -> str:
    """An S3 error for a message: without any credential value it might quote."""
    return redact(str(exc), credentials.secret_values())


def wait_and_create_bucket(
    endpoint_url: str, bucket: str, pid: int, credentials: S3Credentials, timeout: float = 30
) -> None:
    """Wait for the new server (pid `pid`) to answer, then create `bucket`."""
    wait_ready(endpoint_url, pid, credentials, timeout=timeout)
    try:
        client(endpoint_url, credentials).create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise TargetError(
                f"could not create bucket {bucket!r}: {_clean(exc, credentials)}"
            ) from exc
