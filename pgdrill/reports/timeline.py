"""The drill as a picture: a PNG timeline of one run, for the human reports.

Top panel: one lane per kind of phase (the spans of pgdrill.reports.spans: steady state,
load, backup, fault, heal, restore with the target's sub-phases, verification, rollbacks),
with a vertical line at the fault instant (`evidence.fault.epoch`). Bottom panel: the load's
acknowledged writes per second (the ack log, `acks.csv`), Locust's failed requests (its
`locust_stats_history.csv`) and the clients' write outage (`failover.client_write_outage`),
from pgdrill.reports.loadseries.

The x axis is seconds since the run started (the journal's `start`). Every part is optional:
a run without load, fault or restore, or one refused or interrupted, still gives a valid PNG
of the same size (WIDTH x HEIGHT pixels). The figure is drawn with matplotlib's Agg canvas
directly (no pyplot, no display, no global state). `draw_timeline` reads the run folder's
load files and renders; the names of the span and load modules the tests use (`run_origin`,
`timeline_spans`, `markers`, `LANES`, `ack_times`, `locust_failures`, `rates`, `bin_width`)
are importable from here too."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pgdrill.reports.loadseries import ACK_LOG, ack_times, bin_width, locust_failures, rates
from pgdrill.reports.spans import (
    COLOURS, LANES, RESTORE_SHADES, Marker, Span, fmt_seconds, markers, run_origin, timeline_spans,
    to_epoch,
)

WIDTH, HEIGHT, DPI = 1200, 500, 100
LEFT, RIGHT = 0.105, 0.93  # the panels' edges, as fractions of WIDTH
AXIS_PX = WIDTH * (RIGHT - LEFT)


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
