from dataclasses import dataclass

from pgdrill.rpo import measure_rpo


@dataclass(frozen=True)
class A:
    client_id: str
    seq: int
    acked_at: float


ACKS = [A("c1", 1, 10.0), A("c1", 2, 11.0), A("c2", 1, 12.0), A("c2", 2, 13.0),
        A("c1", 3, 14.0), A("c2", 3, 15.0)]


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
    assert r.expected_absent == 1          # c2:3 acked after the restore began
    assert r.rpo_seconds == 3.0            # newest acked before reference 14.0 - newest present 11.0
    assert r.lost_examples == ["c2:1", "c2:2", "c1:3"]


def test_a_gap_in_the_middle_counts_once_per_write():
    present = {(a.client_id, a.seq) for a in ACKS} - {("c2", 1)}
    r = measure_rpo(ACKS, present, reference=20.0, reference_kind="failover")
    assert r.lost_writes == 1 and r.lost_examples == ["c2:1"]
    assert r.rpo_seconds == 0.0            # the newest write survived


def test_present_after_reference_is_reported_separately():
    present = {(a.client_id, a.seq) for a in ACKS}
    r = measure_rpo(ACKS, present, reference=12.0, reference_kind="latest")
    assert r.present_after_reference == 3 and r.expected_absent == 0 and r.lost_writes == 0


def test_empty_copy_loses_everything_before_reference():
    r = measure_rpo(ACKS, set(), reference=13.0, reference_kind="latest")
    assert r.lost_writes == 4 and r.rpo_seconds == 3.0
