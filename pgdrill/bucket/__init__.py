"""What a barman-cloud bucket holds, judged without touching it: pure functions over a
listing of `<destinationPath>/<serverName>/` (keys and sizes) and the backups' metadata.

- `walchain`: WAL continuity and the recoverable window (gaps, per-backup windows, problems).
"""
