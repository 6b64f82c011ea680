"""RPO measured as lost acknowledged writes. Pure: no I/O.

An acknowledged write is one whose COMMIT returned to the client (the load generator's ack
log). Against a copy of the database (a restored copy, or the primary after a failover):

- `reference` is the instant up to which the copy is supposed to hold everything: for a
  restore to a recovery target, the target (writes acknowledged after it are *expected*
  to be absent); for a restore to "latest", the moment the restore began (what had been
  acknowledged but not archived by then is genuinely lost: that is the real RPO); for a
  healed cluster, the moment of the check (every acknowledged write should survive).
- lost: acknowledged at or before `reference` and missing from the copy;
- expected_absent: acknowledged after `reference` and missing;
- rpo_seconds: newest acknowledged write at or before `reference` minus the newest
  acknowledged write present in the copy (0 when nothing was lost).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol


class AckLike(Protocol):
    client_id: str
    seq: int
    acked_at: float


@dataclass(frozen=True)
class RpoReport:
    acknowledged_writes: int
    lost_writes: int
    expected_absent: int
    present_after_reference: int
    rpo_seconds: float
    reference: str
    reference_kind: str
    lost_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def measure_rpo(acks: Iterable[AckLike], present: set[tuple[str, int]], reference: float,
                *, reference_kind: str, examples: int = 5) -> RpoReport:
    """Count acknowledged writes missing from `present` relative to `reference` (epoch s)."""
    acks = list(acks)
    lost, expected_absent, present_after = [], 0, 0
    newest_before = newest_present = None
    for ack in acks:
        here = (ack.client_id, ack.seq) in present
        if ack.acked_at <= reference:
            newest_before = max(newest_before or ack.acked_at, ack.acked_at)
            if here:
                newest_present = max(newest_present or ack.acked_at, ack.acked_at)
            else:
                lost.append(ack)
        elif here:
            present_after += 1
        else:
            expected_absent += 1
    if not lost or newest_before is None:
        rpo = 0.0
    else:
        # nothing present at all: everything since the first lost write is gone
        floor = newest_present if newest_present is not None else min(a.acked_at for a in lost)
        rpo = max(0.0, newest_before - floor)
    lost.sort(key=lambda a: a.acked_at)
    return RpoReport(
        acknowledged_writes=len(acks),
        lost_writes=len(lost),
        expected_absent=expected_absent,
        present_after_reference=present_after,
        rpo_seconds=round(rpo, 3),
        reference=datetime.fromtimestamp(reference, UTC).isoformat(),
        reference_kind=reference_kind,
        lost_examples=[f"{a.client_id}:{a.seq}" for a in lost[:examples]],
    )
