"""Environment files name where a drill runs and its encrypted credentials, never a secret."""

import pytest

from pgdrill.core.errors import BadInput
from pgdrill.credentials.environments import load_environment_file


def write(tmp_path, text):
    path = tmp_path / "envs" / "staging.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_the_shipped_example_loads_and_sets_the_configuration():
    env = load_environment_file("environments/staging.example.yaml")
    config = env.configuration()
    assert config["environment"] == "staging" and config["pgdrill_target"] == "cnpg"
    assert config["cluster"] == "pg-main" and config["namespace"] == "staging"
    assert config["s3_credentials_file"].endswith("clusters/staging/cnpg-backup-s3.enc.yaml")
    assert config["rpo_objective_seconds"] == 60


def test_credentials_paths_are_relative_to_the_file(tmp_path):
    env = load_environment_file(
        write(tmp_path, "environment: staging\ncredentials: ../s/c.enc.yaml\n")
    )
    assert env.credentials == (tmp_path / "s" / "c.enc.yaml").resolve()


def test_plaintext_credentials_in_an_environment_file_are_refused(tmp_path):
    path = write(tmp_path, "environment: staging\nsettings:\n  aws_secret_access_key: abc\n")
    with pytest.raises(BadInput) as err:
        load_environment_file(path)
    assert "plaintext S3 credentials" in str(err.value) and "abc" not in str(err.value)
    assert "sops --encrypt" in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("environment: staging\nbucket: x\n", "unknown keys: bucket"),
        ("target: cnpg\n", "does not say which environment"),
        ("environment: [staging\n", "is not valid YAML"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_malformed_environment_files_are_named(tmp_path, text, message):
    with pytest.raises(BadInput, match=message):
        load_environment_file(write(tmp_path, text))
    with pytest.raises(BadInput, match="does not exist"):
        load_environment_file(tmp_path / "missing.yaml")
