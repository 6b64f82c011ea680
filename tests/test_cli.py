import os
import subprocess
import sys

from pgdrill.cli import main


def test_status_of_absent_sandbox_says_so_and_exits_1(tmp_path, capsys):
    assert main(["sandbox", "status", "--home", str(tmp_path / "none")]) == 1
    assert "not up" in capsys.readouterr().out


def test_status_json_of_absent_sandbox(tmp_path, capsys):
    main(["sandbox", "status", "--json", "--home", str(tmp_path / "none")])
    assert '"up": false' in capsys.readouterr().out


def test_down_without_sandbox_is_harmless(tmp_path):
    assert main(["sandbox", "down", "--home", str(tmp_path / "none")]) == 0


def test_unknown_target_is_an_error_without_traceback(tmp_path):
    env = {**os.environ, "PGDRILL_TARGET": "nope"}
    code = (
        "import sys; from pgdrill.chaos.activity import ready_target\n"
        "from pgdrill.core.errors import PgdrillError\n"
        "try:\n    ready_target({})\nexcept PgdrillError as e:\n"
        "    print(e); sys.exit(e.exit_code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown target 'nope'" in out.stdout and "Traceback" not in out.stderr


def test_find_python_explains_what_to_install(tmp_path):
    env = {"PATH": "/nonexistent", "PYENV_ROOT": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(
        ["/bin/sh", "scripts/find-python"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "needs Python 3.11 or newer" in out.stderr and "pyenv install 3.11" in out.stderr


def test_find_python_finds_a_supported_interpreter():
    out = subprocess.run(["/bin/sh", "scripts/find-python"], capture_output=True, text=True)
    assert out.returncode == 0
    version = subprocess.run(
        [out.stdout.strip(), "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
    ).stdout
    assert version.strip() == "True"


def test_find_python_passes_over_a_too_old_interpreter(tmp_path):
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")  # what sys.exit(version < 3.11) does on 3.10
    old.chmod(0o755)
    env = {
        "PATH": str(tmp_path),
        "PYENV_ROOT": str(tmp_path),
        "HOME": str(tmp_path),
        "PYTHON": str(old),
    }
    out = subprocess.run(
        ["/bin/sh", "scripts/find-python"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1 and out.stdout == ""
