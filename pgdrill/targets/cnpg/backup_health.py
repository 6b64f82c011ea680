"""Step 1 of the safe workflow, "Verify Backups: check the current scheduled backup and
retention status in CNPG", as a pure function: the caller reads the Cluster, its
ScheduledBackups, its Backups (and, for the barman-cloud plugin, its ObjectStore) from
Kubernetes; `assess_backups` says whether backups are healthy, one actionable sentence per
problem, and returns everything it read as JSON-ready facts for the drill's evidence.

Rules (each failure is a sentence in `BackupHealth.problems` and makes `ok` False):

1. Schedules. At least one ScheduledBackup must target the Cluster (`spec.cluster.name`, same
   namespace) and not all of them may be suspended (`spec.suspend`). For each active one:
   - the schedule must parse the way CNPG parses it (below); invalid, or never firing
     (CNPG then schedules nothing) -> problem;
   - a 5-field schedule -> problem (see "5-field schedules");
   - staleness: F = the first run the schedule expects after `status.lastScheduleTime`;
     F + grace < now -> "ScheduledBackup X last ran at T, its schedule 'S' expected a run at
     F". A run late by exactly `grace` passes. Without `lastScheduleTime` (never ran) F is
     the first run after `status.lastCheckTime` (CNPG's first check; it waits for the next
     slot), else after `metadata.creationTimestamp`; with none of them -> problem;
   - `spec.method` must fit the Cluster (default `barmanObjectStore` needs
     `spec.backup.barmanObjectStore`; `plugin` needs `pluginConfiguration.name` naming an
     enabled entry of the Cluster's `spec.plugins`; `volumeSnapshot` needs
     `spec.backup.volumeSnapshot`), otherwise every Backup it creates fails.
2. Newest successful backup: the newest of Cluster `status.lastSuccessfulBackup` (and
   `lastSuccessfulBackupByMethod`, in-tree only), ObjectStore
   `status.serverRecoveryWindow[<serverName>].lastSuccessfulBackupTime` (plugin; v0.5.0's
   misspelling `lastSuccussfulBackupTime` is read too) and the newest `completed` Backup
   object's `status.stoppedAt`; its source is recorded. None -> problem. Older than
   `max_backup_age`, or else than the shortest active schedule's period + grace -> problem.
   A schedule's period is the longer of the two intervals around its latest run at or
   before now, so uneven schedules (weekdays only, `@monthly`) are not flagged over their
   long gaps; `@every D` has period D. `grace` must cover controller lag AND how long a
   backup takes (the newest backup completes after its slot).
3. First recoverability point: Cluster `status.firstRecoverabilityPoint` (and `...ByMethod`)
   or the ObjectStore window's `firstRecoverabilityPoint`; the earliest is reported. None ->
   problem (nothing to recover to).
4. Conditions: `ContinuousArchiving` must be `True` (missing or Unknown count as a problem:
   WAL archiving is unconfirmed); `LastBackupSucceeded` `False` -> problem. Reason and
   message are quoted.
5. The newest Backup object of the Cluster in phase `failed`, `walArchivingFailing` or
   `invalid backup definition` -> problem quoting `status.error`.
6. Retention policy (in-tree `spec.backup.retentionPolicy`, plugin ObjectStore
   `spec.retentionPolicy`) is read into facts; absent is a note and a warning, not a failure.

Non-failing observations go to `BackupHealth.warnings`. Malformed status never raises:
unparseable timestamps are listed in `facts["unparseable"]` and treated as missing.

Schedules are parsed exactly as CNPG 1.30 does, by `pgdrill.targets.cnpg.cron` (a port of
`github.com/robfig/cron` v1.2.0 `cron.Parse`; its docstring has the syntax): six fields,
seconds FIRST, descriptors and `@every <Go duration>`, times UTC. `parse_schedule`,
`Schedule` and `ScheduleError` are re-exported here.

5-field schedules: robfig v1 treats day-of-week as optional, so CNPG accepts "0 2 * * *" with
only a warning and reads it SECONDS-FIRST: second 0, minute 2, every hour, i.e. hourly at :02,
not crontab's "daily at 02:00" (and "30 2 * * 1-5" runs only January to May). Here such a
schedule is evaluated the way CNPG runs it and is also reported as a PROBLEM that shows
CNPG's reading and the 6-field spelling of the crontab meaning ('0 ' + schedule): the backup
cadence is then not what its author believes, which is exactly what this step must catch.

CNPG rules: /work/shared/docs/reference/cnpg.md §3 (Backup, ScheduledBackup), §2 (plugin
ObjectStore status), §6 (conditions)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgdrill.core.times import human_span, to_utc
from pgdrill.targets.cnpg.cron import (
    SEARCH_YEARS,
    Schedule,
    ScheduleError,
    parse_schedule,
)
from pgdrill.targets.cnpg.manifests import PLUGIN_NAME

# the schedule parser lives in pgdrill.targets.cnpg.cron; its public names stay importable here
__all__ = [
    "DEFAULT_GRACE",
    "FAILED_PHASES",
    "NEWEST_BACKUPS_IN_FACTS",
    "RETENTION_PATTERN",
    "SEARCH_YEARS",
    "BackupHealth",
    "Schedule",
    "ScheduleError",
    "assess_backups",
    "parse_schedule",
    "parse_time",
]

DEFAULT_GRACE = timedelta(hours=1)
FAILED_PHASES = ("failed", "walArchivingFailing", "invalid backup definition")
NEWEST_BACKUPS_IN_FACTS = 5
RETENTION_PATTERN = re.compile(r"^[1-9][0-9]*[dwm]$")  # CRD pattern, in-tree and ObjectStore


# --------------------------------------------------------------------------------------------
# The assessment
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupHealth:
    """The verdict of "verify backups". `problems`: one actionable sentence each, naming the
    object and the fix; `ok` is True exactly when there are none. `warnings`: worth knowing,
    not failing. `facts`: everything read and derived, JSON-ready (times RFC 3339 UTC,
    durations in seconds plus a human form), for the drill's evidence."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "facts": copy.deepcopy(self.facts),
        }


def assess_backups(
    cluster: dict,
    scheduled_backups: list[dict] | dict | None,
    backups: list[dict] | dict | None,
    *,
    now: datetime,
    object_store: dict | None = None,
    server_name: str | None = None,
    grace: timedelta = DEFAULT_GRACE,
    max_backup_age: timedelta | None = None,
) -> BackupHealth:
    """Assess the backups of one CNPG `cluster` (its `kubectl get cluster -o json` document).

    `scheduled_backups` and `backups`: the namespace's ScheduledBackup and Backup documents
    (a list, or the `kind: List` document kubectl prints); those of other clusters are ignored.
    `object_store`: the barman-cloud plugin's ObjectStore (its status holds the recovery
    window); `server_name`: the plugin's serverName (default: the Cluster's plugin parameter
    `serverName`, else the Cluster name). `now`: the evaluation time (naive means UTC).
    `grace`: how late a run and its backup may be (controller lag plus backup duration).
    `max_backup_age`: the newest backup's allowed age, instead of period + grace.

    Never raises for malformed documents; raises ValueError only for a negative `grace` or a
    non-positive `max_backup_age`, TypeError when `now` is not a datetime."""
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative: {grace}")
    if max_backup_age is not None and max_backup_age <= timedelta(0):
        raise ValueError(f"max_backup_age must be positive: {max_backup_age}")
    return _Assessment(
        cluster,
        _items(scheduled_backups),
        _items(backups),
        now=to_utc(now),
        object_store=object_store,
        server_name=server_name,
        grace=grace,
        max_backup_age=max_backup_age,
    ).run()


class _Assessment:
    def __init__(
        self,
        cluster,
        scheduled_backups,
        backups,
        *,
        now,
        object_store,
        server_name,
        grace,
        max_backup_age,
    ):
        self.cluster = cluster if isinstance(cluster, dict) else {}
        self.now, self.grace, self.max_backup_age = now, grace, max_backup_age
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.unparseable: list[dict] = []
        self.name = _str(_get(self.cluster, "metadata", "name"))
        self.namespace = _str(_get(self.cluster, "metadata", "namespace"))
        self.ref = _ref(self.name or "?", self.namespace)
        self.scheduled = [d for d in scheduled_backups if self._mine(d)]
        self.backups = [d for d in backups if self._mine(d)]
        self.spec = self.cluster.get("spec") if isinstance(self.cluster.get("spec"), dict) else None
        self.status = _dict(self.cluster.get("status"))
        self.in_tree = _dict(_get(self.spec, "backup", "barmanObjectStore"))
        self.volume_snapshot = _dict(_get(self.spec, "backup", "volumeSnapshot"))
        plugins = _get(self.spec, "plugins")
        self.enabled_plugins = [
            p
            for p in (plugins if isinstance(plugins, list) else [])
            if isinstance(p, dict) and p.get("enabled", True) is not False
        ]
        self.barman_plugin = next(
            (p for p in self.enabled_plugins if p.get("name") == PLUGIN_NAME), None
        )
        self.store_name = _str(_get(self.barman_plugin, "parameters", "barmanObjectName"))
        self.object_store = self._object_store(object_store)
        self.server_name, self.server_name_source = self._server_name(server_name)
        self.shortest: tuple[timedelta, str] | None = None  # (period + grace, which schedule)

    # -- plumbing --------------------------------------------------------------------------

    def _mine(self, doc) -> bool:
        if not isinstance(doc, dict) or not self.name:
            return False
        ns = _str(_get(doc, "metadata", "namespace"))
        return _get(doc, "spec", "cluster", "name") == self.name and (
            not ns or not self.namespace or ns == self.namespace
        )

    def _time(self, where: str, value) -> datetime | None:
        if value is None or value == "":
            return None
        parsed = parse_time(value)
        entry = {"field": where, "value": _jsonable(value)}
        if parsed is None and entry not in self.unparseable:
            self.unparseable.append(entry)
        return parsed

    def _object_store(self, doc) -> dict | None:
        if doc is None:
            return None
        if not isinstance(doc, dict):
            self.warnings.append("The ObjectStore passed is not a document; it was ignored.")
            return None
        name = _str(_get(doc, "metadata", "name"))
        if self.store_name and name and name != self.store_name:
            self.warnings.append(
                f"ObjectStore {name} was passed but Cluster {self.ref} backs up into "
                f"ObjectStore {self.store_name} (spec.plugins parameters.barmanObjectName); "
                f"its status was ignored: pass ObjectStore {self.store_name}."
            )
            return None
        return doc

    def _server_name(self, given) -> tuple[str | None, str | None]:
        if given:
            return str(given), "argument"
        plugin_server = _str(_get(self.barman_plugin, "parameters", "serverName"))
        if plugin_server:
            return plugin_server, f"Cluster spec.plugins[{PLUGIN_NAME}].parameters.serverName"
        if self.in_tree and _str(self.in_tree.get("serverName")):
            return self.in_tree["serverName"], "Cluster spec.backup.barmanObjectStore.serverName"
        if self.name:
            return self.name, "the Cluster name (serverName default)"
        return None, None

    @property
    def style(self) -> str:
        kinds = [
            k
            for k, on in (
                ("in-tree", bool(self.in_tree)),
                ("plugin", self.barman_plugin is not None),
                ("volumeSnapshot", bool(self.volume_snapshot)),
            )
            if on
        ]
        return "+".join(kinds) if kinds else ("unknown" if self.spec is None else "none")

    # -- the rules -------------------------------------------------------------------------

    def run(self) -> BackupHealth:
        if not self.name:
            self.problems.append(
                "The Cluster document has no metadata.name, so its "
                "ScheduledBackups and Backups cannot be matched: pass the "
                "Cluster as `kubectl get cluster NAME -n NS -o json` prints it."
            )
        elif self.spec is not None and self.style == "none":
            self.problems.append(
                f"Cluster {self.ref} has no backup configured (no spec.backup.barmanObjectStore,"
                f" no enabled {PLUGIN_NAME} plugin in spec.plugins, no "
                f"spec.backup.volumeSnapshot): configure the barman-cloud plugin with an "
                f"ObjectStore."
            )
        if self.barman_plugin is not None and self.object_store is None:
            self.warnings.append(
                f"Cluster {self.ref} backs up through the barman-cloud plugin, whose recovery "
                f"window and retention live in ObjectStore {self.store_name or '?'}; it was not "
                f"supplied, so only the Cluster and Backup objects were read."
            )
        schedules = self._schedules()
        conditions = self._conditions()
        window = self._window()
        last_success = self._last_success(window)
        first_point = self._first_recoverability_point(window)
        backups = self._newest_backups()
        retention = self._retention()
        facts = {
            "evaluated_at": _iso(self.now),
            "grace_seconds": int(self.grace.total_seconds()),
            "grace": human_span(self.grace),
            "max_backup_age_seconds": (
                int(self.max_backup_age.total_seconds()) if self.max_backup_age else None
            ),
            "cluster": {
                "name": self.name,
                "namespace": self.namespace,
                "style": self.style,
                "object_store": self.store_name,
                "server_name": self.server_name,
                "server_name_source": self.server_name_source,
            },
            "schedules": schedules,
            "last_successful_backup": last_success,
            "first_recoverability_point": first_point,
            "last_failed_backup": self._last_failed(window),
            "object_store_recovery_window": window,
            "conditions": conditions,
            "backups": backups,
            "retention_policy": retention,
            "unparseable": self.unparseable,
            "notes": self.notes,
        }
        for item in self.unparseable:
            self.warnings.append(
                f"{item['field']} is not an RFC 3339 time "
                f"({item['value']!r}); it was treated as missing."
            )
        return BackupHealth(
            ok=not self.problems, problems=self.problems, warnings=self.warnings, facts=facts
        )

    # 1. schedules

    def _schedules(self) -> list[dict]:
        facts = [self._schedule(doc) for doc in self.scheduled]
        if not self.name:
            return facts
        if not facts:
            self.problems.append(
                f"No ScheduledBackup targets Cluster {self.ref} (spec.cluster.name "
                f"{self.name}), so nothing takes backups on a schedule: create one, e.g. "
                f"schedule '0 0 0 * * *' (daily at 00:00 UTC, six fields, seconds first)"
                f"{self._method_hint()}."
            )
        elif all(f["suspended"] for f in facts):
            names = ", ".join(f["name"] for f in facts)
            self.problems.append(
                f"Every ScheduledBackup of Cluster {self.ref} is suspended ({names}), so no "
                f"scheduled backups are taken: set spec.suspend: false."
            )
        else:
            for f in facts:
                if f["suspended"]:
                    self.warnings.append(
                        f"ScheduledBackup {f['ref']} is suspended "
                        f"(spec.suspend: true); the others still run."
                    )
        return facts

    def _method_hint(self) -> str:
        if self.barman_plugin is not None:
            return f" with method: plugin and pluginConfiguration.name: {PLUGIN_NAME}"
        if self.in_tree:
            return " with method: barmanObjectStore"
        return ""

    def _schedule(self, doc: dict) -> dict:
        name = _str(_get(doc, "metadata", "name")) or "?"
        ref = _ref(name, _str(_get(doc, "metadata", "namespace")) or self.namespace)
        spec, status = _dict(doc.get("spec")), _dict(doc.get("status"))
        text = spec.get("schedule")
        where = f"ScheduledBackup {ref} status"
        last = self._time(f"{where}.lastScheduleTime", status.get("lastScheduleTime"))
        checked = self._time(f"{where}.lastCheckTime", status.get("lastCheckTime"))
        created = self._time(
            f"ScheduledBackup {ref} metadata.creationTimestamp",
            _get(doc, "metadata", "creationTimestamp"),
        )
        fact = {
            "name": name,
            "ref": ref,
            "schedule": _jsonable(text),
            "suspended": spec.get("suspend") is True,
            "immediate": spec.get("immediate") is True,
            "method": _str(spec.get("method")) or "barmanObjectStore",
            "method_defaulted": not spec.get("method"),
            "plugin": _str(_get(spec, "pluginConfiguration", "name")),
            "last_schedule_time": _iso(last),
            "last_check_time": _iso(checked),
            "next_schedule_time": _iso(
                self._time(f"{where}.nextScheduleTime", status.get("nextScheduleTime"))
            ),
            "status_error": _jsonable(status.get("error")) or None,
            "valid": False,
            "parse_error": None,
            "field_count": None,
            "cnpg_reading": None,
            "period_seconds": None,
            "period": None,
            "previous_expected_run": None,
            "next_expected_run": None,
            "first_missed_run": None,
            "latest_missed_run": None,
            "stale": None,
        }
        try:
            schedule = parse_schedule(text)
        except ScheduleError as err:
            fact["parse_error"] = str(err)
            if not fact["suspended"]:
                self.problems.append(
                    f"ScheduledBackup {ref} has an invalid schedule {_quote(text)} ({err}), so "
                    f"CNPG never runs it: use six fields, seconds first, e.g. '0 0 0 * * *' for "
                    f"daily at 00:00 UTC, or a descriptor such as '@daily'."
                )
            return fact
        fact.update(
            valid=True,
            field_count=schedule.field_count,
            cnpg_reading=schedule.six_fields or schedule.spec,
        )
        if fact["suspended"]:
            return fact
        self._check_method(ref, fact)
        upcoming = schedule.next_after(self.now)
        fact["next_expected_run"] = _iso(upcoming)
        if upcoming is None:
            self.problems.append(
                f"ScheduledBackup {ref}'s schedule {_quote(text)} never fires (no matching "
                f"time within five years), so CNPG never runs it: fix spec.schedule, e.g. "
                f"'0 0 0 * * *'."
            )
            return fact
        if schedule.field_count == 5:
            self.problems.append(
                f"ScheduledBackup {ref} has the 5-field schedule {_quote(text)}: CNPG reads it "
                f"seconds first as '{schedule.six_fields}' (second minute hour day-of-month "
                f"month day-of-week), not as crontab's minute hour day month weekday; if you "
                f"meant the crontab meaning write the six fields '0 {text.strip()}'."
            )
        period = schedule.period(self.now)
        fact["previous_expected_run"] = _iso(
            schedule.latest_at_or_before(self.now) if schedule.every is None else last
        )
        if period is not None:
            fact.update(period_seconds=int(period.total_seconds()), period=human_span(period))
            bound = period + self.grace
            if self.shortest is None or bound < self.shortest[0]:
                self.shortest = (
                    bound,
                    (
                        f"ScheduledBackup {ref} ({_quote(text)}) runs every "
                        f"{human_span(period)}, plus grace {human_span(self.grace)}"
                    ),
                )
        self._check_stale(schedule, ref, text, fact, last, checked, created)
        return fact

    def _check_stale(self, schedule, ref, text, fact, last, checked, created) -> None:
        hint = (
            f"check that the CNPG operator is running and read the events of "
            f"`kubectl describe scheduledbackup {_kubectl_ref(ref)}`"
        )
        if last is not None:
            if last > self.now + self.grace:
                self.notes.append(
                    f"ScheduledBackup {ref} status.lastScheduleTime "
                    f"{_iso(last)} is in the future (clock skew?)."
                )
            missed = schedule.next_after(last)
            fact["stale"] = bool(missed and missed + self.grace < self.now)
            if fact["stale"]:
                latest = schedule.latest_due(missed, self.now - self.grace)
                fact.update(first_missed_run=_iso(missed), latest_missed_run=_iso(latest))
                since = (
                    f" (and every run since, the latest at {_iso(latest)})"
                    if latest != missed
                    else ""
                )
                self.problems.append(
                    f"ScheduledBackup {ref} last ran at {_iso(last)}, its schedule "
                    f"{_quote(text)} expected a run at {_iso(missed)}{since}: scheduled "
                    f"backups have stopped; {hint}."
                )
            return
        anchor, anchor_field = (
            (checked, "status.lastCheckTime")
            if checked
            else (created, "metadata.creationTimestamp")
        )
        if anchor is None:
            fact["stale"] = True
            self.problems.append(
                f"ScheduledBackup {ref} has never run (no status.lastScheduleTime) and CNPG has "
                f"never checked it (no status.lastCheckTime): {hint}."
            )
            return
        first = schedule.next_after(anchor)
        fact["stale"] = bool(first and first + self.grace < self.now)
        if fact["stale"]:
            fact["first_missed_run"] = _iso(first)
            self.problems.append(
                f"ScheduledBackup {ref} has never run (no status.lastScheduleTime), its "
                f"schedule {_quote(text)} expected a first run at {_iso(first)} ({anchor_field} "
                f"{_iso(anchor)}): {hint}."
            )
        else:
            self.notes.append(
                f"ScheduledBackup {ref} has not run yet; its first run is due at {_iso(first)}."
            )

    def _check_method(self, ref: str, fact: dict) -> None:
        if self.spec is None:
            return
        method = fact["method"]
        default = " (the default when spec.method is unset)" if fact["method_defaulted"] else ""
        if method == "barmanObjectStore" and not self.in_tree:
            fix = (
                f"set spec.method: plugin and spec.pluginConfiguration.name: {PLUGIN_NAME}"
                if self.barman_plugin is not None
                else "configure spec.backup.barmanObjectStore or the barman-cloud plugin"
            )
            self.problems.append(
                f"ScheduledBackup {ref} uses method barmanObjectStore{default} but Cluster "
                f"{self.ref} has no spec.backup.barmanObjectStore, so every Backup it creates "
                f"fails: {fix}."
            )
        elif method == "plugin":
            plugin = fact["plugin"]
            names = [p.get("name") for p in self.enabled_plugins]
            if not plugin:
                self.problems.append(
                    f"ScheduledBackup {ref} uses method plugin without "
                    f"spec.pluginConfiguration.name: set it to {PLUGIN_NAME}."
                )
            elif plugin not in names:
                self.problems.append(
                    f"ScheduledBackup {ref} backs up through plugin {plugin}, which Cluster "
                    f"{self.ref} does not enable in spec.plugins, so every Backup it creates "
                    f"fails: enable it there or name an enabled plugin "
                    f"({', '.join(map(str, names)) or 'none'})."
                )
        elif method == "volumeSnapshot" and not self.volume_snapshot:
            self.problems.append(
                f"ScheduledBackup {ref} uses method volumeSnapshot but Cluster {self.ref} has no "
                f"spec.backup.volumeSnapshot, so every Backup it creates fails: configure it or "
                f"change the method."
            )

    # 2. the newest successful backup

    def _window(self) -> dict | None:
        if self.object_store is None:
            return None
        name = _str(_get(self.object_store, "metadata", "name")) or "?"
        windows = _dict(_get(self.object_store, "status", "serverRecoveryWindow"))
        window = windows.get(self.server_name) if self.server_name else None
        fact = {
            "object_store": name,
            "server_name": self.server_name,
            "servers": sorted(str(k) for k in windows),
            "found": isinstance(window, dict),
        }
        window = _dict(window)
        where = f"ObjectStore {name} status.serverRecoveryWindow.{self.server_name}"
        for key, fields in (
            ("first_recoverability_point", ("firstRecoverabilityPoint",)),
            (
                "last_successful_backup_time",
                ("lastSuccessfulBackupTime", "lastSuccussfulBackupTime"),
            ),
            ("last_failed_backup_time", ("lastFailedBackupTime",)),
        ):
            present = next((f for f in fields if window.get(f)), fields[0])
            fact[key] = _iso(self._time(f"{where}.{present}", window.get(present)))
            fact[key + "_field"] = f"{where}.{present}"
        return fact

    def _last_success(self, window: dict | None) -> dict:
        candidates = self._cluster_times("lastSuccessfulBackup", "lastSuccessfulBackupByMethod")
        if window and window.get("last_successful_backup_time"):
            candidates.append(
                {
                    "source": window["last_successful_backup_time_field"],
                    "time": window["last_successful_backup_time"],
                }
            )
        completed = [b for b in self._sorted_backups() if _get(b, "status", "phase") == "completed"]
        for doc in completed:
            name = _str(_get(doc, "metadata", "name")) or "?"
            stopped = self._time(
                f"Backup {name} status.stoppedAt", _get(doc, "status", "stoppedAt")
            )
            if stopped is not None:
                candidates.append(
                    {
                        "source": f"Backup {name} status.stoppedAt (phase completed)",
                        "time": _iso(stopped),
                    }
                )
                break
        fact = {
            "time": None,
            "source": None,
            "age_seconds": None,
            "age": None,
            "max_age_seconds": None,
            "max_age": None,
            "max_age_from": None,
            "candidates": candidates,
        }
        if not candidates:
            self.problems.append(
                f"Cluster {self.ref} has no successful backup at all ({self._where_looked()}): "
                f"take one now with `kubectl cnpg backup {self._kubectl_cluster()}"
                f"{self._backup_method_flags()}` and find out why none exists."
            )
            return fact
        newest = max(candidates, key=lambda c: parse_time(c["time"]))
        when = parse_time(newest["time"])
        age = max(self.now - when, timedelta(0))
        fact.update(
            time=newest["time"],
            source=newest["source"],
            age_seconds=int(age.total_seconds()),
            age=human_span(age),
        )
        if self.max_backup_age is not None:
            bound, why = self.max_backup_age, f"max_backup_age {human_span(self.max_backup_age)}"
        elif self.shortest is not None:
            bound, why = self.shortest
        else:
            self.notes.append(
                "The newest backup's age was not judged: no active, valid "
                "ScheduledBackup gives an expected period and no max_backup_age "
                "was given."
            )
            return fact
        fact.update(
            max_age_seconds=int(bound.total_seconds()), max_age=human_span(bound), max_age_from=why
        )
        if age > bound:
            self.problems.append(
                f"The newest successful backup of Cluster {self.ref} finished at {newest['time']} "
                f"({newest['source']}), {human_span(age)} ago, older than the "
                f"{human_span(bound)} allowed "
                f"({why}): find out why recent backups did not complete (Backup objects, "
                f"operator and instance logs) and take one with `kubectl cnpg backup "
                f"{self._kubectl_cluster()}{self._backup_method_flags()}`."
            )
        return fact

    def _cluster_times(self, field_name: str, by_method: str) -> list[dict]:
        found = []
        when = self._time(f"Cluster status.{field_name}", self.status.get(field_name))
        if when is not None:
            found.append({"source": f"Cluster status.{field_name}", "time": _iso(when)})
        for method, value in sorted(_dict(self.status.get(by_method)).items(), key=str):
            when = self._time(f"Cluster status.{by_method}.{method}", value)
            if when is not None:
                found.append({"source": f"Cluster status.{by_method}.{method}", "time": _iso(when)})
        return found

    def _last_failed(self, window: dict | None) -> dict:
        candidates = self._cluster_times("lastFailedBackup", "lastFailedBackupByMethod")
        if window and window.get("last_failed_backup_time"):
            candidates.append(
                {
                    "source": window["last_failed_backup_time_field"],
                    "time": window["last_failed_backup_time"],
                }
            )
        newest = max(candidates, key=lambda c: parse_time(c["time"]), default=None)
        return {
            "time": newest and newest["time"],
            "source": newest and newest["source"],
            "candidates": candidates,
        }

    def _where_looked(self) -> str:
        places = ["no Cluster status.lastSuccessfulBackup"]
        if self.barman_plugin is not None or self.object_store is not None:
            places.append(
                f"no ObjectStore recovery window for server {self.server_name}"
                if self.object_store is not None
                else "ObjectStore not read"
            )
        places.append("no completed Backup object")
        return ", ".join(places)

    def _kubectl_cluster(self) -> str:
        name = self.name or "CLUSTER"
        return f"-n {self.namespace} {name}" if self.namespace else name

    def _backup_method_flags(self) -> str:
        if self.barman_plugin is not None:
            return f" -m plugin --plugin-name {PLUGIN_NAME}"
        return ""

    # 3. the first recoverability point

    def _first_recoverability_point(self, window: dict | None) -> dict:
        candidates = self._cluster_times(
            "firstRecoverabilityPoint", "firstRecoverabilityPointByMethod"
        )
        if window and window.get("first_recoverability_point"):
            candidates.append(
                {
                    "source": window["first_recoverability_point_field"],
                    "time": window["first_recoverability_point"],
                }
            )
        if not candidates:
            if window is not None and not window["found"]:
                store = (
                    f"; ObjectStore {window['object_store']} has no "
                    f"status.serverRecoveryWindow for server {self.server_name} (it has: "
                    f"{', '.join(window['servers']) or 'none'}) — check the serverName"
                )
            elif window is not None:
                store = (
                    f"; ObjectStore {window['object_store']}'s recovery window for "
                    f"{self.server_name} has no firstRecoverabilityPoint"
                )
            elif self.barman_plugin is not None:
                store = (
                    f"; the plugin keeps it in ObjectStore {self.store_name or '?'}, which "
                    f"was not read — read it and pass it"
                )
            else:
                store = ""
            self.problems.append(
                f"Cluster {self.ref} has no first recoverability point (Cluster "
                f"status.firstRecoverabilityPoint is not set{store}), so there is nothing to "
                f"recover to: a base backup must complete with WAL archiving working."
            )
            return {"time": None, "source": None, "candidates": candidates}
        earliest = min(candidates, key=lambda c: parse_time(c["time"]))
        return {"time": earliest["time"], "source": earliest["source"], "candidates": candidates}

    # 4. conditions

    def _conditions(self) -> dict:
        found = {}
        conditions = self.status.get("conditions")
        for c in conditions if isinstance(conditions, list) else []:
            if isinstance(c, dict) and c.get("type") in (
                "ContinuousArchiving",
                "LastBackupSucceeded",
            ):
                found[c["type"]] = {
                    k: _jsonable(c.get(k))
                    for k in ("status", "reason", "message", "lastTransitionTime")
                }
        archiving = found.get("ContinuousArchiving")
        if archiving is None:
            self.problems.append(
                f"Cluster {self.ref} reports no ContinuousArchiving condition, so WAL archiving "
                f"has never been confirmed and point-in-time recovery is unproven: check the "
                f"archive configuration and the instance logs (archive_command)."
            )
        elif archiving.get("status") != "True":
            self.problems.append(
                f"WAL archiving of Cluster {self.ref} is not working: condition "
                f"ContinuousArchiving is {archiving.get('status')}{_why(archiving)}; fix the "
                f"archive (credentials, bucket, destinationPath/serverName, 'Expected empty "
                f"archive') — until then recovery stops at the last archived WAL."
            )
        last = found.get("LastBackupSucceeded")
        if last is not None and last.get("status") == "False":
            self.problems.append(
                f"The last backup of Cluster {self.ref} failed: condition LastBackupSucceeded "
                f"is False{_why(last)}; fix the cause and take a new backup."
            )
        return {"ContinuousArchiving": archiving, "LastBackupSucceeded": last}

    # 5. the newest Backup objects

    def _sorted_backups(self) -> list[dict]:
        def key(doc):
            times = [
                parse_time(_get(doc, "metadata", "creationTimestamp")),
                parse_time(_get(doc, "status", "startedAt")),
                parse_time(_get(doc, "status", "stoppedAt")),
            ]
            newest = max((t for t in times if t), default=datetime.min.replace(tzinfo=UTC))
            return newest, _str(_get(doc, "metadata", "name")) or ""

        return sorted(self.backups, key=key, reverse=True)

    def _newest_backups(self) -> dict:
        ordered = self._sorted_backups()
        listed = []
        for doc in ordered[:NEWEST_BACKUPS_IN_FACTS]:
            status, spec = _dict(doc.get("status")), _dict(doc.get("spec"))
            name = _str(_get(doc, "metadata", "name")) or "?"
            listed.append(
                {
                    "name": name,
                    "phase": _jsonable(status.get("phase")),
                    "method": _jsonable(status.get("method") or spec.get("method")),
                    "created": _iso(
                        self._time(
                            f"Backup {name} metadata.creationTimestamp",
                            _get(doc, "metadata", "creationTimestamp"),
                        )
                    ),
                    "started_at": _iso(
                        self._time(f"Backup {name} status.startedAt", status.get("startedAt"))
                    ),
                    "stopped_at": _iso(
                        self._time(f"Backup {name} status.stoppedAt", status.get("stoppedAt"))
                    ),
                    "backup_id": _jsonable(status.get("backupId")),
                    "error": _jsonable(status.get("error")),
                    "scheduled_backup": _jsonable(
                        _get(doc, "metadata", "labels", "cnpg.io/scheduled-backup")
                    ),
                }
            )
        if listed and listed[0]["phase"] in FAILED_PHASES:
            newest = listed[0]
            error = (
                newest["error"]
                or _jsonable(_get(ordered[0], "status", "commandError"))
                or "no status.error recorded"
            )
            ref = _ref(newest["name"], self.namespace)
            self.problems.append(
                f"The newest Backup of Cluster {self.ref}, {ref}, is in phase "
                f"{newest['phase']}: {error}. Read `kubectl describe backup "
                f"{_kubectl_ref(ref)}` and the instance logs, fix the cause, then take a new "
                f"backup."
            )
        return {"total": len(ordered), "newest": listed}

    # 6. retention

    def _retention(self) -> dict:
        if self.barman_plugin is not None:
            if self.object_store is None:
                return {
                    "value": None,
                    "source": None,
                    "note": f"unknown: ObjectStore {self.store_name or '?'} was not read",
                }
            name = _str(_get(self.object_store, "metadata", "name")) or "?"
            value, source = (
                _get(self.object_store, "spec", "retentionPolicy"),
                f"ObjectStore {name} spec.retentionPolicy",
            )
        elif self.in_tree:
            value, source = (
                _get(self.spec, "backup", "retentionPolicy"),
                "Cluster spec.backup.retentionPolicy",
            )
        else:
            return {
                "value": None,
                "source": None,
                "note": "no barman object store configured, so no retention policy applies",
            }
        if not value:
            note = (
                f"no retention policy ({source} is not set): backups and WAL are kept "
                f"forever and the bucket grows without bound"
            )
            self.warnings.append(f"Cluster {self.ref} has {note}; set one, e.g. '30d'.")
            return {"value": None, "source": source, "note": note}
        return {
            "value": _jsonable(value),
            "source": source,
            "valid": isinstance(value, str) and bool(RETENTION_PATTERN.match(value)),
        }


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def parse_time(value) -> datetime | None:
    """An RFC 3339 time as CNPG status carries it ('2026-11-30T02:00:00Z'), in UTC; None for
    anything else (missing, garbage, no offset, impossible dates).

    Stricter than `pgdrill.core.times.parse_time` on purpose: a status time without an offset, a
    bare date or a non-RFC 3339 ISO form is not what the API server writes, so it is reported
    in `facts["unparseable"]` instead of being read as UTC."""
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        return None
    text = value.strip()
    text = text[:10] + "T" + text[11:]
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    when = to_utc(when).replace(tzinfo=None)
    text = when.replace(microsecond=0).isoformat()
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def _why(condition: dict) -> str:
    reason, message = condition.get("reason"), condition.get("message")
    if reason and message:
        return f" (reason {reason}: {message})"
    if reason or message:
        return f" ({'reason ' + str(reason) if reason else message})"
    return ""


def _quote(value) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


def _kubectl_ref(ref: str) -> str:
    namespace, _, name = ref.rpartition("/")
    return f"-n {namespace} {name}" if namespace else name


def _get(doc, *keys):
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _items(docs) -> list:
    if isinstance(docs, dict):  # a `kind: List` document as kubectl prints it
        docs = docs.get("items")
    return list(docs) if isinstance(docs, list | tuple) else []


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
