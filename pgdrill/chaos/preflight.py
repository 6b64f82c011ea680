"""What must hold before a drill touches anything: the environment is allowed on this target,
a production drill is backed by a recent passing staging run in the verified ledger, the
target is ready (repaired in place, never rebuilt), and a cluster-loss drill does not fight
a Flux owner of the Cluster."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError, PreflightRefused
from pgdrill.credentials.secret import SOPS_WAY, plaintext_credentials
from pgdrill.evidence import policy


def environment_of(configuration: dict) -> str:
    return str(configuration.get("environment") or policy.DEFAULT_ENVIRONMENT).strip().lower()


def check_environment(
    configuration: dict, experiment: str, target_kind: str, reports: Path
) -> None:
    """Raise PreflightRefused naming everything missing (guardrail 3: non-prod first)."""
    environment = environment_of(configuration)
    reasons = []
    wrong_place = policy.environment_refusal(target_kind, environment)
    if wrong_place:
        reasons.append(wrong_place)
    destructive = policy.destruction_refusal(environment, experiment)
    if destructive:
        reasons.append(destructive)
    elif policy.is_production(environment):
        from pgdrill.evidence import ledger

        window = float(configuration.get("nonprod_window_days") or 30)
        try:
            entries = ledger.verified_entries(reports)
        except PgdrillError as exc:
            entries = []
            reasons.append(f"the ledger does not verify, so no staging run counts: {exc.message}")
        why = policy.production_refusal(
            environment,
            experiment,
            target_kind,
            entries,
            datetime.now(UTC),
            window_days=window,
            allow_production=_truthy(configuration.get("allow_production")),
        )
        if why:
            reasons.append(why)
    if reasons and destructive:
        raise PreflightRefused(
            "; ".join(reasons),
            fix="run it in develop (the sandbox) or staging (a real cluster "
            "you may lose): production clusters are never destroyed",
        )
    if reasons:
        raise PreflightRefused(
            "; ".join(reasons),
            fix=f"run it in staging on a real cluster first (chaos run experiments/{experiment}"
            f".json --var environment:str=staging with pgdrill_target cnpg) so that its passing "
            f"run is in {reports}/ledger.jsonl, then set allow_production: true"
            if policy.is_production(environment)
            else "use environment develop on the sandbox (the default)",
        )


def check_no_plaintext_credentials(configuration: dict, secrets: dict | None) -> None:
    """Guardrail 2: S3 credentials come from SOPS/age files only. Plaintext ones in the
    configuration (and so in --var / var files), inline secrets or pgdrill's own environment
    variables refuse the drill, naming where (never the value)."""
    found = plaintext_credentials(configuration, secrets, dict(os.environ))
    if found:
        raise PreflightRefused(
            "plaintext S3 credentials are not accepted: " + ", ".join(found),
            fix=f"remove them; {SOPS_WAY}",
        )


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def apply_environment_file(configuration: dict) -> str | None:
    """Load `environment_file` (PGDRILL_ENVIRONMENT_FILE) into the configuration: its
    environment, target, cluster, credentials file and settings win over the experiment's
    defaults. Returns the file's path, or None when there is none."""
    from pgdrill.credentials.environments import ENV_VAR, environment_configuration

    path = configuration.get("environment_file") or os.environ.get(ENV_VAR)
    if not path:
        return None
    configuration.update(environment_configuration(path))
    return str(path)


def credentials_file_of(configuration: dict, secrets: dict | None) -> str | None:
    """The SOPS file named by the environment file, or by a secrets entry
    {"type": "sops", "file": ...} of the experiment."""
    if configuration.get("s3_credentials_file"):
        return str(configuration["s3_credentials_file"])
    for entries in (secrets or {}).values():
        for value in (entries or {}).values() if isinstance(entries, dict) else ():
            if isinstance(value, dict) and value.get("type") == "sops" and value.get("file"):
                return str(value["file"])
    return None


def check_cluster_name(configuration: dict, target) -> None:
    """A sandbox runs one cluster: a drill naming another would run against it while its
    evidence named the wrong one."""
    layout = getattr(target, "layout", None)
    state = layout.read() if layout is not None else None
    asked = configuration.get("cluster")
    if state is not None and asked and asked != state.cluster:
        raise PreflightRefused(
            f"the sandbox in {layout.home} runs cluster {state.cluster!r}, not {asked!r}",
            fix=f"set cluster (PGDRILL_CLUSTER) to {state.cluster!r}, or use another "
            "PGDRILL_HOME for another sandbox",
        )


def check_credentials_file(configuration: dict, secrets: dict | None, target) -> None:
    """The sandbox reads its own SOPS file; naming another one is a mistake worth saying."""
    named = credentials_file_of(configuration, secrets)
    own = getattr(getattr(target, "layout", None), "credentials_file", None)
    if named and own is not None and Path(named).resolve() != Path(own).resolve():
        raise PreflightRefused(
            f"the sandbox reads its S3 credentials from its own SOPS file {own}; the "
            f"credentials file {named} is for a real cluster (pgdrill_target: cnpg)",
            fix="drop the credentials file from the environment file or secrets block for "
            "sandbox drills",
        )


def destroys_cluster(experiment: dict) -> bool:
    """Whether the experiment's method destroys the whole cluster (the cluster-loss drill)."""
    for step in experiment.get("method") or []:
        provider = step.get("provider") or {}
        if provider.get("module") == "actions.faults" and provider.get("func") == "destroy_cluster":
            return True
    return False


def flux_owner_to_suspend(configuration: dict | None, target) -> dict | None:
    """The Flux Kustomization/HelmRelease that applies the target's Cluster (cnpg only, from
    its labels), when the setting `flux_suspend` allows pgdrill to suspend it; refused when
    it does not (pgdrill.targets.cnpg.flux says why). None: no Flux owner."""
    from pgdrill.targets.cnpg.flux import refusal_fix, refusal_message

    read_owner = getattr(target, "flux_owner", None)
    owner = read_owner() if read_owner is not None else None
    if owner is None:
        return None
    if not _truthy((configuration or {}).get("flux_suspend")):
        raise PreflightRefused(
            refusal_message(owner, (configuration or {}).get("cluster")), fix=refusal_fix(owner)
        )
    return owner


def check_flux_owner(experiment: dict, configuration: dict, target) -> dict | None:
    """A cluster-loss drill on a Cluster that Flux applies: refused unless `flux_suspend` is
    set (then destroy_cluster suspends the owner right before the destruction). Returns the
    owner to suspend, or None."""
    from pgdrill.targets.cnpg.flux import describe

    if not destroys_cluster(experiment):
        return None
    owner = flux_owner_to_suspend(configuration, target)
    if owner is not None:
        say(
            f"the Cluster is applied by Flux {describe(owner)}: flux_suspend is set, so "
            f"pgdrill suspends it right before destroying the Cluster and leaves it suspended"
        )
    return owner
