"""Target selection: `sandbox` (default) or `cnpg`, from the experiment's configuration."""

from __future__ import annotations

import os

from pgdrill.core.errors import BadInput
from pgdrill.targets.base import Target

TARGET_KEY = "pgdrill_target"
KNOWN = ("sandbox", "cnpg")


def target_kind(configuration: dict | None) -> str:
    return str(
        (configuration or {}).get(TARGET_KEY) or os.environ.get("PGDRILL_TARGET") or "sandbox"
    )


def get_target(configuration: dict | None = None, secrets: dict | None = None) -> Target:
    """The experiment's target. `secrets` reach the target (the cnpg target builds its
    Kubernetes client from them as chaostoolkit-kubernetes does)."""
    cfg = configuration or {}
    kind = target_kind(cfg)
    if kind == "sandbox":
        from pgdrill.targets.sandbox.target import SandboxTarget

        return SandboxTarget(
            home=cfg.get("sandbox_home"), cluster=str(cfg.get("cluster") or "sandbox")
        )
    if kind == "cnpg":
        from pgdrill.targets.cnpg.target import CnpgTarget

        return CnpgTarget.from_configuration(cfg, secrets)
    raise BadInput(f"unknown target {kind!r}", fix=f"set {TARGET_KEY} to one of {', '.join(KNOWN)}")
