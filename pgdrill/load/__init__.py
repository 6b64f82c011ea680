"""Write load for drills: a Locust user writing to `pgdrill_ledger` and an exact log of every
acknowledged write (see `pgdrill.load.acklog`), started and stopped by `pgdrill.load.runner`.

Nothing here imports Locust: importing it monkey-patches the whole process with gevent,
so Locust only ever runs in its own subprocess (`pgdrill/load/locustfile.py`)."""
