"""Environment files: where a drill runs and where its credentials are, without a secret in them.

    # environments/staging.yaml
    environment: staging              # develop | staging | production
    target: cnpg                      # sandbox | cnpg
    cluster: pg-main                  # the CNPG Cluster
    namespace: staging
    credentials: ../secrets/staging/cnpg-backup-s3.enc.yaml   # SOPS/age, relative to this file
    age_identity: ~/.config/sops/age/keys.txt                 # optional: else sops's lookup
    settings:                         # any non-secret experiment configuration
      rpo_objective_seconds: 60

A drill names it with `environment_file` (PGDRILL_ENVIRONMENT_FILE). Its values win over the
experiment's defaults. A credential value in it is refused: only the path of the encrypted
file belongs here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pgdrill.core.errors import BadInput
from pgdrill.core.yamlerrors import yaml_error_where
from pgdrill.credentials.secret import SOPS_WAY, plaintext_credentials

KNOWN_KEYS = {
    "environment",
    "target",
    "cluster",
    "namespace",
    "credentials",
    "age_identity",
    "settings",
}


@dataclass(frozen=True)
class EnvironmentFile:
    path: Path
    environment: str
    target: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    credentials: Path | None = None
    age_identity: Path | None = None
    settings: dict = field(default_factory=dict)

    def configuration(self) -> dict:
        """The experiment configuration this file sets."""
        values = dict(self.settings)
        values["environment"] = self.environment
        for key, name in (
            ("target", "pgdrill_target"),
            ("cluster", "cluster"),
            ("namespace", "namespace"),
        ):
            if getattr(self, key):
                values[name] = getattr(self, key)
        if self.credentials:
            values["s3_credentials_file"] = str(self.credentials)
        if self.age_identity:
            values["age_identity_file"] = str(self.age_identity)
        return values


def load_environment_file(path: str | Path) -> EnvironmentFile:
    """Read and check an environment file; BadInput naming the problem and the fix."""
    path = Path(path).expanduser()
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInput(
            f"environment file {path} does not exist",
            fix="create it (see environments/staging.example.yaml)",
        ) from None
    except yaml.YAMLError as exc:
        where = yaml_error_where(exc)
        raise BadInput(
            f"environment file {path}{where} is not valid YAML",
            fix="fix its syntax (see environments/staging.example.yaml)",
        ) from None
    if not isinstance(document, dict):
        raise BadInput(f"environment file {path} must be a mapping of settings")
    unknown = sorted(set(document) - KNOWN_KEYS)
    if unknown:
        raise BadInput(
            f"environment file {path} has unknown keys: {', '.join(unknown)}",
            fix=f"use {', '.join(sorted(KNOWN_KEYS))}; put experiment settings under `settings:`",
        )
    settings = document.get("settings") or {}
    if not isinstance(settings, dict):
        raise BadInput(f"environment file {path}: `settings` must be a mapping")
    plaintext = plaintext_credentials({**document, **settings}, {}, {})
    if plaintext:
        raise BadInput(
            f"environment file {path} holds plaintext S3 credentials ("
            + ", ".join(p.replace("configuration key", "key") for p in plaintext)
            + ")",
            fix=f"remove them; {SOPS_WAY}",
        )
    if not document.get("environment"):
        raise BadInput(
            f"environment file {path} does not say which environment it is",
            fix="add `environment: develop|staging|production`",
        )

    def relative(value) -> Path | None:
        if not value:
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else (path.parent / candidate).resolve()

    return EnvironmentFile(
        path=path,
        environment=str(document["environment"]),
        target=document.get("target"),
        cluster=document.get("cluster"),
        namespace=document.get("namespace"),
        credentials=relative(document.get("credentials")),
        age_identity=relative(document.get("age_identity")),
        settings=settings,
    )


ENV_VAR = "PGDRILL_ENVIRONMENT_FILE"


def environment_configuration(path: str | None = None) -> dict | None:
    """The configuration of the environment file `path`, else of $PGDRILL_ENVIRONMENT_FILE;
    None when neither names one."""
    import os

    path = path or os.environ.get(ENV_VAR)
    return load_environment_file(path).configuration() if path else None
