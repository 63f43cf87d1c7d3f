"""Digital channels over HTTP: signed online-banking webhooks and the Segment-compatible mobile API.

``POST /v1/channels/online-banking/webhook`` takes one Standard Webhooks
message (see :mod:`adapters.online_banking`), authenticated by signature as a
source named ``online-banking`` (or ``online-banking.<system>``). The
``webhook-id`` is the dedupe key: a redelivery answers 200 ``duplicate`` with the
original event's id. Errors are problem+json like everywhere else.

``POST /v1/channels/mobile/v1/{batch,track,identify,screen,page,alias}`` speak
the Segment HTTP Tracking API (see :mod:`adapters.segment`), so the Segment and
RudderStack SDKs work with this path as their host. They answer as Segment
does: ``200 {"success": true}`` only once every message is committed (or was a
duplicate); otherwise a JSON error (``application/json``, as Segment) carrying
Segment's ``code`` and ``message`` — which the SDKs read — plus our problem
fields (``type``, ``title``, ``status``, ``detail``, ``errors``). Statuses: 400
bad input, 401 bad write key, 413 too large, 503 store unavailable. The SDKs
do not retry 400/401/413 and do retry 5xx, which is what we want: a 503 means
nothing was stored, and the retry deduplicates on ``messageId``.
"""

from __future__ import annotations

import binascii
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from aiohttp import BasicAuth, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from adapters import online_banking, segment
from gateway import keys
from gateway.auth import api_key_from_headers, authenticate, source_may_post
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from gateway.events.model import ContactEvent, decode_json
from gateway.events.sink import IngestResult
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.settings import PROJECT_ROOT, SourceSettings
from gateway.views.access import PRINCIPAL, source_principal
from gateway.views.access import sources as sources_access

log = structlog.get_logger("gateway.digital")

ONLINE_BANKING_SOURCE = "online-banking"
MOBILE_SOURCE = "mobile-banking"
SEGMENT_CALLS = ("track", "identify", "screen", "page", "alias")
_READ_CHUNK = 64 * 1024


def _sources_named(sources: Iterable[str], name: str) -> list[str]:
    """A channel endpoint accepts its own source and dotted sub-sources (``mobile-banking.ios``)."""
    return [n for n in sources if n == name or n.startswith(name + ".")]


async def _submit(request: web.Request, events: Sequence[ContactEvent]) -> list[IngestResult]:
    if not events:
        return []
    return await request.app[keys.INGEST].submit(events)


# --- online banking ---------------------------------------------------------------------------------------

async def online_banking_webhook(request: web.Request) -> web.Response:
    """Verify the Standard Webhooks signature, parse, ingest; 200 once committed (or a duplicate)."""
    app = request.app
    body = await request.read()
    sources = app[keys.SETTINGS].sources
    source, webhook_id = authenticate(request.headers, body, sources, app[keys.CLOCK].now(),
                                      only=_sources_named(sources, ONLINE_BANKING_SOURCE))
    request[PRINCIPAL] = source_principal(source, webhook_id)
    if webhook_id is None:
        raise Unauthorized("this endpoint takes Standard Webhooks signatures (webhook-id, webhook-timestamp, "
                           "webhook-signature)")
    if len(webhook_id) > 200:
        raise ValidationFailed.field("webhook-id", "longer than 200 characters")
    event = online_banking.parse(body, source=source.name, webhook_id=webhook_id)
    _check_may_post(source, event)
    result = (await _submit(request, [event]))[0]
    if result.status == "rejected":
        raise ValidationFailed.field(result.field or "body", result.message or "rejected")
    log.info("online_banking.webhook", status=result.status, type=event.type, source=source.name)
    return web.json_response(result.as_dict())


def _check_may_post(source: SourceSettings, event: ContactEvent) -> None:
    why = source_may_post(source, event.source, event.channel)
    if why:
        raise Forbidden(why)


# --- Segment-compatible mobile API ------------------------------------------------------------------------

_SEGMENT_CODES = {
    "invalid-request": "invalid_request",
    "validation-failed": "invalid_request",
    "unauthorized": "invalid_write_key",
    "forbidden": "forbidden",
    "payload-too-large": "payload_too_large",
    "store-unavailable": "store_unavailable",
}


def segment_error(request: web.Request, exc: GatewayError, **extra: Any) -> web.Response:
    """Segment's error shape (``code``, ``message``) merged with our problem fields; ``application/json``.

    Validation problems answer 400 like Segment (not our usual 422): the SDKs treat 400 as final.
    """
    if exc.slug == "validation-failed":  # Segment's 400, typed as such
        exc = BadRequest(exc.detail, **exc.extensions)
    status = exc.status
    body = exc.to_problem(instance=request.path)
    body.update(extra)
    body["status"] = status
    body["request_id"] = request_id_of(request)
    body["success"] = False
    body["code"] = _SEGMENT_CODES.get(exc.slug, exc.slug.replace("-", "_"))
    body["message"] = exc.detail or exc.title
    headers = {"WWW-Authenticate": 'Basic realm="segment"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The (decompressed) body, refusing it once it passes ``limit`` bytes.

    aiohttp inflates ``Content-Encoding: gzip`` itself, so the limit must be counted on what
    ``request.content`` yields; ``read(n)`` may return fewer than n bytes, hence the loop.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = await request.content.read(_READ_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"body larger than {limit} bytes (after decompression)", limit=limit)
            chunks.append(chunk)
    except (HttpProcessingError, RequestPayloadError):
        raise BadRequest("the body could not be decompressed (Content-Encoding)") from None
    return b"".join(chunks)


def _basic_user(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        return BasicAuth.decode(header).login
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed HTTP Basic credentials") from None


def _write_key(request: web.Request, obj: Any) -> str:
    """The write key: HTTP Basic user name, or the body's ``writeKey`` (real clients send both)."""
    basic = _basic_user(request)
    in_body = obj.get("writeKey") if isinstance(obj, dict) else None
    if in_body is not None and not isinstance(in_body, str):
        raise Unauthorized("writeKey must be a string")
    if basic and in_body and basic != in_body:
        raise Unauthorized("the write key in HTTP Basic auth and the body's writeKey differ")
    key = basic or in_body or api_key_from_headers(request.headers)
    if not key:
        raise Unauthorized("write key required: HTTP Basic user name or the body's writeKey")
    return key


async def _segment_call(request: web.Request, call: str) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    limit = settings.mobile.max_batch_bytes if call == "batch" else settings.mobile.max_call_bytes
    body = await read_limited(request, limit)
    obj = decode_json(body)
    sources = settings.sources
    now = app[keys.CLOCK].now()
    source, _ = authenticate(request.headers, body, sources, now, api_key=_write_key(request, obj),
                             only=_sources_named(sources, MOBILE_SOURCE))
    request[PRINCIPAL] = source_principal(source)
    mapping = app[keys.SEGMENT_MAPPING]
    if call == "batch":
        parsed = segment.parse_batch(obj, source=source.name, received_at=now, mapping=mapping)
        events, indexes, rejections = parsed.events, parsed.indexes, list(parsed.rejections)
    else:
        events = [segment.parse_call(call, obj, source=source.name, received_at=now, mapping=mapping)]
        indexes, rejections = [0], []
    for event in events:
        _check_may_post(source, event)
    results = await _submit(request, events)
    for index, result in zip(indexes, results, strict=True):
        if result.status == "rejected":
            field = f"batch[{index}].{result.field}" if call == "batch" else (result.field or "body")
            rejections.append(segment.Rejection(index, field, result.message or "rejected"))
    stored = sum(1 for r in results if r.status != "rejected")
    log.info("segment.call", call=call, source=source.name, stored=stored, rejected=len(rejections))
    if rejections:
        rejections.sort(key=lambda r: r.index)
        errors = [{"field": r.field, "message": r.message} for r in rejections]
        summary = f"{len(rejections)} of {stored + len(rejections)} messages rejected; the others were stored"
        if call != "batch":
            summary = f"{errors[0]['field']}: {errors[0]['message']}"
        exc: GatewayError
        if any(r.too_large for r in rejections):
            exc = PayloadTooLarge(summary, errors=errors)
        else:
            exc = ValidationFailed(errors, detail=summary)
        return segment_error(request, exc, stored=stored)
    return web.json_response({"success": True})


def _segment_view(call: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        try:
            return await _segment_call(request, call)
        except GatewayError as exc:
            return segment_error(request, exc)
        except Exception:  # still answer in Segment's shape: the SDKs read code/message
            log.exception("segment.unhandled_error", call=call)
            err = GatewayError("An unexpected error occurred; quote the request id when reporting it.")
            return segment_error(request, err)

    view.__name__ = f"segment_{call}"
    return view


# --- OpenAPI ----------------------------------------------------------------------------------------------

OB_REQUEST = {
    "type": "object",
    "required": ["type", "timestamp"],
    "properties": {
        "type": {"type": "string", "enum": sorted(online_banking.NATIVE_TYPES)},
        "timestamp": {"type": "string", "format": "date-time"},
        "data": {
            "type": "object",
            "description": "user_id, customer_no, device_id, card_no, account_no, phone, email, national_id "
                           "(identifiers); session_id / thread_id / complaint_id (interaction); reason, "
                           "reason_text, subject; other fields become attributes",
        },
    },
}
INGEST_RESULT = {
    "type": "object",
    "required": ["status", "source_event_id"],
    "properties": {
        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        "source_event_id": {"type": "string"},
        "event_id": {"type": "string"},
        "interaction_id": {"type": "string"},
    },
}
SEGMENT_MESSAGE = {
    "type": "object",
    "description": "A Segment message (https://segment.com/docs/connections/spec/)",
    "properties": {
        "type": {"type": "string", "enum": list(segment.MESSAGE_TYPES)},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "previousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "timestamp": {"type": "string"},
        "originalTimestamp": {"type": "string"},
        "sentAt": {"type": "string"},
        "writeKey": {"type": "string"},
    },
}
SEGMENT_BATCH = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": SEGMENT_MESSAGE, "maxItems": segment.MAX_BATCH_MESSAGES},
        "context": {"type": "object"},
        "sentAt": {"type": "string"},
        "writeKey": {"type": "string"},
    },
}
SEGMENT_OK = {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}}
SEGMENT_ERROR = {
    "type": "object",
    "required": ["success", "code", "message", "type", "title", "status"],
    "properties": {
        "success": {"const": False},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "stored": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _segment_operation(call: str) -> dict[str, Any]:
    schema = SEGMENT_BATCH if call == "batch" else SEGMENT_MESSAGE
    errors = {str(s): json_response(d, {"$ref": "#/components/schemas/SegmentError"}) for s, d in (
        (400, "Bad input: JSON, a message, or a decompression error"),
        (401, "No or wrong write key"),
        (413, "Body or a message too large"),
        (503, "Store unavailable: nothing stored, retry"),
    )}
    return {
        "operationId": f"segment_{call}",
        "summary": f"Segment HTTP Tracking API: {call}",
        "tags": ["channels"],
        "security": [{"segmentWriteKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": json_response("Every message stored (or a duplicate)",
                                           {"$ref": "#/components/schemas/SegmentOk"}), **errors},
    }


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    mobile = app[keys.SETTINGS].mobile
    path = mobile.segment_events_file
    app[keys.SEGMENT_MAPPING] = segment.load_mapping(path if path.is_absolute() else PROJECT_ROOT / path)
    api.schemas["SegmentOk"] = SEGMENT_OK
    api.schemas["SegmentError"] = SEGMENT_ERROR
    api.security_schemes["segmentWriteKey"] = {"type": "http", "scheme": "basic",
                                               "description": "The write key as user name, empty password"}
    api.security_schemes["standardWebhooks"] = {
        "type": "apiKey", "in": "header", "name": "webhook-signature",
        "description": "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature (v1, HMAC-SHA256)",
    }
    add_route(app, api, "POST", "/v1/channels/online-banking/webhook", online_banking_webhook, {
        "operationId": "online_banking_webhook",
        "summary": "Online-banking event, signed per Standard Webhooks",
        "tags": ["channels"],
        "security": [{"standardWebhooks": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": OB_REQUEST}}},
        "responses": {
            "200": json_response("Stored now (accepted) or before (duplicate)", INGEST_RESULT),
            "401": {"description": "Missing, malformed, stale or wrong signature",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            "422": {"description": "The event is invalid; errors name the field",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        },
    }, access=sources_access("events"))
    for call in ("batch", *SEGMENT_CALLS):
        add_route(app, api, "POST", f"/v1/channels/mobile/v1/{call}", _segment_view(call),
                  _segment_operation(call), access=sources_access("events"))
