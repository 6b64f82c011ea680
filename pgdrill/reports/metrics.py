"""A drill run as Prometheus metrics: `metrics.prom` for node_exporter's textfile collector,
or pushed to a Pushgateway.

Every metric is a gauge named `pgdrill_*` labelled `experiment`, `environment` and `cluster`
(`cluster` is "" when the evidence names none), plus `verdict`, `phase` or `objective` where
there is one sample per verdict value, restore phase or objective. A value the run did not
measure (no failover, no restore, no checklist) is left out rather than reported as 0.

`pgdrill_last_success_timestamp_seconds` needs history: pass the verified ledger's entries
(or the reports folder holding `ledger.jsonl`) and it is the end of the newest passing run of
the same experiment, environment and cluster (this run included); 0 when the ledger holds
none. Without a ledger it is known only when this run passed.

Pure functions except `write_metrics` and `push`."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    generate_latest,
    push_to_gateway,
    write_to_textfile,
)
from prometheus_client.exposition import basic_auth_handler, default_handler

from pgdrill.core.times import parse_time
from pgdrill.core.errors import TargetError
from pgdrill.evidence.policy import normalize_environment

METRICS_NAME = "metrics.prom"
PREFIX = "pgdrill_"
LABELS = ("experiment", "environment", "cluster")
VERDICTS = ("passed", "failed", "refused", "interrupted")

LedgerSource = Iterable[Mapping] | str | os.PathLike | None


@dataclass(frozen=True)
class Sample:
    """One gauge value: its name (without the prefix), help text, labels beyond LABELS."""

    name: str
    help: str
    value: float
    extra: tuple[tuple[str, str], ...] = ()


# -- what is measured -----------------------------------------------------------------------
def labels(evidence: Mapping) -> dict[str, str]:
    """The labels every metric of the run carries (also the Pushgateway grouping key)."""
    return {"experiment": str(evidence.get("experiment") or ""),
            "environment": str(evidence.get("environment") or ""),
            "cluster": str(evidence.get("cluster") or "")}


def samples(evidence: Mapping, ledger_entries: Iterable[Mapping] | None = None) -> list[Sample]:
    """Every value of the run, in a stable order."""
    out: list[Sample] = []
    ended = epoch(evidence.get("ended_at")) or epoch(evidence.get("started_at"))
    if ended is not None:
        out.append(Sample("last_run_timestamp_seconds",
                          "When the newest drill run ended (Unix time).", ended))
    if evidence.get("duration_seconds") is not None:
        out.append(Sample("last_run_duration_seconds", "How long the newest drill run took.",
                          float(evidence["duration_seconds"])))
    success = last_success_timestamp(evidence, ledger_entries)
    if success is not None:
        out.append(Sample("last_success_timestamp_seconds",
                          "When the newest passing drill run ended (Unix time); 0 when the "
                          "ledger holds none.", success))
    for verdict in VERDICTS:
        out.append(Sample("verdict", "The newest run's verdict: 1 for it, 0 for the others.",
                          1.0 if evidence.get("verdict") == verdict else 0.0,
                          (("verdict", verdict),)))
    out += _restore_samples(evidence)
    out += _failover_samples(evidence)
    out += _backup_samples(evidence, ended)
    validation = evidence.get("validation") or []
    if validation:
        passed = sum(bool(v.get("passed")) for v in validation)
        out.append(Sample("checklist_passed_checks",
                          "Checklist queries (pg_amcheck included) that passed on the "
                          "restored copy.", float(passed)))
        out.append(Sample("checklist_failed_checks",
                          "Checklist queries (pg_amcheck included) that failed on the "
                          "restored copy.", float(len(validation) - passed)))
    out += _objective_samples(evidence)
    return out


def _restore_samples(evidence: Mapping) -> list[Sample]:
    out = []
    restore = evidence.get("restore") or {}
    if restore.get("rto_seconds") is not None:
        out.append(Sample("rto_seconds", "Time to a proven recovery: restore, WAL replay and "
                          "promotion, validation.", float(restore["rto_seconds"])))
        for phase, seconds in (restore.get("phases") or {}).items():
            out.append(Sample("rto_phase_seconds", "Time of one phase of the restore (they "
                              "add up to pgdrill_rto_seconds).", float(seconds),
                              (("phase", str(phase)),)))
    rpo = evidence.get("rpo") or {}
    if rpo.get("lost_writes") is not None:
        out.append(Sample("lost_writes", "Acknowledged writes missing from the restored copy.",
                          float(rpo["lost_writes"])))
    if rpo.get("rpo_seconds") is not None:
        out.append(Sample("rpo_seconds", "RPO of the restore: newest acknowledged write before "
                          "the reference minus the newest present.", float(rpo["rpo_seconds"])))
    return out


def _failover_samples(evidence: Mapping) -> list[Sample]:
    failover = evidence.get("failover") or {}
    out = []
    if failover.get("seconds") is not None:
        out.append(Sample("failover_writable_primary_seconds",
                          "From the fault to a writable primary.", float(failover["seconds"])))
    if failover.get("healthy_seconds") is not None:
        out.append(Sample("failover_healthy_seconds", "From the fault to every instance "
                          "healthy.", float(failover["healthy_seconds"])))
    outage = failover.get("client_write_outage") or {}
    if outage.get("seconds") is not None:
        out.append(Sample("failover_client_write_outage_seconds",
                          "The load's longest gap between acknowledged writes around the "
                          "failover.", float(outage["seconds"])))
    if failover.get("lost_writes") is not None:
        out.append(Sample("failover_lost_writes", "Acknowledged writes the failover lost.",
                          float(failover["lost_writes"])))
    return out


def _backup_samples(evidence: Mapping, ended: float | None) -> list[Sample]:
    backup_end = epoch((evidence.get("backup") or {}).get("end_time"))
    if backup_end is None or ended is None:
        return []
    return [Sample("backup_age_seconds", "Age of the restored backup when the run ended.",
                   max(ended - backup_end, 0.0))]


def _objective_samples(evidence: Mapping) -> list[Sample]:
    out = []
    for name, objective in sorted((evidence.get("objectives") or {}).items()):
        extra = (("objective", str(name)),)
        if objective.get("objective_seconds") is not None:
            out.append(Sample("objective_seconds", "The experiment's objective (rto, rpo).",
                              float(objective["objective_seconds"]), extra))
        if objective.get("met") is not None:
            out.append(Sample("objective_met", "1 when the objective was met, 0 when missed "
                              "(absent when not measured).", 1.0 if objective["met"] else 0.0,
                              extra))
    return out


def last_success_timestamp(evidence: Mapping,
                           ledger_entries: Iterable[Mapping] | None) -> float | None:
    """End (Unix time) of the newest passing run of the same experiment, environment and
    cluster, this run included; 0.0 when the ledger holds none; None when unknown (no
    ledger and this run did not pass)."""
    key = _identity(evidence)
    ends = []
    if evidence.get("verdict") == "passed":
        ends.append(epoch(evidence.get("ended_at")))
    if ledger_entries is not None:
        ends += [epoch(e.get("ended_at")) for e in ledger_entries
                 if e.get("verdict") == "passed" and _identity(e) == key]
    ends = [e for e in ends if e is not None]
    if ends:
        return max(ends)
    return 0.0 if ledger_entries is not None else None


def _identity(run: Mapping) -> tuple[str, str, str]:
    environment = str(run.get("environment") or "")
    return (str(run.get("experiment") or ""),
            normalize_environment(environment) or environment.lower(),
            str(run.get("cluster") or ""))


def epoch(value) -> float | None:
    """An ISO-8601 time as Unix time (no offset: UTC, as Chaos Toolkit writes), or None."""
    when = parse_time(value)
    return when.timestamp() if when else None


# -- the exposition -------------------------------------------------------------------------
def build_registry(evidence: Mapping, *,
                   ledger_entries: LedgerSource = None) -> CollectorRegistry:
    """A fresh registry holding the run's gauges."""
    registry = CollectorRegistry(auto_describe=True)
    base = labels(evidence)
    gauges: dict[str, Gauge] = {}
    for sample in samples(evidence, _entries(ledger_entries)):
        extra = dict(sample.extra)
        gauge = gauges.get(sample.name)
        if gauge is None:
            gauge = gauges[sample.name] = Gauge(PREFIX + sample.name, sample.help,
                                                labelnames=(*LABELS, *extra),
                                                registry=registry)
        gauge.labels(**base, **extra).set(sample.value)
    return registry


def metrics_text(evidence: Mapping, *, ledger_entries: LedgerSource = None) -> str:
    """The run's metrics in Prometheus' text exposition format."""
    return generate_latest(build_registry(evidence, ledger_entries=ledger_entries)).decode()


def write_metrics(run_dir: str | os.PathLike, evidence: Mapping, *,
                  ledger_entries: LedgerSource = None) -> Path:
    """Write `run_dir/metrics.prom` (atomically, as the textfile collector needs) and return
    its path."""
    path = Path(run_dir) / METRICS_NAME
    write_to_textfile(str(path), build_registry(evidence, ledger_entries=ledger_entries))
    return path


def _entries(source: LedgerSource) -> list[Mapping] | None:
    """Ledger entries as given, or read (verified) from a reports folder: a ledger that does
    not verify raises LedgerTampered rather than lending its runs to the metrics."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        from pgdrill.evidence.ledger import verified_entries

        return verified_entries(source)
    return list(source)


# -- the Pushgateway ------------------------------------------------------------------------
def push(evidence: Mapping, gateway_url: str, *, job: str = "pgdrill",
         ledger_entries: LedgerSource = None, timeout: float = 10) -> None:
    """PUT the run's metrics to the Pushgateway at `gateway_url`, grouped by job and the
    labels (a push replaces the group's previous metrics). Credentials in the URL
    (`https://user:password@host:9091`) are sent as HTTP basic auth and never shown. Raises
    TargetError naming the (redacted) URL and the fix when the push fails."""
    url, username, password = split_credentials(gateway_url)
    shown = redact_url(gateway_url)
    registry = build_registry(evidence, ledger_entries=ledger_entries)

    def handler(url, method, timeout, headers, data):
        if username is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    try:
        push_to_gateway(url, job, registry, grouping_key=labels(evidence), timeout=timeout,
                        handler=handler)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = _scrub(_reason(exc, timeout), username, password)
        raise TargetError(f"cannot push the metrics of {evidence.get('experiment')!r} to the "
                          f"Pushgateway {shown}: {reason}",
                          fix=_push_fix(exc, url)) from None


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without userinfo, user, password); user and password None without any."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if "@" not in parts.netloc:
        return url.rstrip("/"), None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=host)).rstrip("/")
    return bare, unquote(user), unquote(password)


def redact_url(url: str) -> str:
    """`url` with any userinfo replaced by `***`, for messages."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    shown = urlunsplit(parts._replace(netloc=f"***@{host}"))
    return shown if "://" in url else shown.removeprefix("http://")


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _push_fix(exc: BaseException, bare_url: str) -> str:
    if isinstance(exc, HTTPError) and exc.code in (401, 403):
        return ("the Pushgateway (or the proxy in front of it) refused the credentials: put "
                "the right ones in the URL as https://USER:PASSWORD@host:9091")
    if isinstance(exc, HTTPError):
        return (f"check that {bare_url} is a Pushgateway (it accepts PUT "
                f"/metrics/job/<job>/...) and read its log")
    return (f"check that a Pushgateway listens at {bare_url} and answers from this machine "
            f"(curl {bare_url}/-/ready)")
