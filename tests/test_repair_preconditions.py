"""The repair only trusts a restored copy that proved itself (pure)."""

from pgdrill.restore.repair import reference_for, repair_refusals

FP = {
    "table": "public.pgbench_accounts",
    "key": "aid",
    "rows": 100,
    "digest": "d",
    "ranges": [{"lo": None, "hi": None, "rows": 100, "digest": "d"}],
}


def trusted() -> dict:
    return {
        "validation": [{"name": "rows", "passed": True}, {"name": "pg_amcheck", "passed": True}],
        "restore": {
            "position_ok": True,
            "requested": {"kind": "restore_point", "name": "pre-corruption"},
        },
        "fingerprints_reference": {"pre-corruption": {"public.pgbench_accounts": FP}},
        "fingerprints": {"match": True, "reference": "pre-corruption"},
    }


def test_a_copy_that_proved_itself_is_trusted():
    assert repair_refusals(trusted(), "pgbench_accounts", "pre-corruption") == []
    assert reference_for(trusted(), "pgbench_accounts", "pre-corruption").rows == 100


def test_each_missing_proof_is_named():
    cases = {
        "failed its checklist: pg_amcheck": lambda c: c["validation"][1].update(passed=False),
        "never validated": lambda c: c.update(validation=[]),
        "did not provably stop": lambda c: c["restore"].update(position_ok=False),
        "fingerprints differ": lambda c: c["fingerprints"].update(match=False),
        "were not compared with 'pre-corruption'": lambda c: c["fingerprints"].update(
            reference="primary now"
        ),
        "no fingerprint of pgbench_accounts": lambda c: c.update(fingerprints_reference={}),
        "no restore in this run": lambda c: c.pop("restore"),
    }
    for expected, spoil in cases.items():
        ctx = trusted()
        spoil(ctx)
        reasons = repair_refusals(ctx, "pgbench_accounts", "pre-corruption")
        assert any(expected in r for r in reasons), (expected, reasons)


def test_a_restore_without_a_restore_point_cannot_justify_a_repair():
    assert any(
        "no restore point" in r for r in repair_refusals(trusted(), "pgbench_accounts", None)
    )
