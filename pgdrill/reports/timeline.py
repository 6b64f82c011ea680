"""The drill as a picture: a PNG timeline of one run, for the human reports.

Top panel: one lane per kind of phase — steady state (before, after), load, backup, fault,
heal (fault → writable primary → every instance healthy, and on CNPG the operator's own
failover), restore (the restore activity with the target's sub-phases from
`restore.phase_details`), verification (checklist, pg_amcheck, fingerprints, lost writes) and
rollbacks — from the Chaos Toolkit journal's activity start/end times and the evidence. A
vertical line marks the fault instant (`evidence.fault.epoch`). Bottom panel: the load's
acknowledged writes per second (the ack log, `acks.csv`), Locust's failed requests (its
`locust_stats_history.csv`) and the clients' write outage (`failover.client_write_outage`).

The x axis is seconds since the run started (the journal's `start`). Every part is optional:
a run without load, fault or restore, or one refused or interrupted, still gives a valid PNG
of the same size (WIDTH x HEIGHT pixels). The figure is drawn with matplotlib's Agg canvas
directly (no pyplot, no display, no global state).

Pure functions turn the journal and evidence into spans and the ack log into rates;
`draw_timeline` reads the run folder's load files and renders."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pgdrill.errors import BadInput
from pgdrill.load.acklog import read_acks

WIDTH, HEIGHT, DPI = 1200, 500, 100
LEFT, RIGHT = 0.105, 0.93  # the panels' edges, as fractions of WIDTH
AXIS_PX = WIDTH * (RIGHT - LEFT)
ACK_LOG = "acks.csv"
LOCUST_HISTORY = "locust_stats_history.csv"

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


def bin_width(span_seconds: float, target_bins: int = 240) -> float:
    """A round bin width giving at most about `target_bins` bins (1 s for a short run)."""
    raw = max(span_seconds, 1.0) / target_bins
    for width in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if width >= raw:
            return float(width)
    return float(math.ceil(raw / 600) * 600)


def rates(times: Iterable[float], origin: float, width: float,
          weights: Iterable[float] | None = None) -> tuple[list[float], list[float]]:
    """Events per second in bins of `width` seconds since `origin`: (edges, rates)."""
    times = list(times)
    weights = list(weights) if weights is not None else [1.0] * len(times)
    if not times:
        return [], []
    first = math.floor(min(t - origin for t in times) / width)
    last = math.floor(max(t - origin for t in times) / width)
    counts = [0.0] * (last - first + 1)
    for t, w in zip(times, weights):
        counts[math.floor((t - origin) / width) - first] += w
    edges = [(first + i) * width for i in range(len(counts) + 1)]
    return edges, [c / width for c in counts]


def ack_times(run_dir: Path) -> tuple[list[float], str | None]:
    """The ack log's acknowledgement instants, and a note when it could not be read."""
    path = Path(run_dir) / ACK_LOG
    if not path.exists():
        return [], None
    try:
        return [a.acked_at for a in read_acks(path)], None
    except BadInput as exc:
        return [], f"ack log unreadable: {exc.message}"


def locust_failures(run_dir: Path) -> list[tuple[float, int]]:
    """(epoch, failed requests since the previous row) from Locust's statistics history
    (one "Aggregated" row per second with a cumulative failure count); [] without one."""
    path = Path(run_dir) / LOCUST_HISTORY
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    except (OSError, csv.Error):
        return []
    found, previous = [], 0
    for row in rows:
        try:
            when, total = float(row["Timestamp"]), int(float(row["Total Failure Count"]))
        except (KeyError, TypeError, ValueError):
            continue
        if total > previous:
            found.append((when, total - previous))
        previous = max(previous, total)
    return found


def fmt_seconds(value: float) -> str:
    """Seconds as people read them: 0.426s, 11.1s, 2m05s."""
    if value < 10:
        return f"{value:.3g}s"
    if value < 120:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s"


# -- rendering ---------------------------------------------------------------------------
def draw_timeline(evidence: dict, journal: dict, run_dir: Path) -> bytes:
    """The run's timeline as a WIDTH x HEIGHT PNG (see the module docstring)."""
    origin = run_origin(evidence, journal)
    acks, ack_note = ack_times(run_dir)
    failures = locust_failures(run_dir)
    if origin is None:
        origin = min(acks) if acks else 0.0
    spans = timeline_spans(evidence, journal, origin)
    lines = markers(evidence, journal, origin)
    right = max([s.end for s in spans] + [m.at for m in lines]
                + [a - origin for a in acks[-1:]]
                + [(to_epoch(journal.get("end")) or origin) - origin, 1.0])
    left = min([0.0] + [s.start for s in spans])
    pad = (right - left) * 0.01
    xlim = (left - pad, right + pad)

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 2), left=LEFT, right=RIGHT, top=0.9,
                            bottom=0.1, hspace=0.14)
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    fig.suptitle(_title(evidence), x=LEFT, ha="left", fontsize=11, fontweight="bold")
    _draw_lanes(top, spans, xlim, evidence)
    _draw_load(bottom, acks, failures, origin, xlim, evidence, ack_note)
    _draw_markers(top, bottom, lines, xlim)
    bottom.set_xlim(*xlim)
    started = datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    bottom.set_xlabel(f"seconds since the run started ({started})", fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _draw_markers(top, bottom, lines: list[Marker], xlim: tuple[float, float]) -> None:
    """Each marker as a dashed line over both panels, its label above the top panel (to
    the left of the line near the right edge); a label that would overlap the previous one
    goes just inside the top panel instead."""
    px_per_second = AXIS_PX / (xlim[1] - xlim[0])
    taken: list[tuple[float, float]] = []
    for marker in sorted(lines, key=lambda m: m.at):
        for ax in (top, bottom):
            ax.axvline(marker.at, color=marker.colour, linestyle="--", linewidth=1.3, zorder=5)
        x_px = (marker.at - xlim[0]) * px_per_second
        width = 6.4 * len(marker.label) + 4
        right = x_px + width > AXIS_PX
        extent = (x_px - width, x_px) if right else (x_px, x_px + width)
        inside = any(a < extent[1] and extent[0] < b for a, b in taken)
        if not inside:
            taken.append(extent)
        top.annotate(marker.label, xy=(marker.at, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(-3 if right else 3, -3 if inside else 2),
                     textcoords="offset points", fontsize=8, color=marker.colour,
                     fontweight="bold", va="top" if inside else "bottom",
                     ha="right" if right else "left", zorder=6,
                     bbox={"facecolor": "white", "edgecolor": "none", "pad": 1}
                     if inside else None)


def _title(evidence: dict) -> str:
    verdict = str(evidence.get("verdict") or "?").upper()
    return (f"{evidence.get('experiment') or 'drill'} on {evidence.get('target') or '?'}"
            f" ({evidence.get('environment') or '?'}): {verdict}")


def _draw_lanes(ax, spans: list[Span], xlim: tuple[float, float], evidence: dict) -> None:
    lanes = [lane for lane in LANES if any(s.lane == lane for s in spans)]
    ax.set_xlim(*xlim)
    ax.tick_params(labelbottom=False, labelsize=8)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    if not lanes:
        why = ("refused by the preflight: no activity ran" if evidence.get("verdict") == "refused"
               else "no activity recorded")
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=11,
                color="#555555")
        ax.set_yticks([])
        return
    row = {lane: i for i, lane in enumerate(lanes)}  # from the top
    ax.set_ylim(max(len(lanes), 5) - 0.4, -0.6)
    ax.set_yticks(list(row.values()), list(row), fontsize=8.5)
    px_per_second = AXIS_PX / (xlim[1] - xlim[0])
    min_width = 3 / px_per_second  # a 2 ms activity still shows
    has_subphases = any(s.kind.startswith("restore:") for s in spans)
    occupied: dict[str, list[tuple[float, float]]] = {lane: [] for lane in lanes}
    labelled = []
    for span in spans:
        y = row[span.lane]
        width = max(span.end - span.start, min_width)
        colour = _colour(span.kind)
        height = 0.22 if span.thin else 0.7
        background = has_subphases and span.kind == "restore"
        edge = {"failed": "#B00020", "interrupted": "#6a3d9a"}.get(span.status, "none")
        ax.broken_barh([(span.start, width)], (y + 0.35 - height, height), facecolors=colour,
                       alpha=0.35 if background else 1.0, edgecolor=edge,
                       linewidth=2 if edge != "none" else 0,
                       hatch="//" if span.status == "interrupted" else None, zorder=2)
        occupied[span.lane].append((span.start, span.start + width))
        if span.label and not (background or span.thin):
            labelled.append((span, span.start, span.start + width))
    for span, start, end in labelled:
        _label(ax, span, start, end, row[span.lane], px_per_second, xlim,
               occupied[span.lane])


def _label(ax, span: Span, start: float, end: float, y: float, px_per_second: float,
           xlim: tuple[float, float], occupied: list[tuple[float, float]]) -> None:
    """Write the span's label inside its bar when it fits, else beside it (right, then
    left) where nothing else in the lane is; else nowhere (the report lists every phase)."""
    mark = {"failed": " ✗", "interrupted": " (interrupted)"}.get(span.status, "")
    # the whole label, else its last clause ("writable after 1s, healthy after 3s")
    for label in dict.fromkeys([span.label + mark, span.label.split(", ")[-1] + mark]):
        text = (6.2 * len(label) + 6) / px_per_second
        if end - start >= text:
            ax.text((start + end) / 2, y, label, ha="center", va="center", fontsize=7.5,
                    color=_ink(_colour(span.kind)), zorder=3, clip_on=True)
            return
        for low, high, ha in ((end, end + text, "left"), (start - text, start, "right")):
            free = xlim[0] <= low and high <= xlim[1] and not any(
                a < high and low < b for a, b in occupied if (a, b) != (start, end))
            if free:
                ax.text(end if ha == "left" else start, y, f" {label} ", ha=ha, va="center",
                        fontsize=7.5, color="#222222", zorder=3, clip_on=True)
                occupied.append((low, high))
                return


def _draw_load(ax, acks: list[float], failures: list[tuple[float, int]], origin: float,
               xlim: tuple[float, float], evidence: dict, note: str | None) -> None:
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_ylabel("writes/s", fontsize=9)
    if not acks and not failures:
        ax.text(0.5, 0.5, note or "no load ran in this run (no acknowledged writes)",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#555555")
        ax.set_yticks([])
        return
    width = bin_width(xlim[1] - xlim[0])
    handles = []
    if acks:
        edges, values = rates(acks, origin, width)
        handles.append(ax.stairs(values, edges, fill=True, color="#0072B2", alpha=0.75,
                                 label=f"acknowledged writes/s ({len(acks)} in {ACK_LOG}, "
                                       f"{width:g}s bins)"))
    ax.set_ylim(bottom=0)
    outage = (evidence.get("failover") or {}).get("client_write_outage") or {}
    last, first = to_epoch(outage.get("last_ack_before")), to_epoch(outage.get("first_ack_after"))
    if last is not None and first is not None:
        seconds = outage.get("seconds")
        seconds = seconds if isinstance(seconds, int | float) else first - last
        handles.append(ax.axvspan(last - origin, max(first - origin, last - origin + width / 4),
                                  color="#D55E00", alpha=0.3, linewidth=0,
                                  label=f"clients' write outage {fmt_seconds(seconds)}"))
    if failures:
        twin = ax.twinx()
        edges, values = rates([t for t, _ in failures], origin, width, [n for _, n in failures])
        handles.append(twin.stairs(values, edges, color="#B00020", linewidth=1.6,
                                   label=f"failed requests/s (Locust, "
                                         f"{sum(n for _, n in failures)} in all)"))
        twin.set_ylim(bottom=0, top=max(values) * 1.25)
        twin.set_ylabel("failed/s", fontsize=9, color="#B00020")
        twin.tick_params(labelsize=8, colors="#B00020")
    elif acks:
        ax.plot([], [], " ", label="no failed requests reported by Locust")
        handles = ax.get_legend_handles_labels()[0]
    if note:
        ax.text(0.01, 0.95, note, transform=ax.transAxes, fontsize=8, va="top", color="#B00020")
    ax.legend(handles=handles, loc="lower left", fontsize=7.5, framealpha=0.85)


def _colour(kind: str) -> str:
    if kind.startswith("restore:"):
        return RESTORE_SHADES[int(kind.split(":")[1]) % len(RESTORE_SHADES)]
    return COLOURS.get(kind, COLOURS["other"])


def _ink(colour: str) -> str:
    """Black or white text, whichever reads better on `colour`."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"
