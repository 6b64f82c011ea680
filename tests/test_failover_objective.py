"""Failover losses reach the verdict (issue 19 B): the acknowledged writes missing on the
healed primary are judged against failover_lost_writes_objective (default 0), on a real
sandbox whose primary is really killed under load."""

from __future__ import annotations

import pytest

from actions.faults import delete_primary_pod
from actions.load import start_load, stop_load
from pgdrill.chaos.writes import ack_log
from pgdrill.core.waiting import poll_until
from pgdrill.evidence.build import judge
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.load.acklog import count_acks, read_acks
from probes.cluster import wait_until_healthy
from probes.verify import lost_writes
from tests.test_evidence import journal

pytestmark = pytest.mark.sandbox


def test_writes_lost_on_the_healed_primary_fail_the_drill(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    ctx = RunContext(tmp_path)
    sandbox.wait_ready(timeout=120)
    start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        poll_until(
            lambda: count_acks(ack_log(tmp_path)) >= 300, timeout=60, what="300 acknowledged writes"
        )
        delete_primary_pod(configuration=cfg)
        wait_until_healthy(timeout_seconds=180, configuration=cfg)
        after_fault = count_acks(ack_log(tmp_path))
        poll_until(
            lambda: count_acks(ack_log(tmp_path)) >= after_fault + 100,
            timeout=60,
            what="100 acknowledged writes on the new primary",
        )
    finally:
        stop_load(configuration=cfg)

    # the real failover, judged with an objective equal to what it really lost: passes
    real = lost_writes(on="primary", configuration=cfg)
    assert real["holes"] == 0, real
    # the sandbox replicates synchronously (as a CNPG Cluster with spec.postgresql.synchronous):
    # the killed primary's replica had confirmed every acknowledged commit
    assert ctx.read()["fault"]["replication"]["synchronous"] is True
    assert real["lost_writes"] == 0, real
    ctx.update(objectives={"failover_lost_writes_objective": real["lost_writes"]})
    assert judge(journal(), ctx.read()) == ("passed", [])

    # three acknowledged writes of the new primary disappear: three more lost, FAILED
    newest = sorted(read_acks(ack_log(tmp_path)), key=lambda a: a.acked_at)[-3:]
    with sandbox.connect(sandbox.primary(), "app") as conn:
        conn.autocommit = True
        for ack in newest:
            assert (
                conn.execute(
                    "DELETE FROM pgdrill_ledger WHERE client_id = %s AND seq = %s",
                    (ack.client_id, ack.seq),
                ).rowcount
                == 1
            )
    forced = lost_writes(on="primary", configuration=cfg)
    assert forced["lost_writes"] == real["lost_writes"] + 3
    verdict, reasons = judge(journal(), ctx.read())
    assert verdict == "failed"
    assert any(
        f"{forced['lost_writes']} acknowledged writes were lost on the primary after "
        f"the failover (objective: at most {real['lost_writes']}" in r
        for r in reasons
    )
    # with no objective set, the default is 0
    ctx.update(objectives={})
    assert judge(journal(), ctx.read())[0] == "failed"
    evidence_failover = ctx.read()["failover"]
    assert evidence_failover["lost_writes"] == forced["lost_writes"]
