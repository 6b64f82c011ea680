"""SOPS stores: how each file format holds the tree and the `sops` metadata.

The format follows the file name as sops decides it: `.yaml`/`.yml`, `.json`, `.env`, `.ini`,
anything else is the binary store (a JSON envelope with one `data` value).

- YAML is typed as go-yaml v3 types it (pgdrill.credentials.sops.gotypes.yaml_resolve),
  duplicate keys and non-string keys are refused, every document is read (metadata from the
  first, the MAC covers all). YAML comments (encrypted or not) are dropped: sops never hashes them.
- JSON numbers are `int` in the int64 range, else float, as sops 3.13.2 reads them.
- dotenv splits each line at the first `=`, `\\n` stands for a newline, `#` lines are
  comments; metadata is flattened into `sops_...` keys.
- INI (gopkg.in/ini.v1 subset): sections are the top-level keys, every value is a string,
  metadata is the flattened `[sops]` section.

Error messages give positions and key names, never a value's text."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.composer import Composer
from yaml.constructor import BaseConstructor, ConstructorError
from yaml.nodes import ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver, Resolver
from yaml.scanner import Scanner

from pgdrill.core.yamlerrors import yaml_error_where
from pgdrill.credentials.sops.errors import SopsError
from pgdrill.credentials.sops.gotypes import (
    INT64_MAX,
    INT64_MIN,
    GoTime,
    UnsupportedScalar,
    parse_float,
    yaml_resolve,
)

FORMATS = ("yaml", "json", "dotenv", "ini", "binary")
METADATA_KEY = "sops"
MAX_NODES = 1_000_000
_TAG = "tag:yaml.org,2002:"
_KIND_TAGS = {
    "null": _TAG + "null",
    "bool": _TAG + "bool",
    "int": _TAG + "int",
    "float": _TAG + "float",
    "timestamp": _TAG + "timestamp",
    "str": _TAG + "str",
    "merge": _TAG + "str",
}
_UINT64_TAG = "tag:pgdrill,sops:uint64"


def format_for(path: str | Path) -> str:
    """The sops store of a file name (cmd/sops/formats/formats.go)."""
    suffix = Path(path).suffix.lower()
    return {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv", ".ini": "ini"}.get(
        suffix, "binary"
    )


@dataclass
class Loaded:
    """A parsed SOPS file: its documents (metadata removed) and the raw `sops` metadata."""

    format: str
    documents: list[dict]
    metadata: dict

    def __repr__(self) -> str:
        return f"Loaded({self.format}, {len(self.documents)} document(s))"


def not_sops(path, why: str) -> SopsError:
    return SopsError(
        f"{path} is not a SOPS-encrypted file ({why})",
        path=path,
        fix="give the encrypted file (sops --encrypt --age <age1...> writes one); "
        "its metadata is the top-level `sops` key",
    )


# -- YAML: reading, go-yaml v3 style ------------------------------------------------------------
class _GoResolver(BaseResolver):
    """Plain scalars typed by go-yaml v3's rules instead of YAML 1.1's."""

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode and implicit[0]:
            try:
                return _KIND_TAGS[yaml_resolve(value)[0]]
            except UnsupportedScalar:
                return _UINT64_TAG
        return super().resolve(kind, value, implicit)


class _GoConstructor(BaseConstructor):
    def construct_go_typed(self, node):
        value = self.construct_scalar(node)
        wanted = node.tag[len(_TAG) :]
        try:
            kind, result = yaml_resolve(value, "!!" + wanted)
        except UnsupportedScalar:
            kind, result = "uint64", None
        if kind == wanted:
            return result
        if wanted == "float" and kind == "int":
            return float(result)
        raise ConstructorError(
            None, None, f"a !!{kind} scalar cannot be decoded as !!{wanted}", node.start_mark
        )

    def construct_uint64(self, node):
        raise ConstructorError(
            None,
            None,
            "an integer beyond the int64 range (sops cannot hold it; quote it)",
            node.start_mark,
        )

    def construct_go_str(self, node):
        return self.construct_scalar(node)

    def construct_go_binary(self, node):
        try:
            return base64.b64decode(self.construct_scalar(node).encode("ascii"))
        except (binascii.Error, UnicodeEncodeError):
            raise ConstructorError(
                None, None, "a !!binary scalar that is not base64", node.start_mark
            ) from None

    def construct_unsupported(self, node):
        raise ConstructorError(
            None, None, f"the tag {node.tag!r} is not supported", node.start_mark
        )

    def construct_go_seq(self, node):
        return [self.construct_object(child, deep=True) for child in node.value]

    def construct_go_map(self, node):
        data = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(
                    None,
                    None,
                    f"a non-string key ({type(key).__name__}; "
                    "sops supports string keys only, quote it)",
                    key_node.start_mark,
                )
            if key in data:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            data[key] = self.construct_object(value_node, deep=True)
        return data


for _kind in ("null", "bool", "int", "float", "timestamp"):
    _GoConstructor.add_constructor(_TAG + _kind, _GoConstructor.construct_go_typed)
_GoConstructor.add_constructor(_TAG + "str", _GoConstructor.construct_go_str)
_GoConstructor.add_constructor(_TAG + "binary", _GoConstructor.construct_go_binary)
_GoConstructor.add_constructor(_TAG + "seq", _GoConstructor.construct_go_seq)
_GoConstructor.add_constructor(_TAG + "map", _GoConstructor.construct_go_map)
_GoConstructor.add_constructor(_UINT64_TAG, _GoConstructor.construct_uint64)
_GoConstructor.add_constructor(None, _GoConstructor.construct_unsupported)


class GoYamlLoader(Reader, Scanner, Parser, Composer, _GoConstructor, _GoResolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _GoConstructor.__init__(self)
        _GoResolver.__init__(self)


def yaml_documents(text: str, path="<yaml>") -> list:
    """Every document of a YAML stream, typed as go-yaml v3 types it."""
    loader = GoYamlLoader(text)
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as exc:
        where = yaml_error_where(exc)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SopsError(
            f"{path}{where}: {problem}",
            path=path,
            fix="repair the YAML (a SOPS file is the YAML sops wrote, with only "
            "clear-text values edited)",
        ) from None
    finally:
        loader.dispose()


def _load_yaml(path, text: str) -> Loaded:
    documents = []
    for n, doc in enumerate(yaml_documents(text, path)):
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise SopsError(
                f"{path}: YAML document {n + 1} is a {type(doc).__name__}, not a "
                "mapping (sops supports mappings only)",
                path=path,
                fix="a SOPS YAML file holds mappings",
            )
        documents.append(doc)
    if not documents or METADATA_KEY not in documents[0]:
        raise not_sops(path, "no `sops` key in its first YAML document")
    metadata = documents[0][METADATA_KEY]
    if not isinstance(metadata, dict):
        raise not_sops(path, "its `sops` key is not a mapping")
    for doc in documents:
        doc.pop(METADATA_KEY, None)
    return Loaded("yaml", documents, metadata)


# -- JSON (and the binary store's JSON envelope) -------------------------------------------------
class _DuplicateKey(ValueError):
    pass


def _json_object(pairs):
    data = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def _json_int(text: str):
    value = int(text)
    if INT64_MIN <= value <= INT64_MAX:
        return value
    return _json_float(text)


def _json_float(text: str) -> float:
    value = parse_float(text)
    if value is None:
        raise ValueError("a number out of the float64 range")
    return value


def _json_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _load_json_tree(path, text: str, store: str) -> dict:
    try:
        data = json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
    except _DuplicateKey as exc:
        raise SopsError(
            f"{path}: duplicate JSON key {str(exc)!r}", path=path, fix="remove the duplicate key"
        ) from None
    except json.JSONDecodeError as exc:
        if store == "binary":
            raise not_sops(
                path,
                "the binary store is a JSON envelope and this is not JSON; "
                "sops picks the format from the file name",
            ) from None
        raise SopsError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})",
            path=path,
            fix="repair the JSON",
        ) from None
    except ValueError as exc:
        raise SopsError(f"{path}: {exc}", path=path, fix="repair the JSON") from None
    if not isinstance(data, dict):
        raise not_sops(path, "its top level is not a JSON object")
    return data


def _load_json(path, text: str, store: str = "json") -> Loaded:
    data = _load_json_tree(path, text, store)
    metadata = data.pop(METADATA_KEY, None)
    if not isinstance(metadata, dict):
        raise not_sops(path, "no `sops` object at its top level")
    if store == "binary" and "data" not in data:
        raise not_sops(path, "a binary-store file holds a `data` value")
    return Loaded(store, [data], metadata)


# -- dotenv -------------------------------------------------------------------------------------
def _load_dotenv(path, raw: bytes) -> Loaded:
    branch: dict[str, str] = {}
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line:
            continue
        if line.startswith(b"#"):
            continue
        pos = line.find(b"=")
        if pos < 0:
            raise SopsError(
                f"{path} line {number} is not KEY=VALUE",
                path=path,
                fix="a dotenv line is KEY=VALUE or a # comment",
            )
        key = line[:pos].decode("utf-8", "surrogateescape")
        if key in branch:
            raise SopsError(
                f"{path}: duplicate key {key!r} (line {number})",
                path=path,
                fix="remove the duplicate line",
            )
        branch[key] = line[pos + 1 :].decode("utf-8", "surrogateescape").replace("\\n", "\n")
    flat = {k[len("sops_") :]: v for k, v in branch.items() if k.startswith("sops_")}
    if not flat:
        raise not_sops(path, "no sops_... metadata lines")
    data = {k: v for k, v in branch.items() if not k.startswith("sops_")}
    return Loaded("dotenv", [data], unflatten(path, flat))


# -- INI ----------------------------------------------------------------------------------------
_INI_SECTION = re.compile(r"\[(.*)\]")


def _ini_value(text: str) -> str:
    """gopkg.in/ini.v1 `readValue` for a one-line value (defaults)."""
    line = text.lstrip()
    if not line:
        return ""
    for quote in ('"""', "`"):
        if line.startswith(quote) and len(line) > len(quote):
            end = line.rfind(quote, len(quote))
            if end >= len(quote):
                return line[len(quote) : end]
    last = line[-1]
    line = line.rstrip()
    cut = min((i for i in (line.find("#"), line.find(";")) if i >= 0), default=-1)
    if cut >= 0:
        line = line[:cut].strip()
    if last in "\"'" and len(line) > 1 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1]
    return line


def _load_ini(path, text: str) -> Loaded:
    sections: dict[str, dict[str, str]] = {"DEFAULT": {}}
    current = "DEFAULT"
    seen_sections = {"DEFAULT"}
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            close = line.rfind("]")
            if close < 0:
                raise SopsError(
                    f"{path} line {number}: unclosed section header",
                    path=path,
                    fix="repair the INI file",
                )
            current = line[1:close].strip()
            if current in seen_sections and current != "DEFAULT":
                raise SopsError(
                    f"{path}: section [{current}] appears twice",
                    path=path,
                    fix="merge the sections",
                )
            seen_sections.add(current)
            sections.setdefault(current, {})
            continue
        positions = [i for i in (line.find("="), line.find(":")) if i >= 0]
        if not positions:
            raise SopsError(
                f"{path} line {number} is not `key = value`", path=path, fix="repair the INI file"
            )
        cut = min(positions)
        key = line[:cut].strip()
        if len(key) > 1 and key[0] == key[-1] and key[0] in '"`':
            key = key[1:-1]
        raw_value = line[cut + 1 :]
        if raw_value.rstrip().endswith("\\"):
            raise SopsError(
                f"{path} line {number}: continuation lines are not supported",
                path=path,
                fix="decrypt this file with the sops binary",
            )
        if key in sections[current]:
            raise SopsError(
                f"{path}: duplicate key {key!r} in [{current}]",
                path=path,
                fix="remove the duplicate key",
            )
        sections[current][key] = _ini_value(raw_value)
    if METADATA_KEY not in sections:
        raise not_sops(path, "no [sops] section")
    flat = {k: v.replace("\\n", "\n") for k, v in sections.pop(METADATA_KEY).items()}
    if not sections["DEFAULT"]:
        del sections["DEFAULT"]
    return Loaded("ini", [sections], unflatten(path, flat))


# -- flattened metadata (stores/flatten.go) -----------------------------------------------------
def _tokenize(path: str) -> list:
    tokens, state, last, i = [], "normal", 0, 0

    def finish(end: int) -> None:
        if state == "normal":
            tokens.append(("map", path[last:end]))
        elif state == "map":
            tokens.append(("map", path[last + len("__map_") : end]))
        else:
            digits = path[last + len("__list_") : end]
            tokens.append(("list", int(digits) if digits.isdigit() else 0))

    while i < len(path):
        if path.startswith("__map_", i):
            finish(i)
            state, last = "map", i
            i += len("__map_")
        elif path.startswith("__list_", i):
            finish(i)
            state, last = "list", i
            i += len("__list_")
        else:
            i += 1
    finish(i)
    return tokens


def unflatten(path, flat: dict) -> dict:
    """`age__list_0__map_enc = ...` keys back into the metadata tree."""
    root: dict = {}
    for key, value in flat.items():
        node = root
        for kind, name in _tokenize(key):
            node = node.setdefault((kind, name), {})
        if "value" in node:
            raise not_sops(path, f"metadata key {key!r} appears twice")
        node["value"] = value

    def convert(node: dict):
        children = {k: v for k, v in node.items() if k != "value"}
        if "value" in node:
            if children:
                raise not_sops(path, "its flattened metadata mixes values and branches")
            return node["value"]
        if not children:
            return {}
        kinds = {k[0] for k in children}
        if kinds == {"map"}:
            return {k[1]: convert(v) for k, v in sorted(children.items())}
        if kinds == {"list"}:
            indexes = sorted(k[1] for k in children)
            if indexes != list(range(len(indexes))):
                raise not_sops(path, "its flattened metadata has an incomplete list")
            return [convert(children[("list", i)]) for i in indexes]
        raise not_sops(path, "its flattened metadata mixes lists and maps")

    return convert(root)


# -- entry point --------------------------------------------------------------------------------
def load(path: str | Path, raw: bytes | None = None) -> Loaded:
    """Parse a SOPS file into its documents and raw metadata (no decryption)."""
    path = Path(path)
    if raw is None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise SopsError(
                f"{path} does not exist", path=path, fix="give the path of the SOPS-encrypted file"
            ) from None
        except IsADirectoryError:
            raise SopsError(
                f"{path} is a directory, not a SOPS file",
                path=path,
                fix="give the path of the SOPS-encrypted file",
            ) from None
        except OSError as exc:
            raise SopsError(
                f"{path} cannot be read ({exc.strerror or type(exc).__name__})",
                path=path,
                fix="check its permissions",
            ) from None
    store = format_for(path)
    if store == "dotenv":
        return _load_dotenv(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_sops(path, "it is not UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if store == "yaml":
        return _load_yaml(path, text)
    if store == "ini":
        return _load_ini(path, text)
    return _load_json(path, text, store)


# -- YAML: writing, in the layout sops writes ---------------------------------------------------
_YAML11 = Resolver()


def needs_quotes(text: str) -> bool:
    """Whether a string would be read back as something else if left plain, by go-yaml v3
    or by a YAML 1.1 reader (kubectl's sigs.k8s.io/yaml reads `yes` as a boolean)."""
    try:
        if yaml_resolve(text)[0] not in ("str", "merge"):
            return True
    except UnsupportedScalar:
        return True
    return _YAML11.resolve(ScalarNode, text, (True, False)) != _TAG + "str" or text == "<<"


class _SopsDumper(yaml.SafeDumper):
    """go-yaml v3's indentation with sops's indent of 4: sequences indented under their key,
    a node inside a sequence item 2 columns past its `- `, anything else on the next multiple
    of 4 (emitterc.go `yaml_emitter_increase_indent_compact`)."""

    def increase_indent(self, flow=False, indentless=False):
        self.indents.append(self.indent)
        if self.indent is None:
            self.indent = self.best_indent if flow else 0
        elif self.states and self.states[-1] == self.expect_block_sequence_item:
            self.indent += 2
        else:
            self.indent = self.best_indent * ((self.indent + self.best_indent) // self.best_indent)


def _represent_str(dumper, data: str):
    if "\n" in data:
        style = "|"
    elif needs_quotes(data):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar(_TAG + "str", data, style=style)


_SopsDumper.add_representer(str, _represent_str)
_SopsDumper.add_representer(
    GoTime, lambda d, t: d.represent_scalar(_TAG + "timestamp", t.go_text())
)


def dump_yaml(document: dict) -> str:
    """One YAML document the way sops lays it out (go-yaml v3, indent 4)."""
    return yaml.dump(
        document,
        Dumper=_SopsDumper,
        indent=4,
        sort_keys=False,
        allow_unicode=True,
        width=1 << 30,
        default_flow_style=False,
    )
