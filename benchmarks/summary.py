"""The bench's goals, its verdict on each, and the Markdown table README shows (pure)."""

from __future__ import annotations

# name -> (comparison, goal); each is judged at every size that measured it
GOALS = {
    "overhead_ratio": ("<=", 1.15),
    "replay_speedup": (">=", 2.0),
    "fingerprint_vs_seqscan": (">=", 0.7),
    "fingerprint_vs_naive": (">=", 3.0),
    "acked_writes_per_second": (">=", 300.0),
    "lost_write_count_error": ("==", 0),
}
# the replay speedup goal is stated for the ~1 GB database
SPEEDUP_SIZES = ("1GB", "4GB")


def _met(value, comparison: str, goal) -> bool | None:
    if value is None:
        return None
    return {"<=": value <= goal, ">=": value >= goal, "==": value == goal}[comparison]


def judge(report: dict, smoke: bool = False) -> list[dict]:
    """One verdict per goal and size: measured value, goal, met (None: not measured). A
    smoke run (a tiny database) measures the harness, not the goals: nothing is judged."""
    verdicts = []
    for size in report["sizes"]:
        fingerprints = size.get("fingerprints") or {}
        values = {
            "overhead_ratio": size.get("overhead_ratio"),
            "fingerprint_vs_seqscan": fingerprints.get("fingerprint_vs_seqscan"),
            "fingerprint_vs_naive": fingerprints.get("fingerprint_vs_naive"),
        }
        if size["size"] in SPEEDUP_SIZES:
            values["replay_speedup"] = size.get("replay_speedup")
        for name, value in values.items():
            comparison, goal = GOALS[name]
            verdicts.append(
                {
                    "goal": name,
                    "size": size["size"],
                    "measured": value,
                    "target": f"{comparison} {goal}",
                    "met": None if smoke else _met(value, comparison, goal),
                }
            )
    load = report.get("load") or {}
    for name in ("acked_writes_per_second", "lost_write_count_error"):
        comparison, goal = GOALS[name]
        value = load.get(name)
        verdicts.append(
            {
                "goal": name,
                "size": None,
                "measured": value,
                "target": f"{comparison} {goal}",
                "met": None if smoke else _met(value, comparison, goal),
            }
        )
    return verdicts


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown(report: dict) -> str:
    """The table: one column per size, rows per measurement; then goals and load."""
    sizes = report["sizes"]
    head = "| measured | " + " | ".join(s["size"] for s in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)

    def row(label: str, pick) -> str:
        return f"| {label} | " + " | ".join(_fmt(pick(s)) for s in sizes) + " |"

    def phase(part: str, name: str):
        return lambda s: (s[part]["restore"]["phases"] or {}).get(name)

    lines = [
        head,
        rule,
        row("database MB", lambda s: s["database_bytes"] / 1e6),
        row("WAL replayed after the backup, MB", lambda s: s["wal_bytes"] / 1e6),
        row("raw: barman-cloud-backup s", lambda s: s["raw"]["backup_seconds"]),
        row("raw: fetch s", phase("raw", "fetch")),
        row("raw: replay s (parallel fetch)", phase("raw", "replay")),
        row("raw: count(*) of every table s", phase("raw", "checks")),
        row("raw: total s", lambda s: s["raw"]["seconds"]),
        row("pgdrill: backup s", lambda s: s["pgdrill"]["backup_seconds"]),
        row(
            "pgdrill: restore (fetch+replay+ready) s",
            lambda s: s["pgdrill"]["restore"]["restore_seconds"],
        ),
        row("pgdrill: position proof + checklist s", phase("pgdrill", "checks")),
        row("pgdrill: total s", lambda s: s["pgdrill"]["seconds"]),
        row("**overhead_ratio** (goal <= 1.15)", lambda s: s["overhead_ratio"]),
        row("replay, one process per segment s", lambda s: s["replay_serial_seconds"]),
        row("replay, parallel fetch s", lambda s: s["replay_parallel_seconds"]),
        row("**replay speedup** (goal >= 2 at 1 GB)", lambda s: s["replay_speedup"]),
        row("restore MB/s (database / pgdrill restore)", lambda s: s["restore_mb_per_s"]),
        row(
            "fingerprint rows/s",
            lambda s: (s.get("fingerprints") or {}).get("fingerprint_rows_per_s"),
        ),
        row(
            "**fingerprint_vs_seqscan** (vs the row-text scan; goal >= 0.7)",
            lambda s: (s.get("fingerprints") or {}).get("fingerprint_vs_seqscan"),
        ),
        row(
            "fingerprint vs a row scan without text (stricter)",
            lambda s: (s.get("fingerprints") or {}).get("fingerprint_vs_row_scan"),
        ),
        row(
            "**fingerprint_vs_naive** (goal >= 3)",
            lambda s: (s.get("fingerprints") or {}).get("fingerprint_vs_naive"),
        ),
    ]
    load = report.get("load") or {}
    lines += [
        "",
        f"Load during the drill: **{_fmt(load.get('acked_writes_per_second'))} "
        f"acknowledged writes/s** (goal >= 300), lost_write_count_error "
        f"**{_fmt(load.get('lost_write_count_error'))}** (goal 0).",
    ]
    if report.get("growth"):
        g = report["growth"]
        lines.append(
            f"Growth: the drill's backup + restore path takes "
            f"{_fmt(g['drill_seconds_per_gb'])} s more per GB ({g['from']} → {g['to']})."
        )
    missed = [v for v in report.get("verdicts") or [] if v["met"] is False]
    unmeasured = [v for v in report.get("verdicts") or [] if v["measured"] is None]
    lines.append(
        "Goals: "
        + (
            "all met."
            if not missed
            else "MISSED: "
            + ", ".join(
                f"{v['goal']} {('at ' + v['size']) if v['size'] else ''} = {_fmt(v['measured'])} "
                f"({v['target']})"
                for v in missed
            )
            + "."
        )
    )
    if unmeasured:
        lines.append("Not measured: " + ", ".join(sorted({v["goal"] for v in unmeasured})) + ".")
    return "\n".join(lines) + "\n"
