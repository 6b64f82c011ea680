"""The primary's replication at the fault, and what a lost-writes verdict says about it."""

from pgdrill.evidence.build import judge
from pgdrill.pg.replication import asynchronous_hint, describe
from tests.test_evidence import journal


def test_a_quorum_standby_is_synchronous_and_an_async_one_is_not():
    sync = describe('ANY 1 ("pg-2")', [("pg-2", "streaming", "quorum")])
    assert sync["synchronous"] is True
    assert describe("", [("pg-2", "streaming", "async")])["synchronous"] is False
    assert describe("", [])["synchronous"] is False
    # a standby still catching up confirms nothing yet
    assert describe('ANY 1 ("pg-2")', [("pg-2", "catchup", "quorum")])["synchronous"] is False
    # without pg_read_all_stats the sync_state is NULL: unknown, not "asynchronous"
    assert describe("", [("pg-2", "streaming", None)])["synchronous"] is None


def lost_on_failover(replication):
    return {
        "failover": {"lost_writes": 4, "acknowledged_writes": 900, "lost_examples": ["c:837"]},
        "fault": {"kind": "drop_pvc", "instance": "pg-1", "at": "now", "replication": replication},
    }


def test_writes_lost_from_an_asynchronous_primary_fail_and_name_the_fix():
    verdict, reasons = judge(
        journal(), lost_on_failover(describe("", [("pg-2", "streaming", "async")]))
    )
    assert verdict == "failed"
    lost = [r for r in reasons if "acknowledged writes were lost on the primary" in r]
    assert len(lost) == 1
    assert "no standby confirmed commits" in lost[0]
    assert "spec.postgresql.synchronous" in lost[0]


def test_writes_lost_despite_a_synchronous_standby_fail_without_blaming_replication():
    verdict, reasons = judge(
        journal(), lost_on_failover(describe('ANY 1 ("pg-2")', [("pg-2", "streaming", "quorum")]))
    )
    assert verdict == "failed"
    assert not any("no standby confirmed commits" in r for r in reasons)
    assert asynchronous_hint(None) == ""
