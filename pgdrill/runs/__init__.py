"""A run folder's life, for drills and verify-backup alike: the lock of a live run, and at
its end the journal, evidence, reports and ledger line (finish); a run whose process died is
finished from what it left (stale)."""
