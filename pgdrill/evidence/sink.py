"""The evidence sink: run folders and the run ledger kept in an S3 bucket, so a drill's
evidence outlives the pod (or laptop) that ran it and the non-prod-first gate works across
runners.

    evidence_sink: s3://bucket/prefix/        # in an environment file's settings

Layout: `<prefix>ledger.jsonl` and `<prefix><run id>/<file>`, the same as a local reports
folder. After every activity the run folder is uploaded; at the end, the run folder and the
ledger. Before a drill (and before `pgdrill runs`, `ledger verify`, `backups`) the ledger and the
runs' receipts are fetched, so the local reports folder is a cache: delete it and nothing is
lost. Credentials: a SOPS/age file (`evidence_sink_credentials`, else the target's own
cnpg-backup-s3 file). Never inside the source's backup path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.core.console import say
from pgdrill.core.errors import BadInput, PreflightRefused, TargetError
from pgdrill.credentials.s3client import s3_client, split_destination
from pgdrill.credentials.secret import S3Credentials, redact
from pgdrill.evidence.ledger import EVIDENCE_FILES, RECEIPT_NAME, ledger_path

SINK_KEY = "evidence_sink"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a run folder's files are small; acks.csv is the largest
SKIP = {"run.lock", "context.lock"}  # lock files: empty, only meaningful to a running drill


@dataclass(frozen=True)
class EvidenceSink:
    url: str
    bucket: str
    prefix: str
    credentials: S3Credentials

    @classmethod
    def parse(cls, url: str, credentials: S3Credentials) -> EvidenceSink:
        if not str(url).startswith("s3://"):
            raise BadInput(
                f"evidence_sink {url!r} is not an s3:// URL", fix="use s3://bucket/prefix/"
            )
        bucket, prefix = split_destination(str(url))
        if not bucket:
            raise BadInput(f"evidence_sink {url!r} names no bucket", fix="use s3://bucket/prefix/")
        return cls(
            url=f"s3://{bucket}/{prefix}", bucket=bucket, prefix=prefix, credentials=credentials
        )

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint

    def _client(self):
        return s3_client(self.endpoint, self.credentials)

    def _fail(self, what: str, exc: Exception) -> TargetError:
        message = redact(str(exc), self.credentials.secret_values())
        return TargetError(
            f"evidence sink {self.url} ({self.endpoint}): cannot {what}: {message}",
            fix=f"check the bucket and the credentials in {self.credentials.source}",
        )

    def check_outside(self, archive: str) -> None:
        """Refuse a sink inside the source's backup path `<destinationPath>/<serverName>/`,
        or one that contains it."""
        bucket, prefix = split_destination(archive)
        if bucket == self.bucket and (
            prefix.startswith(self.prefix) or self.prefix.startswith(prefix)
        ):
            raise PreflightRefused(
                f"the evidence sink {self.url} overlaps the source's backup path {archive}",
                fix="use another bucket or prefix for evidence_sink",
            )

    def describe(self) -> dict:
        return {"url": self.url, "endpoint": self.endpoint, "credentials": self.credentials.source}

    # -- upload --------------------------------------------------------------------------
    def upload_run(self, run_dir: Path) -> int:
        """Every file of the run folder (recursively), but its lock; returns how many."""
        client, count = self._client(), 0
        try:
            for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
                if (
                    path.name in SKIP
                    or path.name.startswith(".")
                    or path.stat().st_size > MAX_FILE_BYTES
                ):
                    continue
                key = f"{self.prefix}{run_dir.name}/{path.relative_to(run_dir).as_posix()}"
                client.upload_file(str(path), self.bucket, key)
                count += 1
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._fail(f"upload run {run_dir.name}", exc) from None
        return count

    def upload_ledger(self, reports: Path) -> None:
        path = ledger_path(reports)
        if not path.exists():
            return
        try:
            self._client().upload_file(str(path), self.bucket, f"{self.prefix}{path.name}")
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._fail("upload the ledger", exc) from None

    # -- download ------------------------------------------------------------------------
    def pull_ledger(self, reports: Path) -> int:
        """Bring the sink's ledger and the runs' receipts into `reports` (the local folder is a
        cache of the sink). The local ledger must be a prefix of the sink's or the other way
        round; two ledgers that diverge refuse, naming both. Returns the number of lines the
        local ledger gained."""
        client = self._client()
        local = ledger_path(reports)
        try:
            remote = client.get_object(Bucket=self.bucket, Key=f"{self.prefix}{local.name}")[
                "Body"
            ].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return 0
            raise self._fail("read the ledger", exc) from None
        except BotoCoreError as exc:
            raise self._fail("read the ledger", exc) from None
        mine = local.read_bytes() if local.exists() else b""
        if remote == mine or mine.startswith(remote):
            return 0
        if not remote.startswith(mine):
            raise PreflightRefused(
                f"the run ledger {local} and the evidence sink's {self.url}{local.name} differ "
                f"(neither continues the other)",
                fix="keep one: move the local reports folder away to use the sink's ledger",
            )
        reports.mkdir(parents=True, exist_ok=True)
        self._pull_run_files(client, reports)  # the run's files, as its ledger line hashed them
        local.write_bytes(remote)
        gained = remote[len(mine) :].count(b"\n")
        say(f"evidence sink {self.url}: the ledger has {gained} more line(s) than {local}")
        return gained

    def _pull_run_files(self, client, reports: Path) -> None:
        """Each run's receipt and the files its ledger line hashes (evidence, journal), when
        not here: `ledger verify` then checks them as if the run had run here."""
        wanted = {RECEIPT_NAME, *EVIDENCE_FILES.values()}
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(self.prefix) :]
                    run_id, _, name = rest.partition("/")
                    if name not in wanted or run_id in ("", ".", ".."):
                        continue
                    target = reports / run_id / name
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        client.download_file(self.bucket, obj["Key"], str(target))
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._fail("read the runs' receipts", exc) from None


def sink_from_configuration(configuration: dict, target=None) -> EvidenceSink | None:
    """The configured sink, or None. Credentials: `evidence_sink_credentials` (a SOPS file),
    else the S3 credentials file of the environment, else the target's own."""
    url = configuration.get(SINK_KEY)
    if not url:
        return None
    from pgdrill.credentials.secret import load_s3_credentials

    identities = (
        [configuration["age_identity_file"]] if configuration.get("age_identity_file") else None
    )
    path = configuration.get("evidence_sink_credentials") or configuration.get(
        "s3_credentials_file"
    )
    if path:
        credentials = load_s3_credentials(path, identities)
    elif target is not None and hasattr(target, "s3_credentials"):
        credentials = target.s3_credentials()
    else:
        raise BadInput(
            f"evidence_sink {url} needs S3 credentials",
            fix="set evidence_sink_credentials to a SOPS/age file (or credentials: "
            "in the environment file)",
        )
    return EvidenceSink.parse(str(url), credentials)
