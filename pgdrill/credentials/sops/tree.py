"""The SOPS tree: metadata, which values are encrypted, and the walks that decrypt or encrypt
every leaf while feeding the MAC in document order (sops.go `walkBranch`, `Tree.Decrypt`,
`Tree.Encrypt`).

Path rules: the additional data of a value is its map keys joined by `:` plus a trailing `:`
(list indexes are not part of it); the selection rule tests every key of the path.
MAC rules: every leaf in order, `ToBytes` of the Go value (decrypted values as sops typed
them, clear values as go-yaml/JSON typed them); `null`, empty strings, empty maps and lists
and comments add nothing; with `mac_only_encrypted` only encrypted leaves count."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from pgdrill.credentials.sops import crypto
from pgdrill.credentials.sops.errors import SopsAuthFailed, SopsError
from pgdrill.credentials.sops.gotypes import (
    INT64_MAX,
    INT64_MIN,
    GoTime,
    atoi,
    parse_bool,
    parse_float,
    parse_rfc3339,
    rfc3339_seconds,
    to_bytes,
)
from pgdrill.credentials.sops.identities import Stanza

RULE_KEYS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
)
DEFAULT_RULE = ("unencrypted_suffix", "_unencrypted")
MASTER_KEY_TYPES = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")
MAX_LEAVES = 1_000_000
_DROP = object()  # a decrypted `type:comment` list item: not data, not hashed
RESTORE_FIX = (
    "restore the file from version control (git checkout -- FILE), or re-encrypt it with sops"
)


# -- redacted containers ------------------------------------------------------------------------
class SecretDict(dict):
    """A decrypted mapping: a plain dict whose repr shows its keys, never its values."""

    def __repr__(self) -> str:
        return f"<decrypted mapping, keys {list(self)!r}, values redacted>"

    __str__ = __repr__


class SecretList(list):
    """A decrypted sequence: a plain list whose repr never shows its items."""

    def __repr__(self) -> str:
        return f"<decrypted list of {len(self)} items, redacted>"

    __str__ = __repr__


class SecretBytes(bytes):
    """Decrypted binary-store content: bytes whose repr never shows them."""

    def __repr__(self) -> str:
        return f"<decrypted {len(self)} bytes, redacted>"

    __str__ = __repr__


def redacted(value):
    """`value` with every mapping and list wrapped in the redacting containers."""
    if isinstance(value, dict):
        return SecretDict((k, redacted(v)) for k, v in value.items())
    if isinstance(value, list):
        return SecretList(redacted(v) for v in value)
    if isinstance(value, (bytes, bytearray)) and not isinstance(value, SecretBytes):
        return SecretBytes(value)
    return value


def _register_yaml_representers() -> None:
    import yaml
    from yaml.representer import SafeRepresenter

    from pgdrill.credentials.sops.formats import _SopsDumper

    for dumper in (yaml.SafeDumper, yaml.Dumper, _SopsDumper):
        dumper.add_representer(SecretDict, SafeRepresenter.represent_dict)
        dumper.add_representer(SecretList, SafeRepresenter.represent_list)
        dumper.add_representer(SecretBytes, SafeRepresenter.represent_binary)


_register_yaml_representers()


# -- metadata -----------------------------------------------------------------------------------
@dataclass
class Rules:
    """Which leaves are encrypted: one selection rule of sops metadata."""

    kind: str
    value: str
    _regex: re.Pattern | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind.endswith("_regex"):
            try:
                self._regex = re.compile(self.value)
            except re.error as exc:
                raise SopsError(
                    f"{self.kind} {self.value!r} is not a regular expression "
                    f"pgdrill can use ({exc})",
                    fix="use a regex valid in both Go RE2 and Python",
                ) from None

    def encrypted(self, path: tuple[str, ...]) -> bool:
        if self.kind == "unencrypted_suffix":
            return not any(p.endswith(self.value) for p in path)
        if self.kind == "encrypted_suffix":
            return any(p.endswith(self.value) for p in path)
        if self.kind == "unencrypted_regex":
            return not any(self._regex.search(p) for p in path)
        if self.kind == "encrypted_regex":
            return any(self._regex.search(p) for p in path)
        raise AssertionError(self.kind)

    def describe(self) -> str:
        return f"{self.kind}: {self.value}"


@dataclass(repr=False)
class Metadata:
    stanzas: list[Stanza]
    lastmodified: str
    mac_aad: str
    mac: str
    rules: Rules
    mac_only_encrypted: bool
    version: str

    @property
    def recipients(self) -> list[str]:
        return [s.recipient for s in self.stanzas]

    def __repr__(self) -> str:
        return (
            f"Metadata(recipients={self.recipients!r}, {self.rules.describe()}, "
            f"version={self.version!r})"
        )


def _weak_bool(value) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str):
        parsed = parse_bool(value) if value else False
        if parsed is None:
            raise ValueError(value)
        return parsed
    if isinstance(value, (int, float)):
        return value != 0
    raise ValueError(type(value).__name__)


def _group_has_keys(group: dict) -> bool:
    return any(group.get(k) for k in MASTER_KEY_TYPES)


def age_groups(path, raw: dict) -> list[list[Stanza]]:
    """The age stanzas of each key group (sops stores.go `internalKeygroups`)."""
    if _group_has_keys(raw):
        groups = [raw]
    else:
        groups = raw.get("key_groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise SopsError(
                f"{path}: its sops.key_groups is not a list of key groups",
                path=path,
                fix=RESTORE_FIX,
            )
        if not groups:
            raise SopsError(
                f"{path}: its sops metadata lists no keys at all",
                path=path,
                fix="re-encrypt it with sops --age <age1...>",
            )
    result = []
    for group in groups:
        entries = group.get("age") or []
        stanzas = []
        if not isinstance(entries, list):
            raise SopsError(f"{path}: its sops age keys are not a list", path=path, fix=RESTORE_FIX)
        for entry in entries:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("recipient"), str)
                and isinstance(entry.get("enc"), str)
            ):
                raise SopsError(
                    f"{path}: an age entry of its sops metadata lacks a recipient or an enc block",
                    path=path,
                    fix=RESTORE_FIX,
                )
            stanzas.append(Stanza(entry["recipient"].strip(), entry["enc"]))
        result.append(stanzas)
    return result


def parse_metadata(path, raw: dict) -> Metadata:
    """sops metadata from the file's `sops` tree (stores.go `ToInternal`)."""
    groups = age_groups(path, raw)
    if len(groups) > 1:
        raise SopsError(
            f"{path} splits its data key over {len(groups)} key groups (Shamir "
            "secret sharing), which pgdrill does not support",
            path=path,
            fix="decrypt it with the sops binary, or re-encrypt it for plain age "
            "recipients (no key_groups in .sops.yaml)",
        )
    rules = [(k, raw[k]) for k in RULE_KEYS if raw.get(k) not in (None, "")]
    if len(rules) > 1:
        raise SopsError(
            f"{path} sets more than one of {', '.join(k for k, _ in rules)} (sops allows one)",
            path=path,
            fix=RESTORE_FIX,
        )
    kind, value = rules[0] if rules else DEFAULT_RULE
    if kind.endswith("comment_regex"):
        raise SopsError(
            f"{path} selects encrypted values with {kind}, which pgdrill does not support",
            path=path,
            fix="decrypt it with the sops binary, or re-encrypt it with "
            "encrypted_regex: ^(data|stringData)$",
        )
    lastmodified = raw.get("lastmodified")
    when = (
        lastmodified
        if isinstance(lastmodified, datetime)
        else parse_rfc3339(str(lastmodified))
        if lastmodified is not None
        else None
    )
    if when is None:
        raise SopsError(
            f"{path}: its sops.lastmodified is missing or not RFC 3339", path=path, fix=RESTORE_FIX
        )
    try:
        mac_only = _weak_bool(raw.get("mac_only_encrypted"))
    except ValueError:
        raise SopsError(
            f"{path}: its sops.mac_only_encrypted is not a boolean", path=path, fix=RESTORE_FIX
        ) from None
    mac = raw.get("mac")
    return Metadata(
        stanzas=groups[0] if groups else [],
        lastmodified=lastmodified if isinstance(lastmodified, str) else rfc3339_seconds(when),
        mac_aad=rfc3339_seconds(when),
        mac=mac if isinstance(mac, str) else "",
        rules=Rules(kind, str(value)),
        mac_only_encrypted=mac_only,
        version=str(raw.get("version") or ""),
    )


# -- walking ------------------------------------------------------------------------------------
def _where(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class _Walk:
    def __init__(self, path, rules: Rules, hasher: crypto.MacHasher, mac_only: bool) -> None:
        self.file = path
        self.rules = rules
        self.hasher = hasher
        self.mac_only = mac_only
        self.leaves = 0

    def walk(self, node, keys: tuple[str, ...] = (), where: str = ""):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    raise SopsError(
                        f"{self.file}: a non-string key under "
                        f"{where or 'the top level'} (sops supports string keys "
                        "only)",
                        path=self.file,
                        fix="quote the key",
                    )
                new = self.walk(value, keys + (key,), _where(where, key))
                if new is _DROP:
                    raise SopsError(
                        f"{self.file}: the value at {_where(where, key)} is an "
                        "encrypted comment, not a value",
                        path=self.file,
                        fix=RESTORE_FIX,
                    )
                out[key] = new
            return out
        if isinstance(node, (list, tuple)):
            out = []
            for index, value in enumerate(node):
                new = self.walk(value, keys, f"{where}[{index}]")
                if new is not _DROP:
                    out.append(new)
            return out
        if node is None:
            return None
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise SopsError(
                f"{self.file} has more than {MAX_LEAVES} values (or an alias bomb)",
                path=self.file,
                fix="split the file",
            )
        return self.leaf(node, keys, where or "(top level)")

    def feed(self, data: bytes, encrypted: bool) -> None:
        if not self.mac_only or encrypted:
            self.hasher.update(data)


class Decryptor(_Walk):
    """Decrypts every leaf the rules select and feeds the MAC."""

    def __init__(
        self,
        path,
        key: bytes,
        meta: Metadata,
        hasher: crypto.MacHasher,
        *,
        raw_strings: bool = False,
        json_numbers: bool = False,
    ) -> None:
        super().__init__(path, meta.rules, hasher, meta.mac_only_encrypted)
        self._key = key
        self.raw_strings = raw_strings
        self.json_numbers = json_numbers

    def __repr__(self) -> str:
        return f"Decryptor({self.file})"

    def _fail(self, where: str, problem: str) -> SopsError:
        return SopsError(
            f"{self.file}: the value at {where} {problem}", path=self.file, fix=RESTORE_FIX
        )

    def leaf(self, value, keys: tuple[str, ...], where: str):
        encrypted = self.rules.encrypted(keys)
        if not encrypted:
            self.feed(to_bytes(value), False)
            if self.raw_strings and isinstance(value, str):
                return value.encode("utf-8", "surrogateescape")
            return value
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "surrogateescape")
        if not isinstance(value, str):
            raise self._fail(
                where,
                f"should be encrypted ({self.rules.describe()}) but is a "
                f"clear {type(value).__name__}",
            )
        if value == "":
            return b"" if self.raw_strings else ""
        aad = ":".join(keys) + ":"
        try:
            kind, plain = crypto.decrypt(value, self._key, aad)
        except crypto.AuthenticationFailed:
            raise SopsAuthFailed(
                f"{self.file}: the encrypted value at {where} failed AES-GCM authentication: "
                "its MAC (the GCM tag) did not match (its ciphertext, iv or tag was changed, "
                "or it was moved from another key)",
                path=self.file,
                fix=RESTORE_FIX,
            ) from None
        except crypto.BadValue as exc:
            raise self._fail(
                where, f"should be encrypted ({self.rules.describe()}) but {exc}"
            ) from None
        if kind == "comment":
            return _DROP
        go_value, out = self._typed(kind, plain, where)
        self.feed(to_bytes(go_value), True)
        return out

    def _typed(self, kind: str, plain: bytes, where: str):
        """(the Go value sops hashes, the value to return)."""
        if kind == "str":
            if self.raw_strings:
                return plain, plain
            text = plain.decode("utf-8", "surrogateescape")
            return text, text
        if kind == "bytes":
            return plain, plain
        try:
            text = plain.decode("ascii")
        except UnicodeDecodeError:
            text = None
        parsed = None
        if text is not None:
            if kind == "int":
                parsed = atoi(text)
            elif kind == "float":
                parsed = parse_float(text)
            elif kind == "bool":
                parsed = parse_bool(text)
            elif kind == "time":
                parsed = parse_rfc3339(text)
        if parsed is None:
            raise self._fail(where, f"decrypts to something that is not a valid {kind}")
        if kind == "float" and self.json_numbers and re.fullmatch(r"[+-]?[0-9]+", text):
            # sops < 3.13.2 read every JSON number as a float (7 -> type:float "7"); its
            # JSON output writes it as 7, and 3.13.2 reads 7 as an int
            return parsed, int(text)
        return parsed, parsed


class Encryptor(_Walk):
    """Encrypts every leaf the rules select (str/int/float/bool) and feeds the MAC."""

    KINDS = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))

    def __init__(
        self,
        key: bytes,
        rules: Rules,
        hasher: crypto.MacHasher,
        *,
        mac_only_encrypted: bool = False,
        path: str = "document",
    ) -> None:
        super().__init__(path, rules, hasher, mac_only_encrypted)
        self._key = key

    def __repr__(self) -> str:
        return "Encryptor()"

    def leaf(self, value, keys: tuple[str, ...], where: str):
        kind = next((name for cls, name in self.KINDS if isinstance(value, cls)), None)
        encrypted = self.rules.encrypted(keys)
        if kind is None:
            if isinstance(value, datetime) and not encrypted:
                value = (
                    value
                    if isinstance(value, GoTime)
                    else GoTime.from_parts(
                        value.year,
                        value.month,
                        value.day,
                        value.hour,
                        value.minute,
                        value.second,
                        value.microsecond * 1000,
                        value.tzinfo,
                    )
                )
                self.feed(to_bytes(value), False)
                return value
            raise SopsError(
                f"the value at {where} is a {type(value).__name__}; sops "
                "encrypts str, int, float and bool values",
                fix="convert it to a string (base64 for binary data, ISO 8601 for dates)",
            )
        if kind == "int" and not INT64_MIN <= value <= INT64_MAX:
            raise SopsError(
                f"the integer at {where} is beyond the int64 range sops holds",
                fix="store it as a string",
            )
        if kind == "str":
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SopsError(
                    f"the string at {where} is not valid Unicode text",
                    fix="store binary data base64-encoded",
                ) from None
        data = to_bytes(value)
        self.feed(data, encrypted)
        if not encrypted or value == "":
            return value
        return crypto.encrypt(data, kind, self._key, ":".join(keys) + ":")
