"""RPO measured as lost acknowledged writes, and holes told apart from lag. Pure: no I/O.

An acknowledged write is one whose COMMIT returned to the client (the load generator's ack
log). Against a copy of the database (a restored copy, or the primary after a failover):

- `reference` is the instant up to which the copy is supposed to hold everything: for a
  restore to a recovery target, the target (writes acknowledged after it are *expected*
  to be absent); for a restore to "latest", the moment the restore began (what had been
  acknowledged but not archived by then is genuinely lost: that is the real RPO); for a
  healed cluster, the moment of the check (every acknowledged write should survive).
- lost: acknowledged at or before `reference` and missing from the copy;
- expected_absent: acknowledged after `reference` and missing;
- holes: lost writes that committed BEFORE a write the copy holds. Replication and archive
  lag lose a suffix in commit order — a copy is the WAL replayed up to some point — so a
  lost write with a later write present is not lag but corruption (rows deleted, a segment
  skipped), whatever the RPO objective says. "Before" is happens-before, from the ack log:
  write P committed after lost write L when P's transaction was *sent* after L's COMMIT
  returned (`sent_at` > L.acked_at), which needs no clock tolerance (both times come from
  the same clock of the load process). For ack lines without `sent_at` (older logs) the
  rule falls back to acknowledgement times with HOLE_JITTER_SECONDS of tolerance:
  concurrent clients' acks can reach the log a few ms out of commit order.
- a copy that goes on being written after a fault (the primary after a failover, a rebuilt
  cluster) has a history that forks there: only writes sent before the fault
  (`witnesses_before`) witness holes in it; later writes are on the new branch.
- `source`: the writes the source primary holds now, for a restored copy. Writes the source
  itself lost (in a failover earlier in the drill) are not the restore's: they are counted
  as `source_missing` and left out of lost, holes and RPO (the failover check judged them).
- rpo_seconds: the newest acknowledged write at or before `reference` minus the last
  instant the copy is known complete: the newest present write acknowledged before the
  OLDEST lost write (or that lost write itself when none is). For a lost suffix that is the
  old "newest acknowledged minus newest present"; with a hole, a later surviving write can
  no longer hide it. 0 when nothing was lost.
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
    sent_at: float | None


# ack-time tolerance of the hole rule for ack lines without a send time (module docstring)
HOLE_JITTER_SECONDS = 0.005


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
    holes: int = 0
    hole_examples: list[str] = field(default_factory=list)
    oldest_lost_at: str | None = None
    source_missing: int | None = None
    source_missing_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def hole_problem(self, where: str) -> str | None:
        """The sentence for a verdict when the copy has holes, or None."""
        return hole_sentence(self.holes, self.hole_examples, where) if self.holes else None


def hole_sentence(holes: int, examples: list[str], where: str) -> str:
    """Why a copy with `holes` fails (the verdict's reason, pgdrill.evidence.build)."""
    return (
        f"{holes} acknowledged writes are missing from {where} although writes committed "
        f"after them are present (a hole: replication or archive lag loses only the "
        f"newest writes), e.g. " + ", ".join(examples)
    )


def _order_key(ack: AckLike) -> float:
    """The instant after which every write acknowledged before it had committed."""
    sent = getattr(ack, "sent_at", None)
    return sent if sent is not None else ack.acked_at - HOLE_JITTER_SECONDS


def _sent(ack: AckLike) -> float:
    sent = getattr(ack, "sent_at", None)
    return sent if sent is not None else ack.acked_at


def measure_rpo(
    acks: Iterable[AckLike],
    present: set[tuple[str, int]],
    reference: float,
    *,
    reference_kind: str,
    examples: int = 5,
    witnesses_before: float | None = None,
    source: set[tuple[str, int]] | None = None,
) -> RpoReport:
    """Count acknowledged writes missing from `present` relative to `reference` (epoch s),
    and which of them are holes (module docstring)."""
    every = list(acks)
    acks = every if source is None else [a for a in every if (a.client_id, a.seq) in source]
    gone_on_source = (
        []
        if source is None
        else sorted(
            (a for a in every if (a.client_id, a.seq) not in source), key=lambda a: a.acked_at
        )
    )
    lost, expected_absent, present_after = [], 0, 0
    newest_before = None
    present_acks = []
    for ack in acks:
        here = (ack.client_id, ack.seq) in present
        if here:
            present_acks.append(ack)
        if ack.acked_at <= reference:
            newest_before = max(newest_before or ack.acked_at, ack.acked_at)
            if not here:
                lost.append(ack)
        elif here:
            present_after += 1
        else:
            expected_absent += 1
    lost.sort(key=lambda a: a.acked_at)
    # every present write (after the reference too) witnesses the commit order
    latest_witness = max(
        (
            _order_key(a)
            for a in present_acks
            if witnesses_before is None or _sent(a) < witnesses_before
        ),
        default=None,
    )
    holes = [a for a in lost if latest_witness is not None and a.acked_at < latest_witness]
    if not lost or newest_before is None:
        rpo = 0.0
    else:
        oldest = lost[0].acked_at
        intact = [a.acked_at for a in present_acks if a.acked_at < oldest]
        floor = max(intact) if intact else oldest
        rpo = max(0.0, newest_before - floor)
    return RpoReport(
        acknowledged_writes=len(every),
        lost_writes=len(lost),
        expected_absent=expected_absent,
        present_after_reference=present_after,
        rpo_seconds=round(rpo, 3),
        reference=datetime.fromtimestamp(reference, UTC).isoformat(),
        reference_kind=reference_kind,
        lost_examples=[f"{a.client_id}:{a.seq}" for a in lost[:examples]],
        holes=len(holes),
        hole_examples=[f"{a.client_id}:{a.seq}" for a in holes[:examples]],
        oldest_lost_at=(
            datetime.fromtimestamp(lost[0].acked_at, UTC).isoformat() if lost else None
        ),
        source_missing=None if source is None else len(gone_on_source),
        source_missing_examples=[f"{a.client_id}:{a.seq}" for a in gone_on_source[:examples]],
    )
