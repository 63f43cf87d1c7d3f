"""Online banking (网银) webhooks → canonical contact events. Pure: no I/O, no clock, no logging.

The online-banking system posts one JSON event per Standard Webhooks message
(``POST /v1/channels/online-banking/webhook``; the signature is checked by
:mod:`gateway.auth` before this parser runs). The body follows the Standard
Webhooks payload convention::

    {
      "type": "transfer.failed",
      "timestamp": "2026-11-28T09:41:07.120+08:00",
      "data": {
        "user_id": "zhangsan_88", "customer_no": "C0012345", "device_id": "ios-5F3A…",
        "session_id": "ob-s-91f2", "reason": "INSUFFICIENT_FUNDS", "reason_text": "余额不足",
        "amount": "25000.00", "currency": "CNY", "payee_account": "6222020200112233445"
      }
    }

Policy:

- the ``webhook-id`` header is the ``source_event_id``: a redelivered (or
  replayed) message is a duplicate at ingest, never a second row;
- ``type`` must be one of :data:`NATIVE_TYPES` (each maps to a canonical type);
  anything else is a 422 naming ``type`` — an unknown event is never dropped
  silently nor stored under a guessed type;
- ``timestamp`` is required, RFC 3339 with an offset (a local time without one
  is ambiguous and refused);
- identifiers are taken from the fields named in :data:`IDENTIFIER_FIELDS` and
  given raw (ingest normalises, hashes and masks them); they are removed from
  the attributes, and counterpart account/card numbers kept in the attributes
  are masked to their last four digits, so no full number is stored raw;
- ``reason`` (code, ≤100 characters) becomes the event's reason,
  ``reason_text`` or ``subject`` its subject; the other scalar fields of
  ``data`` become attributes (bounded by the canonical 16 KB limit).

Raises :class:`gateway.errors.ValidationFailed` whose field is the JSON path in
the posted body (``data.reason``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.errors import ValidationFailed
from gateway.events.model import ContactEvent, decode_json, event_from_obj
from gateway.validate import short_text

CHANNEL = "online_banking"

# native type -> (canonical type, outcome, interaction key field in data)
NATIVE_TYPES: dict[str, tuple[str, str | None, str]] = {
    "login.succeeded": ("login.succeeded", "succeeded", "session_id"),
    "login.failed": ("login.failed", "failed", "session_id"),
    "logout": ("session.ended", None, "session_id"),
    "password.reset": ("password.reset", "succeeded", "session_id"),
    "device.bound": ("device.bound", "succeeded", "session_id"),
    "transfer.initiated": ("transfer.initiated", "initiated", "session_id"),
    "transfer.succeeded": ("transfer.succeeded", "succeeded", "session_id"),
    "transfer.failed": ("transfer.failed", "failed", "session_id"),
    "bill_payment.failed": ("payment.failed", "failed", "session_id"),
    "card.frozen": ("card.frozen", "succeeded", "session_id"),
    "card.unfrozen": ("card.unfrozen", "succeeded", "session_id"),
    "profile.changed": ("profile.changed", "succeeded", "session_id"),
    # A secure message the customer sent from online banking: types.py files it under message.sent.
    "secure_message.sent": ("message.sent", None, "thread_id"),
    "complaint.submitted": ("complaint.opened", None, "complaint_id"),
}

# Fields of ``data`` that name the customer, by identifier kind (first listed wins for its kind).
IDENTIFIER_FIELDS: dict[str, str] = {
    "user_id": "online_user_id",
    "login_name": "online_user_id",
    "customer_no": "customer_no",
    "device_id": "device_id",
    "card_no": "card_no",
    "account_no": "account_no",
    "phone": "phone",
    "email": "email",
    "national_id": "national_id",
}

# Fields of ``data`` consumed into canonical fields (not repeated in the attributes).
_CONSUMED = {"session_id", "thread_id", "complaint_id", "reason", "reason_text", "subject", "direction"}
# Attribute keys holding someone's account or card number (a payee's): masked to the last four.
_NUMBER_SUFFIXES = ("_account", "_account_no", "_card", "_card_no")
MAX_IDENTIFIER = 128
MAX_REASON = 100
MAX_SUBJECT = 500


def parse(body: bytes, *, source: str, webhook_id: str) -> ContactEvent:
    """One signed webhook body → one canonical event. Raises ValidationFailed naming the field."""
    obj = decode_json(body)
    if not isinstance(obj, dict):
        raise ValidationFailed.field("body", "expected a JSON object")
    native = obj.get("type")
    if not isinstance(native, str) or not native:
        raise ValidationFailed.field("type", "required: the online-banking event type")
    if native not in NATIVE_TYPES:
        raise ValidationFailed.field("type", f"unknown online-banking event type {native!r}; "
                                             f"known: {', '.join(sorted(NATIVE_TYPES))}")
    canonical, outcome, interaction_field = NATIVE_TYPES[native]
    occurred_at = parse_timestamp(obj.get("timestamp"), "timestamp")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise ValidationFailed.field("data", "expected a JSON object")

    identifiers: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for key, kind in IDENTIFIER_FIELDS.items():
        value = data.get(key)
        if value is None or value == "":
            continue
        text = _text(value, f"data.{key}", MAX_IDENTIFIER)
        if (kind, text) not in seen:
            seen.add((kind, text))
            identifiers.append({"kind": kind, "value": text})

    interaction = data.get(interaction_field)
    reason = data.get("reason")
    subject = data.get("reason_text", data.get("subject"))
    event: dict[str, Any] = {
        "source": source,
        "source_event_id": webhook_id,
        "channel": CHANNEL,
        "type": canonical,
        "occurred_at": occurred_at,
        "identifiers": identifiers,
        "attributes": _attributes(native, data),
    }
    if interaction not in (None, ""):
        event["interaction_id"] = _text(interaction, f"data.{interaction_field}", 200)
    if reason not in (None, ""):
        event["reason"] = _text(reason, "data.reason", MAX_REASON)
    if subject not in (None, ""):
        event["subject"] = _text(subject, "data.reason_text" if "reason_text" in data else "data.subject",
                                 MAX_SUBJECT)
    if outcome:
        event["outcome"] = outcome
    if canonical in ("message.sent", "complaint.opened"):
        event["direction"] = "inbound"
    if canonical == "transfer.failed" and "reason" not in event:
        raise ValidationFailed.field("data.reason", "required for transfer.failed")
    try:
        return event_from_obj(event)
    except ValidationFailed as exc:  # canonical field names → the posted body's paths
        raise ValidationFailed([{"field": _native_path(e["field"]), "message": e["message"]}
                                for e in exc.errors]) from None


def parse_timestamp(value: Any, field: str) -> dt.datetime:
    """RFC 3339 with an offset (``Z`` or ``±hh:mm``); raise ValidationFailed naming ``field``."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed.field(field, "required: RFC 3339 date-time with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed.field(field, "not an RFC 3339 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationFailed.field(field, "needs a UTC offset (Z or +08:00)")
    return parsed


def _text(value: Any, field: str, limit: int) -> str:
    return short_text(value, field, limit)


def _mask_tail(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    return "****" + digits[-4:] if len(digits) >= 4 else "****"


def _attributes(native: str, data: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"native_type": native}
    for key, value in data.items():
        if key in IDENTIFIER_FIELDS or key in _CONSUMED:
            continue
        if isinstance(value, str) and key.endswith(_NUMBER_SUFFIXES):
            attrs[key] = _mask_tail(value)
        else:
            attrs[key] = value
    return attrs


_CANONICAL_TO_NATIVE = {
    "interaction_id": "data.session_id",
    "reason": "data.reason",
    "subject": "data.reason_text",
    "occurred_at": "timestamp",
    "attributes": "data",
}


def _native_path(field: str) -> str:
    head = field.split(".", 1)[0].split("[", 1)[0]
    if head == "identifiers":
        return "data"
    return _CANONICAL_TO_NATIVE.get(head, field)
