"""SOPS cryptography: `ENC[AES256_GCM,...]` values, the MAC, and the age-wrapped data key.

- A value is AES-256-GCM with a 32-byte IV; the additional data is the value's path of map
  keys joined by `:` with a trailing `:` (list indexes are not part of it).
- The MAC is SHA-512 over the Go byte form of every leaf, upper-case hex, stored encrypted
  as a `str` value whose additional data is `lastmodified` in RFC 3339 (seconds).
- The 32-byte data key is age-encrypted once per recipient and ASCII-armored.

Nothing here formats a plaintext, the data key or a secret key into a message."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DATA_KEY_SIZE = 32
IV_SIZE = 32
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
# aes/cipher.go: no end anchor, greedy groups
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
TYPES = ("str", "int", "float", "bool", "time", "comment", "bytes")


class BadValue(ValueError):
    """A value that is not a well-formed `ENC[...]` string (message has no value in it)."""


class AuthenticationFailed(ValueError):
    """AES-GCM refused the value: ciphertext, iv, tag, data key or path do not belong together."""


@dataclass(frozen=True, repr=False)
class EncryptedValue:
    data: bytes
    iv: bytes
    tag: bytes
    type: str

    def __repr__(self) -> str:
        return f"EncryptedValue(type={self.type!r}, {len(self.data)} bytes)"


def is_encrypted(value) -> bool:
    return isinstance(value, str) and _ENC.match(value) is not None


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadValue(f"its {what} is not valid base64") from None


def parse(value: str) -> EncryptedValue:
    m = _ENC.match(value)
    if not m:
        raise BadValue("it is not an ENC[AES256_GCM,...] value")
    data, iv, tag, kind = m.groups()
    return EncryptedValue(_b64(data, "data"), _b64(iv, "iv"), _b64(tag, "tag"), kind)


def decrypt(value: str, key: bytes, aad: str) -> tuple[str, bytes]:
    """(type, plaintext bytes) of an ENC value; AuthenticationFailed or BadValue."""
    enc = parse(value)
    if not 8 <= len(enc.iv) <= 128:
        raise AuthenticationFailed("its iv has an impossible length")
    try:
        plain = AESGCM(key).decrypt(
            enc.iv, enc.data + enc.tag, aad.encode("utf-8", "surrogateescape")
        )
    except InvalidTag:
        raise AuthenticationFailed("AES-GCM authentication failed") from None
    if enc.type not in TYPES:
        raise BadValue(f"its type {enc.type!r} is unknown")
    return enc.type, plain


def encrypt(plain: bytes, kind: str, key: bytes, aad: str) -> str:
    """An ENC value: AES-256-GCM, fresh 32-byte IV, tag split off as sops writes it."""
    iv = os.urandom(IV_SIZE)
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode("utf-8", "surrogateescape"))
    data, tag = sealed[:-16], sealed[-16:]
    return (
        f"ENC[AES256_GCM,data:{base64.b64encode(data).decode()},"
        f"iv:{base64.b64encode(iv).decode()},tag:{base64.b64encode(tag).decode()},"
        f"type:{kind}]"
    )


class MacHasher:
    """sops' running SHA-512 over the leaves (upper-case hex digest)."""

    def __init__(self, mac_only_encrypted: bool = False) -> None:
        self._hash = hashlib.sha512()
        if mac_only_encrypted:
            self._hash.update(MAC_ONLY_ENCRYPTED_INIT)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest().upper()

    def __repr__(self) -> str:
        return "MacHasher(<running>)"


def macs_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_SIZE)


def armor(binary: bytes) -> str:
    """age's ASCII armor: BEGIN line, standard base64 wrapped at 64 columns, END line."""
    body = base64.b64encode(binary).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def dearmor(text: str) -> bytes:
    """Binary age file from armor (pyrage reads armor itself; this is for checks)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise BadValue("it is not an ASCII-armored age file")
    return _b64("".join(lines[1:-1]), "armor")


def wrap_data_key(data_key: bytes, recipient: str) -> str:
    """The data key age-encrypted to one X25519 recipient, armored (a sops `enc`)."""
    import pyrage

    return armor(pyrage.encrypt(data_key, [pyrage.x25519.Recipient.from_str(recipient)]))
