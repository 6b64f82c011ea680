"""Acceptance for guardrail 2 on real drills: the sandbox's S3 credentials live in its own
SOPS/age-encrypted `cnpg-backup-s3` file, every drill reads them from there (evidence names the
file and its recipients), and no credential value appears in anything a drill writes — after a
passing drill, a failing one, and ones refused for plaintext or tampered credentials."""

import shutil
from pathlib import Path

import pytest

from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.cluster import sandbox_credentials
from tests.conftest import newest_evidence, run_chaos

pytestmark = pytest.mark.sandbox


def written_files(*roots: Path):
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file() and "data" not in path.relative_to(root).parts:
                yield path


def leaks(values, *roots: Path) -> list[str]:
    found = []
    for path in written_files(*roots):
        content = path.read_bytes()
        found += [f"{path}: {v[:4]}…" for v in values if v.encode() in content]
    return found


def test_drills_read_credentials_from_the_sops_file_and_never_write_them(
    sandbox, sandbox_env, tmp_path
):
    layout = sandbox.layout
    assert layout.age_key_file.is_file() and layout.credentials_file.is_file()
    assert oct(layout.age_key_file.stat().st_mode & 0o777) == "0o600"
    creds = sandbox_credentials(layout)
    values = creds.secret_values()
    recipient = next(
        line.split(": ", 1)[1]
        for line in layout.age_key_file.read_text().splitlines()
        if line.startswith("# public key: ")
    )
    # the archiver really runs with them: the primary's postmaster has them in its environment
    primary = sandbox.primary()
    pid = postgres.postmaster_pid(layout.data_dir(primary.name))
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"AWS_SECRET_ACCESS_KEY={creds.secret_access_key}".encode() in environ

    reports = tmp_path / "reports"
    passing = run_chaos("experiments/backup-restore.json", sandbox_env, tmp_path)
    assert passing.returncode == 0, passing.stderr[-2000:]
    evidence = newest_evidence(reports)
    assert evidence["credentials"]["file"] == str(layout.credentials_file)
    assert evidence["credentials"]["recipients"] == [recipient]
    assert set(evidence["credentials"]["keys"]) == {
        "ACCESS_KEY_ID",
        "ACCESS_SECRET_KEY",
        "BUCKET",
        "ENDPOINT",
        "REGION",
    }

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "checks:\n  - name: sentinel-row\n"
        "    query: SELECT value FROM pgdrill_sentinel WHERE key = 'drill'\n"
        "    expected: nope\n"
    )
    failing = run_chaos(
        "experiments/backup-restore.json",
        {**sandbox_env, "PGDRILL_CHECKLIST": str(wrong)},
        tmp_path,
    )
    assert failing.returncode != 0 and newest_evidence(reports)["verdict"] == "failed"

    # plaintext credentials in pgdrill's own environment: refused before anything runs
    plaintext = run_chaos(
        "experiments/backup-restore.json",
        {**sandbox_env, "PGDRILL_S3_SECRET_ACCESS_KEY": values[1]},
        tmp_path,
    )
    console = plaintext.stdout + plaintext.stderr
    assert plaintext.returncode != 0
    assert (
        "plaintext S3 credentials are not accepted: environment variable "
        "PGDRILL_S3_SECRET_ACCESS_KEY"
        in console
        and "SOPS" in console
    )
    assert newest_evidence(reports)["verdict"] == "refused"

    # a tampered credentials file: refused with the MAC error, the file named
    saved = tmp_path / "saved.enc.yaml"
    shutil.copy2(layout.credentials_file, saved)
    try:
        text = layout.credentials_file.read_text()
        layout.credentials_file.write_text(
            text.replace("name: cnpg-backup-s3", "name: cnpg-backup-s4")
        )
        tampered = run_chaos("experiments/backup-restore.json", sandbox_env, tmp_path)
        console = tampered.stdout + tampered.stderr
        assert tampered.returncode != 0 and "MAC" in console
        assert str(layout.credentials_file) in console
        assert newest_evidence(reports)["verdict"] == "refused"
    finally:
        shutil.copy2(saved, layout.credentials_file)
        saved.unlink()

    # the wrong age identity: refused, naming the file's recipient and where keys were looked
    saved_key = tmp_path / "saved-keys.txt"
    shutil.copy2(layout.age_key_file, saved_key)
    try:
        from pgdrill.credentials import sops

        layout.age_key_file.write_text(sops.new_identity()[0] + "\n")
        wrong_key = run_chaos("experiments/backup-restore.json", sandbox_env, tmp_path)
        console = wrong_key.stdout + wrong_key.stderr
        assert wrong_key.returncode != 0 and recipient in console
        assert newest_evidence(reports)["verdict"] == "refused"
        # and a missing credentials file: refused with the fix
        layout.credentials_file.rename(saved)
        missing = run_chaos("experiments/backup-restore.json", sandbox_env, tmp_path)
        assert missing.returncode != 0
        assert "no SOPS-encrypted credentials file" in missing.stdout + missing.stderr
        assert "sandbox reset --yes" in missing.stdout + missing.stderr
    finally:
        shutil.copy2(saved_key, layout.age_key_file)
        if saved.exists():
            saved.rename(layout.credentials_file)
    assert sandbox_credentials(layout).secret_values() == values

    logs = [p for p in (layout.home,) if p.exists()]
    found = leaks(values, reports, *logs, tmp_path)
    assert found == [], found
    console = "".join(
        o.stdout + o.stderr for o in (passing, failing, plaintext, tampered, wrong_key, missing)
    )
    assert not any(v in console for v in values)
    # and the scan would see one
    planted = tmp_path / "planted" / "x.log"
    planted.parent.mkdir()
    planted.write_text(f"oops {values[1]}\n")
    assert leaks(values, planted.parent) == [f"{planted}: {values[1][:4]}…"]
