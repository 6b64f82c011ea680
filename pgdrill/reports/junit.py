"""A drill run as JUnit XML (`junit.xml`), for CI systems that show test reports.

One `<testsuite>` per run, named after the experiment (inside a `<testsuites>` root), with a
`<testcase>` for:

- the preflight (`pgdrill.<experiment>.preflight`): a failure when the drill was refused;
- every steady-state probe before and after the method, every method activity and every
  rollback, from the Chaos Toolkit journal (`steady_state_before`, `method`,
  `steady_state_after`, `rollbacks`); an activity the experiment declares that never ran is
  `<skipped/>`, one cut short by an interruption is an `<error>`;
- every checklist query on the restored copy, pg_amcheck included (`checklist`);
- the four guardrails of README (`guardrails`);
- every objective, RTO and RPO (`objectives`).

What failed carries `<failure message=...>` (one line) with the detail as text. Testcase names
hold no measured values, so CI can follow each one from run to run.

Pure functions except `write_junit`."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path

from pgdrill.core.times import parse_time
from pgdrill.core.files import write_atomically

JUNIT_NAME = "junit.xml"

PASSED, FAILURE, ERROR, SKIPPED = "passed", "failure", "error", "skipped"

GUARDRAIL_BACKUP = "1 no backup without restore"
GUARDRAIL_CREDENTIALS = "2 S3 credentials from SOPS/age files"
GUARDRAIL_NONPROD = "3 non-prod first"
GUARDRAIL_EVIDENCE = "4 evidence-first"

# words by which a preflight refusal names the guardrail that refused (pgdrill.evidence.policy,
# pgdrill.chaos.preflight, pgdrill.credentials.secret, pgdrill.credentials.sops)
_NONPROD_WORDS = ("non-prod first", "unknown environment", "is a develop environment",
                  "production drill")
_CREDENTIAL_WORDS = ("credential", "sops", "age identit", "age key", "mac mismatch")

# characters XML 1.0 cannot carry at all (ANSI escapes, NULs in tool output)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WRAPPED = re.compile(r"^(?:[\w.]+(?:Failed|Error|Exception): )+")
_MAX_OUTPUT = 2000


@dataclass(frozen=True)
class Case:
    """One testcase: `group` is the last part of its classname."""

    group: str
    name: str
    outcome: str = PASSED
    message: str = ""
    detail: str = ""
    kind: str = ""
    seconds: float = 0.0
    out: str = ""


# -- the document ---------------------------------------------------------------------------
def junit_xml(evidence: dict, journal: dict) -> str:
    """The JUnit XML of one run, from its evidence (evidence.json) and its Chaos Toolkit
    journal (journal.json)."""
    cases = junit_cases(evidence, journal)
    root = ET.Element("testsuites", {"name": "pgdrill", **_counts(cases, evidence)})
    suite = ET.SubElement(root, "testsuite", _suite_attributes(evidence, cases))
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(evidence):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    prefix = f"pgdrill.{_class_part(evidence.get('experiment') or 'experiment')}"
    for case in cases:
        _add_case(suite, prefix, case)
    ET.SubElement(suite, "system-out").text = _xml_text(_verdict_text(evidence))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(run_dir: str | Path, evidence: dict, journal: dict) -> Path:
    """Write `run_dir/junit.xml` (atomically) and return its path."""
    return write_atomically(Path(run_dir) / JUNIT_NAME, junit_xml(evidence, journal))


def _counts(cases: list[Case], evidence: dict) -> dict[str, str]:
    return {"tests": str(len(cases)),
            "failures": str(sum(c.outcome == FAILURE for c in cases)),
            "errors": str(sum(c.outcome == ERROR for c in cases)),
            "skipped": str(sum(c.outcome == SKIPPED for c in cases)),
            "time": _seconds(evidence.get("duration_seconds"))}


def _suite_attributes(evidence: dict, cases: list[Case]) -> dict[str, str]:
    attributes = {"name": _xml_text(evidence.get("experiment") or "experiment"),
                  **_counts(cases, evidence)}
    stamp = _timestamp(evidence.get("started_at") or evidence.get("ended_at"))
    if stamp:
        attributes["timestamp"] = stamp
    return attributes


def _properties(evidence: dict) -> list[tuple[str, object]]:
    keys = ("verdict", "title", "target", "environment", "cluster", "started_at", "ended_at",
            "schema")
    return [(f"pgdrill.{k}", evidence[k]) for k in keys if evidence.get(k) is not None]


def _add_case(suite: ET.Element, prefix: str, case: Case) -> None:
    element = ET.SubElement(suite, "testcase", name=_xml_text(case.name),
                            classname=f"{prefix}.{case.group}", time=_seconds(case.seconds))
    if case.outcome in (FAILURE, ERROR):
        child = ET.SubElement(element, case.outcome, message=_xml_text(case.message),
                              type=case.kind or case.outcome)
        if case.detail:
            child.text = _xml_text(case.detail)
    elif case.outcome == SKIPPED:
        ET.SubElement(element, "skipped", message=_xml_text(case.message))
    if case.out:
        ET.SubElement(element, "system-out").text = _xml_text(case.out)


def _verdict_text(evidence: dict) -> str:
    lines = [f"verdict: {str(evidence.get('verdict')).upper()}"]
    lines += [f"- {reason}" for reason in evidence.get("reasons") or []]
    return "\n".join(lines)


# -- the testcases --------------------------------------------------------------------------
def junit_cases(evidence: dict, journal: dict) -> list[Case]:
    """Every testcase of the run, in the order things happen."""
    steady = journal.get("steady_states") or {}
    planned = _planned(journal.get("experiment") or {})
    cut = cut_short(evidence, journal)
    why = cut or f"not run: the experiment ended with status {journal.get('status')!r}"
    cases = [preflight_case(evidence)]
    cases += activity_cases("steady_state_before", (steady.get("before") or {}).get("probes"),
                            planned["hypothesis"], why, hypothesis=True)
    cases += activity_cases("method", journal.get("run"), planned["method"], why)
    cases += activity_cases("steady_state_after", (steady.get("after") or {}).get("probes"),
                            planned["hypothesis"], why, hypothesis=True)
    cases += activity_cases("rollbacks", journal.get("rollbacks"), planned["rollbacks"], why)
    cases += checklist_cases(evidence, cut or "not run: nothing was restored in this run")
    cases += guardrail_cases(evidence)
    cases += objective_cases(evidence)
    if evidence.get("verdict") == "interrupted" and not any(c.outcome == ERROR for c in cases):
        cases.append(_interruption_case(evidence))
    return _unique_names(cases)


def cut_short(evidence: dict, journal: dict) -> str | None:
    """Why the rest of a run did not happen when it was cut short (refused, interrupted,
    steady state not met before the method), for `<skipped message=...>`; else None."""
    refusal = refusal_of(evidence)
    if refusal is not None:
        return f"not run: the preflight refused the drill: {refusal}"
    if evidence.get("verdict") == "interrupted" or journal.get("status") == "interrupted":
        during = (evidence.get("interruption") or {}).get("during")
        return "not run: the run was interrupted" + (f" during {during!r}" if during else "")
    before = (journal.get("steady_states") or {}).get("before") or {}
    if before.get("steady_state_met") is False:
        return "not run: the steady state was not met before the method"
    return None


def refusal_of(evidence: dict) -> str | None:
    """The preflight's refusal of a refused run, or None."""
    if evidence.get("verdict") != "refused":
        return None
    reasons = evidence.get("reasons") or []
    text = reasons[0] if reasons else "refused"
    return text.removeprefix("preflight refused: ")


def preflight_case(evidence: dict) -> Case:
    refusal = refusal_of(evidence)
    if refusal is not None:
        return Case("preflight", "preflight", FAILURE, message=refusal, kind="PreflightRefused",
                    detail="\n".join(evidence.get("reasons") or []))
    repairs = (evidence.get("preflight") or {}).get("repairs") or []
    return Case("preflight", "preflight",
                out=("repaired in place first: " + "; ".join(repairs)) if repairs else "")


def activity_cases(group: str, records: list | None, planned: list[str], why: str, *,
                   hypothesis: bool = False) -> list[Case]:
    """A case per journal record, then a skipped case per declared activity that has no
    record (Chaos Toolkit stops a hypothesis at its first probe that does not hold)."""
    records = [r for r in records or [] if isinstance(r, dict)]
    cases = [record_case(group, r) for r in records]
    if hypothesis and any(c.outcome == FAILURE for c in cases):
        why = "not run: an earlier probe of the steady-state hypothesis did not hold"
    left = [_activity_name(r.get("activity") or {}) for r in records]
    for name in planned:
        if name in left:
            left.remove(name)
        else:
            cases.append(Case(group, name, SKIPPED, message=why))
    return cases


def record_case(group: str, record: dict) -> Case:
    """One Chaos Toolkit journal record (probe or action run) as a case."""
    name = _activity_name(record.get("activity") or {})
    status = record.get("status")
    case = Case(group, name, seconds=_duration(record))
    if status == "failed":
        summary = _exception_summary(record.get("exception"))
        return replace(case, outcome=FAILURE, kind="ActivityFailed",
                       message=summary or f"{name} failed",
                       detail="".join(record.get("exception") or []))
    if status == "interrupted":
        return replace(case, outcome=ERROR, kind="Interrupted",
                       message="interrupted before it finished (signal, or the process died)")
    if record.get("tolerance_met") is False:
        output = _short_json(record.get("output"))
        tolerance = _short_json((record.get("activity") or {}).get("tolerance"))
        return replace(case, outcome=FAILURE, kind="ToleranceNotMet",
                       message=f"tolerance not met: the probe returned {output}",
                       detail=f"output: {output}\ntolerance: {tolerance}")
    if status == "succeeded":
        return case
    return replace(case, outcome=ERROR, kind="UnknownStatus",
                   message=f"ended with status {status!r}")


def checklist_cases(evidence: dict, why: str) -> list[Case]:
    """A case per validation query of the restored copy (pg_amcheck is one of them); without
    any, one `checklist` case: a failure after a restore (never validated), else skipped
    with `why`."""
    validation = evidence.get("validation") or []
    if not validation:
        if evidence.get("restore"):
            return [Case("checklist", "checklist", FAILURE, kind="NotValidated",
                         message="the restored copy was never validated (evidence-first: a "
                                 "restore succeeds only after its validation queries pass)")]
        return [Case("checklist", "checklist", SKIPPED, message=why)]
    cases = []
    for check in validation:
        detail = (f"query: {check.get('query')}\nexpected: {check.get('expected')!r}\n"
                  f"actual: {check.get('actual')!r}")
        if check.get("passed"):
            cases.append(Case("checklist", str(check.get("name")), out=detail))
            continue
        message = f"expected {check.get('expected')!r}, got {check.get('actual')!r}"
        if check.get("error"):
            message += f" ({check['error']})"
            detail += f"\nerror: {check['error']}"
        cases.append(Case("checklist", str(check.get("name")), FAILURE, message=message,
                          detail=detail, kind="CheckFailed"))
    return cases


def guardrail_cases(evidence: dict) -> list[Case]:
    """The four guardrails of README, as this run's evidence shows them."""
    return [_backup_guardrail(evidence), _credentials_guardrail(evidence),
            _nonprod_guardrail(evidence), _evidence_first_guardrail(evidence)]


def _backup_guardrail(evidence: dict) -> Case:
    backup = evidence.get("backup") or {}
    case = Case("guardrails", GUARDRAIL_BACKUP)
    if not backup.get("id"):
        return replace(case, outcome=SKIPPED, message="no backup was restored in this run")
    if backup.get("validated"):
        return replace(case, out=f"backup {backup['id']} restored and validated by this "
                                 f"passing run")
    return replace(case, outcome=FAILURE, kind="GuardrailViolated",
                   message=f"backup {backup['id']} is not validated: its restore did not "
                           f"pass (verdict {evidence.get('verdict')})",
                   detail="\n".join(evidence.get("reasons") or []))


def _credentials_guardrail(evidence: dict) -> Case:
    case = Case("guardrails", GUARDRAIL_CREDENTIALS)
    refusal = refusal_of(evidence)
    if refusal is not None and _names(refusal, _CREDENTIAL_WORDS) \
            and not _names(refusal, _NONPROD_WORDS):
        return replace(case, outcome=FAILURE, kind="GuardrailViolated", message=refusal)
    credentials = evidence.get("credentials") or {}
    if credentials.get("file"):
        return replace(case, out=f"SOPS/age file {credentials['file']}, recipients "
                                 f"{', '.join(credentials.get('recipients') or [])}, MAC "
                                 f"verified")
    if refusal is not None:
        return replace(case, outcome=SKIPPED,
                       message=f"not checked: the preflight refused the drill first: {refusal}")
    if evidence.get("verdict") not in ("passed", "failed"):
        return replace(case, outcome=SKIPPED,
                       message=f"not checked: the verdict is {evidence.get('verdict')}")
    return replace(case, outcome=FAILURE, kind="GuardrailViolated",
                   message="the evidence does not name the SOPS/age file the S3 credentials "
                           "came from")


def _nonprod_guardrail(evidence: dict) -> Case:
    case = Case("guardrails", GUARDRAIL_NONPROD)
    environment = evidence.get("environment")
    refusal = refusal_of(evidence)
    if refusal is not None:
        if _names(refusal, _NONPROD_WORDS):
            return replace(case, outcome=FAILURE, kind="GuardrailViolated", message=refusal)
        return replace(case, outcome=SKIPPED,
                       message=f"not judged: the preflight refused the drill for another "
                               f"reason: {refusal}")
    if str(environment).lower() in ("production", "prod"):
        return replace(case, out="production drill allowed: a passing staging run in the "
                                 "verified ledger and allow_production set")
    return replace(case, out=f"environment {environment}: not production")


def _evidence_first_guardrail(evidence: dict) -> Case:
    case = Case("guardrails", GUARDRAIL_EVIDENCE)
    verdict = evidence.get("verdict")
    reasons = evidence.get("reasons") or []
    if verdict == "passed":
        checks = len(evidence.get("validation") or [])
        return replace(case, out=f"passed on proof: {checks} validation checks passed"
                       if checks else "passed on proof")
    if verdict == "failed":
        return replace(case, outcome=FAILURE, kind="GuardrailViolated",
                       message=f"verdict failed: {reasons[0] if reasons else 'no reason given'}",
                       detail="\n".join(reasons))
    return replace(case, outcome=SKIPPED, message=f"not judged: the verdict is {verdict}")


def objective_cases(evidence: dict) -> list[Case]:
    """A case per objective the experiment declares (RTO, RPO)."""
    cases = []
    for name, objective in sorted((evidence.get("objectives") or {}).items()):
        case = Case("objectives", f"{name.upper()} objective")
        measured, target = objective.get("measured_seconds"), objective.get("objective_seconds")
        if objective.get("met") is True:
            cases.append(replace(case, out=f"{name.upper()} {measured}s within {target}s"))
        elif objective.get("met") is False:
            cases.append(replace(case, outcome=FAILURE, kind="ObjectiveMissed",
                                 message=f"{name.upper()} {measured}s exceeds the objective of "
                                         f"{target}s by {objective.get('exceeded_by_seconds')}s"))
        else:
            cases.append(replace(case, outcome=SKIPPED,
                                 message=f"not measured in this run (objective {target}s)"))
    return cases


def _interruption_case(evidence: dict) -> Case:
    cut = evidence.get("interruption") or {}
    return Case("method", "interruption", ERROR, kind="Interrupted",
                message=f"the run was interrupted during {cut.get('during')!r}; last "
                        f"completed activity: {cut.get('last_completed_activity')!r}")


# -- helpers --------------------------------------------------------------------------------
def _planned(experiment: dict) -> dict[str, list[str]]:
    """The names of the activities the experiment declares, per phase."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}

    def names(items) -> list[str]:
        return [_activity_name(a) for a in items or [] if isinstance(a, dict)]

    return {"hypothesis": names(hypothesis.get("probes")),
            "method": names(experiment.get("method")),
            "rollbacks": names(experiment.get("rollbacks"))}


def _activity_name(activity: dict) -> str:
    return str(activity.get("name") or activity.get("ref") or "unnamed activity")


def _unique_names(cases: list[Case]) -> list[Case]:
    """An activity run twice in a phase gets ` #2`: consumers merge cases of the same name."""
    seen: dict[tuple[str, str], int] = {}
    unique = []
    for case in cases:
        key = (case.group, case.name)
        seen[key] = seen.get(key, 0) + 1
        unique.append(case if seen[key] == 1 else replace(case, name=f"{case.name} #{seen[key]}"))
    return unique


def _names(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def _exception_summary(exception) -> str:
    if not exception:
        return ""
    text = "".join(exception) if isinstance(exception, list) else str(exception)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _WRAPPED.sub("", lines[-1]) if lines else ""


def _short_json(value) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _MAX_OUTPUT else text[:_MAX_OUTPUT] + "…"


def _duration(record: dict) -> float:
    duration = record.get("duration")
    if isinstance(duration, (int, float)) and duration >= 0:
        return float(duration)
    start, end = parse_time(record.get("start")), parse_time(record.get("end"))
    return max((end - start).total_seconds(), 0.0) if start and end else 0.0


def _timestamp(value) -> str | None:
    """JUnit's timestamp: ISO 8601 in UTC without an offset (its XSD forbids one)."""
    when = parse_time(value)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if when else None


def _seconds(value) -> str:
    return f"{float(value or 0):.3f}"


def _class_part(name: str) -> str:
    """An experiment name as one part of a dotted classname."""
    return re.sub(r"[^\w-]+", "_", name) or "experiment"


def _xml_text(value) -> str:
    return _NOT_XML.sub("\ufffd", str(value))
