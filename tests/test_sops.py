"""pgdrill.credentials.sops: native SOPS/age decryption with the MAC always verified, identity
discovery as sops does it, and SOPS YAML encryption. Pure and fast: fixtures encrypted by the
real sops binary (public test keys) plus files this module writes itself."""

from __future__ import annotations

import base64
import json
import re
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest

from pgdrill.core.errors import BadInput
from pgdrill.credentials import sops
from pgdrill.credentials.sops import (
    SopsAuthFailed,
    SopsError,
    SopsMacMismatch,
    SopsNoIdentity,
    crypto,
    formats,
    gotypes,
    tree,
)
from tests.conftest import SOPS_FIXTURES as FIXTURES

PR = FIXTURES / "getsops-sops-pr1031"
MAIN_KEYS = FIXTURES / "getsops-sops-main-keys" / "keys.txt"
HUMPHD = FIXTURES / "humphd-sops-age"
PR_KEYS = PR / "keys.txt"
HUMPHD_KEY = HUMPHD / "key.txt"
PR_RECIPIENTS = [
    "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw",
    "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep",
]
SECRET_REGEX = "^(data|stringData)$"


@pytest.fixture(autouse=True)
def isolated_keys(tmp_path, monkeypatch):
    """No developer key is ever found: sops's variables unset, HOME and XDG in tmp."""
    for name in (
        "SOPS_AGE_KEY",
        "SOPS_AGE_KEY_FILE",
        "SOPS_AGE_KEY_CMD",
        "SOPS_AGE_RECIPIENT",
        "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
        "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET")]


def leaves(node) -> list:
    if isinstance(node, dict):
        return [x for v in node.values() for x in leaves(v)]
    if isinstance(node, list):
        return [x for v in node for x in leaves(v)]
    return [node]


def assert_no_values(text: str, values) -> None:
    for value in values:
        assert value not in text, f"a plaintext value leaked into: {text[:200]}..."


def copy_fixture(src: Path, tmp_path: Path, edit=None) -> Path:
    text = src.read_text()
    if edit:
        changed = edit(text)
        assert changed != text, "the edit changed nothing"
        text = changed
    dst = tmp_path / "copy" / src.name
    dst.parent.mkdir(exist_ok=True)
    dst.write_text(text)
    return dst


# -- 1. every fixture decrypts and MAC-verifies -------------------------------------------------
EXPECTED_EXAMPLE_JSON = {
    "firstName": "John",
    "lastName": "Smith",
    "age": 25.4,
    "address": {
        "city": "New York",
        "postalCode": "10021-3100",
        "state": "NY",
        "streetAddress": "21 2nd Street",
    },
    "phoneNumbers": [
        {"number": "212 555-1234", "type": "home"},
        {"number": "646 555-4567", "type": "office"},
    ],
    "anEmptyValue": "",
}


def test_example_yaml_decrypts_with_go_types_and_comments_dropped():
    opened = sops.open_file(PR / "example.yaml", [PR_KEYS])
    doc = opened.content
    assert opened.mac_verified and opened.format == "yaml" and opened.version == "3.7.1"
    assert opened.recipients == PR_RECIPIENTS and opened.identity == PR_RECIPIENTS[0]
    assert doc["myapp1"] == "t00m4nys3cr3tzupdated"
    assert doc["app2"]["db"] == {"user": "eve", "password": "c4r1b0u"}
    assert doc["app2"]["key"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert doc["number"] == 1234568000.0 and type(doc["number"]) is float
    assert doc["somebooleans"] == [True, False]
    assert doc["an_array"][0] == "secretuser1" and len(doc["an_array"]) == 4
    assert doc["this"]["is"]["a"]["nested"] == {"value": "with something secret in it"}
    assert doc["somelist_unencrypted"][1] == "remain in clear text"  # clear, hashed
    assert doc["nested_unencrypted"] == {"this": {"is": {"all": "going to remain in clear text"}}}
    assert "sops" not in doc


def test_example_json_txt_ini_decrypt_and_verify():
    assert sops.decrypt_file(PR / "example.json", [PR_KEYS]) == EXPECTED_EXAMPLE_JSON
    binary = sops.decrypt_file(PR / "example.txt", [PR_KEYS])
    assert isinstance(binary, bytes)
    assert binary.startswith(b"Welcome to SOPS!\n\nSOPS is a manager of encrypted files")
    assert binary.endswith(b"https://github.com/mozilla/sops\n\n") and len(binary) == 155
    assert sops.decrypt_file(PR / "example.ini", [PR_KEYS]) == {
        "name": {"firstName": "John", "lastName": "Smith", "age": "25.4"},
        "address": {
            "city": "New York",
            "postalCode": "10021-3100",
            "state": "NY",
            "streetAddress": "21 2nd Street",
        },
        "phoneNumbers": {"home": "212 555-1234", "office": "646 555-4567"},
        "not private": {"notsecret_unencrypted": "hi there!"},
    }


def test_humphd_files_equal_the_known_plaintext():
    plain = json.loads((HUMPHD / "secret.json").read_text())
    from_json = sops.decrypt_file(HUMPHD / "secret.enc.json", [HUMPHD_KEY])
    assert from_json == plain
    # sops 3.8/3.9 stored the JSON integer 7 as type:float "7": Go hashes it as "7"
    # (Python's str(7.0) is "7.0" and would fail the MAC); it comes back as the int 7
    assert type(from_json["int"]) is int and type(from_json["float"]) is float
    from_yaml = sops.decrypt_file(HUMPHD / "secret.enc.yaml", [HUMPHD_KEY])
    assert from_yaml == {k: v for k, v in plain.items() if k != "0word"}
    assert type(from_yaml["int"]) is int and from_yaml["boolean"] is True
    assert sops.decrypt_file(HUMPHD / "secret.enc.env", [HUMPHD_KEY]) == {
        "secret": "this is a secret",
        "another_secret": "7",
    }
    assert (
        sops.recipients(HUMPHD / "secret.enc.env") == sops.recipients(HUMPHD / "secret.enc.yaml")
        and len(sops.recipients(HUMPHD / "secret.enc.json")) == 3
    )


@pytest.mark.parametrize("name", ["example.yaml", "example.json", "example.txt", "example.ini"])
def test_the_second_identity_of_the_main_keys_decrypts_too(name, monkeypatch):
    second = key_lines(MAIN_KEYS)[1]
    monkeypatch.setenv("SOPS_AGE_KEY", second)
    opened = sops.open_file(PR / name)
    assert opened.identity == PR_RECIPIENTS[1] and opened.identity_source == "SOPS_AGE_KEY"
    assert opened.content == sops.decrypt_file(PR / name, [PR_KEYS])
    both = sops.open_file(PR / name, [MAIN_KEYS])  # a key file with both identities
    assert both.content == opened.content


def test_yaml_written_back_has_the_fixture_layout():
    """go-yaml v3 layout with indent 4: re-emitting example.yaml's tree gives the file byte for
    byte, but for its comments (sops's own output is what encrypt_yaml writes)."""
    text = (PR / "example.yaml").read_text()
    tree_ = formats.yaml_documents(text)[0]
    without_comments = "".join(
        line for line in text.splitlines(True) if not line.lstrip().startswith("#")
    )
    assert formats.dump_yaml(tree_) == without_comments


# -- Go value semantics behind the MAC -----------------------------------------------------------
@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("yes", "str", "yes"),
        ("on", "str", "on"),
        ("Off", "str", "Off"),
        ("y", "str", "y"),
        ("true", "bool", True),
        ("FALSE", "bool", False),
        ("~", "null", None),
        ("", "null", None),
        ("7", "int", 7),
        ("0777", "int", 511),
        ("0o17", "int", 15),
        ("0x1F", "int", 31),
        ("0b101", "int", 5),
        ("1_000", "int", 1000),
        ("-0x1F", "int", -31),
        ("08", "float", 8.0),
        ("1e3", "float", 1000.0),
        (".5", "float", 0.5),
        ("3.14", "float", 3.14),
        ("12:30", "str", "12:30"),
        ("0word", "str", "0word"),
        ("1.2.3", "str", "1.2.3"),
        ("2024-01-01T10:00:00", "str", "2024-01-01T10:00:00"),
    ],
)
def test_plain_scalars_are_typed_as_go_yaml_v3_types_them(text, kind, value):
    assert gotypes.yaml_resolve(text) == (kind, value)


@pytest.mark.parametrize(
    "text, go_text",
    [
        ("2024-01-01", "2024-01-01T00:00:00Z"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14T21:59:43.1-05:00"),
        ("2001-12-14 21:59:43.123456789", "2001-12-14T21:59:43.123456789Z"),
        ("2006-1-2T15:04:05+00:00", "2006-01-02T15:04:05Z"),
    ],
)
def test_unquoted_timestamps_become_go_times_hashed_as_rfc3339_nano(text, go_text):
    kind, value = gotypes.yaml_resolve(text)
    assert kind == "timestamp" and isinstance(value, datetime)
    assert gotypes.to_bytes(value) == go_text.encode()


@pytest.mark.parametrize(
    "value, go",
    [
        (7.0, "7"),
        (3.14, "3.14"),
        (1e-05, "0.00001"),
        (1e21, "1000000000000000000000"),
        (-0.0, "-0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1234568000.0, "1234568000"),
        (float("inf"), "+Inf"),
        (True, "True"),
        (False, "False"),
        (-12, "-12"),
    ],
)
def test_leaves_hash_as_go_formats_them(value, go):
    assert gotypes.to_bytes(value) == go.encode()


def test_clear_values_are_hashed_with_go_yaml_typing(tmp_path):
    """Spellings that go-yaml v3 reads as the same value keep the MAC; YAML 1.1 typing
    (PyYAML's default: `yes` is a bool, `0o777` a string) would break it."""
    secret, recipient = sops.new_identity()
    document = {
        "metadata_unencrypted": {
            "flag": "yes",
            "mode": 511,
            "ratio": 1e-05,
            "whole": 2.0,
            "created": "2024-01-01",
        },
        "password": "hunter2-very-secret",
    }
    document["metadata_unencrypted"]["created"] = gotypes.yaml_resolve("2024-01-01")[1]
    text = sops.encrypt_yaml(document, [recipient])
    assert 'flag: "yes"' in text and "mode: 511" in text
    for old, new in [
        ('flag: "yes"', "flag: yes"),
        ("mode: 511", "mode: 0o777"),
        ("mode: 511", "mode: 0x1FF"),
        ("mode: 511", "mode: 0777"),
        ("ratio: 1.0e-05", "ratio: 0.00001"),
        ("whole: 2.0", "whole: 2"),
        ("created: 2024-01-01T00:00:00Z", "created: 2024-01-01"),
    ]:
        assert old in text, old
        path = tmp_path / "typed.yaml"
        path.write_text(text.replace(old, new))
        assert sops.decrypt_file(path, [secret])["password"] == "hunter2-very-secret", new
    for old, new in [
        ('flag: "yes"', "flag: yes!"),
        ("mode: 511", 'mode: "0777"'),
        ("whole: 2.0", "whole: 2.5"),
    ]:
        path = tmp_path / "retyped.yaml"
        path.write_text(text.replace(old, new))
        with pytest.raises(SopsMacMismatch):
            sops.decrypt_file(path, [secret])


# -- 2. tampering -----------------------------------------------------------------------------
def flip_base64_char(text: str, marker: str) -> str:
    """Change one character of the ciphertext right after `marker` (still valid base64)."""
    at = text.index(marker) + len(marker)
    new = "A" if text[at] != "A" else "B"
    return text[:at] + new + text[at + 1 :]


@pytest.mark.parametrize(
    "name, marker, where",
    [
        ("example.yaml", "myapp1: ENC[AES256_GCM,data:", "myapp1"),
        ("example.yaml", "        password: ENC[AES256_GCM,data:", "app2.db.password"),
        ("example.json", '"city": "ENC[AES256_GCM,data:', "address.city"),
        ("example.ini", "home   = ENC[AES256_GCM,data:", "phoneNumbers.home"),
        ("example.txt", '"data": "ENC[AES256_GCM,data:', "data"),
    ],
)
def test_a_changed_encrypted_value_fails_authentication_naming_file_and_key(
    tmp_path, name, marker, where
):
    path = copy_fixture(PR / name, tmp_path, lambda t: flip_base64_char(t, marker))
    for ignore_mac in (False, True):  # AES-GCM failures are never ignored
        with pytest.raises(SopsAuthFailed) as err:
            sops.decrypt_file(path, [PR_KEYS], ignore_mac=ignore_mac)
        message = str(err.value)
        assert str(path) in message and f"at {where} " in message
        assert "authentication" in message and "MAC" in message and err.value.fix
        assert "InvalidTag" not in message and "Traceback" not in message


def test_a_value_moved_to_another_key_fails_authentication(tmp_path):
    """The path is the additional data: swapping two ciphertexts is detected."""
    text = (PR / "example.yaml").read_text()
    user = re.search(r"user: (ENC\[[^\]]+\])", text).group(1)
    password = re.search(r"password: (ENC\[[^\]]+\])", text).group(1)
    swapped = text.replace(user, "@@").replace(password, user).replace("@@", password)
    path = copy_fixture(PR / "example.yaml", tmp_path, lambda _: swapped)
    with pytest.raises(SopsAuthFailed, match="at app2.db.user "):
        sops.decrypt_file(path, [PR_KEYS])


def test_a_changed_clear_value_fails_the_mac_and_ignore_mac_reads_it(tmp_path):
    path = copy_fixture(
        PR / "example.yaml",
        tmp_path,
        lambda t: t.replace(
            "all: going to remain in clear text", "all: going to remain in clear text!"
        ),
    )
    with pytest.raises(SopsMacMismatch) as err:
        sops.decrypt_file(path, [PR_KEYS])
    assert str(path) in str(err.value) and "the MAC did not match" in str(err.value)
    assert isinstance(err.value, SopsError) and isinstance(err.value, BadInput)
    assert err.value.exit_code == 2 and err.value.fix
    doc = sops.decrypt_file(path, [PR_KEYS], ignore_mac=True)
    assert doc["nested_unencrypted"]["this"]["is"]["all"] == "going to remain in clear text!"
    assert not sops.open_file(path, [PR_KEYS], ignore_mac=True).mac_verified


def swap_list_items(text: str, marker: str) -> str:
    start = text.index(marker) + len(marker)
    first_end = text.index("\n", start) + 1
    second_end = text.index("\n", first_end) + 1
    return text[:start] + text[first_end:second_end] + text[start:first_end] + text[second_end:]


@pytest.mark.parametrize(
    "name, edit",
    [
        ("example.yaml", lambda t: flip_base64_char(t, "    mac: ENC[AES256_GCM,data:")),
        ("example.json", lambda t: flip_base64_char(t, '"mac": "ENC[AES256_GCM,data:')),
        (
            "example.yaml",
            lambda t: t.replace(
                'lastmodified: "2022-03-15T22:11:15Z"', 'lastmodified: "2022-03-15T22:11:16Z"'
            ),
        ),
        ("example.yaml", lambda t: re.sub(r"    mac: ENC\[[^\]]+\]\n", "", t)),
        (
            "example.ini",
            lambda t: t.replace(
                "notsecret_unencrypted = hi there!", "notsecret_unencrypted = hi there?"
            ),
        ),
        ("example.yaml", lambda t: swap_list_items(t, "an_array:\n")),  # same AAD, new order
    ],
)
def test_a_changed_or_missing_mac_fails_with_the_mac_error(tmp_path, name, edit):
    path = copy_fixture(PR / name, tmp_path, edit)
    with pytest.raises(SopsMacMismatch) as err:
        sops.decrypt_file(path, [PR_KEYS])
    assert str(path) in str(err.value) and "MAC" in str(err.value)
    sops.decrypt_file(path, [PR_KEYS], ignore_mac=True)


def test_a_clear_text_that_should_be_encrypted_is_refused_without_echoing_it(tmp_path):
    path = copy_fixture(
        PR / "example.yaml",
        tmp_path,
        lambda t: re.sub(r"myapp1: ENC\[[^\]]+\]", "myapp1: plaintext-sneaked-in", t),
    )
    with pytest.raises(SopsError, match="at myapp1 should be encrypted") as err:
        sops.decrypt_file(path, [PR_KEYS], ignore_mac=True)
    assert "plaintext-sneaked-in" not in str(err.value)


# -- 3. identities ------------------------------------------------------------------------------
def test_a_wrong_key_lists_the_recipients_and_every_place_looked(tmp_path, monkeypatch):
    wrong = key_lines(HUMPHD_KEY)[0]
    missing = tmp_path / "nowhere" / "keys.txt"
    monkeypatch.setenv("SOPS_AGE_KEY", wrong)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(missing))
    with pytest.raises(SopsNoIdentity) as err:
        sops.decrypt_file(PR / "example.yaml")
    message = str(err.value)
    for recipient in PR_RECIPIENTS:
        assert recipient in message
    for place in (
        "SOPS_AGE_KEY:",
        f"SOPS_AGE_KEY_FILE={missing}",
        "SOPS_AGE_KEY_CMD: not set",
        str(tmp_path / "xdg" / "sops" / "age" / "keys.txt"),
    ):
        assert place in message, place
    assert "age1je6kjhzuhdjy3fqptpttxjh5k8q46vygzlgtpuq3030c947pc5tqz9dqvr" in message
    assert "SOPS_AGE_KEY_FILE" in err.value.fix
    assert err.value.recipients == PR_RECIPIENTS and len(err.value.looked) == 4
    assert wrong not in message and wrong not in repr(err.value) and wrong not in err.value.fix
    with pytest.raises(SopsNoIdentity, match="identity file"):
        sops.decrypt_file(PR / "example.yaml", [HUMPHD_KEY])


def test_no_identity_anywhere_says_so(tmp_path):
    with pytest.raises(SopsNoIdentity, match="no age identity was found") as err:
        sops.decrypt_file(HUMPHD / "secret.enc.env")
    assert "SOPS_AGE_KEY: not set" in str(err.value)


def test_discovery_from_sops_age_key_with_several_keys_on_a_line(monkeypatch):
    monkeypatch.setenv("SOPS_AGE_KEY", " ".join(key_lines(HUMPHD_KEY) + key_lines(PR_KEYS)))
    assert sops.decrypt_file(PR / "example.json") == EXPECTED_EXAMPLE_JSON
    assert sops.open_file(HUMPHD / "secret.enc.json").identity_source == "SOPS_AGE_KEY"


def test_discovery_from_sops_age_key_file(monkeypatch):
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(HUMPHD_KEY))
    opened = sops.open_file(HUMPHD / "secret.enc.yaml")
    assert opened.identity_source == f"SOPS_AGE_KEY_FILE={HUMPHD_KEY}"


def test_discovery_from_sops_age_key_cmd_run_per_recipient_without_a_shell(tmp_path, monkeypatch):
    script = tmp_path / "give key.py"
    calls = tmp_path / "calls.txt"
    script.write_text(
        "import os, sys\n"
        f"open({str(calls)!r}, 'a').write(repr(sys.argv[1:]) + ' ' + "
        "os.environ['SOPS_AGE_RECIPIENT'] + '\\n')\n"
        f"if os.environ['SOPS_AGE_RECIPIENT'] == {PR_RECIPIENTS[1]!r}:\n"
        f"    print({key_lines(MAIN_KEYS)[1]!r})\n"
    )
    monkeypatch.setenv("SOPS_AGE_KEY_CMD", f"{sys.executable} '{script}' ';' 'echo no shell'")
    opened = sops.open_file(PR / "example.yaml")
    assert opened.identity == PR_RECIPIENTS[1]
    assert opened.identity_source == "SOPS_AGE_KEY_CMD output"
    lines = calls.read_text().splitlines()
    assert lines == [
        f"[';', 'echo no shell'] {PR_RECIPIENTS[0]}",
        f"[';', 'echo no shell'] {PR_RECIPIENTS[1]}",
    ]


def test_discovery_from_the_user_config_dir(tmp_path, monkeypatch):
    xdg_keys = tmp_path / "xdg" / "sops" / "age" / "keys.txt"
    xdg_keys.parent.mkdir(parents=True)
    xdg_keys.write_text(PR_KEYS.read_text())
    assert sops.open_file(PR / "example.ini").identity_source == str(xdg_keys)
    monkeypatch.delenv("XDG_CONFIG_HOME")
    home_keys = tmp_path / "home" / ".config" / "sops" / "age" / "keys.txt"
    home_keys.parent.mkdir(parents=True)
    home_keys.write_text(HUMPHD_KEY.read_text())
    assert sops.open_file(HUMPHD / "secret.enc.env").identity_source == str(home_keys)


def test_sources_are_merged(tmp_path, monkeypatch):
    monkeypatch.setenv("SOPS_AGE_KEY", key_lines(HUMPHD_KEY)[0])
    xdg_keys = tmp_path / "xdg" / "sops" / "age" / "keys.txt"
    xdg_keys.parent.mkdir(parents=True)
    xdg_keys.write_text(PR_KEYS.read_text())
    assert sops.decrypt_file(PR / "example.json") == EXPECTED_EXAMPLE_JSON


def test_explicit_identities_as_keys_or_paths_replace_discovery(monkeypatch):
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(PR_KEYS))
    assert sops.decrypt_file(HUMPHD / "secret.enc.env", key_lines(HUMPHD_KEY))["secret"]
    assert sops.decrypt_file(HUMPHD / "secret.enc.env", [str(HUMPHD_KEY)])["secret"]
    assert sops.decrypt_file(HUMPHD / "secret.enc.env", HUMPHD_KEY)["secret"]  # one path
    with pytest.raises(SopsNoIdentity):
        sops.decrypt_file(PR / "example.json", [HUMPHD_KEY])  # the env is not consulted


def test_unusable_identities_are_named_without_echoing_them(tmp_path):
    pq = tmp_path / "pq.txt"
    pq.write_text("# post-quantum\nAGE-SECRET-KEY-PQ-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n")
    with pytest.raises(SopsError, match="post-quantum") as err:
        sops.decrypt_file(PR / "example.json", [pq])
    assert "QQQQQQQQ" not in str(err.value)
    junk = tmp_path / "junk.txt"
    junk.write_text(
        "AGE-SECRET-KEY-1NOTAVALIDKEYATALLXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\nhunter2\n"
    )
    with pytest.raises(SopsError, match="line 1: not a valid age X25519") as err:
        sops.decrypt_file(PR / "example.json", [junk])
    assert "line 2: unknown identity type" in str(err.value)
    assert "NOTAVALIDKEY" not in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(SopsError, match="does not exist"):
        sops.decrypt_file(PR / "example.json", [tmp_path / "absent.txt"])


# -- malformed and unsupported files ------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, message",
    [
        ("plain.yaml", "apiVersion: v1\nkind: Secret\n", "not a SOPS-encrypted file"),
        ("bad.yaml", "a: [1, 2\nsops: {}\n", "bad.yaml:"),
        ("dup.yaml", "a: 1\na: 2\nsops: {}\n", "duplicate key 'a'"),
        ("list.yaml", "- a\n- b\n", "not a mapping"),
        ("empty.yaml", "", "not a SOPS-encrypted file"),
        ("plain.json", '{"a": 1}', "no `sops` object"),
        ("plain.env", "A=1\n", "no sops_"),
        ("plain.ini", "[a]\nb = 1\n", "no [sops] section"),
        ("plain.txt", "just text", "not JSON"),
        (
            "nokeys.yaml",
            "a: 1\nsops:\n    lastmodified: '2024-01-01T00:00:00Z'\n    mac: x\n",
            "lists no keys",
        ),
    ],
)
def test_malformed_files_are_sops_errors_with_a_fix(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SopsError, match=re.escape(message)) as err:
        sops.decrypt_file(path, [sops.new_identity()[0]])
    assert err.value.fix and "\n" not in err.value.message


def test_shamir_key_groups_and_comment_regexes_are_refused_clearly(tmp_path):
    document = formats.yaml_documents((PR / "example.yaml").read_text())[0]
    age = document["sops"].pop("age")
    document["sops"]["key_groups"] = [{"age": age}, {"age": age}]
    path = copy_fixture(PR / "example.yaml", tmp_path, lambda _: formats.dump_yaml(document))
    with pytest.raises(SopsError, match="key groups"):
        sops.decrypt_file(path, [PR_KEYS])
    assert sops.recipients(path) == PR_RECIPIENTS * 2
    document["sops"]["key_groups"] = [{"age": age}]  # one group: no Shamir
    path.write_text(formats.dump_yaml(document))
    assert sops.decrypt_file(path, [PR_KEYS])["myapp1"] == "t00m4nys3cr3tzupdated"
    path = copy_fixture(
        PR / "example.yaml",
        tmp_path,
        lambda t: t.replace(
            "unencrypted_suffix: _unencrypted", "encrypted_comment_regex: sops:enc"
        ),
    )
    with pytest.raises(SopsError, match="encrypted_comment_regex"):
        sops.decrypt_file(path, [PR_KEYS])


# -- 4. encrypt_yaml ----------------------------------------------------------------------------
CLEAR = {
    "ACCESS_KEY_ID": "AKIAPGDRILLEXAMPLE7Q",
    "ACCESS_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYpgdrillKEY",
    "BUCKET": "pgdrill-backups-staging",
    "ENDPOINT": "https://s3.eu-west-1.example.net",
    "REGION": "eu-west-1",
}


def secret_document() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cnpg-backup-s3", "namespace": "staging"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in CLEAR.items()},
    }


def secret_values() -> list[str]:
    return list(CLEAR.values()) + list(secret_document()["data"].values())


@pytest.fixture
def two_identities():
    return [sops.new_identity(), sops.new_identity()]


def test_new_identity_is_an_age_key_pair():
    secret, recipient = sops.new_identity()
    assert secret.startswith("AGE-SECRET-KEY-1") and recipient.startswith("age1")
    assert sops.new_identity()[1] != recipient


def test_a_kubernetes_secret_round_trips_for_two_recipients(tmp_path, two_identities):
    (key1, rec1), (key2, rec2) = two_identities
    document = secret_document()
    path = sops.encrypt_file(
        tmp_path / "cnpg-backup-s3.enc.yaml", document, [rec1, rec2], encrypted_regex=SECRET_REGEX
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert_no_values(text, secret_values())
    raw = formats.yaml_documents(text)[0]
    assert raw["metadata"] == {"name": "cnpg-backup-s3", "namespace": "staging"}
    assert raw["apiVersion"] == "v1" and raw["kind"] == "Secret" and raw["type"] == "Opaque"
    assert all(crypto.is_encrypted(v) and v.endswith(",type:str]") for v in raw["data"].values())
    meta = raw["sops"]
    assert list(meta) == [
        "kms",
        "gcp_kms",
        "azure_kv",
        "hc_vault",
        "age",
        "lastmodified",
        "mac",
        "pgp",
        "encrypted_regex",
        "version",
    ]
    assert [a["recipient"] for a in meta["age"]] == [rec1, rec2]
    for entry in meta["age"]:
        assert entry["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
        assert entry["enc"].endswith("\n-----END AGE ENCRYPTED FILE-----\n")
        assert all(len(line) <= 64 for line in entry["enc"].splitlines()[1:-1])
        assert crypto.dearmor(entry["enc"]).startswith(b"age-encryption.org/v1\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["lastmodified"])
    assert f'    lastmodified: "{meta["lastmodified"]}"\n' in text
    assert meta["encrypted_regex"] == SECRET_REGEX and meta["version"] == sops.WRITER_VERSION
    assert "\n    age:\n        - recipient: age1" in text and "\n          enc: |\n" in text
    for key in (key1, key2):
        opened = sops.open_file(path, [key])
        assert opened.content == document and opened.mac_verified
    assert sops.recipients(path) == [rec1, rec2]


def test_a_renamed_secret_fails_the_mac(tmp_path, two_identities):
    (key, recipient), _ = two_identities
    path = sops.encrypt_file(
        tmp_path / "s.enc.yaml", secret_document(), [recipient], encrypted_regex=SECRET_REGEX
    )
    path.write_text(path.read_text().replace("name: cnpg-backup-s3", "name: cnpg-backup-s4"))
    with pytest.raises(SopsMacMismatch, match="the MAC did not match") as err:
        sops.decrypt_file(path, [key])
    assert_no_values(str(err.value) + repr(err.value) + str(err.value.fix), secret_values())
    assert sops.decrypt_file(path, [key], ignore_mac=True)["metadata"]["name"] == "cnpg-backup-s4"


def test_default_selection_encrypts_all_but_unencrypted_suffix(tmp_path, two_identities):
    (key, recipient), _ = two_identities
    document = {
        "a": "one",
        "n": 1,
        "f": 2.5,
        "b": False,
        "none": None,
        "empty": "",
        "list": ["x", 7],
        "note_unencrypted": "stays",
        "nested": {"deep": "value"},
    }
    text = sops.encrypt_yaml(document, [recipient])
    raw = formats.yaml_documents(text)[0]
    assert raw["note_unencrypted"] == "stays" and raw["none"] is None and raw["empty"] == ""
    assert raw["n"].endswith("type:int]") and raw["f"].endswith("type:float]")
    assert raw["b"].endswith("type:bool]") and raw["sops"]["unencrypted_suffix"] == "_unencrypted"
    path = tmp_path / "default.yaml"
    path.write_text(text)
    assert sops.decrypt_file(path, [key]) == document


@pytest.mark.parametrize(
    "document, recipients, message",
    [
        ({"a": b"bytes"}, None, "is a bytes"),
        ({"sops": {}}, None, "already has a top-level `sops` key"),
        ({1: "x"}, None, "non-string key"),
        ({"a": 1 << 70}, None, "int64"),
        ({"a": "x"}, [], "no age recipient"),
        ({"a": "x"}, ["age1notarecipient"], "not an age X25519 recipient"),
    ],
)
def test_encrypt_refuses_what_sops_cannot_hold(document, recipients, message):
    with pytest.raises(SopsError, match=re.escape(message)):
        sops.encrypt_yaml(
            document, recipients if recipients is not None else [sops.new_identity()[1]]
        )


def test_encrypt_file_needs_a_yaml_name(tmp_path):
    with pytest.raises(SopsError, match="name it .yaml"):
        sops.encrypt_file(tmp_path / "secret.json", {"a": "b"}, [sops.new_identity()[1]])


def test_multi_document_yaml_mac_covers_every_document(tmp_path, two_identities):
    """Metadata in the first document, one MAC over all (built with the same primitives)."""
    (key, recipient), _ = two_identities
    data_key = crypto.new_data_key()
    hasher = crypto.MacHasher()
    rules = tree.Rules("encrypted_regex", SECRET_REGEX)
    docs = [
        tree.Encryptor(data_key, rules, hasher).walk(d)
        for d in (secret_document(), {"kind": "ConfigMap", "data": {"x": "clear-ish"}})
    ]
    when = "2026-01-01T00:00:00Z"
    docs[0]["sops"] = {
        "age": [{"recipient": recipient, "enc": crypto.wrap_data_key(data_key, recipient)}],
        "lastmodified": when,
        "encrypted_regex": SECRET_REGEX,
        "version": "3.9.0",
        "mac": crypto.encrypt(hasher.hexdigest().encode(), "str", data_key, when),
    }
    path = tmp_path / "multi.yaml"
    path.write_text("---\n".join(formats.dump_yaml(d) for d in docs))
    opened = sops.open_file(path, [key])
    assert len(opened.documents) == 2 and opened.documents[1]["data"] == {"x": "clear-ish"}
    assert sops.decrypt_file(path, [key]) == secret_document()
    path.write_text(path.read_text().replace("kind: ConfigMap", "kind: Secret"))
    with pytest.raises(SopsMacMismatch):
        sops.decrypt_file(path, [key])


def test_comments_are_never_hashed(tmp_path, two_identities):
    """`#ENC[...,type:comment]` lines are YAML comments (sops only warns when one does not
    decrypt); a comment written as a list item (sops issue #2243) is decrypted with the list's
    path and dropped, not hashed."""
    path = copy_fixture(
        PR / "example.yaml",
        tmp_path,
        lambda t: flip_base64_char(t, "        #ENC[AES256_GCM,data:"),
    )
    assert sops.decrypt_file(path, [PR_KEYS])["app2"]["db"]["user"] == "eve"

    (key, recipient), _ = two_identities
    data_key = crypto.new_data_key()
    hasher = crypto.MacHasher()
    document = tree.Encryptor(data_key, tree.Rules(*tree.DEFAULT_RULE), hasher).walk(
        {"users": ["alice-the-admin", "bob-the-builder"]}
    )
    document["users"].insert(1, crypto.encrypt(b" a comment", "comment", data_key, "users:"))
    when = "2026-01-01T00:00:00Z"
    document["sops"] = {
        "age": [{"recipient": recipient, "enc": crypto.wrap_data_key(data_key, recipient)}],
        "lastmodified": when,
        "version": "3.13.2",
        "mac": crypto.encrypt(hasher.hexdigest().encode(), "str", data_key, when),
    }
    path = tmp_path / "listcomment.yaml"
    path.write_text(formats.dump_yaml(document))
    assert sops.decrypt_file(path, [key]) == {"users": ["alice-the-admin", "bob-the-builder"]}


def test_mac_only_encrypted_hashes_encrypted_values_only(tmp_path, two_identities):
    (key, recipient), _ = two_identities
    data_key = crypto.new_data_key()
    hasher = crypto.MacHasher(mac_only_encrypted=True)
    rules = tree.Rules("encrypted_regex", SECRET_REGEX)
    document = tree.Encryptor(data_key, rules, hasher, mac_only_encrypted=True).walk(
        secret_document()
    )
    when = "2026-01-01T00:00:00+02:00"  # the MAC's additional data keeps the offset
    document["sops"] = {
        "age": [{"recipient": recipient, "enc": crypto.wrap_data_key(data_key, recipient)}],
        "lastmodified": when,
        "encrypted_regex": SECRET_REGEX,
        "mac_only_encrypted": True,
        "version": "3.9.0",
        "mac": crypto.encrypt(hasher.hexdigest().encode(), "str", data_key, when),
    }
    path = tmp_path / "maconly.yaml"
    path.write_text(formats.dump_yaml(document).replace("name: cnpg-backup-s3", "name: other"))
    assert sops.decrypt_file(path, [key])["metadata"]["name"] == "other"  # clear: not hashed
    path.write_text(swap_list_items(path.read_text(), "\nmetadata:\n"))
    assert sops.decrypt_file(path, [key])["metadata"] == {"namespace": "staging", "name": "other"}
    path.write_text(swap_list_items(path.read_text(), "\ndata:\n"))  # encrypted: hashed
    with pytest.raises(SopsMacMismatch):
        sops.decrypt_file(path, [key])


# -- 5. nothing leaks ---------------------------------------------------------------------------
def test_no_message_or_repr_holds_a_plaintext_value_or_a_key(tmp_path, two_identities, monkeypatch):
    (key, recipient), _ = two_identities
    fixture_values = [
        v
        for v in leaves(sops.decrypt_file(PR / "example.yaml", [PR_KEYS]))
        if isinstance(v, str)
        and len(v) >= 8
        and "clear text" not in v
        and "elements of this list" not in v
        and "the _encrypted" not in v
    ]
    assert len(fixture_values) >= 6
    secrets = fixture_values + secret_values() + [key] + key_lines(MAIN_KEYS)

    opened = sops.open_file(PR / "example.yaml", [PR_KEYS])
    path = sops.encrypt_file(
        tmp_path / "s.yaml", secret_document(), [recipient], encrypted_regex=SECRET_REGEX
    )
    mine = sops.open_file(path, [key])
    binary = sops.decrypt_file(PR / "example.txt", [PR_KEYS])
    from pgdrill.credentials.sops.identities import IdentityFinder, parse_identities

    identities, _ = parse_identities(key, "test")
    texts = [
        repr(opened),
        str(opened),
        repr(opened.content),
        str(opened.content),
        repr(opened.content["app2"]),
        repr(opened.content["an_array"]),
        repr(mine),
        repr(mine.content),
        repr(mine.content["data"]),
        repr(binary),
        str(binary),
        repr(identities[0]),
        repr(IdentityFinder(explicit=[key])),
        repr(tree.parse_metadata(path, formats.load(path).metadata)),
    ]
    assert "Welcome to SOPS" not in repr(binary) + str(binary)

    monkeypatch.setenv("SOPS_AGE_KEY", key)
    failures = [
        lambda: sops.decrypt_file(PR / "example.yaml"),
        lambda: sops.decrypt_file(
            copy_fixture(
                PR / "example.yaml", tmp_path, lambda t: t.replace("all: going", "all: Going")
            ),
            [PR_KEYS],
        ),
        lambda: sops.decrypt_file(
            copy_fixture(
                PR / "example.yaml",
                tmp_path,
                lambda t: flip_base64_char(t, "myapp1: ENC[AES256_GCM,data:"),
            ),
            [PR_KEYS],
        ),
        lambda: sops.decrypt_file(path, [key_lines(PR_KEYS)[0]]),
    ]
    for fail in failures:
        with pytest.raises(SopsError) as err:
            fail()
        texts += [str(err.value), repr(err.value), str(err.value.fix), err.value.message]
    for text in texts:
        assert_no_values(text, secrets)
        assert "AGE-SECRET-KEY-1" not in text


def test_scrub_blanks_anything_shaped_like_a_secret_key():
    secret, _ = sops.new_identity()
    error = SopsError(f"oops {secret} here", fix=f"not {secret}")
    assert secret not in str(error) and secret not in repr(error)
    assert "AGE-SECRET-KEY-<redacted>" in error.message


def test_decrypted_containers_stay_usable():
    import yaml

    doc = sops.decrypt_file(PR / "example.json", [PR_KEYS])
    assert isinstance(doc, dict) and json.loads(json.dumps(doc)) == EXPECTED_EXAMPLE_JSON
    assert yaml.safe_load(yaml.safe_dump(doc)) == EXPECTED_EXAMPLE_JSON
