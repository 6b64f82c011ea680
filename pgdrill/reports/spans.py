"""The drill's phases as spans over time, read from the Chaos Toolkit journal and the
evidence: the data of the timeline's top panel (pgdrill.reports.timeline draws it).

One lane per kind of phase — steady state (before, after), load, backup, fault, heal (fault →
writable primary → every instance healthy, and on CNPG the operator's own failover), restore
(the restore activity with the target's sub-phases from `restore.phase_details`),
verification (checklist, pg_amcheck, fingerprints, lost writes) and rollbacks — from the
journal's activity start/end times and the evidence; `Marker`s for the fault instant
(`evidence.fault.epoch`) and where an interrupted run stopped. Times are seconds since the
run started (`run_origin`: the journal's `start`). Every part is optional: a run without
load, fault or restore, or one refused or interrupted, gives fewer spans. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# lanes, top to bottom
LANES = ("preflight", "steady state", "load", "backup", "fault", "heal", "restore", "verification",
         "rollbacks", "other")
COLOURS = {  # Okabe-Ito, readable by colour-blind people
    "preflight": "#b8b8d8", "steady state": "#009E73", "load": "#9a9a9a", "backup": "#0072B2",
    "fault": "#D55E00", "failover": "#E69F00", "heal": "#F0E442", "operator": "#333333",
    "restore": "#56B4E9", "verification": "#CC79A7", "rollbacks": "#7a7a7a", "other": "#bbbbbb",
}
RESTORE_SHADES = ("#1f78b4", "#56B4E9", "#0b4f7a", "#8cc8ee", "#2b8fd0", "#b3dcf5")
# the chronological order of the targets' restore sub-phases (the evidence stores them by
# name): the sandbox's, then the CNPG Cluster phases a recovery goes through
SUBPHASE_ORDER = ("download_base_backup", "configure_recovery", "replay_wal_and_promote",
                  "check_isolated", "pending", "Setting up primary",
                  "Creating a new replica", "Waiting for the instances to become active",
                  "Cluster in healthy state")
# which lane a pgdrill activity belongs to, by its Python function
FUNCTION_LANES = {
    "start_load": "load", "stop_load": "load",
    "trigger_backup": "backup", "mark_restore_point": "backup",
    "delete_primary_pod": "fault", "drop_pvc": "fault", "corrupt_table": "fault",
    "wait_until_healthy": "heal",
    "restore_latest_backup": "restore",
    "checklist_passes": "verification", "fingerprints_match": "verification",
    "capture_fingerprints": "verification", "lost_writes": "verification",
    "writes_succeed": "verification", "query_value": "verification",
}
# otherwise by words in its name (journals rebuilt from the activity log have no provider);
# checked in this order: "verification-checklist-on-restored-copy" is verification
NAME_HINTS = (("verif", "verification"), ("checklist", "verification"),
              ("fingerprint", "verification"), ("amcheck", "verification"),
              ("lost", "verification"), ("load", "load"), ("fault", "fault"),
              ("kill", "fault"), ("delete", "fault"), ("drop", "fault"), ("corrupt", "fault"),
              ("heal", "heal"), ("restore", "restore"), ("backup", "backup"))


@dataclass(frozen=True)
class Span:
    """One bar: `lane` (a LANES entry), seconds since the run start, a colour key."""

    lane: str
    label: str
    start: float
    end: float
    kind: str
    status: str | None = None  # the activity's: succeeded, failed, interrupted
    thin: bool = False  # drawn as a narrow bar at the bottom of its lane


@dataclass(frozen=True)
class Marker:
    """A vertical line across both panels."""

    at: float
    label: str
    colour: str


def to_epoch(value) -> float | None:
    """Epoch seconds of an ISO-8601 instant (naive = UTC) or a number; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def activity_records(journal: dict) -> list[tuple[str, dict]]:
    """(section, record) for every activity the journal holds, in run order; section is
    `before`, `method`, `after` or `rollbacks`."""
    steady = journal.get("steady_states") or {}
    records = [("before", r) for r in ((steady.get("before") or {}).get("probes") or [])]
    records += [("method", r) for r in journal.get("run") or []]
    records += [("after", r) for r in ((steady.get("after") or {}).get("probes") or [])]
    records += [("rollbacks", r) for r in journal.get("rollbacks") or []]
    return [(section, r) for section, r in records if isinstance(r, dict)]


def activity_lane(section: str, record: dict) -> str:
    """The lane of one journal record."""
    if section in ("before", "after"):
        return "steady state"
    if section == "rollbacks":
        return "rollbacks"
    activity = record.get("activity") or {}
    func = (activity.get("provider") or {}).get("func")
    if func in FUNCTION_LANES:
        return FUNCTION_LANES[func]
    name = str(activity.get("name") or "").lower()
    for word, lane in NAME_HINTS:
        if word in name:
            return lane
    return "other"


def run_origin(evidence: dict, journal: dict) -> float | None:
    """The run's start (epoch seconds): the journal's, else the evidence's, else the first
    activity's; None when nothing has a time."""
    for value in (journal.get("start"), evidence.get("started_at")):
        if to_epoch(value) is not None:
            return to_epoch(value)
    starts = [to_epoch(r.get("start")) for _, r in activity_records(journal)]
    starts = [s for s in starts if s is not None]
    return min(starts) if starts else None


def activity_spans(journal: dict, origin: float) -> list[Span]:
    """A span per journal activity with a start time (an activity cut short without an end
    ends at its start); the steady-state probes of each hypothesis as one span."""
    spans: list[Span] = []
    hypotheses: dict[str, list[tuple[float, float, str | None]]] = {"before": [], "after": []}
    for section, record in activity_records(journal):
        start = to_epoch(record.get("start"))
        if start is None:
            continue
        end = to_epoch(record.get("end"))
        end = start if end is None or end < start else end
        status = record.get("status")
        if section in hypotheses:
            hypotheses[section].append((start - origin, end - origin, status))
            continue
        name = str((record.get("activity") or {}).get("name") or "?")
        lane = activity_lane(section, record)
        spans.append(Span(lane, name, start - origin, end - origin, lane, status))
    steady = journal.get("steady_states") or {}
    for section, probes in hypotheses.items():
        if not probes:
            continue
        met = (steady.get(section) or {}).get("steady_state_met")
        statuses = {p[2] for p in probes}
        status = ("interrupted" if "interrupted" in statuses
                  else "failed" if met is False or "failed" in statuses else "succeeded")
        mark = {True: " ✓", False: " ✗"}.get(met, "")
        spans.append(Span("steady state", f"{section}{mark}", min(p[0] for p in probes),
                          max(p[1] for p in probes), "steady state", status))
    return spans


def is_load_stop(record: dict) -> bool:
    """True for the activity that stops the load (usually a rollback)."""
    activity = record.get("activity") or {}
    name = str(activity.get("name") or "").lower()
    return ((activity.get("provider") or {}).get("func") == "stop_load"
            or ("stop" in name and "load" in name))


def load_span(spans: list[Span], journal: dict, origin: float) -> list[Span]:
    """The load's activities of the method as one span, from the first to the activity
    that stops the load (wherever it is), else to the end of the last activity."""
    loads = [s for s in spans if s.lane == "load"]
    if not loads:
        return spans
    others = [s for s in spans if s.lane != "load"]
    stops = [to_epoch(r.get("end")) or to_epoch(r.get("start"))
             for _, r in activity_records(journal) if is_load_stop(r)]
    stops = [t - origin for t in stops if t is not None]
    end = max(stops) if stops else max(s.end for s in spans)
    status = next((s.status for s in loads if s.status in ("failed", "interrupted")),
                  "succeeded")
    return others + [Span("load", "load running", min(s.start for s in loads),
                          max(end, *(s.end for s in loads)), "load", status)]


def heal_spans(evidence: dict, origin: float) -> list[Span]:
    """Fault → writable primary → all instances healthy, from the evidence; the operator's
    own failover (CNPG targetPrimaryTimestamp → currentPrimaryTimestamp) as a thin bar."""
    fault = evidence.get("fault") or {}
    failover = evidence.get("failover") or {}
    at = to_epoch(fault.get("epoch")) or to_epoch(fault.get("at"))
    spans = []
    writable, healthy = failover.get("seconds"), failover.get("healthy_seconds")
    if at is not None and isinstance(writable, int | float):
        t = at - origin
        label = f"writable after {fmt_seconds(writable)}"
        if isinstance(healthy, int | float) and healthy > writable:
            # one label, on the second bar: the first is often too narrow for any
            spans.append(Span("heal", "", t, t + writable, "failover"))
            spans.append(Span("heal", f"{label}, healthy after {fmt_seconds(healthy)}",
                              t + writable, t + healthy, "heal"))
        else:
            spans.append(Span("heal", label, t, t + writable, "failover"))
    operator = (failover.get("target") or {}).get("operator") or {}
    decided = to_epoch(operator.get("target_primary_timestamp"))
    running = to_epoch(operator.get("current_primary_timestamp"))
    if decided is not None and running is not None and running >= decided:
        spans.append(Span("heal", "operator", decided - origin, running - origin, "operator",
                          thin=True))
    return spans


def ordered_subphases(details: dict) -> list[tuple[str, float]]:
    """The target's restore sub-phases in the order they happen (SUBPHASE_ORDER first)."""
    known = [(k, details[k]) for k in SUBPHASE_ORDER if k in details]
    rest = [(k, v) for k, v in details.items() if k not in SUBPHASE_ORDER]
    return [(k, float(v)) for k, v in known + rest if isinstance(v, int | float)]


def restore_spans(evidence: dict, origin: float) -> list[Span]:
    """The restore's sub-phases laid end to end from `restore.started_at`."""
    restore = evidence.get("restore") or {}
    start = to_epoch(restore.get("started_at"))
    if start is None:
        return []
    details = ordered_subphases(restore.get("phase_details") or {})
    if not details:  # only the neutral phases
        details = [(k, float(v)) for k, v in (restore.get("phases") or {}).items()
                   if k != "validate" and isinstance(v, int | float)]
    spans, t = [], start - origin
    for i, (name, seconds) in enumerate(details):
        spans.append(Span("restore", f"{name} {fmt_seconds(seconds)}", t, t + seconds,
                          f"restore:{i}"))
        t += seconds
    return spans


def preflight_span(evidence: dict, journal: dict, origin: float) -> list[Span]:
    """The run's start to its first activity: the pgdrill control's preflight (and, when
    refused, to the journal's end: nothing else ran)."""
    starts = [to_epoch(r.get("start")) for section, r in activity_records(journal)
              if section != "rollbacks"]
    starts = [t for t in starts if t is not None]
    refused = evidence.get("verdict") == "refused"
    end = min(starts) if starts else None
    if refused and not starts:
        ends = [to_epoch(journal.get("end"))] + [to_epoch(r.get("start"))
                                                 for _, r in activity_records(journal)]
        end = min([e for e in ends if e is not None], default=None)
    if end is None or end <= origin:
        return []
    return [Span("preflight", "preflight: refused" if refused else "preflight", 0.0,
                 end - origin, "preflight", "failed" if refused else "succeeded")]


def timeline_spans(evidence: dict, journal: dict, origin: float) -> list[Span]:
    """Every bar of the top panel."""
    spans = load_span(activity_spans(journal, origin), journal, origin)
    spans = preflight_span(evidence, journal, origin) + spans
    heal = heal_spans(evidence, origin)
    if any(not s.thin for s in heal):  # the evidence's times replace the probe's span
        spans = [s for s in spans if s.lane != "heal" or s.status in ("failed", "interrupted")]
    restore = restore_spans(evidence, origin)
    # the restore activity stays as the background of its sub-phases
    return spans + heal + restore


def markers(evidence: dict, journal: dict, origin: float) -> list[Marker]:
    """The fault instant, and where an interrupted run stopped."""
    found = []
    fault = evidence.get("fault") or {}
    at = to_epoch(fault.get("epoch")) or to_epoch(fault.get("at"))
    if at is not None:
        found.append(Marker(at - origin, f"fault: {fault.get('kind') or '?'}"
                            + (f" on {fault['instance']}" if fault.get("instance") else ""),
                            COLOURS["fault"]))
    if evidence.get("verdict") == "interrupted":
        ends = [to_epoch(journal.get("end"))] + [to_epoch(r.get("end"))
                                                  for _, r in activity_records(journal)]
        ends = [e for e in ends if e is not None]
        if ends:
            found.append(Marker(max(ends) - origin, "interrupted", "#6a3d9a"))
    return found


def fmt_seconds(value: float) -> str:
    """Seconds as people read them: 0.426s, 11.1s, 2m05s."""
    if value < 10:
        return f"{value:.3g}s"
    if value < 120:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s"
