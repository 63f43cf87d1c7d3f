"""The generic CTI webhook: a small documented JSON for any vendor (Genesys, Avaya, Cisco, Huawei …); pure.

Posted to ``POST /v1/channels/voice/events``, signed with Standard Webhooks. One event,
or a JSON array of at most 1,000::

    {
      "event_id": "gen-7f3a-0003",            # the vendor's id of this event: unique, stable on retries
      "call_id": "7f3a9c",                    # the vendor's id of the call: groups its events
      "event": "ringing",                     # offered | ringing | answered | held | resumed | transferred
                                              # | ended | abandoned | missed | ivr_selection
      "occurred_at": "2026-11-28T09:41:07.120+08:00",
      "system": "genesys",                    # optional: events get source "<source>.<system>"
      "direction": "inbound",                 # optional: inbound (default) | outbound
      "caller": {"number": "+86 139 1234 5678", "name": "张三"},   # optional
      "queue": "vip", "agent_id": "8001",     # optional
      "ivr": {"path": ["1", "3"], "customer_no": "6200001234",
              "auth_level": "ivr_pin"},       # optional: none | ani | ivr_pin | voiceprint | otp | kba
      "talk_seconds": 132, "hold_seconds": 6, # optional, on "ended"
      "transfer_to": {"queue": "loans", "agent_id": "8002"},     # optional, on "transferred"
      "outcome": "resolved", "reason": "card-lost",              # optional
      "attributes": {}                        # optional vendor extras (bounded by the canonical model)
    }

``event_id`` becomes ``source_event_id``, ``call_id`` the ``interaction_id``; ``caller.number``
a ``phone`` identifier and ``ivr.customer_no`` a ``customer_no`` identifier; the IVR path and
the authentication level go to ``attributes`` (``ivr_path``, ``auth_level``), so the screen-pop
can show how far the caller got and how sure the bank is of who is calling. Unknown fields are
refused (a typo must not silently drop data); errors name the field (``[2].occurred_at``):
:class:`~gateway.errors.ValidationFailed` (422), or :class:`~gateway.errors.BadRequest` (400) for
unreadable JSON.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.jsoncheck import reject_nul
from gateway.errors import PayloadTooLarge, ValidationFailed
from gateway.events.model import (
    MAX_BATCH,
    AwareDatetime,
    ContactEvent,
    Identifier,
    decode_json,
    field_from_msgspec,
)

EVENT_TYPES: dict[str, str] = {
    "offered": "call.offered",
    "ringing": "call.ringing",
    "answered": "call.answered",
    "held": "call.held",
    "resumed": "call.resumed",
    "transferred": "call.transferred",
    "ended": "call.ended",
    "abandoned": "call.abandoned",
    "missed": "call.missed",
    "ivr_selection": "ivr.selection",
}
AuthLevel = Literal["none", "ani", "ivr_pin", "voiceprint", "otp", "kba"]
Short = Annotated[str, Meta(min_length=1, max_length=64)]
Id = Annotated[str, Meta(min_length=1, max_length=200)]
Seconds = Annotated[int, Meta(ge=0, le=86400 * 7)]
_SYSTEM = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


class CtiCaller(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    number: Annotated[str, Meta(max_length=64)] | None = None
    name: Annotated[str, Meta(max_length=100)] | None = None


class CtiIvr(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Annotated[list[Annotated[str, Meta(min_length=1, max_length=32)]], Meta(max_length=50)] = []
    customer_no: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    auth_level: AuthLevel = "none"


class CtiTransfer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    queue: Short | None = None
    agent_id: Short | None = None


class CtiEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event_id: Id
    call_id: Id
    event: Literal["offered", "ringing", "answered", "held", "resumed", "transferred", "ended", "abandoned",
                   "missed", "ivr_selection"]
    occurred_at: AwareDatetime
    system: Annotated[str, Meta(pattern=_SYSTEM.pattern)] | None = None
    direction: Literal["inbound", "outbound"] = "inbound"
    caller: CtiCaller | None = None
    queue: Short | None = None
    agent_id: Short | None = None
    ivr: CtiIvr | None = None
    talk_seconds: Seconds | None = None
    hold_seconds: Seconds | None = None
    transfer_to: CtiTransfer | None = None
    outcome: Annotated[str, Meta(max_length=100)] | None = None
    reason: Annotated[str, Meta(max_length=100)] | None = None
    attributes: dict[str, Any] = {}


_one = msgspec.json.Decoder(CtiEvent)
_many = msgspec.json.Decoder(list[CtiEvent])


def decode(body: bytes) -> tuple[list[CtiEvent], bool]:
    """Decode one event or a batch; returns (events, is_batch). Raises ValidationFailed naming the field."""
    raw = decode_json(body)  # unreadable JSON: 400 naming the body
    reject_nul(raw)
    batch = isinstance(raw, list)
    if batch:
        if not raw:
            raise ValidationFailed.field("body", "an empty batch")
        if len(raw) > MAX_BATCH:
            raise PayloadTooLarge(f"at most {MAX_BATCH} events per request (got {len(raw)})",
                                  errors=[{"field": "body", "message": f"more than {MAX_BATCH} events"}])
    elif not isinstance(raw, dict):
        raise ValidationFailed.field("body", "expected a JSON object or an array of objects")
    try:
        events = _many.decode(body) if batch else [_one.decode(body)]
    except msgspec.ValidationError as exc:
        field, message = field_from_msgspec(str(exc))
        raise ValidationFailed.field(field or "body", message) from None
    return events, batch


def to_contact_event(e: CtiEvent, *, source: str) -> ContactEvent:
    """One vendor event as a canonical event under ``source`` (``<source>.<system>`` when it names one)."""
    identifiers: list[Identifier] = []
    attrs: dict[str, Any] = dict(e.attributes)
    if e.caller is not None:
        if e.caller.number:
            identifiers.append(Identifier(kind="phone", value=e.caller.number))
        if e.caller.name:
            attrs["caller_name"] = e.caller.name
    if e.ivr is not None:
        if e.ivr.path:
            attrs["ivr_path"] = list(e.ivr.path)
        attrs["auth_level"] = e.ivr.auth_level
        if e.ivr.customer_no:
            identifiers.append(Identifier(kind="customer_no", value=e.ivr.customer_no))
    if e.talk_seconds is not None:
        attrs["talk_seconds"] = e.talk_seconds
    if e.hold_seconds is not None:
        attrs["hold_seconds"] = e.hold_seconds
    if e.transfer_to is not None:
        attrs["transfer_to"] = msgspec.to_builtins(e.transfer_to)
    return ContactEvent(
        source=f"{source}.{e.system}" if e.system else source,
        source_event_id=e.event_id,
        channel="voice",
        type=EVENT_TYPES[e.event],
        occurred_at=e.occurred_at,
        identifiers=identifiers,
        interaction_id=e.call_id,
        agent_id=e.agent_id,
        queue=e.queue,
        direction=e.direction,
        outcome=e.outcome,
        reason=e.reason,
        attributes=attrs,
    )


def parse(body: bytes, *, source: str) -> tuple[list[ContactEvent], bool]:
    """Bytes of a posted body → canonical events (and whether it was a batch)."""
    events, batch = decode(body)
    return [to_contact_event(e, source=source) for e in events], batch


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one posted event (the OpenAPI request body)."""
    schema: dict[str, Any] = msgspec.json.schema(CtiEvent)
    return schema
