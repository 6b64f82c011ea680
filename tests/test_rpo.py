from dataclasses import dataclass

from pgdrill.verification.rpo import HOLE_JITTER_SECONDS, measure_rpo


@dataclass(frozen=True)
class A:
    client_id: str
    seq: int
    acked_at: float
    sent_at: float | None = None


ACKS = [
    A("c1", 1, 10.0),
    A("c1", 2, 11.0),
    A("c2", 1, 12.0),
    A("c2", 2, 13.0),
    A("c1", 3, 14.0),
    A("c2", 3, 15.0),
]


def test_nothing_lost_when_all_present():
    present = {(a.client_id, a.seq) for a in ACKS}
    r = measure_rpo(ACKS, present, reference=20.0, reference_kind="latest")
    assert (r.acknowledged_writes, r.lost_writes, r.expected_absent, r.rpo_seconds) == (6, 0, 0, 0)


def test_writes_after_the_target_are_expected_absent_not_lost():
    present = {("c1", 1), ("c1", 2), ("c2", 1)}
    r = measure_rpo(ACKS, present, reference=12.5, reference_kind="restore_point")
    assert r.lost_writes == 0
    assert r.expected_absent == 3
    assert r.rpo_seconds == 0


def test_missing_before_the_reference_is_lost_and_rpo_is_the_gap():
    # archived up to 11.0; restore began at 14.5: c2:1, c2:2, c1:3 acked but not archived
    present = {("c1", 1), ("c1", 2)}
    r = measure_rpo(ACKS, present, reference=14.5, reference_kind="latest")
    assert r.lost_writes == 3
    assert r.expected_absent == 1  # c2:3 acked after the restore began
    assert r.rpo_seconds == 3.0  # newest acked before reference 14.0 - newest present 11.0
    assert r.lost_examples == ["c2:1", "c2:2", "c1:3"]


def test_a_write_lost_before_a_surviving_one_is_a_hole_and_rpo_counts_from_it():
    present = {(a.client_id, a.seq) for a in ACKS} - {("c2", 1)}
    r = measure_rpo(ACKS, present, reference=20.0, reference_kind="failover")
    assert r.lost_writes == 1 and r.lost_examples == ["c2:1"]
    assert r.holes == 1 and r.hole_examples == ["c2:1"]
    # from the last intact write (c1:2 at 11.0) to the newest acknowledged (15.0)
    assert r.rpo_seconds == 4.0
    assert "hole" in r.hole_problem("restore-test")


def sequential(n, clients=4, step=0.01, latency=0.002):
    """n writes of `clients` round-robin clients, one every `step` s, each sent `latency`
    before its ack."""
    return [
        A(f"c{i % clients}", i // clients + 1, 100 + i * step, 100 + i * step - latency)
        for i in range(n)
    ]


def test_500_of_1000_removed_from_the_middle_are_holes_not_a_zero_rpo():
    acks = sequential(1000)
    gone = {(a.client_id, a.seq) for a in acks[250:750]}
    present = {(a.client_id, a.seq) for a in acks} - gone
    r = measure_rpo(acks, present, reference=1000.0, reference_kind="restore start")
    assert r.lost_writes == 500 and r.holes == 500
    # measured from the oldest lost write: the newest acked (acks[-1]) minus acks[249]
    assert r.rpo_seconds == round(acks[-1].acked_at - acks[249].acked_at, 3) > 0


def test_one_later_write_of_another_client_does_not_hide_a_lost_tail():
    acks = sequential(1000)
    present = {(a.client_id, a.seq) for a in acks[:600]} | {(acks[-1].client_id, acks[-1].seq)}
    r = measure_rpo(acks, present, reference=1000.0, reference_kind="restore start")
    assert r.lost_writes == 399 and r.holes == 399
    assert r.rpo_seconds == round(acks[-1].acked_at - acks[599].acked_at, 3)


def test_a_lost_suffix_is_lag_not_a_hole():
    acks = sequential(1000)
    present = {(a.client_id, a.seq) for a in acks[:900]}
    r = measure_rpo(acks, present, reference=1000.0, reference_kind="restore start")
    assert r.lost_writes == 100 and r.holes == 0 and r.hole_problem("x") is None
    assert r.rpo_seconds == round(acks[-1].acked_at - acks[899].acked_at, 3)


def test_concurrent_writes_may_commit_in_either_order_without_a_hole():
    # b was sent before a's COMMIT returned: b may have committed first, so a copy with b and
    # without a is a prefix of commit order, even though a was acknowledged first
    a = A("a", 1, acked_at=10.004, sent_at=10.000)
    b = A("b", 1, acked_at=10.006, sent_at=10.003)
    r = measure_rpo([a, b], {("b", 1)}, reference=20.0, reference_kind="failover")
    assert r.lost_writes == 1 and r.holes == 0
    # sent after a's ack: b committed after a, so a missing a is a hole
    late = A("b", 1, acked_at=10.007, sent_at=10.005)
    assert measure_rpo([a, late], {("b", 1)}, reference=20.0, reference_kind="failover").holes == 1


def test_without_send_times_the_hole_rule_allows_a_few_ms_of_ack_jitter():
    a, b = A("a", 1, 10.000), A("b", 1, 10.000 + HOLE_JITTER_SECONDS / 2)
    assert measure_rpo([a, b], {("b", 1)}, reference=20.0, reference_kind="x").holes == 0
    c = A("b", 1, 10.000 + HOLE_JITTER_SECONDS * 4)
    assert measure_rpo([a, c], {("b", 1)}, reference=20.0, reference_kind="x").holes == 1


def test_a_write_present_after_the_reference_witnesses_holes_before_it():
    acks = sequential(10)
    present = {(a.client_id, a.seq) for a in acks[:3]} | {(acks[9].client_id, acks[9].seq)}
    r = measure_rpo(acks, present, reference=acks[5].acked_at, reference_kind="restore point")
    assert r.lost_writes == 3 and r.holes == 3 and r.expected_absent == 3


def test_present_after_reference_is_reported_separately():
    present = {(a.client_id, a.seq) for a in ACKS}
    r = measure_rpo(ACKS, present, reference=12.0, reference_kind="latest")
    assert r.present_after_reference == 3 and r.expected_absent == 0 and r.lost_writes == 0


def test_empty_copy_loses_everything_before_reference():
    r = measure_rpo(ACKS, set(), reference=13.0, reference_kind="latest")
    assert r.lost_writes == 4 and r.rpo_seconds == 3.0


def test_writes_after_a_fault_do_not_witness_holes_in_the_history_before_it():
    # the healed primary lost the last two writes before the fault (lag), then took new ones
    acks = sequential(20)
    fault = acks[10].acked_at + 0.001
    after = sequential(5)
    after = [A("n", i + 1, fault + 1 + i * 0.01, fault + 1 + i * 0.01 - 0.002) for i in range(5)]
    present = {(a.client_id, a.seq) for a in acks[:9]} | {(a.client_id, a.seq) for a in after}
    r = measure_rpo(
        acks[:11] + after,
        present,
        reference=fault + 10,
        reference_kind="failover check",
        witnesses_before=fault,
    )
    assert r.lost_writes == 2 and r.holes == 0
    # without the fault's instant the new writes would (wrongly) call them holes
    assert (
        measure_rpo(
            acks[:11] + after, present, reference=fault + 10, reference_kind="failover check"
        ).holes
        == 2
    )
    # a write lost before a survivor sent before the fault is still a hole
    holed = present - {(acks[3].client_id, acks[3].seq)}
    r = measure_rpo(
        acks[:11] + after,
        holed,
        reference=fault + 10,
        reference_kind="failover check",
        witnesses_before=fault,
    )
    assert r.holes == 1 and r.hole_examples == [f"{acks[3].client_id}:{acks[3].seq}"]


def test_writes_the_source_lost_are_not_the_restores_loss():
    acks = sequential(100)
    lost_in_failover = {(a.client_id, a.seq) for a in acks[40:43]}
    source = {(a.client_id, a.seq) for a in acks} - lost_in_failover
    copy = source - {(a.client_id, a.seq) for a in acks[95:]}
    r = measure_rpo(acks, copy, reference=1000.0, reference_kind="restore start", source=source)
    assert r.acknowledged_writes == 100 and r.source_missing == 3
    assert r.lost_writes == 5 and r.holes == 0
    assert r.rpo_seconds == round(acks[-1].acked_at - acks[94].acked_at, 3)
