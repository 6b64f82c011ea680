"""Reports of a finished drill, built from its run folder's evidence.json and journal.json.

For people (`human.write_reports`: report.html, report.md, timeline.png):
- `document` (the report as data), `facts` (build_report), `guardrails`, `recovery`,
  `bucket` (the WAL archive), `circumstances` (its sections) — pure;
- `page` (HTML, self-contained) and `markdown` renderers;
- `timeline` (the matplotlib picture) from `spans` (phases and markers) and `loadseries`
  (acknowledged writes and failures per second).

For machines: `junit` (junit.xml) and `metrics` (metrics.prom, Pushgateway).

`pgdrill report RUN_DIR` (pgdrill.commands.report) regenerates them from a run folder."""
