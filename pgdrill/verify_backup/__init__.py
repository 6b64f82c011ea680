"""`pgdrill verify-backup`: prove a barman-cloud bucket restores, with nothing but the bucket
and read-only credentials — no cluster, no Kubernetes.

- `source`: the backup chosen in the bucket and what its backup.info says (major, system
  identifier, sizes).
- `scratch`: a throwaway local PostgreSQL of the backup's major that restores it and replays
  the archive, then is removed.
- `tables`: per-table row counts and fingerprints (sha256) of every database, and what changed
  since the last verification of the same archive.
- `run`: the steps, timed (fetch, replay, ready, verify), written as evidence, report and a
  ledger line like a drill.
"""
