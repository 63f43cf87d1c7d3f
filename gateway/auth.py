"""Authentication of channel systems (*sources*): API keys and Standard Webhooks signatures.

A source authenticates with one of:

- an API key, in ``X-API-Key`` or ``Authorization: Bearer <key>`` (or, for
  Segment-compatible clients, HTTP Basic with the key as user name — the
  mobile adapter passes it in);
- a Standard Webhooks signature (https://www.standardwebhooks.com): headers
  ``webhook-id``, ``webhook-timestamp`` (within 5 minutes of now) and
  ``webhook-signature`` — a space-separated list of ``v1,<base64 HMAC-SHA256>``
  over ``{id}.{timestamp}.{body}``, keyed with the base64 part of a
  ``whsec_`` secret. Any listed signature matching any configured secret is
  accepted, so both sides can rotate keys without downtime.

We verify signatures here rather than with the ``standardwebhooks`` package
because we need several secrets per source and an injected clock; the test
suite signs with that package as the reference implementation.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from gateway.errors import Forbidden, Unauthorized
from gateway.settings import Secret, SourceSettings

WEBHOOK_TOLERANCE = dt.timedelta(minutes=5)


def _secret_bytes(secret: str) -> bytes:
    raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<signature>`` for one message (used by our own senders, e.g. ``simulate``)."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    secrets: Iterable[Secret], headers: Mapping[str, str], body: bytes, now: dt.datetime
) -> str:
    """Check a Standard Webhooks signature; return the ``webhook-id``. Raise Unauthorized naming the header."""
    msg_id = headers.get("webhook-id", "")
    ts_text = headers.get("webhook-timestamp", "")
    sig_header = headers.get("webhook-signature", "")
    if not msg_id:
        raise Unauthorized("missing webhook-id header", errors=[{"field": "webhook-id", "message": "required"}])
    if not ts_text:
        raise Unauthorized("missing webhook-timestamp header",
                           errors=[{"field": "webhook-timestamp", "message": "required"}])
    if not sig_header:
        raise Unauthorized("missing webhook-signature header",
                           errors=[{"field": "webhook-signature", "message": "required"}])
    # Header values are attacker-controlled text (aiohttp keeps undecodable bytes as surrogates): every
    # malformed value must end as Unauthorized, never as an exception from int(), datetime or hmac.
    if not (ts_text.isascii() and ts_text.isdigit() and len(ts_text) <= 12):
        raise Unauthorized("webhook-timestamp is not a Unix timestamp",
                           errors=[{"field": "webhook-timestamp", "message": "not an integer"}])
    try:
        msg_id.encode()
    except UnicodeEncodeError:
        raise Unauthorized("webhook-id is not valid text",
                           errors=[{"field": "webhook-id", "message": "not valid UTF-8"}]) from None
    ts = int(ts_text)
    sent = dt.datetime.fromtimestamp(ts, dt.UTC)
    if abs(now - sent) > WEBHOOK_TOLERANCE:
        raise Unauthorized("webhook-timestamp is outside the 5-minute tolerance",
                           errors=[{"field": "webhook-timestamp", "message": "too old or too new"}])
    expected = {sign_webhook(s.get(), msg_id, ts, body).split(",", 1)[1] for s in secrets}
    for candidate in sig_header.split():
        version, _, sig = candidate.partition(",")
        if version != "v1" or not sig or not sig.isascii():
            continue
        if any(hmac.compare_digest(sig, e) for e in expected):
            return msg_id
    raise Unauthorized("no webhook-signature matches", errors=[{"field": "webhook-signature",
                                                                "message": "no valid v1 signature"}])


def api_key_from_headers(headers: Mapping[str, str]) -> str:
    key = headers.get("X-API-Key", "")
    if key:
        return key
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return ""


def source_for_api_key(key: str, sources: Mapping[str, SourceSettings]) -> SourceSettings | None:
    """The source owning this API key (compared in constant time against every key)."""
    found = None
    for source in sources.values():
        if source.auth != "api_key":
            continue
        for candidate in source.api_keys:
            if hmac.compare_digest(candidate.get().encode(), key.encode()):
                found = source
    return found


def authenticate(
    headers: Mapping[str, str],
    body: bytes,
    sources: Mapping[str, SourceSettings],
    now: dt.datetime,
    *,
    scope: str = "events",
    api_key: str | None = None,
    only: Iterable[str] | None = None,
) -> tuple[SourceSettings, str | None]:
    """Authenticate a request as one source. Returns (source, webhook-id or None).

    ``only`` limits the sources tried (a channel endpoint bound to its sources).
    Raises Unauthorized (no or wrong credentials) or Forbidden (source lacks ``scope``).
    """
    allowed = {n: s for n, s in sources.items() if only is None or n in set(only)}
    key = api_key if api_key is not None else api_key_from_headers(headers)
    if key:
        source = source_for_api_key(key, allowed)
        if source is None:
            raise Unauthorized("unknown API key")
        _check_scope(source, scope)
        return source, None
    if "webhook-signature" in headers or "webhook-id" in headers:
        webhook_sources = [s for s in allowed.values() if s.auth == "webhook"]
        last: Unauthorized | None = None
        for source in webhook_sources:
            try:
                msg_id = verify_webhook(source.webhook_secrets, headers, body, now)
            except Unauthorized as exc:
                last = exc
                continue
            _check_scope(source, scope)
            return source, msg_id
        raise last or Unauthorized("no webhook source is configured for this endpoint")
    raise Unauthorized("credentials required: an API key or a Standard Webhooks signature")


def _check_scope(source: SourceSettings, scope: str) -> None:
    if scope not in source.scopes:
        raise Forbidden(f"source {source.name!r} may not use scope {scope!r}")


def source_may_post(source: SourceSettings, event_source: str, channel: str) -> str | None:
    """Why ``source`` may not post an event with this ``source``/``channel``, or None when it may.

    A source posts under its own name or a dotted sub-name (``cti`` may post ``cti.zs-callcentre``).
    """
    if event_source != source.name and not event_source.startswith(source.name + "."):
        return f"credential of source {source.name!r} may not post events of source {event_source!r}"
    if source.channels and channel not in source.channels:
        return f"source {source.name!r} may not post channel {channel!r}"
    return None
