"""`pgdrill secrets check FILE`: decrypt a SOPS/age file natively, verify its MAC, and say what
it holds (format, recipients, key names; for a Kubernetes Secret its name, namespace and
`data`/`stringData` keys) without ever printing a value."""

from __future__ import annotations

import argparse

from pgdrill.credentials import sops


def key_names(node, prefix: str = "") -> list[str]:
    """Dotted paths of a decrypted tree's leaves, lists shown as `name[N]` (values never)."""
    names: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            names += key_names(value, path) if isinstance(value, (dict, list)) and value else [path]
    elif isinstance(node, list):
        inner: list[str] = []
        for item in node:
            if isinstance(item, dict) and item:
                inner += [n for n in key_names(item, f"{prefix}[]") if n not in inner]
        names += inner or [f"{prefix}[{len(node)}]"]
    return names


def _is_secret(document) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "Secret"
        and str(document.get("apiVersion", "")).startswith("v1")
    )


def describe_secret(document: dict) -> list[str]:
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    name = metadata.get("name", "?")
    namespace = metadata.get("namespace")
    lines = [
        (
            f"Kubernetes Secret: {namespace + '/' if namespace else ''}{name}"
            f" (metadata.name {name}, metadata.namespace {namespace or '(none)'}, "
            f"type {document.get('type', 'Opaque')})"
        )
    ]
    for field in ("data", "stringData"):
        entries = document.get(field)
        if isinstance(entries, dict):
            lines.append(f"  {field} keys: {', '.join(map(str, entries)) or '(none)'}")
    return lines


def check(args: argparse.Namespace) -> int:
    """Decrypt and verify; print what the file holds, never a value."""
    identities = [args.identity] if args.identity else None
    opened = sops.open_file(args.file, identities)
    print(f"file: {opened.path}")
    print(f"format: {opened.format} (sops {opened.version or 'unknown'}; {opened.rule})")
    print(f"recipients: {', '.join(opened.recipients)}")
    print(f"decrypted with: {opened.identity} ({opened.identity_source})")
    print("MAC: verified")
    if opened.format == "binary":
        print(f"content: binary data, {len(opened.content)} bytes (not shown)")
        return 0
    many = len(opened.documents) > 1
    for number, document in enumerate(opened.documents, 1):
        head = f"document {number}: " if many else ""
        if _is_secret(document):
            lines = describe_secret(document)
            print(head + lines[0])
            for line in lines[1:]:
                print(line)
        else:
            keys = key_names(document)
            print(f"{head}keys ({len(keys)}): {', '.join(keys) or '(none)'}")
    return 0


def register(sub) -> None:
    """Add `secrets check` to the `pgdrill` subcommands."""
    secrets = sub.add_parser("secrets", help="SOPS/age-encrypted files (credentials)")
    actions = secrets.add_subparsers(dest="action", required=True)
    checker = actions.add_parser(
        "check",
        help="decrypt and MAC-verify a SOPS file; print its format, recipients and "
        "key names (never values)",
    )
    checker.add_argument(
        "file", help="the SOPS-encrypted file (.yaml, .json, .env, .ini, other = binary)"
    )
    checker.add_argument(
        "--identity",
        metavar="KEYFILE",
        default=None,
        help="age key file to decrypt with (default: SOPS_AGE_KEY, "
        "SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, then "
        "~/.config/sops/age/keys.txt)",
    )
    checker.set_defaults(func=check)
