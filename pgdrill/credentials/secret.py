"""S3 credentials, only ever from a SOPS/age-encrypted `cnpg-backup-s3` Secret manifest.

The file is what users keep in Git and Flux decrypts in the cluster: a Kubernetes Secret
encrypted with `encrypted_regex: ^(data|stringData)$`, keys ACCESS_KEY_ID, ACCESS_SECRET_KEY,
BUCKET, ENDPOINT, REGION (`data` values base64 once decrypted, `stringData` plain). pgdrill
decrypts it natively (pgdrill.credentials.sops), MAC verified, and hands the values to boto3 and
barman-cloud through the environment of the processes that need them — never through
configuration, logs, evidence or exception messages."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

from pgdrill.core.errors import BadInput

SECRET_NAME = "cnpg-backup-s3"
REQUIRED_KEYS = ("ACCESS_KEY_ID", "ACCESS_SECRET_KEY", "BUCKET", "ENDPOINT", "REGION")
SECRET_KEYS = ("ACCESS_KEY_ID", "ACCESS_SECRET_KEY")
ENCRYPTED_REGEX = "^(data|stringData)$"
SOPS_WAY = (
    "keep S3 credentials in a SOPS/age-encrypted `cnpg-backup-s3` Secret (sops "
    "--encrypt --age <recipient> --encrypted-regex '^(data|stringData)$') and point "
    "pgdrill at the file: the environment file's `credentials:` or the experiment's "
    'secrets block {"type": "sops", "file": ...}'
)


@dataclass(frozen=True, repr=False)
class S3Credentials:
    """Decrypted credentials. Its repr and `describe()` never show a secret value."""

    access_key_id: str
    secret_access_key: str
    bucket: str
    endpoint: str
    region: str
    source: str
    recipients: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"S3Credentials(source={self.source!r}, bucket={self.bucket!r}, <redacted>)"

    def process_env(self) -> dict[str, str]:
        """The environment boto3 and barman-cloud read their credentials from."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def secret_values(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key)

    def describe(self) -> dict:
        """What evidence may say about them: where they came from, never what they are."""
        from pgdrill.core.files import shown_path

        return {
            "file": shown_path(self.source),
            "recipients": list(self.recipients),
            "keys": list(REQUIRED_KEYS),
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "region": self.region,
        }


def secret_manifest(
    values: dict[str, str], *, name: str = SECRET_NAME, namespace: str | None = None
) -> dict:
    """A Kubernetes Secret holding `values` under `data` (base64), as CNPG reads it: the
    REQUIRED_KEYS, then any other key given a value (e.g. a restore's ENDPOINT_CA)."""
    missing = [k for k in REQUIRED_KEYS if not values.get(k)]
    if missing:
        raise BadInput(f"a {name} Secret needs {', '.join(missing)}")
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {
            k: base64.b64encode(str(values[k]).encode()).decode()
            for k in [*REQUIRED_KEYS, *(k for k in values if k not in REQUIRED_KEYS and values[k])]
        },
    }


def write_encrypted_secret(
    path: Path, values: dict[str, str], recipients: list[str], *, namespace: str | None = None
) -> Path:
    """Write `values` as a SOPS/age-encrypted `cnpg-backup-s3` Secret (mode 0600)."""
    from pgdrill.credentials import sops

    sops.encrypt_file(
        path,
        secret_manifest(values, namespace=namespace),
        recipients,
        encrypted_regex=ENCRYPTED_REGEX,
    )
    return path


def load_s3_credentials(path: str | Path, identities: list[str] | None = None) -> S3Credentials:
    """Decrypt (MAC verified) and read a `cnpg-backup-s3` Secret manifest."""
    from pgdrill.credentials import sops

    path = Path(path)
    if not path.is_file():
        raise BadInput(
            f"the S3 credentials file {path} does not exist", fix=f"create it: {SOPS_WAY}"
        )
    document = sops.decrypt_file(path, identities)
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        raise BadInput(
            f"{path} is not a Kubernetes Secret manifest (kind: Secret)", fix=f"{SOPS_WAY}"
        )
    values: dict[str, str] = {}
    for key, value in (document.get("stringData") or {}).items():
        values[str(key)] = str(value)
    for key, value in (document.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadInput(
                f"{path}: data.{key} is not base64 of UTF-8 text (a Secret's "
                "`data` values are base64)",
                fix="use stringData for plain values, or base64-encode them",
            ) from None
    missing = [k for k in REQUIRED_KEYS if not values.get(k)]
    if missing:
        raise BadInput(
            f"{path} lacks {', '.join(missing)} (it has {', '.join(sorted(values)) or 'no keys'})",
            fix=f"a {SECRET_NAME} Secret needs {', '.join(REQUIRED_KEYS)}",
        )
    return S3Credentials(
        access_key_id=values["ACCESS_KEY_ID"],
        secret_access_key=values["ACCESS_SECRET_KEY"],
        bucket=values["BUCKET"],
        endpoint=values["ENDPOINT"],
        region=values["REGION"],
        source=str(path),
        recipients=tuple(sops.recipients(path)),
    )


def redact(text: str, secrets) -> str:
    """`text` with every secret value replaced by `<redacted>`."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    return text


# -- plaintext credentials are refused ---------------------------------------------------------
_CREDENTIAL_NAME = re.compile(
    r"(access[_-]?key|secret[_-]?(access[_-]?)?key|session[_-]?token|access[_-]?secret"
    r"|s3[_-]?password|aws[_-]?secret)",
    re.IGNORECASE,
)


def plaintext_credentials(
    configuration: dict | None, secrets: dict | None, environ: dict[str, str]
) -> list[str]:
    """Where plaintext S3 credentials were given (names only): configuration keys (which
    --var and var files override), inline secrets (not {"type": "sops"}), and pgdrill's
    own environment variables (PGDRILL_*)."""
    found = []
    for key, value in (configuration or {}).items():
        if _CREDENTIAL_NAME.search(str(key)) and value not in (None, "", {}):
            found.append(f"configuration key {key!r}")
    for scope, entries in (secrets or {}).items():
        if not isinstance(entries, dict):
            continue
        for key, value in entries.items():
            inline = not (isinstance(value, dict) and value.get("type") in ("sops", "env", "vault"))
            if inline and _CREDENTIAL_NAME.search(str(key)) and value not in (None, ""):
                found.append(f"inline secret {scope}.{key}")
    for key in environ:
        if key.startswith("PGDRILL_") and _CREDENTIAL_NAME.search(key):
            found.append(f"environment variable {key}")
    return found
