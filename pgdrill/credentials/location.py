"""Where one server's backups live: `<destinationPath>/<serverName>/` at an S3 endpoint, and
the SOPS-decrypted credentials that read it. Shared by the targets (their own archive), and
by the commands that read a bucket with nothing but these (bucket-report, verify-backup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgdrill.core.errors import BadInput
from pgdrill.credentials.secret import S3Credentials

if TYPE_CHECKING:
    from pgdrill.credentials.s3client import S3Options


@dataclass(frozen=True, repr=False)
class BucketLocation:
    """`destination_path` as CNPG's `destinationPath` (s3://bucket/optional/path/),
    `server_name` as its `serverName`. Never shows a credential value."""

    destination_path: str
    server_name: str
    credentials: S3Credentials
    endpoint_url: str | None = None
    options: S3Options | None = (
        None  # CA bundle, checksums (pgdrill.credentials.s3client.S3Options)
    )

    def __post_init__(self) -> None:
        if (
            not self.destination_path.startswith("s3://")
            or not self.destination_path[5:].split("/", 1)[0]
        ):
            raise BadInput(
                f"{self.destination_path!r} is not an s3://BUCKET[/PATH] address",
                fix="give the Cluster's destinationPath, e.g. s3://backups/ or "
                "s3://backups/team-a/",
            )
        if not self.server_name or "/" in self.server_name:
            raise BadInput(
                f"serverName {self.server_name!r} is not a folder name",
                fix="give the serverName the cluster archives under (CNPG's "
                "default is the cluster's name)",
            )

    def __repr__(self) -> str:
        return f"BucketLocation({self.archive!r}, endpoint={self.endpoint!r}, <credentials>)"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint: the given one, else the credentials file's ENDPOINT."""
        return self.endpoint_url or self.credentials.endpoint

    @property
    def bucket(self) -> str:
        return self.destination_path[5:].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The key prefix of the server's folder: 'path/<serverName>/' (no bucket)."""
        path = (
            self.destination_path[5:].split("/", 1)[1] if "/" in self.destination_path[5:] else ""
        )
        path = path.strip("/")
        return f"{path}/{self.server_name}/" if path else f"{self.server_name}/"

    @property
    def archive(self) -> str:
        """`<destinationPath>/<serverName>/`, the folder barman-cloud writes under."""
        return f"s3://{self.bucket}/{self.prefix}"

    def client(self):
        """A boto3 client for this endpoint with these credentials."""
        from pgdrill.credentials.s3client import DEFAULT_OPTIONS, s3_client

        return s3_client(self.endpoint, self.credentials, self.options or DEFAULT_OPTIONS)

    def process_env(self) -> dict[str, str]:
        """The environment barman-cloud reads this location's credentials and S3 settings
        from (credential values: pass it only to the child process, never record it)."""
        from pgdrill.credentials.s3client import DEFAULT_OPTIONS

        return {
            **self.credentials.process_env(),
            **(self.options or DEFAULT_OPTIONS).process_env(self.endpoint),
        }

    def describe(self) -> dict:
        """What evidence may say about it: no credential values."""
        from pgdrill.credentials.s3client import DEFAULT_OPTIONS

        return {
            "destination_path": self.destination_path,
            "server_name": self.server_name,
            "archive": self.archive,
            "endpoint": self.endpoint,
            "credentials": self.credentials.describe(),
            "s3": (self.options or DEFAULT_OPTIONS).describe(self.endpoint),
        }
