"""The client-side write outage of a failover, from the load's acknowledged writes."""

from pgdrill.load.outage import write_outage


def test_the_outage_is_the_gap_from_the_last_ack_before_to_the_first_after():
    acks = [9.0, 9.5, 10.1, 13.4, 13.5, 14.0]  # the fault at 10.0, primary back at ~13.4
    outage = write_outage(acks, fault_epoch=10.0, until_epoch=20.0)
    assert outage["seconds"] == 3.3
    assert outage["last_ack_before"].endswith("00:00:10.100000+00:00")


def test_later_gaps_after_healing_do_not_count_and_no_comeback_is_none():
    acks = [9.0, 12.0, 12.1, 30.0]
    assert write_outage(acks, fault_epoch=10.0, until_epoch=13.0)["seconds"] == 3.0
    assert write_outage([9.0, 9.5], fault_epoch=10.0, until_epoch=20.0) is None
    assert write_outage([], fault_epoch=10.0, until_epoch=20.0) is None
