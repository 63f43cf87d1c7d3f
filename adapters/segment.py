"""Segment HTTP Tracking API messages (mobile banking, 手机银行) → canonical events. Pure: no I/O, no clock.

The mobile app (or its Segment / RudderStack SDK) posts ``track``, ``identify``,
``screen``, ``page``, ``alias`` and ``group`` messages, one per call or many in a
``batch``. Each message becomes exactly one canonical event; a bad message is
rejected on its own (:class:`Rejection`) and does not sink its batch.

Policy (the README's "Mobile banking" section says the same):

- ``messageId`` is the ``source_event_id``, so a client's retry is a duplicate.
  A message without one gets a stable id derived from its content
  (``sha256:`` of its sorted JSON without ``sentAt``/``writeKey``), never
  from a counter or the clock.
- Every message needs ``userId`` or ``anonymousId`` (``alias`` needs
  ``userId`` and ``previousId``; ``track`` needs ``event``).
- Identifiers: ``anonymousId`` and ``context.device.id`` are ``device_id``;
  ``userId`` is the mapping's ``user_id_kind`` (``online_user_id`` by
  default); configured traits give ``customer_no``/``online_user_id``;
  configured track properties give ``card_no``/``account_no`` and leave the
  attributes. Raw values go to ingest, which hashes and masks them.
- ``identify`` and ``alias`` become ``identity.linked`` carrying the strong
  identifier *and* the device ids, so ingest can attach the device's earlier
  anonymous events to the customer. An ``identify`` without any strong
  identifier (anonymous traits) is a ``profile.changed``.
- ``track`` names map through ``config/segment_events.toml``; unknown names are
  ``app.action`` with the name as subject. ``screen``/``page`` are
  ``screen.viewed``; ``group`` is ``app.action``.
- Interaction (the app session in the contact log): ``context.sessionId`` of
  the device when the SDK sends one, else the device's (or user's) calendar
  day in ``session_day_offset``. Device and user ids appear there only hashed.
- Time: ``timestamp`` when given; otherwise ``originalTimestamp`` corrected
  for the device's clock skew as Segment does
  (``received_at - (sentAt - originalTimestamp)``); otherwise the gateway's
  receive time. Timestamps are parsed leniently but safely by
  :func:`parse_timestamp`.
- Attributes keep the event name, properties and a fixed allowlist of
  ``context`` (app, os, device model, library, locale, timezone, network);
  never IP addresses, advertising ids, push tokens or traits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import ValidationFailed
from gateway.events.model import MAX_ATTRIBUTES_BYTES, ContactEvent, event_from_obj
from gateway.events.types import EVENT_TYPES
from gateway.settings import SettingsError, read_toml_file
from gateway.validate import short_text

CHANNEL = "mobile_banking"
MESSAGE_TYPES = ("track", "identify", "screen", "page", "alias", "group")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_IDENTIFIER = 128
MAX_ID = 200
_STRONG_KINDS = ("customer_no", "online_user_id")
_encoder = msgspec.json.Encoder(order="sorted")


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentMapping:
    """``config/segment_events.toml`` as a value: track names and identifier fields."""

    user_id_kind: str
    track: Mapping[str, str]                       # normalised track name -> canonical type
    traits: Mapping[str, tuple[str, ...]]          # identifier kind -> trait names
    properties: Mapping[str, tuple[str, ...]]      # identifier kind -> property names
    reason_properties: tuple[str, ...]
    session_day_offset: dt.timezone = dt.timezone(dt.timedelta(hours=8))

    def type_for(self, event_name: str) -> str:
        return self.track.get(normalise_event_name(event_name), "app.action")


def normalise_event_name(name: str) -> str:
    """``"Login Failed"``, ``"login_failed"`` and ``"loginFailed"`` all become ``"loginfailed"``."""
    return re.sub(r"[\s_.\-]+", "", name).casefold()


def mapping_from_dict(raw: Mapping[str, Any], origin: str = "segment mapping") -> SegmentMapping:
    """Validate the mapping table; raise SettingsError naming the bad entry."""
    known = {"user_id_kind", "session_day_offset", "track", "traits", "properties", "reason"}
    unknown = set(raw) - known
    if unknown:
        raise SettingsError(f"{origin}: unknown key {min(unknown)!r}")
    kind = raw.get("user_id_kind", "online_user_id")
    if kind not in _STRONG_KINDS:
        raise SettingsError(f"{origin}: user_id_kind must be one of {list(_STRONG_KINDS)} (got {kind!r})")
    track: dict[str, str] = {}
    for name, ctype in dict(raw.get("track", {})).items():
        if ctype not in EVENT_TYPES:
            raise SettingsError(f"{origin}: track.{name!r} maps to unknown event type {ctype!r}")
        track[normalise_event_name(name)] = ctype

    def lists(table: str, allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for k, names in dict(raw.get(table, {})).items():
            if k not in allowed:
                raise SettingsError(f"{origin}: {table}.{k} is not an identifier kind of {list(allowed)}")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise SettingsError(f"{origin}: {table}.{k} must be a list of names")
            out[k] = tuple(names)
        return out

    reason = dict(raw.get("reason", {})).get("properties", [])
    if not isinstance(reason, list) or not all(isinstance(n, str) for n in reason):
        raise SettingsError(f"{origin}: reason.properties must be a list of names")
    offset_text = raw.get("session_day_offset", "+08:00")
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset_text) if isinstance(offset_text, str) else None
    if m is None or int(m[2]) > 23 or int(m[3]) > 59:
        raise SettingsError(f"{origin}: session_day_offset must look like +08:00 (got {offset_text!r})")
    offset = (1 if m[1] == "+" else -1) * dt.timedelta(hours=int(m[2]), minutes=int(m[3]))
    return SegmentMapping(
        session_day_offset=dt.timezone(offset),
        user_id_kind=kind,
        track=track,
        traits=lists("traits", _STRONG_KINDS),
        properties=lists("properties", ("card_no", "account_no", "customer_no", "online_user_id")),
        reason_properties=tuple(reason),
    )


def load_mapping(path: Path) -> SegmentMapping:
    raw = read_toml_file(path, "segment mapping", SettingsError)
    return mapping_from_dict(raw, str(path))


# --- timestamps -------------------------------------------------------------------------------------------

_TS = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})[Tt ](?P<h>\d{1,2}):(?P<mi>\d{1,2})"
    r"(?::(?P<s>\d{1,2})(?:[.,](?P<f>\d{1,9}))?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedTime:
    value: dt.datetime
    normalised: bool     # the text was not strict RFC 3339 (e.g. a month without its leading zero)


def parse_timestamp(text: Any, field: str) -> ParsedTime:
    """Lenient but safe ISO 8601 / RFC 3339.

    Accepted: ``YYYY-M-DTh:m[:s[.fraction]]`` followed by ``Z`` or ``±hh[:mm]``,
    i.e. RFC 3339 plus date and time parts *without their leading zero* — the
    Segment docs' own sample sends ``2015-2-02T00:30:08.276Z``, which can only
    mean 2 February 2015. Fractions beyond microseconds are truncated. The
    result must be a real calendar instant.

    Refused (ValidationFailed naming ``field``): no UTC offset (a device-local
    time of unknown zone would be guessed), impossible dates (``2015-2-30``),
    two-digit years, week or ordinal dates, anything else. Refusing is safe:
    the client sees a 400 for that message; guessing would misplace the event in
    the customer's history.
    """
    if not isinstance(text, str):
        raise ValidationFailed.field(field, "expected an ISO 8601 date-time string")
    # Fast path for what SDKs send: strict RFC 3339 (``YYYY-MM-DDThh:mm...`` with an offset).
    if len(text) >= 20 and text[4] == "-" and text[7] == "-" and text[10] in "Tt " and text[13] == ":":
        try:
            strict = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if strict.tzinfo is not None:
                return ParsedTime(strict, normalised=False)
    m = _TS.match(text.strip())
    if m is None:
        raise ValidationFailed.field(field, "not an ISO 8601 date-time with a UTC offset")
    tz_text = m["tz"]
    try:
        if tz_text in ("Z", "z"):
            tz = dt.UTC
        else:
            sign = -1 if tz_text[0] == "-" else 1
            digits = tz_text[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        fraction = (m["f"] or "")[:6].ljust(6, "0")
        value = dt.datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
                            int(m["s"] or 0), int(fraction), tzinfo=tz)
    except ValueError:
        raise ValidationFailed.field(field, "not a valid date and time") from None
    padded = (len(m["mo"]) == 2 and len(m["d"]) == 2 and len(m["h"]) == 2 and len(m["mi"]) == 2
              and (m["s"] is None or len(m["s"]) == 2))
    return ParsedTime(value, normalised=not padded)


# --- messages ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """One message that could not become an event: its index in the batch and why."""

    index: int
    field: str
    message: str
    too_large: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class BatchParse:
    events: list[ContactEvent]
    indexes: list[int]          # batch index of each event
    rejections: list[Rejection]


class _TooLarge(ValidationFailed):
    pass


def parse_call(
    call: str, obj: Any, *, source: str, received_at: dt.datetime, mapping: SegmentMapping
) -> ContactEvent:
    """One message posted to ``/v1/<call>`` → one event. Raises ValidationFailed naming the field."""
    if not isinstance(obj, dict):
        raise ValidationFailed.field("body", "expected a JSON object")
    declared = obj.get("type", call)
    if declared != call:
        raise ValidationFailed.field("type", f"a message of type {declared!r} posted to /v1/{call}")
    return parse_message(obj, call=call, source=source, received_at=received_at,
                         sent_at=obj.get("sentAt"), context={}, mapping=mapping, prefix="")


def parse_batch(
    obj: Any, *, source: str, received_at: dt.datetime, mapping: SegmentMapping
) -> BatchParse:
    """A ``/v1/batch`` body → events and per-message rejections. Raises ValidationFailed when the
    body itself is wrong (not an object, no ``batch`` array, too many messages)."""
    if not isinstance(obj, dict):
        raise ValidationFailed.field("body", "expected a JSON object")
    batch = obj.get("batch")
    if not isinstance(batch, list):
        raise ValidationFailed.field("batch", "required: an array of messages")
    if len(batch) > MAX_BATCH_MESSAGES:
        raise ValidationFailed.field("batch", f"more than {MAX_BATCH_MESSAGES} messages")
    raw_context = obj.get("context")
    context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    events: list[ContactEvent] = []
    indexes: list[int] = []
    rejections: list[Rejection] = []
    for i, msg in enumerate(batch):
        prefix = f"batch[{i}]."
        try:
            if not isinstance(msg, dict):
                raise ValidationFailed.field(f"batch[{i}]", "expected a message object")
            if len(_encoder.encode(msg)) > MAX_MESSAGE_BYTES:
                raise _TooLarge.field(f"batch[{i}]", f"message larger than {MAX_MESSAGE_BYTES // 1024} KB")
            call = msg.get("type")
            if call not in MESSAGE_TYPES:
                raise ValidationFailed.field(prefix + "type", f"must be one of {', '.join(MESSAGE_TYPES)}")
            events.append(parse_message(msg, call=call, source=source, received_at=received_at,
                                        sent_at=msg.get("sentAt", obj.get("sentAt")), context=context,
                                        mapping=mapping, prefix=prefix))
            indexes.append(i)
        except ValidationFailed as exc:
            first = exc.errors[0]
            rejections.append(Rejection(i, first["field"], first["message"], isinstance(exc, _TooLarge)))
    return BatchParse(events, indexes, rejections)


def parse_message(
    msg: dict[str, Any],
    *,
    call: str,
    source: str,
    received_at: dt.datetime,
    sent_at: Any,
    context: dict[str, Any],
    mapping: SegmentMapping,
    prefix: str,
) -> ContactEvent:
    """One Segment message of a known ``call`` → one canonical event."""
    ctx = {**context, **msg["context"]} if isinstance(msg.get("context"), dict) else dict(context)
    user_id = _opt_id(msg.get("userId"), prefix + "userId")
    anonymous_id = _opt_id(msg.get("anonymousId"), prefix + "anonymousId")
    previous_id = _opt_id(msg.get("previousId"), prefix + "previousId") if call == "alias" else None
    if call == "alias":
        if user_id is None:
            raise ValidationFailed.field(prefix + "userId", "required for alias")
        if previous_id is None:
            raise ValidationFailed.field(prefix + "previousId", "required for alias")
    elif user_id is None and anonymous_id is None:
        raise ValidationFailed.field(prefix + "userId", "userId or anonymousId is required")

    identifiers = _Identifiers()
    if user_id is not None:
        identifiers.add(mapping.user_id_kind, user_id, prefix + "userId")
    traits = msg.get("traits") if isinstance(msg.get("traits"), dict) else ctx.get("traits")
    if isinstance(traits, dict):
        for kind, names in mapping.traits.items():
            for name in names:
                if traits.get(name) not in (None, ""):
                    identifiers.add(kind, _id_text(traits[name], f"{prefix}traits.{name}"), f"{prefix}traits.{name}")
    strong = identifiers.has_strong()
    for value, field in ((anonymous_id, "anonymousId"), (previous_id, "previousId")):
        if value is not None:
            identifiers.add("device_id", value, prefix + field)
    device = ctx.get("device")
    if isinstance(device, dict) and device.get("id") not in (None, ""):
        identifiers.add("device_id", _id_text(device["id"], prefix + "context.device.id"), prefix + "context.device.id")

    properties = msg.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise ValidationFailed.field(prefix + "properties", "expected an object")
    properties = dict(properties)
    for kind, names in mapping.properties.items():
        for name in names:
            if name in properties:
                value = properties.pop(name)
                if value not in (None, ""):
                    field = f"{prefix}properties.{name}"
                    identifiers.add(kind, _id_text(value, field), field)

    attributes: dict[str, Any] = {"segment_type": call}
    event: dict[str, Any] = {}
    if call == "track":
        event_name = msg.get("event")
        if not isinstance(event_name, str) or not event_name.strip():
            raise ValidationFailed.field(prefix + "event", "required for track")
        if len(event_name) > 500:
            raise ValidationFailed.field(prefix + "event", "longer than 500 characters")
        ctype = mapping.type_for(event_name)
        attributes["event"] = event_name
        event["subject"] = event_name
        for rp in mapping.reason_properties:
            value = properties.get(rp)
            if isinstance(value, str | int) and not isinstance(value, bool) and 0 < len(str(value)) <= 100:
                event["reason"] = str(value)
                break
    elif call in ("screen", "page"):
        ctype = "screen.viewed"
        page_name = msg.get("name") or properties.get("name")
        category = msg.get("category")
        for key, value in (("name", page_name), ("category", category)):
            if value not in (None, ""):
                if not isinstance(value, str) or len(value) > 500:
                    raise ValidationFailed.field(prefix + key, "expected a string of at most 500 characters")
                attributes[key] = value
        if page_name:
            event["subject"] = f"{category} / {page_name}" if category else page_name
    elif call in ("identify", "alias"):
        ctype = "identity.linked" if strong else "profile.changed"
    else:  # group
        ctype = "app.action"
        group_id = _opt_id(msg.get("groupId"), prefix + "groupId")
        if group_id is not None:
            attributes["group_id"] = group_id
        event["subject"] = "group"
    if ctype in ("message.sent", "complaint.opened"):
        event["direction"] = "inbound"
    if properties:
        attributes["properties"] = properties
    attributes.update(_context_attributes(ctx))

    occurred_at, raw_ts = _occurred_at(msg, sent_at, received_at, prefix)
    if raw_ts is not None:
        attributes["timestamp_raw"] = raw_ts
    if len(_encoder.encode(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise ValidationFailed.field(prefix + "properties",
                                     f"properties and context larger than {MAX_ATTRIBUTES_BYTES // 1024} KB")
    event["interaction_id"] = _interaction(ctx, anonymous_id or previous_id, user_id, occurred_at, mapping, prefix)

    event.update({
        "source": source,
        "source_event_id": _message_id(msg, prefix),
        "channel": CHANNEL,
        "type": ctype,
        "occurred_at": occurred_at,
        "identifiers": identifiers.items,
        "attributes": attributes,
    })
    try:
        return event_from_obj(event)
    except ValidationFailed as exc:
        raise ValidationFailed([{"field": prefix + e["field"], "message": e["message"]}
                                for e in exc.errors]) from None


def _occurred_at(
    msg: dict[str, Any], sent_at: Any, received_at: dt.datetime, prefix: str
) -> tuple[dt.datetime, str | None]:
    if msg.get("timestamp") not in (None, ""):
        ts = parse_timestamp(msg["timestamp"], prefix + "timestamp")
        return ts.value, msg["timestamp"] if ts.normalised else None
    if msg.get("originalTimestamp") not in (None, ""):
        ot = parse_timestamp(msg["originalTimestamp"], prefix + "originalTimestamp")
        raw = msg["originalTimestamp"] if ot.normalised else None
        if sent_at not in (None, ""):
            sent = parse_timestamp(sent_at, prefix + "sentAt")
            return received_at - (sent.value - ot.value), raw
        return ot.value, raw
    return received_at, None


def _interaction(ctx: dict[str, Any], device: str | None, user_id: str | None, occurred_at: dt.datetime,
                 mapping: SegmentMapping, prefix: str) -> str:
    """The app session an event belongs to (one interaction in the contact log).

    With ``context.sessionId`` (RudderStack's mobile SDKs, or the app's own) that session, scoped to the
    device; without one, the device's (else the user's) calendar day in ``session_day_offset``. The
    device or user id appears only as a SHA-256 prefix: interaction keys are shown and stored in clear,
    identifiers are not.
    """
    who = f"d{_short_hash(device)}" if device else f"u{_short_hash(user_id or '')}"
    session = ctx.get("sessionId", ctx.get("session_id"))
    if session not in (None, ""):
        return f"app-session:{who}:{_id_text(session, prefix + 'context.sessionId', 100)}"
    day = occurred_at.astimezone(mapping.session_day_offset).date().isoformat()
    return f"app-day:{who}:{day}"


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def _message_id(msg: dict[str, Any], prefix: str) -> str:
    mid = _opt_id(msg.get("messageId"), prefix + "messageId", MAX_ID)
    if mid is not None:
        return mid
    content = {k: v for k, v in msg.items() if k not in ("sentAt", "writeKey")}
    return "sha256:" + hashlib.sha256(_encoder.encode(content)).hexdigest()[:40]


def _opt_id(value: Any, field: str, limit: int = MAX_IDENTIFIER) -> str | None:
    if value is None or value == "":
        return None
    return _id_text(value, field, limit)


def _id_text(value: Any, field: str, limit: int = MAX_IDENTIFIER) -> str:
    return short_text(value, field, limit)


class _Identifiers:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, kind: str, value: str, field: str) -> None:
        if any(i["kind"] == kind and i["value"] == value for i in self.items):
            return
        if len(self.items) >= 16:
            raise ValidationFailed.field(field, "more than 16 identifiers in one message")
        self.items.append({"kind": kind, "value": value})

    def has_strong(self) -> bool:
        return any(i["kind"] in _STRONG_KINDS for i in self.items)


_CONTEXT_ALLOWLIST: dict[str, tuple[str, ...]] = {
    "app": ("name", "version", "build", "namespace"),
    "os": ("name", "version"),
    "device": ("manufacturer", "model", "type", "name"),
    "library": ("name", "version"),
    "network": ("carrier", "wifi", "cellular", "bluetooth"),
}


def _context_attributes(ctx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, fields in _CONTEXT_ALLOWLIST.items():
        part = ctx.get(key)
        if isinstance(part, dict):
            kept = {f: part[f] for f in fields if isinstance(part.get(f), str | int | float | bool)}
            if kept:
                out[key] = kept
    for key in ("locale", "timezone"):
        if isinstance(ctx.get(key), str):
            out[key] = ctx[key][:64]
    return out
