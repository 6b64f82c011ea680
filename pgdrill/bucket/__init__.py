"""What a barman-cloud bucket holds, judged without touching it: pure functions over a
listing of `<destinationPath>/<serverName>/` (keys, sizes, upload times) and the backups'
metadata, plus the one module that reads the bucket.

- `location`: where a server's backups live (destinationPath, serverName, endpoint, SOPS
  credentials);
- `listing`: the I/O edge — one paginated listing of the server folder, backup.info files,
  history files;
- `walchain`: WAL continuity and the recoverable window (gaps and their one sentence,
  per-backup windows, problems);
- `report`: the bucket report (`pgdrill bucket-report`, and `bucket` in every drill's
  evidence): backups, gaps with their cost, windows, archive lag, backup age, verdict;
- `restore_gate`: a restore the WAL cannot take where asked is refused before it starts,
  with the report's sentence.
"""
