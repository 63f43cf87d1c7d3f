"""The canonical contact event (DESIGN.md §3): one typed model for every channel.

Validated on the hot path with msgspec (see README "Why msgspec"): decoding
JSON straight into these frozen structs checks types, lengths, enums and
timezone-awareness in one pass. :func:`decode_event` / :func:`decode_plain`
turn raw bytes into events or a :class:`gateway.errors.ValidationFailed` whose
``errors`` name each bad field with a JSON path (``identifiers[0].kind``).

The gateway adds ``id`` (UUIDv7), ``received_at`` and ``customer_id``; a
channel never sends them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.errors import BadRequest, ValidationFailed
from gateway.events.types import EVENT_TYPES

Channel = Literal[
    "voice", "online_banking", "mobile_banking", "email", "branch", "sms", "wechat", "corporate_banking"
]
IdentifierKind = Literal[
    "phone", "email", "customer_no", "national_id", "card_no", "account_no", "device_id", "online_user_id"
]
Direction = Literal["inbound", "outbound"]

# The source's pattern is checked by check_event, not by msgspec: a regex per decoded event was 60% of the
# cost of decoding one (msgspec calls Python's re), and sources repeat, so check_event remembers the
# names it has seen pass. The JSON Schema still carries it. A type must be one of EVENT_TYPES (also
# check_event), which the schema lists as an enum.
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
SourceName = Annotated[str, Meta(min_length=1, max_length=64)]
SourceEventId = Annotated[str, Meta(min_length=1, max_length=200)]
EventType = Annotated[str, Meta(min_length=3, max_length=64)]
ShortText = Annotated[str, Meta(max_length=100)]
Subject = Annotated[str, Meta(max_length=500)]
AwareDatetime = Annotated[dt.datetime, Meta(tz=True)]

MAX_IDENTIFIERS = 16
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_BATCH = 1000


# Structs made per event are not tracked by the cyclic garbage collector (gc=False): they never take part
# in a reference cycle, and collections over the thousands in flight under batch load were ~7% of the CPU.
class Identifier(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Something a channel knows of the customer: ``{kind, value}``."""

    kind: IdentifierKind
    value: Annotated[str, Meta(min_length=1, max_length=128)]


class ContactEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One contact event as a channel posts it (before the gateway adds id, received_at, customer_id)."""

    source: SourceName
    source_event_id: SourceEventId
    channel: Channel
    type: EventType
    occurred_at: AwareDatetime
    identifiers: Annotated[list[Identifier], Meta(max_length=MAX_IDENTIFIERS)] = []
    interaction_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    agent_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    queue: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    direction: Direction | None = None
    subject: Subject | None = None
    outcome: ShortText | None = None
    reason: ShortText | None = None
    attributes: dict[str, Any] = {}


class StoredEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """An event as the gateway stored it."""

    id: str
    source: str
    source_event_id: str
    channel: str
    type: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    interaction_id: str
    customer_id: int | None = None
    identifiers: list[dict[str, str]] = []
    agent_id: str | None = None
    queue: str | None = None
    direction: str | None = None
    subject: str | None = None
    outcome: str | None = None
    reason: str | None = None
    attributes: dict[str, Any] = {}


class PublishedEvent(msgspec.Struct, omit_defaults=True, gc=False):
    """A committed event as it is published on Redis (and handed to the pop hub in-process). A struct, not a
    dict: building and encoding a dict per event took about a tenth of batch ingest's CPU. ``customer_version``
    is set only on the early ringing message (see :mod:`gateway.events.ingest`) and never published."""

    id: str
    type: str
    channel: str
    source: str
    source_event_id: str
    occurred_at: dt.datetime
    interaction_id: str
    customer_id: int | None
    identification: str
    candidates: tuple[int, ...]
    agent_id: str | None
    queue: str | None
    identifiers: list[dict[str, str]]
    customer_version: str | None = None


_event_decoder = msgspec.json.Decoder(ContactEvent)
# POST /v1/events in plain JSON: one event, or a batch decoded in one call. A batch with a bad event is
# decoded again with its items kept raw, to be decoded one by one (so that one bad event is rejected
# alone, with its own path).
_plain_decoder = msgspec.json.Decoder(ContactEvent | list[ContactEvent])
_plain_raw_decoder = msgspec.json.Decoder(ContactEvent | list[msgspec.Raw])
_source_re = re.compile(SOURCE_PATTERN)
_sources_seen: set[str] = set()
SOURCES_REMEMBERED = 10_000
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_convert_path = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def field_from_msgspec(message: str) -> tuple[str, str]:
    """Split msgspec's ``"Expected `str`, got `int` - at `$.identifiers[0].value`"`` into (field, message)."""
    m = _convert_path.search(message)
    path = m.group("path").lstrip(".") if m else ""
    text = message[: m.start()] if m else message
    if text.startswith("Object contains unknown field"):
        unknown = text.split("`")[1] if "`" in text else ""
        path = f"{path}.{unknown}".lstrip(".")
        text = "unknown field"
    elif text.startswith("Object missing required field"):
        missing = text.split("`")[1] if "`" in text else ""
        path = f"{path}.{missing}".lstrip(".")
        text = "required"
    return path, text


def check_event(event: ContactEvent, prefix: str = "", encoded_size: int | None = None) -> ContactEvent:
    """Rules msgspec cannot express: a known type, bounded attributes (``encoded_size``: the length of
    the event's JSON when known, which bounds its attributes')."""
    if event.type not in EVENT_TYPES:
        raise ValidationFailed.field(prefix + "type", f"unknown event type {event.type!r}")
    if event.source not in _sources_seen:
        if not _source_re.match(event.source):
            raise ValidationFailed.field(prefix + "source", f"Expected `str` matching regex {SOURCE_PATTERN!r}")
        if len(_sources_seen) < SOURCES_REMEMBERED:
            _sources_seen.add(event.source)
    if encoded_size is not None and encoded_size <= MAX_ATTRIBUTES_BYTES:
        return event
    if event.attributes and len(_encoder.encode(event.attributes)) > MAX_ATTRIBUTES_BYTES:
        raise ValidationFailed.field(prefix + "attributes", f"larger than {MAX_ATTRIBUTES_BYTES} bytes")
    return event


def event_from_obj(obj: Any, prefix: str = "") -> ContactEvent:
    """Validate one already-decoded JSON object as a contact event."""
    try:
        event = msgspec.convert(obj, ContactEvent)
    except msgspec.ValidationError as exc:
        field, message = field_from_msgspec(str(exc))
        raise ValidationFailed.field(prefix + field if field else prefix.rstrip(".") or "body", message) from None
    return check_event(event, prefix)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes | msgspec.Raw, prefix: str = "") -> Any:
    """``body`` decoded; a validation error names the field (under ``prefix``), unreadable JSON the body."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, message = field_from_msgspec(str(exc))
        raise ValidationFailed.field(prefix + field if field else prefix.rstrip(".") or "body", message) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}", errors=[{"field": "body", "message": "invalid JSON"}]) from None


def decode_event(body: bytes | msgspec.Raw, prefix: str = "") -> ContactEvent:
    """Decode and validate one JSON event from bytes (``prefix``: its path in a batch)."""
    return check_event(_decode(_event_decoder, body, prefix), prefix, len(body))


def decode_plain(body: bytes) -> ContactEvent | list[ContactEvent] | list[msgspec.Raw]:
    """A plain JSON body: one event, validated; or a batch: its events decoded (still to be checked with
    :func:`check_event`), or, when one of them is invalid, all of them raw (see :func:`decode_event`)."""
    try:
        decoded = _plain_decoder.decode(body)
    except msgspec.ValidationError:
        decoded = _decode(_plain_raw_decoder, body)
    except msgspec.DecodeError:
        decoded = _decode(_plain_decoder, body)  # raises it again, as a problem naming the body
    return decoded if isinstance(decoded, list) else check_event(decoded, "", len(body))


def decode_json(body: bytes | msgspec.Raw) -> Any:
    """Decode any JSON; unreadable JSON is a 400 naming the body."""
    return _decode(_any_decoder, body)


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a posted contact event, with the list of known types."""
    schema: dict[str, Any] = msgspec.json.schema(ContactEvent)
    defs = schema.get("$defs", {})
    ce = defs.get("ContactEvent", schema)
    ce["properties"]["type"]["enum"] = sorted(EVENT_TYPES)
    ce["properties"]["type"]["description"] = "Stable dotted event type; see the README's table."
    ce["properties"]["attributes"]["description"] = f"Channel-specific extras, at most {MAX_ATTRIBUTES_BYTES} bytes"
    ce["properties"]["source"]["pattern"] = SOURCE_PATTERN
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "/v1/schema/contact-event.json"
    schema["title"] = "Canonical contact event"
    return schema
