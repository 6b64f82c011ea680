"""Guardrail 2 in pure code: credentials only from a SOPS file, never shown, plaintext refused."""

import base64

import pytest

from pgdrill.core.errors import BadInput
from pgdrill.credentials import sops
from pgdrill.credentials.secret import (
    REQUIRED_KEYS,
    load_s3_credentials,
    plaintext_credentials,
    redact,
    secret_manifest,
    write_encrypted_secret,
)

VALUES = {
    "ACCESS_KEY_ID": "AKIAEXAMPLE1234",
    "ACCESS_SECRET_KEY": "s3cr3t/Value+With=Chars",
    "BUCKET": "backups",
    "ENDPOINT": "https://s3.example.net",
    "REGION": "eu-west-1",
}


@pytest.fixture
def identity(tmp_path):
    secret, recipient = sops.new_identity()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(secret + "\n")
    return str(key_file), recipient


def test_a_cnpg_backup_s3_secret_round_trips_and_never_shows_its_values(tmp_path, identity):
    key_file, recipient = identity
    path = write_encrypted_secret(
        tmp_path / "cnpg-backup-s3.enc.yaml", VALUES, [recipient], namespace="staging"
    )
    text = path.read_text()
    assert all(v not in text for v in (VALUES["ACCESS_KEY_ID"], VALUES["ACCESS_SECRET_KEY"]))
    assert "name: cnpg-backup-s3" in text and "encrypted_regex" in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    creds = load_s3_credentials(path, [key_file])
    assert (
        creds.access_key_id,
        creds.secret_access_key,
        creds.bucket,
        creds.endpoint,
        creds.region,
    ) == tuple(VALUES[k] for k in REQUIRED_KEYS)
    assert creds.recipients == (recipient,)
    shown = repr(creds) + str(creds.describe())
    assert VALUES["ACCESS_KEY_ID"] not in shown and VALUES["ACCESS_SECRET_KEY"] not in shown
    assert creds.describe()["file"] == str(path)
    assert creds.process_env()["AWS_SECRET_ACCESS_KEY"] == VALUES["ACCESS_SECRET_KEY"]


def test_string_data_is_read_as_plain_values(tmp_path, identity):
    key_file, recipient = identity
    manifest = secret_manifest(VALUES)
    manifest["stringData"] = {"REGION": "us-east-2"}
    del manifest["data"]["REGION"]
    path = tmp_path / "s.enc.yaml"
    sops.encrypt_file(path, manifest, [recipient], encrypted_regex="^(data|stringData)$")
    assert load_s3_credentials(path, [key_file]).region == "us-east-2"


def test_missing_keys_and_missing_files_are_named_not_shown(tmp_path, identity):
    key_file, recipient = identity
    manifest = secret_manifest(VALUES)
    del manifest["data"]["ACCESS_SECRET_KEY"]
    path = tmp_path / "partial.enc.yaml"
    sops.encrypt_file(path, manifest, [recipient], encrypted_regex="^(data|stringData)$")
    with pytest.raises(BadInput) as err:
        load_s3_credentials(path, [key_file])
    assert "lacks ACCESS_SECRET_KEY" in str(err.value)
    assert VALUES["ACCESS_KEY_ID"] not in str(err.value)
    with pytest.raises(BadInput, match="does not exist"):
        load_s3_credentials(tmp_path / "nope.yaml", [key_file])
    bad = secret_manifest(VALUES)
    bad["data"]["BUCKET"] = "not base64!"
    path = tmp_path / "bad.enc.yaml"
    sops.encrypt_file(path, bad, [recipient], encrypted_regex="^(data|stringData)$")
    with pytest.raises(BadInput, match="data.BUCKET is not base64"):
        load_s3_credentials(path, [key_file])


def test_a_wrong_identity_is_refused_naming_the_recipients(tmp_path, identity):
    _, recipient = identity
    path = write_encrypted_secret(tmp_path / "c.enc.yaml", VALUES, [recipient])
    other, _ = sops.new_identity()
    wrong = tmp_path / "other.txt"
    wrong.write_text(other + "\n")
    with pytest.raises(BadInput) as err:
        load_s3_credentials(path, [str(wrong)])
    assert recipient in str(err.value)


def test_redact_replaces_every_credential_value():
    text = f"barman failed: key {VALUES['ACCESS_KEY_ID']} secret {VALUES['ACCESS_SECRET_KEY']}"
    out = redact(text, [VALUES["ACCESS_KEY_ID"], VALUES["ACCESS_SECRET_KEY"], ""])
    assert out == "barman failed: key <redacted> secret <redacted>"


def test_plaintext_credentials_are_found_by_name_wherever_they_are_given():
    assert plaintext_credentials({"cluster": "x", "checklist": "c.yaml"}, {}, {}) == []
    found = plaintext_credentials(
        {"aws_secret_access_key": "v", "s3_access_key": "v", "access_key_id": ""},
        {
            "s3": {
                "ACCESS_SECRET_KEY": "v",
                "cnpg-backup-s3": {"type": "sops", "file": "c.enc.yaml"},
            }
        },
        {
            "PGDRILL_S3_SECRET_KEY": "v",
            "AWS_SECRET_ACCESS_KEY": "not pgdrill's own",
            "PGDRILL_HOME": "/x",
        },
    )
    assert found == [
        "configuration key 'aws_secret_access_key'",
        "configuration key 's3_access_key'",
        "inline secret s3.ACCESS_SECRET_KEY",
        "environment variable PGDRILL_S3_SECRET_KEY",
    ]


def test_secret_manifest_is_what_cnpg_reads():
    manifest = secret_manifest(VALUES, namespace="staging")
    assert manifest["metadata"] == {"name": "cnpg-backup-s3", "namespace": "staging"}
    assert (
        base64.b64decode(manifest["data"]["ACCESS_SECRET_KEY"]).decode()
        == VALUES["ACCESS_SECRET_KEY"]
    )
    with pytest.raises(BadInput, match="needs ENDPOINT"):
        secret_manifest({**VALUES, "ENDPOINT": ""})


def test_a_failing_tool_that_echoes_its_credentials_is_redacted(tmp_path):
    from pgdrill.core.errors import TargetError
    from pgdrill.targets.sandbox import postgres
    from pgdrill.targets.sandbox.osuser import resolve_run_as

    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ACCESS_KEY_ID": VALUES["ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": VALUES["ACCESS_SECRET_KEY"],
    }
    with pytest.raises(TargetError) as err:
        postgres.run(
            resolve_run_as(),
            [
                "/bin/sh",
                "-c",
                'echo "denied for $AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >&2; exit 3',
            ],
            env=env,
            what="a tool",
        )
    assert str(err.value) == "a tool failed (exit 3): denied for <redacted>:<redacted>"
