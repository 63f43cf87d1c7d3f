"""Email over HTTP: ``POST /v1/channels/email/inbound`` takes one raw ``message/rfc822``.

For mail gateways and MTAs that pipe a received message to a URL (Postfix
``pipe`` + curl, Mailgun/SES "raw MIME" forwarding). The body is the message
exactly as received; the sender authenticates as a source with an API key
(``X-API-Key`` or ``Authorization: Bearer``), e.g. the development source
``email``. The event's ``source`` is that source's name.

Answers, after commit: 201 with the new event's id (accepted), 200 with the
original's id (a duplicate: same Message-ID again — nothing is stored twice).
A mail that cannot be parsed faithfully is a 422 ``validation-failed`` problem
naming the header or MIME part (``header:From``, ``part:1.2 (text/plain)``);
a body of another media type is 415.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters import email_mime
from gateway import keys
from gateway.auth import source_may_post
from gateway.errors import BadRequest, Forbidden, UnsupportedMediaType, ValidationFailed
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.views.access import require_source, sources

ACCEPTED_TYPES = ("message/rfc822",)

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "source_event_id"],
    "properties": {
        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        "source_event_id": {"type": "string", "description": "the Message-ID, or sha256: of the raw bytes"},
        "event_id": {"type": "string"},
        "interaction_id": {"type": "string"},
    },
}


async def inbound(request: web.Request) -> web.Response:
    """Parse one raw mail, submit its event, answer after commit."""
    body = await request.read()
    principal = await require_source(request, "events", body)
    source = principal.source
    assert source is not None
    if request.content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"send the raw mail as message/rfc822 (got {request.content_type or 'none'})",
                                   errors=[{"field": "Content-Type", "message": "unsupported"}])
    now = request.app[keys.CLOCK].now()
    if not body.strip():
        raise BadRequest("empty body: send one raw RFC 822 message",
                         errors=[{"field": "body", "message": "empty"}])
    event = email_mime.parse(body, source=source.name, fallback_time=now)
    why_not = source_may_post(source, event.source, event.channel)
    if why_not:
        raise Forbidden(why_not)
    [result] = await request.app[keys.INGEST].submit([event])
    if result.status == "rejected":
        raise ValidationFailed.field(result.field or "body", result.message or "rejected")
    return web.json_response(result.as_dict(), status=201 if result.status == "accepted" else 200)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    api.security_schemes.setdefault("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    api.security_schemes.setdefault("bearer", {"type": "http", "scheme": "bearer"})
    add_route(app, api, "POST", "/v1/channels/email/inbound", inbound, {
        "summary": "Ingest one raw email (RFC 822 / MIME)",
        "description": (
            "The body is one message exactly as received. Parsed with RFC 2047 headers, GB2312/GBK as "
            "GB18030, Big5, UTF-8; base64, quoted-printable and 8-bit; HTML-only mail reduced to text; "
            "attachments as metadata only; threaded by References / In-Reply-To / Message-ID. "
            "Auto-replies and bounces are marked in `outcome`."
        ),
        "tags": ["channels"],
        "security": [{"apiKey": []}, {"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        },
        "responses": {
            "201": json_response("Stored (committed)", RESULT_SCHEMA),
            "200": json_response("A duplicate of a stored mail (same Message-ID)", RESULT_SCHEMA),
            "401": _problem("No or wrong API key"),
            "413": _problem("The mail is larger than max_body_bytes"),
            "415": _problem("Not message/rfc822"),
            "422": _problem("Malformed MIME or an undecodable charset; `errors` names the header or part"),
        },
    }, access=sources("events"))
