"""`pgdrill secrets check FILE [--identity KEYFILE]`: decrypts natively, verifies the MAC, prints
format, recipients and key names (a Secret's name, namespace and data keys), never a value;
failures exit 2 with one message and a fix."""

from __future__ import annotations

import base64

import pytest

from pgdrill.cli import main
from pgdrill.credentials import sops
from tests.conftest import SOPS_FIXTURES as FIXTURES

PR = FIXTURES / "getsops-sops-pr1031"
HUMPHD = FIXTURES / "humphd-sops-age"
CLEAR = {
    "ACCESS_KEY_ID": "AKIAPGDRILLCLITEST01",
    "ACCESS_SECRET_KEY": "cli/SecretAccessKey+forTheCheckCommand",
    "BUCKET": "drill-bucket-staging",
    "ENDPOINT": "https://minio.staging.example.org",
    "REGION": "eu-central-1",
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real reports folder, no developer age keys."""
    monkeypatch.setenv("PGDRILL_REPORTS", str(tmp_path / "reports"))
    for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["secrets", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def values_of(node) -> list[str]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in values_of(v)]
    if isinstance(node, list):
        return [x for v in node for x in values_of(v)]
    return [str(node)] if len(str(node)) >= 4 else []


@pytest.fixture
def secret_file(tmp_path):
    key, recipient = sops.new_identity()
    key_file = tmp_path / "age.agekey"
    key_file.write_text(f"# public key: {recipient}\n{key}\n")
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cnpg-backup-s3", "namespace": "staging"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in CLEAR.items()},
    }
    path = sops.encrypt_file(
        tmp_path / "cnpg-backup-s3.enc.yaml",
        document,
        [recipient],
        encrypted_regex="^(data|stringData)$",
    )
    return path, key_file, recipient, list(CLEAR.values()) + list(document["data"].values())


def test_a_kubernetes_secret_is_described_without_values(capsys, secret_file):
    path, key_file, recipient, secrets = secret_file
    code, out, err = cli(capsys, path, "--identity", key_file)
    assert code == 0 and err == ""
    assert f"file: {path}" in out and "format: yaml (sops 3.9.0" in out
    assert f"recipients: {recipient}" in out and "MAC: verified" in out
    assert "Kubernetes Secret: staging/cnpg-backup-s3" in out
    assert "metadata.name cnpg-backup-s3, metadata.namespace staging" in out
    assert "data keys: ACCESS_KEY_ID, ACCESS_SECRET_KEY, BUCKET, ENDPOINT, REGION" in out
    for value in secrets:
        assert value not in out + err
    assert key_file.read_text().split()[-1] not in out + err


def test_identity_found_the_sops_way(capsys, secret_file, monkeypatch):
    path, key_file, recipient, _ = secret_file
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    code, out, _ = cli(capsys, path)
    assert code == 0 and f"decrypted with: {recipient} (SOPS_AGE_KEY_FILE={key_file})" in out


@pytest.mark.parametrize(
    "name, key, shown",
    [
        (
            "example.yaml",
            PR / "keys.txt",
            "keys (10): myapp1, app2.db.user, app2.db.password, app2.key, number, an_array[4]",
        ),
        ("example.json", PR / "keys.txt", "phoneNumbers[].number, phoneNumbers[].type"),
        ("example.ini", PR / "keys.txt", "name.firstName, name.lastName, name.age"),
        ("example.txt", PR / "keys.txt", "content: binary data, 155 bytes (not shown)"),
    ],
)
def test_every_fixture_checks_and_no_value_is_printed(capsys, name, key, shown):
    code, out, err = cli(capsys, PR / name, "--identity", key)
    assert code == 0 and err == "", err
    assert shown in out and "format: " in out
    assert "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw" in out
    content = sops.decrypt_file(PR / name, [key])
    secrets = (
        values_of(content)
        if isinstance(content, dict)
        else [line for line in content.decode().splitlines() if len(line) >= 4]
    )
    assert secrets
    for value in secrets:
        assert value not in out + err, value


def test_humphd_dotenv_with_the_sops_age_key_variable(capsys, monkeypatch):
    key = next(
        line
        for line in (HUMPHD / "key.txt").read_text().splitlines()
        if line.startswith("AGE-SECRET-KEY-1")
    )
    monkeypatch.setenv("SOPS_AGE_KEY", key)
    code, out, err = cli(capsys, HUMPHD / "secret.enc.env")
    assert code == 0 and "format: dotenv" in out and "keys (2): secret, another_secret" in out
    assert "this is a secret" not in out + err and key not in out + err


def test_a_tampered_file_exits_2_with_the_mac_error(capsys, secret_file):
    path, key_file, _, secrets = secret_file
    path.write_text(path.read_text().replace("namespace: staging", "namespace: production"))
    code, out, err = cli(capsys, path, "--identity", key_file)
    assert code == 2 and out == ""
    message, fix = err.splitlines()
    assert message.startswith(f"pgdrill: error: {path}: MAC mismatch: the MAC did not match")
    assert fix.startswith("  fix: ") and "Traceback" not in err
    for value in secrets:
        assert value not in err


def test_a_wrong_identity_exits_2_naming_recipients_and_places(capsys, secret_file):
    path, _, recipient, secrets = secret_file
    code, out, err = cli(capsys, path, "--identity", PR / "keys.txt")
    assert code == 2 and out == ""
    assert recipient in err and f"identity file {PR / 'keys.txt'}" in err
    assert "SOPS_AGE_KEY_FILE" in err and len(err.splitlines()) == 2
    code, _, err = cli(capsys, path)
    assert code == 2 and "SOPS_AGE_KEY: not set" in err and "keys.txt: missing" in err
    for value in secrets:
        assert value not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.enc.yaml"], "does not exist"),
        ([PR / "example.yaml", "--identity", "no-such-key.txt"], "age identity file"),
        ([PR / "keys.txt"], "not a SOPS-encrypted file"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_a_fix(capsys, tmp_path, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and message in err
    assert err.startswith("pgdrill: error: ") and "\n  fix: " in err and "Traceback" not in err
