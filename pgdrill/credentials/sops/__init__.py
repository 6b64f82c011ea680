"""Read and write SOPS/age-encrypted files natively (no `sops` binary).

    decrypt_file(path, identities=None, *, ignore_mac=False) -> dict | bytes
    open_file(path, identities=None, *, ignore_mac=False) -> Decrypted
    recipients(path) -> list[str]
    new_identity() -> tuple[str, str]
    encrypt_yaml(document, recipients, *, encrypted_regex=None) -> str
    encrypt_file(path, document, recipients, encrypted_regex=None) -> Path

The MAC is always verified unless `ignore_mac=True` (as `sops decrypt --ignore-mac`; Flux
never checks it). A value that fails AES-GCM authentication is an error either way.
Expected failures are SopsError (a pgdrill BadInput, exit 2) with a fix; SopsMacMismatch,
SopsAuthFailed and SopsNoIdentity are its kinds. No message, exception or repr holds a
decrypted value, the data key or a secret key; decrypted mappings, lists and bytes are
SecretDict / SecretList / SecretBytes, plain containers whose repr is redacted.

Modules: formats (stores, go-yaml v3 typing, YAML output), gotypes (Go value semantics the MAC
needs), crypto (ENC values, MAC, age armor), identities (discovery, data key), tree (metadata,
encryption rules, the walks)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from math import copysign, isnan
from pathlib import Path

from pgdrill.core.files import write_atomically
from pgdrill.credentials.sops import crypto, formats
from pgdrill.credentials.sops.errors import (
    SopsAuthFailed,
    SopsError,
    SopsMacMismatch,
    SopsNoIdentity,
    scrub,
)
from pgdrill.credentials.sops.identities import (
    AgeIdentity,
    IdentityFinder,
    check_recipient,
    new_identity,
    open_data_key,
)
from pgdrill.credentials.sops.tree import (
    DEFAULT_RULE,
    RESTORE_FIX,
    Decryptor,
    Encryptor,
    Rules,
    SecretBytes,
    SecretDict,
    SecretList,
    age_groups,
    parse_metadata,
    redacted,
)

__all__ = [
    "WRITER_VERSION",
    "AgeIdentity",
    "Decrypted",
    "SecretBytes",
    "SecretDict",
    "SecretList",
    "SopsAuthFailed",
    "SopsError",
    "SopsMacMismatch",
    "SopsNoIdentity",
    "decrypt_file",
    "encrypt_file",
    "encrypt_yaml",
    "new_identity",
    "open_file",
    "recipients",
    "scrub",
]

WRITER_VERSION = "3.9.0"  # the sops release whose metadata layout encrypt_yaml writes


@dataclass(frozen=True, repr=False)
class Decrypted:
    """A decrypted SOPS file. `documents` holds every YAML document (one for other formats);
    `content` is what decrypt_file returns. Its repr shows no value."""

    path: str
    format: str
    documents: list
    recipients: list[str]
    identity: str  # recipient (public key) of the identity that opened the data key
    identity_source: str  # where that identity was found
    mac_verified: bool
    version: str
    rule: str

    @property
    def content(self):
        return self.documents[0]

    def __repr__(self) -> str:
        return (
            f"Decrypted({self.path}, {self.format}, {len(self.documents)} document(s), "
            f"opened by {self.identity}, mac {'verified' if self.mac_verified else 'IGNORED'}"
            ", values redacted)"
        )


def _verify_mac(path, meta, key: bytes, computed: str) -> None:
    if not meta.mac:
        raise SopsMacMismatch(
            f"{path}: MAC mismatch: the file has no MAC, so the MAC did not match its content",
            path=path,
            fix=RESTORE_FIX,
        )
    try:
        _, stored = crypto.decrypt(meta.mac, key, meta.mac_aad)
    except (crypto.AuthenticationFailed, crypto.BadValue):
        raise SopsMacMismatch(
            f"{path}: MAC mismatch: the MAC did not match (the stored MAC "
            "cannot be authenticated: `sops.mac` or `sops.lastmodified` was "
            "changed)",
            path=path,
            fix=RESTORE_FIX,
        ) from None
    if not crypto.macs_equal(stored.decode("ascii", "replace"), computed):
        raise SopsMacMismatch(
            f"{path}: MAC mismatch: the MAC did not match the file's content (an encrypted "
            "value, a clear-text value such as metadata.name, or the MAC was changed after "
            "sops wrote the file)",
            path=path,
            fix="restore the file from version control; if a clear-text field was edited on "
            "purpose, re-save it with `sops edit --ignore-mac FILE` so sops recomputes the "
            "MAC",
        )


def open_file(
    path: str | os.PathLike, identities: list | None = None, *, ignore_mac: bool = False
) -> Decrypted:
    """Decrypt a SOPS file and verify its MAC (unless ignore_mac), keeping what is known
    about it: format, recipients, the identity used."""
    path = Path(path)
    if isinstance(identities, (str, os.PathLike)):
        identities = [identities]
    loaded = formats.load(path)
    meta = parse_metadata(path, loaded.metadata)
    finder = IdentityFinder(explicit=None if identities is None else list(identities))
    key, identity = open_data_key(path, meta.stanzas, finder)
    hasher = crypto.MacHasher(meta.mac_only_encrypted)
    walker = Decryptor(
        path,
        key,
        meta,
        hasher,
        raw_strings=loaded.format == "binary",
        json_numbers=loaded.format == "json",
    )
    documents = [walker.walk(doc) for doc in loaded.documents]
    if not ignore_mac:
        _verify_mac(path, meta, key, hasher.hexdigest())
    del key
    if loaded.format == "binary":
        data = documents[0].get("data")
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not isinstance(data, bytes):
            raise SopsError(
                f"{path}: its binary-store `data` is not a string", path=path, fix=RESTORE_FIX
            )
        documents = [SecretBytes(data)]
    else:
        documents = [redacted(doc) for doc in documents]
    return Decrypted(
        path=str(path),
        format=loaded.format,
        documents=documents,
        recipients=meta.recipients,
        identity=identity.recipient,
        identity_source=identity.source,
        mac_verified=not ignore_mac,
        version=meta.version,
        rule=meta.rules.describe(),
    )


def decrypt_file(
    path: str | os.PathLike, identities: list | None = None, *, ignore_mac: bool = False
) -> dict | bytes:
    """The decrypted document: a dict for YAML (its first document; the MAC covers them all),
    JSON, dotenv and INI (sections -> keys), bytes for the binary store.

    `identities`: age secret keys (AGE-SECRET-KEY-1...) or key-file paths; None looks where
    sops looks (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, <config>/sops/age/keys.txt).
    """
    return open_file(path, identities, ignore_mac=ignore_mac).content


def recipients(path: str | os.PathLike) -> list[str]:
    """The age recipients of a SOPS file, read from its metadata (no decryption)."""
    path = Path(path)
    loaded = formats.load(path)
    return [s.recipient for group in age_groups(path, loaded.metadata) for s in group]


def encrypt_yaml(
    document: dict, recipients: list[str], *, encrypted_regex: str | None = None
) -> str:
    """`document` as a SOPS YAML file for the given age recipients, laid out as sops 3.9
    writes it. Without `encrypted_regex` every value is encrypted except under keys ending in
    `_unencrypted` (sops's default)."""
    if not isinstance(document, dict):
        raise SopsError(
            f"a SOPS YAML document is a mapping, not a {type(document).__name__}", fix="pass a dict"
        )
    if formats.METADATA_KEY in document:
        raise SopsError(
            "the document already has a top-level `sops` key (reserved for SOPS "
            "metadata; is it already encrypted?)",
            fix="remove or rename the key",
        )
    if isinstance(recipients, str):
        recipients = [recipients]
    chosen = list(dict.fromkeys(check_recipient(r) for r in recipients or []))
    if not chosen:
        raise SopsError(
            "no age recipient to encrypt for", fix="give at least one age public key (age1...)"
        )
    rules = Rules("encrypted_regex", encrypted_regex) if encrypted_regex else Rules(*DEFAULT_RULE)
    key = crypto.new_data_key()
    hasher = crypto.MacHasher()
    tree = Encryptor(key, rules, hasher).walk(document)
    lastmodified = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mac = crypto.encrypt(hasher.hexdigest().encode(), "str", key, lastmodified)
    metadata = {
        "kms": [],
        "gcp_kms": [],
        "azure_kv": [],
        "hc_vault": [],
        "age": [{"recipient": r, "enc": crypto.wrap_data_key(key, r)} for r in chosen],
        "lastmodified": lastmodified,
        "mac": mac,
        "pgp": [],
        rules.kind: rules.value,
        "version": WRITER_VERSION,
    }
    del key
    full = {**tree, formats.METADATA_KEY: metadata}
    text = formats.dump_yaml(full)
    reread = formats.yaml_documents(text)
    if len(reread) != 1 or not _same(reread[0], full):
        raise SopsError(
            "the YAML written does not read back as the same typed document "
            "(a value go-yaml would type differently?)",
            fix="report this; store the value as a plain string",
        )
    return text


def _same(a, b) -> bool:
    """Deep equality that also insists on the same scalar types (1 != 1.0 != True)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float):
        return (isnan(a) and isnan(b)) or (a == b and copysign(1, a) == copysign(1, b))
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    return type(a) is type(b) and a == b


def encrypt_file(
    path: str | os.PathLike,
    document: dict,
    recipients: list[str],
    encrypted_regex: str | None = None,
) -> Path:
    """Write `document` encrypted (encrypt_yaml) to `path`, mode 0600, atomically."""
    path = Path(path)
    if formats.format_for(path) != "yaml":
        raise SopsError(
            f"{path}: encrypt_file writes SOPS YAML, and sops reads a file's format from its name",
            fix="name it .yaml or .yml",
        )
    text = encrypt_yaml(document, recipients, encrypted_regex=encrypted_regex)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, text, mode=0o600, durable=True)
