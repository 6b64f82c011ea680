"""Waiting for the archiver: a backlog that moves is waited for, one that stands still fails
naming where it stopped (a 1 GB load leaves minutes of backlog; a fixed 60 s refused it)."""

from __future__ import annotations

import pytest

from pgdrill.pg.archive_status import ArchiverStalled, ArchiverWatch

SEG = "0000000400000000000000{:02X}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_moving_backlog_is_waited_for_past_the_stall_limit():
    clock = Clock()
    watch = ArchiverWatch(SEG.format(0xA0), stall=60, clock=clock)
    for n in range(0x30, 0xA0):  # 112 segments, one every 5 s: 560 s in all
        clock.now += 5
        assert watch.reached(SEG.format(n)) is False
    clock.now += 5
    assert watch.reached(SEG.format(0xA0) + ".partial") is True


def test_an_archiver_that_stands_still_fails_naming_where_it_stopped():
    clock = Clock()
    watch = ArchiverWatch(SEG.format(0xA0), stall=60, clock=clock)
    assert watch.reached(SEG.format(0x40)) is False
    clock.now = 59
    assert watch.reached(SEG.format(0x40)) is False
    clock.now = 61
    with pytest.raises(ArchiverStalled, match=f"still {SEG.format(0x40)}, {SEG.format(0xA0)}"):
        watch.reached(SEG.format(0x40))


def test_nothing_archived_yet_counts_as_standing_still():
    clock = Clock()
    watch = ArchiverWatch(SEG.format(1), stall=10, clock=clock)
    assert watch.reached(None) is False
    clock.now = 11
    with pytest.raises(ArchiverStalled, match="still none"):
        watch.reached(None)
