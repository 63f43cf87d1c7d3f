"""Shared test helpers: one way to check the error shape, everywhere."""

from __future__ import annotations

from typing import Any

from gateway.errors import PROBLEM_TYPES, problem_type_uri


async def assert_problem(resp: Any, status: int, slug: str, field: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem of the given status and type; with ``field``, that it names the field."""
    body_text = await resp.text()
    assert resp.status == status, f"expected {status}, got {resp.status}: {body_text}"
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers["Content-Type"]
    body = await resp.json(content_type=None)
    assert body["type"] == problem_type_uri(slug), body
    assert body["status"] == status
    assert body["title"] == PROBLEM_TYPES[slug][1]
    assert PROBLEM_TYPES[slug][0] == status
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, f"problem does not name {field!r}: {body}"
    return body
