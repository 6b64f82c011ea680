"""How long writes stopped being acknowledged around a fault, seen from the clients: the last
acknowledged write before the outage to the first one after it (what CNPG's own failover e2e
test measures: last commit on the old timeline to first commit on the new one). Pure."""

from __future__ import annotations

from datetime import UTC, datetime


def write_outage(ack_times: list[float], fault_epoch: float, until_epoch: float) -> dict | None:
    """The longest gap between consecutive acknowledged writes from the last one at or before
    `fault_epoch` through `until_epoch` (the cluster healthy again). None when no write was
    acknowledged after the fault (the load did not come back) or there was no load."""
    times = sorted(t for t in ack_times if t <= until_epoch)
    before = [t for t in times if t <= fault_epoch]
    after = [t for t in times if t > fault_epoch]
    if not after:
        return None
    chain = before[-1:] + after
    if len(chain) < 2:
        return None
    gap, last, first = max((b - a, a, b) for a, b in zip(chain, chain[1:]))

    def iso(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, UTC).isoformat()

    return {
        "seconds": round(gap, 3),
        "last_ack_before": iso(last),
        "first_ack_after": iso(first),
        "measured_by": "acknowledged writes of the load (client side)",
    }
