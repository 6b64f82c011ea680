"""The errors the fake Kubernetes API server answers with a `Status` (the real reasons and
HTTP codes), and the NotFound / Conflict messages worded as the real API words them."""

from __future__ import annotations

from .kinds import Kind, resource_name


class ApiError(Exception):
    """Base of the errors the server turns into a `Status` (reason, HTTP code, details)."""

    code, reason = 500, "InternalError"

    def __init__(self, message: str = "", kind: Kind | None = None, name: str | None = None):
        super().__init__(message)
        self.kind, self.name = kind, name


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class AlreadyExists(Conflict):
    """A create found the name taken (a `Conflict`; HTTP 409 reason AlreadyExists)."""

    reason = "AlreadyExists"


class BadRequest(ApiError, ValueError):
    code, reason = 400, "BadRequest"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


def not_found(kind: Kind, name: str) -> NotFound:
    return NotFound(f'{resource_name(kind)} "{name}" not found', kind, name)


def conflict(kind: Kind, name: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {resource_name(kind)} "{name}": the '
        "object has been modified; please apply your changes to the latest version "
        "and try again",
        kind,
        name,
    )
