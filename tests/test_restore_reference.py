"""The instant a restored copy is judged against, and the refusal when there is no copy."""

import pytest

from pgdrill.chaos.writes import restore_reference
from pgdrill.core.errors import BadInput

LATEST = {"kind": "latest", "lsn": None, "name": None, "time": None}


def test_latest_is_judged_at_the_restore_start():
    context = {"restore": {"target": LATEST, "started_at": "2026-12-07T10:00:00+00:00"}}
    when, kind = restore_reference(context)
    assert kind == "restore start"
    assert when == 1796637600.0


def test_a_restore_that_never_completed_is_refused_with_a_fix_not_a_type_error():
    # what a restore cut short by a signal or a failure leaves in the run context
    context = {"restore": {"target": LATEST, "started_at": None, "phases": {}}}
    with pytest.raises(BadInput, match="never completed") as caught:
        restore_reference(context)
    assert caught.value.fix
