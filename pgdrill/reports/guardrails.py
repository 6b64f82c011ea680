"""The four guardrails of README, and what one run's evidence says about each: a table
row per guardrail with its state (`ok`, `bad`, `warn` or none), status and evidence. Pure."""

from __future__ import annotations

from pgdrill.reports.document import Section, Table

GUARDRAILS = ("1. No backup without restore", "2. S3 credentials from SOPS/age files",
              "3. Non-prod first", "4. Evidence-first")


def guardrails_section(evidence: dict) -> Section:
    """The four guardrails of README and what this run's evidence says about each."""
    rows = [_no_backup_without_restore(evidence), _credentials_from_sops(evidence),
            _nonprod_first(evidence), _evidence_first(evidence)]
    return Section("guardrails", "Guardrails", tables=(Table(
        ("guardrail", "status", "evidence"),
        tuple((name, status, detail) for name, (_, status, detail) in zip(GUARDRAILS, rows)),
        tuple(state for state, _, _ in rows)),))


def _no_backup_without_restore(evidence: dict) -> tuple[str | None, str, str]:
    backup = evidence.get("backup") or {}
    if not backup.get("id"):
        return None, "no restore", "this run restored no backup, so it validates none"
    if backup.get("validated"):
        return ("ok", "validated", f"backup {backup['id']} was restored and its copy passed "
                "every validation query and pg_amcheck")
    if evidence.get("restore"):
        return ("bad", "not validated", f"backup {backup['id']} was restored but the run did "
                "not pass, so it does not count as validated")
    return "bad", "not validated", f"backup {backup['id']} was chosen but never restored"


def _credentials_from_sops(evidence: dict) -> tuple[str | None, str, str]:
    cred = evidence.get("credentials") or {}
    if cred.get("file"):
        recipients = ", ".join(str(r) for r in cred.get("recipients") or []) or "none listed"
        keys = ", ".join(str(k) for k in cred.get("keys") or []) or "none listed"
        return ("ok", "from SOPS/age", f"decrypted from {cred['file']} (MAC verified), "
                f"recipients {recipients}; keys {keys} (names only: values are never recorded)")
    refusal = _refusal_about(evidence, ("credential", "sops", "age key", "plaintext"))
    if refusal:
        return "warn", "refused", refusal
    return None, "not loaded", "the run ended before the target's credentials were needed"


def _nonprod_first(evidence: dict) -> tuple[str | None, str, str]:
    environment = str(evidence.get("environment") or "?")
    refusal = _refusal_about(evidence, ("production", "environment", "staging"))
    if refusal:
        return "warn", "refused", refusal
    if environment in ("production", "prod"):
        return ("ok", "production allowed", "the preflight found a passing staging run of this "
                "experiment on the same kind of target in the verified ledger, and "
                "allow_production was set")
    return ("ok", "non-production", f"environment {environment} on target "
            f"{evidence.get('target')}: nothing in production was touched")


def _evidence_first(evidence: dict) -> tuple[str | None, str, str]:
    verdict = evidence.get("verdict")
    validation = evidence.get("validation") or []
    passed = sum(1 for v in validation if v.get("passed"))
    if verdict == "passed":
        detail = f"{passed} of {len(validation)} validation queries passed (pg_amcheck included)"
        if (evidence.get("restore") or {}).get("position_ok"):
            detail += "; recovery provably stopped where asked"
        met = [n.upper() for n, o in (evidence.get("objectives") or {}).items() if o.get("met")]
        if met:
            detail += f"; {' and '.join(met)} objectives met"
        return "ok", "passed after validation", detail + "; then the verdict"
    if verdict == "refused":
        return None, "nothing to judge", "nothing ran, nothing was declared successful"
    if verdict == "running":
        return None, "in progress", "no verdict yet"
    reasons = evidence.get("reasons") or []
    checks = (f"{passed} of {len(validation)} validation queries passed" if validation
              else "no validation query ran")
    return ("bad", f"not passed ({verdict})", f"{checks}; {len(reasons)} "
            f"reason{'s' if len(reasons) != 1 else ''} the verdict is not passed (above)")


def _refusal_about(evidence: dict, words: tuple[str, ...]) -> str | None:
    if evidence.get("verdict") != "refused":
        return None
    for reason in evidence.get("reasons") or []:
        if any(word in str(reason).lower() for word in words):
            return str(reason)
    return None
