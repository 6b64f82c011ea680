"""age identities: found where sops finds them, and used to open a file's data key.

Discovery (sops >= 3.8 merges every source; age/keysource.go):
1. `SOPS_AGE_KEY`: key material, several keys per line allowed;
2. `SOPS_AGE_KEY_FILE`: a key file;
3. `SOPS_AGE_KEY_CMD`: a command (shlex-split, no shell) run once per recipient of the file
   with `SOPS_AGE_RECIPIENT=<recipient>`; its stdout is a key file;
4. `<user config dir>/sops/age/keys.txt` (`$XDG_CONFIG_HOME` or `~/.config` on Linux,
   `~/Library/Application Support` on macOS unless XDG_CONFIG_HOME is set, `%AppData%`).
An explicit list (API `identities=`, CLI `--identity`) replaces discovery.

Only X25519 identities (`AGE-SECRET-KEY-1...`) are usable here: post-quantum and plugin
identities are reported as unsupported, SSH keys are not looked for. An identity's secret key
never leaves the pyrage object: reprs and messages show its public key (recipient) only."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from pgdrill.credentials.sops.errors import SopsError, SopsNoIdentity, scrub

SOPS_AGE_KEY = "SOPS_AGE_KEY"
SOPS_AGE_KEY_FILE = "SOPS_AGE_KEY_FILE"
SOPS_AGE_KEY_CMD = "SOPS_AGE_KEY_CMD"
SOPS_AGE_RECIPIENT = "SOPS_AGE_RECIPIENT"
KEYS_TXT = Path("sops") / "age" / "keys.txt"
COMMAND_TIMEOUT = 60
FLUX_KEY_HINT = (
    "Flux's key: kubectl -n flux-system get secret sops-age "
    "-o jsonpath='{.data.age\\.agekey}' | base64 -d > age.agekey"
)


class AgeIdentity:
    """A parsed X25519 identity. Holds the pyrage object, never the key text."""

    __slots__ = ("_identity", "recipient", "source")

    def __init__(self, identity, source: str) -> None:
        self._identity = identity
        self.recipient = str(identity.to_public())
        self.source = source

    def __repr__(self) -> str:
        return f"AgeIdentity({self.recipient}, from {self.source})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("an age identity is not picklable")


def parse_identities(
    text: str, source: str, *, several_per_line: bool = False
) -> tuple[list[AgeIdentity], list[str]]:
    """Identities in key-file text, and problems (line numbers only, never the line)."""
    identities, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for word in line.split() if several_per_line else [line]:
            where = f"{source} line {number}"
            if word.startswith("AGE-SECRET-KEY-PQ-1"):
                problems.append(
                    f"{where}: post-quantum identity (AGE-SECRET-KEY-PQ-1...), "
                    "not supported (pyrage 1.4)"
                )
            elif word.startswith("AGE-PLUGIN-"):
                problems.append(f"{where}: age plugin identity, not supported")
            elif word.startswith("AGE-SECRET-KEY-1"):
                try:
                    identities.append(AgeIdentity(pyrage.x25519.Identity.from_str(word), source))
                except (pyrage.IdentityError, ValueError):  # its text is not reused
                    problems.append(f"{where}: not a valid age X25519 secret key")
            else:
                problems.append(f"{where}: unknown identity type (expected AGE-SECRET-KEY-1...)")
    return identities, problems


def user_config_dir(environ=None) -> Path | None:
    """Go's os.UserConfigDir as sops uses it (XDG_CONFIG_HOME honoured on macOS too)."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CONFIG_HOME", "")
    home = environ.get("HOME", "")
    if sys.platform == "win32":
        return Path(environ["AppData"]) if environ.get("AppData") else None
    if sys.platform == "darwin":
        if xdg:
            return Path(xdg)
        return Path(home) / "Library" / "Application Support" if home else None
    if xdg:
        return Path(xdg) if os.path.isabs(xdg) else None
    return Path(home) / ".config" if home else None


def _describe(found: list[AgeIdentity]) -> str:
    if not found:
        return "no identity"
    return (
        f"{len(found)} identit{'y' if len(found) == 1 else 'ies'} "
        f"({', '.join(i.recipient for i in found)})"
    )


@dataclass
class IdentityFinder:
    """Identities from an explicit list, or from sops's places. Records every place looked."""

    explicit: list | None = None
    environ: dict | None = None
    looked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _static: list[AgeIdentity] | None = None
    _by_recipient: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.environ is None:
            self.environ = dict(os.environ)

    def __repr__(self) -> str:
        return f"IdentityFinder(looked={self.looked!r})"

    # -- static sources ---------------------------------------------------------------------
    def static(self) -> list[AgeIdentity]:
        if self._static is None:
            self._static = (
                self._from_explicit() if self.explicit is not None else self._from_environment()
            )
        return self._static

    def _from_explicit(self) -> list[AgeIdentity]:
        found: list[AgeIdentity] = []
        for n, item in enumerate(self.explicit, 1):
            text = str(item) if isinstance(item, (str, os.PathLike)) else None
            if text is None:
                raise SopsError(
                    f"identity #{n} is a {type(item).__name__}, not a key or a path",
                    fix="pass age secret keys (AGE-SECRET-KEY-1...) or key file paths",
                )
            if text.strip().startswith("AGE-"):
                source = f"identity #{n} (given as a key)"
                ids, problems = parse_identities(text, source, several_per_line=True)
            else:
                path = Path(text).expanduser()
                source = f"identity file {path}"
                try:
                    content = path.read_text(errors="replace")
                except FileNotFoundError:
                    raise SopsError(
                        f"age identity file {path} does not exist",
                        fix=f"give the age key file that holds a recipient's "
                        f"secret key; {FLUX_KEY_HINT}",
                    ) from None
                except OSError as exc:
                    raise SopsError(
                        f"age identity file {path} cannot be read "
                        f"({exc.strerror or type(exc).__name__})",
                        fix="check its permissions",
                    ) from None
                ids, problems = parse_identities(content, source)
            self.problems += problems
            self.looked.append(f"{source}: {_describe(ids)}")
            if not ids:
                raise SopsError(
                    f"{source} holds no usable age identity"
                    + (f" ({'; '.join(problems)})" if problems else ""),
                    fix="an age key file has one AGE-SECRET-KEY-1... line per "
                    f"identity (age-keygen writes one); {FLUX_KEY_HINT}",
                )
            found += ids
        return found

    def _from_environment(self) -> list[AgeIdentity]:
        env = self.environ
        found: list[AgeIdentity] = []
        if SOPS_AGE_KEY in env:
            ids, problems = parse_identities(env[SOPS_AGE_KEY], SOPS_AGE_KEY, several_per_line=True)
            self.problems += problems
            self.looked.append(f"{SOPS_AGE_KEY}: {_describe(ids)}")
            found += ids
        else:
            self.looked.append(f"{SOPS_AGE_KEY}: not set")
        if SOPS_AGE_KEY_FILE in env:
            path = Path(env[SOPS_AGE_KEY_FILE]).expanduser()
            place = f"{SOPS_AGE_KEY_FILE}={path}"
            found += self._read_key_file(path, place, required=True)
        else:
            self.looked.append(f"{SOPS_AGE_KEY_FILE}: not set")
        if SOPS_AGE_KEY_CMD not in env:
            self.looked.append(f"{SOPS_AGE_KEY_CMD}: not set")
        config = user_config_dir(env)
        if config is None:
            self.looked.append(
                "user config dir: undetermined (neither an absolute "
                "XDG_CONFIG_HOME nor HOME is set)"
            )
        else:
            path = config / KEYS_TXT
            found += self._read_key_file(path, str(path), required=False)
        return found

    def _read_key_file(self, path: Path, place: str, *, required: bool) -> list[AgeIdentity]:
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            self.looked.append(f"{place}: missing")
            if required:
                self.problems.append(f"{place}: the file does not exist")
            return []
        except OSError as exc:
            self.looked.append(f"{place}: unreadable")
            self.problems.append(f"{place}: cannot be read ({exc.strerror or 'error'})")
            return []
        ids, problems = parse_identities(content, place)
        self.problems += problems
        self.looked.append(f"{place}: {_describe(ids)}")
        return ids

    # -- SOPS_AGE_KEY_CMD (per recipient) ---------------------------------------------------
    def from_command(self, recipient: str) -> list[AgeIdentity]:
        if self.explicit is not None or SOPS_AGE_KEY_CMD not in self.environ:
            return []
        if recipient in self._by_recipient:
            return self._by_recipient[recipient]
        command = self.environ[SOPS_AGE_KEY_CMD]
        place = f"{SOPS_AGE_KEY_CMD} for {recipient}"
        ids: list[AgeIdentity] = []
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            argv = []
            self.problems.append(f"{SOPS_AGE_KEY_CMD} cannot be parsed ({exc})")
        if argv:
            program = Path(argv[0]).name
            try:
                done = subprocess.run(
                    argv,
                    env={**self.environ, SOPS_AGE_RECIPIENT: recipient},
                    capture_output=True,
                    timeout=COMMAND_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            except FileNotFoundError:
                self.problems.append(f"{place}: program {program!r} not found")
            except subprocess.TimeoutExpired:
                self.problems.append(
                    f"{place}: {program!r} did not finish within {COMMAND_TIMEOUT} s"
                )
            except OSError as exc:
                self.problems.append(
                    f"{place}: {program!r} cannot run ({exc.strerror or type(exc).__name__})"
                )
            else:
                if done.returncode != 0:
                    self.problems.append(
                        f"{place}: {program!r} exited with status {done.returncode}"
                    )
                else:
                    ids, problems = parse_identities(
                        done.stdout.decode(errors="replace"), f"{SOPS_AGE_KEY_CMD} output"
                    )
                    self.problems += problems
        elif not self.problems:
            self.problems.append(f"{SOPS_AGE_KEY_CMD} is empty")
        self.looked.append(f"{place}: {_describe(ids)}")
        self._by_recipient[recipient] = ids
        return ids


@dataclass(frozen=True)
class Stanza:
    """One `sops.age[]` entry: a recipient and its armored age-encrypted data key."""

    recipient: str
    enc: str = field(repr=False)


def open_data_key(path, stanzas: list[Stanza], finder: IdentityFinder) -> tuple[bytes, AgeIdentity]:
    """The 32-byte data key and the identity that opened it; SopsNoIdentity naming the
    recipients and every place looked when none did."""
    recipients = [s.recipient for s in stanzas]
    if not stanzas:
        raise SopsError(
            f"{path} has no age recipients (it is encrypted only for other key "
            "types: PGP, KMS, Vault...)",
            path=path,
            fix="add an age recipient: sops updatekeys / sops --add-age <age1...>",
        )
    static = finder.static()
    known = {i.recipient for i in static}
    ordered = sorted(stanzas, key=lambda s: s.recipient not in known)
    tried: list[AgeIdentity] = []
    corrupt: list[str] = []
    for stanza in ordered:
        candidates = static + finder.from_command(stanza.recipient)
        candidates.sort(key=lambda i: i.recipient != stanza.recipient)
        for identity in candidates:
            if identity not in tried:
                tried.append(identity)
            try:
                key = pyrage.decrypt(stanza.enc.encode(), [identity._identity])
            except (pyrage.DecryptError, ValueError):  # not for this identity, or damaged
                if identity.recipient == stanza.recipient:
                    corrupt.append(stanza.recipient)
                continue
            if len(key) != 32:
                raise SopsError(
                    f"{path}: the age stanza for {stanza.recipient} holds "
                    f"{len(key)} bytes, not a 32-byte sops data key",
                    path=path,
                    fix="re-encrypt the file with sops",
                )
            return key, identity
    if corrupt:
        raise SopsError(
            f"{path}: the age-encrypted data key for {', '.join(corrupt)} does "
            "not decrypt with that recipient's own identity (its `enc` block was "
            "changed or truncated)",
            path=path,
            fix="restore the file from version control, or re-encrypt it with "
            "sops using another recipient's key",
        )
    unsupported = [r for r in recipients if not _is_x25519(r)]
    looked = list(finder.looked)
    detail = f"; problems: {'; '.join(finder.problems)}" if finder.problems else ""
    note = f"; recipients pgdrill cannot use: {', '.join(unsupported)}" if unsupported else ""
    what = (
        f"none of the identities found ({', '.join(i.recipient for i in tried)}) is a recipient"
        if tried
        else "no age identity was found"
    )
    raise SopsNoIdentity(
        f"{path}: cannot decrypt: {what}; its recipients: {', '.join(recipients)}; "
        f"looked in: {'; '.join(looked)}{detail}{note}",
        fix="put the age secret key of one of these recipients in a key file and set "
        f"{SOPS_AGE_KEY_FILE}=<file> (or {SOPS_AGE_KEY}, or pass --identity FILE); "
        + FLUX_KEY_HINT,
        path=path,
        recipients=recipients,
        looked=looked,
    )


def _is_x25519(recipient: str) -> bool:
    """An `age1...` X25519 recipient (not `age1pq1...` nor a plugin `age1name1...`)."""
    return (
        recipient.startswith("age1")
        and not recipient.startswith("age1pq1")
        and len(recipient) == 62
    )


def new_identity() -> tuple[str, str]:
    """(secret key, recipient) of a fresh X25519 identity."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def check_recipient(recipient: str) -> str:
    """The recipient, stripped, if pyrage can encrypt to it; SopsError otherwise."""
    text = str(recipient).strip()
    if text.startswith("age1pq1"):
        raise SopsError(
            f"post-quantum age recipient {text[:12]}... is not supported (pyrage 1.4)",
            fix="use an X25519 recipient (age1..., age-keygen)",
        )
    try:
        pyrage.x25519.Recipient.from_str(text)
    except (pyrage.RecipientError, ValueError):
        raise SopsError(
            f"{scrub(text)[:70]!r} is not an age X25519 recipient (age1...)",
            fix="give public keys as age-keygen prints them (age1...); "
            "age-keygen -y KEYFILE prints a key file's recipient",
        ) from None
    return text
