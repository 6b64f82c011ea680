"""Reports of a finished drill, built from its run folder's evidence.json and journal.json.

- `timeline`: the run as a picture (PNG): phases over time, the fault, the load's writes.
- `human`: `report.html` (self-contained) and `report.md` for people.
- `junit`, `metrics`: machine-readable reports for CI and monitoring.

`pgdrill report RUN_DIR` (pgdrill.commands.report) regenerates them from a run folder."""
