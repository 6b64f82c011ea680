"""Errors of the SOPS reader. Each names the file and what went wrong, with a fix; none ever
carries a decrypted value, the data key or an identity's secret key (messages go through
`scrub`, which also blanks anything shaped like an age secret key)."""

from __future__ import annotations

import re

from pgdrill.core.errors import BadInput

_SECRET_KEY = re.compile(r"AGE-(?:SECRET-KEY-(?:PQ-)?1|PLUGIN-)[0-9A-Za-z-]+")


def scrub(text: str) -> str:
    """`text` with anything shaped like an age secret or plugin key replaced."""
    return _SECRET_KEY.sub("AGE-SECRET-KEY-<redacted>", str(text))


class SopsError(BadInput):
    """A SOPS file that cannot be read: malformed, unsupported, or not a SOPS file."""

    def __init__(self, message: str, *, fix: str | None = None, path=None) -> None:
        message = " ".join(scrub(message).split("\n"))
        super().__init__(message, fix=scrub(fix) if fix else None)
        self.path = str(path) if path is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class SopsMacMismatch(SopsError):
    """The file's MAC does not match its content: something was changed after encryption."""


class SopsAuthFailed(SopsError):
    """An encrypted value failed AES-GCM authentication (changed ciphertext, iv, tag or place)."""


class SopsNoIdentity(SopsError):
    """No age identity that was found can open the file's data key."""

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        path=None,
        recipients: list[str] | None = None,
        looked: list[str] | None = None,
    ) -> None:
        super().__init__(message, fix=fix, path=path)
        self.recipients = list(recipients or [])
        self.looked = list(looked or [])
