# pgdrill — the two commands users need are `make drill` and `make test`.
SHELL := /bin/sh
VENV ?= .venv
EXPERIMENT ?= experiments/pvc-loss.json
CHAOS = $(VENV)/bin/chaos --no-version-check --log-file reports/chaostoolkit.log

.PHONY: drill test lint test-fast bench bench-lab venv clean sandbox-down experiments lab lab-down test-lab

venv: $(VENV)/.installed

# The venv is rebuilt when pyproject.toml changes; everything installs with pip only.
$(VENV)/.installed: pyproject.toml
	@py="$$(scripts/find-python)" || exit 1; \
	if [ ! -x "$(VENV)/bin/python" ]; then echo "creating $(VENV) with $$py"; "$$py" -m venv "$(VENV)" || exit 1; fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

## Run one drill (default experiments/pvc-loss.json) against the sandbox; evidence in reports/.
drill: venv
	@$(VENV)/bin/pgdrill validate $(EXPERIMENT) || exit $$?; \
	status=0; $(CHAOS) run --journal-path reports/latest-journal.json $(EXPERIMENT) || status=$$?; \
	echo "The sandbox keeps running for the next drill; stop it with: $(VENV)/bin/pgdrill sandbox down"; \
	exit $$status

## Full test suite: unit tests and real end-to-end drills on the sandbox.
test: lint
	$(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

## Lint (ruff) and format check (ruff format): part of `make test`.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Unit tests only (no sandbox).
test-fast: venv
	$(VENV)/bin/python -m pytest -ra -m "not sandbox" $(PYTEST_ARGS)

## Regenerate experiments/*.json from experiments/_template/ (README, Writing experiments);
## tests/test_experiments.py fails while a committed experiment differs from this output.
experiments: venv
	$(VENV)/bin/python -m pgdrill.chaos.experiments

## Benchmarks (not timed tests), side by side on a real sandbox at ~100 MB and ~1 GB:
## pgdrill's restore path vs the raw tools, parallel WAL fetch, fingerprints, load.
## Writes reports/bench/<stamp>.json and .md (BENCH_SIZES=100MB, BENCH_4GB=1, BENCH_SMOKE=1).
bench: venv
	$(VENV)/bin/python benchmarks/bench.py

## The lab (real CNPG) and a sandbox side by side: failover after the primary is deleted under
## load (3 times each) and a ~1 GB restore into restore-test. Needs `make lab` first.
## Writes reports/bench/lab-<stamp>.json and .md (BENCH_FAILOVERS, BENCH_RESTORE_SCALE,
## BENCH_TARGETS=lab|sandbox, BENCH_SMOKE=1).
bench-lab: venv
	$(VENV)/bin/python benchmarks/lab_bench.py

## The lab: a real single-node Kubernetes (etcd, kube-apiserver, controller-manager, scheduler,
## kubelet, kube-proxy, containerd+runc, CoreDNS, local-path storage) with the real CloudNativePG
## operator and a source Cluster, built from Go modules into ~/.cache/pgdrill-lab (README, "The lab").
## Needs root. A second `make lab` reuses what runs.
lab: venv
	sh lab/lab.sh up

lab-down:
	sh lab/lab.sh down

## Every cnpg drill on the lab, through `chaos run`, as pgdrill's least-privilege ServiceAccount.
test-lab: lab
	PGDRILL_LAB=$(CURDIR)/.pgdrill/lab $(VENV)/bin/python -m pytest -ra tests/lab $(PYTEST_ARGS)

sandbox-down: venv
	$(VENV)/bin/pgdrill sandbox down

clean: 
	-[ -x $(VENV)/bin/pgdrill ] && $(VENV)/bin/pgdrill sandbox down
	rm -rf $(VENV) .pgdrill
