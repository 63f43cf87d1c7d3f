"""The gateway's exception tree and its RFC 9457 problem types.

::

    GatewayError                      base; carries an HTTP status and a stable problem type
    ├── BadRequest                    400 the request is malformed (invalid-request)
    │   └── ValidationFailed          422 a field is wrong; ``errors`` names each field (validation-failed)
    ├── Unauthorized                  401 no or wrong credentials (unauthorized)
    ├── Forbidden                     403 authenticated but not allowed (forbidden)
    ├── NotFound                      404 no such resource or route (not-found)
    ├── MethodNotAllowed              405 (method-not-allowed)
    ├── Conflict                      409 the resource is in a conflicting state (conflict)
    ├── PayloadTooLarge               413 the body exceeds a limit (payload-too-large)
    ├── UnsupportedMediaType          415 wrong Content-Type (unsupported-media-type)
    ├── TooManyRequests               429 throttled (too-many-requests)
    ├── StoreUnavailable              503 PostgreSQL or Redis cannot be reached (store-unavailable)
    └── NotReady                      503 readiness failed; ``checks`` says which (not-ready)

Anything else that escapes a handler is answered as a 500 ``internal-error``
problem carrying only the request id; the exception goes to the log.

Driver errors (asyncpg, redis) are translated into :class:`StoreUnavailable`
at the store boundary, never shown to a client.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://contact-gateway.dev/problems/"

# Every problem type the gateway emits: slug -> (status, title). The README lists the same table,
# and tests/test_docs.py fails when the two drift.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is malformed"),
    "validation-failed": (422, "A field of the request is invalid"),
    "unauthorized": (401, "Authentication is required"),
    "forbidden": (403, "Not allowed"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "too-many-requests": (429, "Too many requests"),
    "internal-error": (500, "Internal error"),
    "store-unavailable": (503, "A backing store is unavailable"),
    "not-ready": (503, "The gateway is not ready"),
}


def problem_type_uri(slug: str) -> str:
    return PROBLEM_BASE + slug


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    slug = "internal-error"

    def __init__(self, detail: str = "", **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    @property
    def status(self) -> int:
        return PROBLEM_TYPES[self.slug][0]

    @property
    def title(self) -> str:
        return PROBLEM_TYPES[self.slug][1]

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": problem_type_uri(self.slug),
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(GatewayError):
    """The request is malformed: unreadable JSON, a missing header."""

    slug = "invalid-request"


class ValidationFailed(BadRequest):
    """One or more fields are invalid. ``errors`` is a list of ``{field, message}``."""

    slug = "validation-failed"

    def __init__(self, errors: list[dict[str, str]], detail: str = "") -> None:
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        super().__init__(detail or f"{first['field'] or 'body'}: {first['message']}", errors=errors)
        self.errors = errors

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls([{"field": field, "message": message}])


class Unauthorized(GatewayError):
    """No credentials, or credentials that do not match."""

    slug = "unauthorized"


class Forbidden(GatewayError):
    """Authenticated, but the role or source may not do this."""

    slug = "forbidden"


class NotFound(GatewayError):
    """No such resource or route."""

    slug = "not-found"


class MethodNotAllowed(GatewayError):
    """The route exists but not for this method."""

    slug = "method-not-allowed"


class Conflict(GatewayError):
    """The resource is in a state that forbids the change."""

    slug = "conflict"


class PayloadTooLarge(GatewayError):
    """The body, or a part of it, exceeds a configured limit."""

    slug = "payload-too-large"


class UnsupportedMediaType(GatewayError):
    """The Content-Type is not one the route accepts."""

    slug = "unsupported-media-type"


class TooManyRequests(GatewayError):
    """The caller is throttled; ``retry_after`` says for how long."""

    slug = "too-many-requests"


class StoreUnavailable(GatewayError):
    """PostgreSQL or Redis cannot be reached; the request was not carried out."""

    slug = "store-unavailable"


class NotReady(GatewayError):
    """A readiness check failed; ``checks`` names each store and its state."""

    slug = "not-ready"
