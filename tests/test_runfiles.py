"""Partial evidence during a run, statuses of activities cut short, and a journal rebuilt for
a run that died (pure, on files in a temporary run folder)."""

import json

from pgdrill.evidence.runcontext import RunContext
from pgdrill.runs.finish import (
    journal_from_log,
    mark_interrupted_records,
    write_partial_evidence,
)
from tests.test_evidence import validate

LOG = [
    {
        "name": "primary-accepts-a-write",
        "type": "probe",
        "phase": "steady-state-before",
        "status": "succeeded",
        "tolerance_met": True,
    },
    {"name": "start-load", "type": "action", "phase": "method", "status": "succeeded"},
    {
        "name": "manual-backup",
        "type": "action",
        "phase": "method",
        "status": "failed",
        "exception": "ActivityFailed: S3 unreachable",
    },
    {"name": "stop-load", "type": "action", "phase": "rollbacks", "status": "succeeded"},
]


def test_journal_rebuilt_from_the_activity_log_keeps_phases_and_the_cut_activity():
    ctx = {
        "activity_log": LOG,
        "current_activity": {"name": "remove-restore-test", "type": "action", "phase": "rollbacks"},
    }
    journal = journal_from_log(ctx, "interrupted")
    assert journal["status"] == "interrupted"
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["after"] is None
    assert [r["activity"]["name"] for r in journal["run"]] == ["start-load", "manual-backup"]
    assert journal["run"][1]["exception"] == ["ActivityFailed: S3 unreachable"]
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("stop-load", "succeeded"),
        ("remove-restore-test", "interrupted"),
    ]


def test_records_without_a_status_become_interrupted():
    journal = {
        "run": [
            {"activity": {"name": "a"}, "status": "succeeded"},
            {"activity": {"name": "restore"}},
        ],
        "rollbacks": [],
        "steady_states": {
            "before": {"probes": [{"status": "succeeded"}]},
            "after": {"probes": [{}]},
            "during": [],
        },
    }
    mark_interrupted_records(journal)
    assert journal["run"][1]["status"] == "interrupted"
    assert journal["run"][0]["status"] == "succeeded"
    assert journal["steady_states"]["after"]["probes"][0]["status"] == "interrupted"


def test_partial_evidence_is_readable_and_says_running(tmp_path):
    RunContext(tmp_path).update(
        experiment="pvc-loss",
        target="sandbox",
        environment="develop",
        activity_log=LOG[:2],
        started_at="2026-11-30T20:00:00+00:00",
    )
    write_partial_evidence(tmp_path)
    evidence = json.loads((tmp_path / "evidence.json").read_text())
    assert evidence["verdict"] == "running" and evidence["partial"] is True
    validate(evidence)
