"""The load writes as the application's role, which on CNPG owns only its database and has no
other grant (issue 19.1): the ledger is created by that role, and a ledger some other role
created earlier is granted to it, on a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from pgdrill.core.model import LoadConnection
from pgdrill.load import runner

pytestmark = pytest.mark.sandbox


def test_the_ledger_is_writable_by_the_role_the_load_writes_as(sandbox):
    sandbox.wait_ready(timeout=120)
    primary = sandbox.primary()
    with sandbox.connect(primary, "app") as admin:
        admin.autocommit = True
        admin.execute("DROP TABLE IF EXISTS pgdrill_ledger_probe")
        admin.execute("DROP ROLE IF EXISTS drill_app")
        admin.execute("CREATE ROLE drill_app LOGIN NOSUPERUSER")
        admin.execute("GRANT CREATE ON SCHEMA public TO drill_app")
        try:
            # an older ledger that the superuser created: the role cannot write it
            admin.execute(runner.LEDGER_DDL)
            owner = admin.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class "
                "WHERE oid = 'pgdrill_ledger'::regclass"
            ).fetchone()[0]
            assert owner != "drill_app"
            conninfo = (
                f"host={primary.host} port={primary.port} dbname=app user=drill_app "
                f"connect_timeout=2"
            )
            with psycopg.connect(conninfo, autocommit=True) as app:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute("INSERT INTO pgdrill_ledger (client_id, seq) VALUES ('x', 1)")
            report = runner.ledger_writable(LoadConnection(conninfo), admin)
            assert report == {"role": "drill_app", "owner": owner, "granted": True}
            with psycopg.connect(conninfo, autocommit=True) as app:
                app.execute("INSERT INTO pgdrill_ledger (client_id, seq) VALUES ('x', 1)")
                assert app.execute(
                    "SELECT count(*) FROM pgdrill_ledger WHERE client_id = 'x'"
                ).fetchone() == (1,)
            # once writable, nothing more is granted
            assert runner.ledger_writable(LoadConnection(conninfo), admin)["granted"] is False
        finally:
            admin.execute("DELETE FROM pgdrill_ledger WHERE client_id = 'x'")
            admin.execute("REVOKE ALL ON pgdrill_ledger FROM drill_app")
            admin.execute("REVOKE CREATE ON SCHEMA public FROM drill_app")
            admin.execute("DROP ROLE drill_app")
