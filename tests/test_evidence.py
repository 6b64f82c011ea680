from pgdrill.evidence.build import build_evidence, judge, render_summary


def journal(status="completed", deviated=False, run=None, before=True):
    return {
        "status": status,
        "deviated": deviated,
        "start": "s",
        "end": "e",
        "duration": 3.0,
        "experiment": {"title": "t"},
        "steady_states": {"before": {"steady_state_met": before}, "after": None, "during": []},
        "run": run or [],
        "rollbacks": [],
    }


def context(validation=None, restore=True):
    ctx = {"cluster": "sandbox", "backup": {"id": "B1"}}
    if restore:
        ctx["restore"] = {
            "backup_id": "B1",
            "phases": {"restore": 3.0, "ready": 0.5},
            "target": {"kind": "latest"},
            "position_ok": True,
            "started_at": "2026-11-30T20:00:00+00:00",
            "reached": {
                "timeline": 2,
                "parent_timeline": 1,
                "lsn": "0/6000000",
                "reason": "no recovery target specified",
                "stop_kind": "latest",
            },
        }
        ctx["validation_seconds"] = 0.5
    ctx["validation"] = (
        validation
        if validation is not None
        else [{"name": "rows", "query": "q", "expected": 1, "actual": 1, "passed": True}]
    )
    return ctx


def test_passes_when_everything_passed():
    assert judge(journal(), context()) == ("passed", [])


def test_a_failed_validation_fails_and_names_the_query():
    ctx = context(
        [
            {"name": "rows", "query": "q", "expected": 1, "actual": 2, "passed": False},
            {"name": "ok", "query": "q", "expected": 1, "actual": 1, "passed": True},
        ]
    )
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert any("validation failed: rows" in r for r in reasons)


def test_a_restore_without_validation_is_not_a_success():
    verdict, reasons = judge(journal(), context(validation=[]))
    assert verdict == "failed"
    assert any("never validated" in r for r in reasons)


def test_failed_activity_fails_the_drill_with_its_message():
    run = [
        {
            "activity": {"name": "manual-backup"},
            "status": "failed",
            "exception": [
                "Traceback...\n",
                "chaoslib.exceptions.ActivityFailed: "
                "chaoslib.exceptions.ActivityFailed: S3 unreachable: try again\n",
            ],
        }
    ]
    verdict, reasons = judge(journal(run=run), context())
    assert verdict == "failed"
    assert "activity 'manual-backup' failed: S3 unreachable: try again" in reasons


def test_interrupted_and_unmet_steady_state():
    assert judge(journal(status="interrupted"), context())[0] == "interrupted"
    verdict, reasons = judge(journal(before=False), context(restore=False, validation=[]))
    assert verdict == "failed" and "not met before" in reasons[0]
    assert judge(journal(deviated=True), context())[0] == "failed"


def test_evidence_fields_rto_and_backup_validation():
    ev = build_evidence(
        journal(), context(), experiment="pvc-loss", target="sandbox", environment="staging"
    )
    assert ev["experiment"] == "pvc-loss" and ev["environment"] == "staging"
    assert ev["verdict"] == "passed"
    assert ev["restore"]["rto_seconds"] == 4.0
    assert ev["restore"]["phases"]["validate"] == 0.5
    assert ev["backup"] == {"id": "B1", "validated": True}
    failed = build_evidence(
        journal(deviated=True), context(), experiment="x", target="sandbox", environment="sandbox"
    )
    assert failed["backup"]["validated"] is False


def test_summary_is_readable():
    ev = build_evidence(
        journal(), context(), experiment="pvc-loss", target="sandbox", environment="sandbox"
    )
    text = render_summary(ev)
    assert text.startswith("# pvc-loss: PASSED")
    assert "| rows | 1 | 1 | yes |" in text


def test_objectives_fail_the_verdict_and_say_by_how_much():
    ctx = context()
    ctx["objectives"] = {"rpo_objective_seconds": 5, "rto_objective_seconds": 3}
    ctx["rpo"] = {
        "rpo_seconds": 7.5,
        "lost_writes": 3,
        "acknowledged_writes": 10,
        "expected_absent": 0,
        "reference": "r",
        "reference_kind": "latest",
    }
    ev = build_evidence(journal(), ctx, experiment="x", target="sandbox", environment="sandbox")
    assert ev["verdict"] == "failed"
    assert ev["objectives"]["rpo"] == {
        "objective_seconds": 5.0,
        "measured_seconds": 7.5,
        "met": False,
        "exceeded_by_seconds": 2.5,
    }
    assert ev["objectives"]["rto"]["met"] is False  # rto 4.0 > 3
    assert "RPO 7.5s exceeds the objective of 5.0s by 2.5s" in ev["reasons"]
    ctx["objectives"] = {"rpo_objective_seconds": 60, "rto_objective_seconds": 60}
    ok = build_evidence(journal(), ctx, experiment="x", target="sandbox", environment="sandbox")
    assert ok["verdict"] == "passed" and ok["objectives"]["rpo"]["exceeded_by_seconds"] == 0.0
    assert "RPO 7.5s" in render_summary(ok)


def test_fingerprint_mismatch_fails_and_names_the_table():
    ctx = context()
    ctx["fingerprints"] = {
        "match": False,
        "reference": "pre-corruption",
        "tables": [{"table": "public.pgbench_accounts", "match": False}],
    }
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert "fingerprints differ from the reference: public.pgbench_accounts" in reasons


def validate(evidence):
    import json

    import jsonschema

    from pgdrill.evidence.build import SCHEMA_FILE

    jsonschema.validate(evidence, json.loads(SCHEMA_FILE.read_text()))


def test_evidence_follows_its_published_schema():
    import jsonschema
    import pytest

    ctx = context()
    ctx["objectives"] = {"rpo_objective_seconds": 5}
    ctx["rpo"] = {
        "rpo_seconds": 1.5,
        "lost_writes": 3,
        "acknowledged_writes": 10,
        "expected_absent": 0,
        "present_after_reference": 0,
        "reference": "r",
        "reference_kind": "latest",
    }
    ev = build_evidence(journal(), ctx, experiment="x", target="sandbox", environment="sandbox")
    validate(ev)
    ev["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        validate(ev)


def test_a_restore_that_stopped_elsewhere_fails_naming_the_position():
    ctx = context()
    ctx["restore"].update(
        position_ok=False,
        position_error="recovery stopped at 0/4000100, restore point created at 0/5019FF8",
    )
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert any("0/4000100" in r and "0/5019FF8" in r for r in reasons)


def test_an_unproven_recovery_position_is_not_a_pass():
    ctx = context()
    del ctx["restore"]["position_ok"]
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed" and any("never proven" in r for r in reasons)


def rpo(kind, lost):
    return {
        "acknowledged_writes": 100,
        "lost_writes": lost,
        "expected_absent": 5,
        "present_after_reference": 0,
        "rpo_seconds": 0.4 if lost else 0.0,
        "reference": "2026-11-30T20:00:00+00:00",
        "reference_kind": kind,
        "lost_examples": ["c1:7"] if lost else [],
    }


def test_writes_lost_before_an_explicit_target_fail_even_without_an_objective():
    for kind in ("restore point", "recovery target time"):
        ctx = {**context(), "rpo": rpo(kind, 3)}
        verdict, reasons = judge(journal(), ctx)
        assert verdict == "failed"
        assert any(f"3 writes acknowledged before the {kind}" in r and "c1:7" in r for r in reasons)
        assert judge(journal(), {**context(), "rpo": rpo(kind, 0)}) == ("passed", [])
    # restoring to "latest" loses what was not archived yet: judged by the RPO objective
    assert judge(journal(), {**context(), "rpo": rpo("restore start", 3)}) == ("passed", [])


def test_refused_and_running_verdicts():
    verdict, reasons = judge(
        journal(status="interrupted"), {"refused": "production needs a staging run"}
    )
    assert verdict == "refused" and "staging" in reasons[0]
    assert judge(journal(status="running"), context())[0] == "running"


def test_interruption_names_the_activity_and_the_last_completed():
    ctx = {
        **context(),
        "current_activity": {"name": "restore", "phase": "method"},
        "last_completed_activity": "manual-backup",
    }
    ev = build_evidence(
        journal(status="interrupted"), ctx, experiment="e", target="sandbox", environment="develop"
    )
    assert ev["verdict"] == "interrupted"
    assert ev["interruption"] == {
        "during": "restore",
        "phase": "method",
        "last_completed_activity": "manual-backup",
        "found_dead": False,
    }
    validate(ev)


def test_an_unfinished_restore_has_no_rto():
    ctx = context()
    ctx["restore"].update(started_at=None, phases={})
    ev = build_evidence(
        journal(status="interrupted"), ctx, experiment="e", target="sandbox", environment="develop"
    )
    assert ev["restore"]["rto_seconds"] is None
    assert "did not finish" in render_summary(ev)
    validate(ev)


def test_a_hole_in_the_restored_copy_fails_even_with_rpo_zero_and_an_objective_met():
    ctx = {
        **context(),
        "objectives": {"rpo_objective_seconds": 60},
        "rpo": {
            "acknowledged_writes": 1000,
            "lost_writes": 500,
            "expected_absent": 0,
            "rpo_seconds": 0.0,
            "reference": "r",
            "reference_kind": "restore start",
            "holes": 500,
            "hole_examples": ["c1:42"],
        },
    }
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert any(
        "500 acknowledged writes are missing from the restored copy" in r and "c1:42" in r
        for r in reasons
    )
    # a lost suffix within the objective is lag: it passes
    lag = {**ctx, "rpo": {**ctx["rpo"], "lost_writes": 20, "holes": 0, "rpo_seconds": 0.2}}
    assert judge(journal(), lag) == ("passed", [])


def test_writes_lost_in_a_failover_fail_against_a_default_objective_of_zero():
    failover = {
        "seconds": 2.0,
        "acknowledged_writes": 300,
        "lost_writes": 3,
        "lost_examples": ["c1:7"],
        "holes": 0,
    }
    ctx = {**context(), "failover": failover}
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert any(
        "3 acknowledged writes were lost on the primary after the failover "
        "(objective: at most 0" in r
        for r in reasons
    )
    evidence = build_evidence(
        journal(), ctx, experiment="pvc-loss", target="sandbox", environment="develop"
    )
    assert evidence["failover"]["lost_writes_objective"] == {
        "objective_lost_writes": 0,
        "measured_lost_writes": 3,
        "met": False,
    }
    assert "objective at most 0: MISSED" in render_summary(evidence)
    # the team allows a few for asynchronous replication: a suffix that size passes
    allowed = {**ctx, "objectives": {"failover_lost_writes_objective": 5}}
    assert judge(journal(), allowed) == ("passed", [])
    # but a hole on the healed primary fails whatever the objective
    holed = {**allowed, "failover": {**failover, "holes": 1, "hole_examples": ["c2:1"]}}
    verdict, reasons = judge(journal(), holed)
    assert verdict == "failed" and any(
        "primary after the failover" in r and "c2:1" in r for r in reasons
    )


def test_a_failover_without_a_count_is_not_judged_on_lost_writes():
    ctx = {**context(), "failover": {"seconds": 2.0}}
    assert judge(journal(), ctx) == ("passed", [])


def test_writes_missing_from_the_source_fail_unless_a_failover_counted_them():
    rpo = {
        "acknowledged_writes": 100,
        "lost_writes": 0,
        "expected_absent": 0,
        "rpo_seconds": 0.0,
        "reference": "r",
        "reference_kind": "restore start",
        "source_missing": 3,
        "source_missing_examples": ["c1:9"],
    }
    verdict, reasons = judge(journal(), {**context(), "rpo": rpo})
    assert verdict == "failed" and any(
        "missing from the source primary itself" in r and "c1:9" in r for r in reasons
    )
    counted = {
        **context(),
        "rpo": rpo,
        "objectives": {"failover_lost_writes_objective": 3},
        "failover": {"seconds": 1.0, "lost_writes": 3, "acknowledged_writes": 50},
    }
    assert judge(journal(), counted) == ("passed", [])
