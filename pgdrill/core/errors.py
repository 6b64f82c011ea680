"""Errors an operator can act on. Each names what went wrong and, where known, the fix.

Exit codes (shared by the CLI and documented in README):
0 success, 1 drill failed its verdict, 2 bad input, 3 preflight refused,
4 target or infrastructure failure, 130 interrupted.
"""

from __future__ import annotations


class PgdrillError(Exception):
    """An expected failure: printed as one message (and a fix), never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class BadInput(PgdrillError):
    """A malformed experiment, checklist, argument or file."""

    exit_code = 2


class PreflightRefused(PgdrillError):
    """A check that must pass before anything destructive happens did not."""

    exit_code = 3


class TargetError(PgdrillError):
    """The target (sandbox or CNPG cluster) failed or did not answer in time."""

    exit_code = 4


class DeadlineExceeded(TargetError):
    """A wait with a deadline ran out."""


class WalNotAvailable(TargetError):
    """Target.find_restore_point cannot tell: the WAL it would have to read is gone (or could
    not be read). Not a refusal: the restore goes ahead and PostgreSQL's replay decides."""
