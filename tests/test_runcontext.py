import re
from datetime import UTC, datetime

from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext, create_run_dir, run_folder_name


def test_run_folder_name_is_utc_stamp_and_experiment():
    name = run_folder_name("pvc-loss", datetime(2026, 11, 24, 7, 5, 9, tzinfo=UTC))
    assert name == "20261124T070509Z-pvc-loss"


def test_run_dirs_never_collide(tmp_path):
    a = create_run_dir(tmp_path, "pvc-loss")
    b = create_run_dir(tmp_path, "pvc-loss")
    assert a != b and a.is_dir() and b.is_dir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-pvc-loss(-\d+)?", a.name)


def test_context_is_shared_through_configuration(tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    RunContext.from_configuration(cfg).update(fault={"kind": "drop_pvc"})
    RunContext.from_configuration(cfg).append("notes", 1)
    data = RunContext.from_configuration(dict(cfg)).read()
    assert data == {"fault": {"kind": "drop_pvc"}, "notes": [1]}
