"""Amazon Connect contact events (EventBridge "Amazon Connect Contact Event") → canonical events; pure.

The transport is ``POST /v1/channels/voice/amazon-connect`` (``gateway/views/voice.py``),
fed by an EventBridge rule whose target is an API destination. Keys are read
case-insensitively: AWS's own sample mixes ``queueInfo`` with ``AgentInfo``/``AgentArn``
(see ``tests/fixtures/amazon_connect/README.md``).

=========================  =====================================================================
``detail.eventType``       canonical event
=========================  =====================================================================
``INITIATED``              ``call.offered``; ``call.transferred`` when initiated by a transfer
``QUEUED``                 ``call.offered`` to the queue
``CONNECTED_TO_AGENT``     ``call.answered`` by the agent (queue wait in ``hold_seconds``)
``DISCONNECTED``           ``call.ended`` (talk seconds) when an agent had it; ``call.abandoned``
                           when it was queued and never reached one; else ``call.ended``
``CONTACT_DATA_UPDATED``   ``ivr.selection`` when the contact's attributes carry IVR data
                           (``ivrPath``, ``customerNo``, ``authLevel``); otherwise nothing
``COMPLETED``              ``contact.wrapup`` (after-contact work) when an agent had the contact
others                     nothing (``CONNECTED_TO_SYSTEM``, ``AMD_*`` …), and non-voice contacts
=========================  =====================================================================

``interaction_id`` is ``initialContactId`` (a transfer creates a new contact id, the call is
one interaction), else ``contactId``. ``source_event_id`` is
``<contactId>/<eventType>/<EventBridge id>``: EventBridge redelivers with the same id.
Agent and queue ids are the last part of their ARNs. The customer's number, when the event
carries ``customerEndpoint`` of type ``TELEPHONE_NUMBER``, becomes a ``phone`` identifier.

Errors raise :class:`gateway.errors.ValidationFailed` naming the field (``detail.contactId``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.errors import ValidationFailed
from gateway.events.model import ContactEvent, Identifier
from gateway.jsoncheck import reject_nul
from gateway.validate import aware_time

DETAIL_TYPE = "Amazon Connect Contact Event"
AUTH_LEVELS = frozenset({"none", "ani", "ivr_pin", "voiceprint", "otp", "kba"})
_ATTRIBUTE_KEYS = ("attributes", "contactattributes", "userdefinedattributes")


def _ci(obj: Any) -> Any:
    """The same JSON with every object key lower-cased (AWS's casing varies between docs and traffic)."""
    if isinstance(obj, dict):
        return {str(k).lower(): _ci(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ci(v) for v in obj]
    return obj


def _str(d: dict[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None or v == "":
        if required:
            raise ValidationFailed.field(field, "required")
        return None
    if not isinstance(v, str):
        raise ValidationFailed.field(field, "expected a string")
    return v


def _obj(d: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValidationFailed.field(field, "expected an object")
    return v


def _time(value: str | None, field: str) -> dt.datetime | None:
    return None if value is None else aware_time(value, field)


def _arn_tail(arn: str | None) -> str | None:
    if not arn:
        return None
    return arn.rsplit("/", 1)[-1][:64] or None


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds()))


def _ivr_data(detail: dict[str, Any]) -> dict[str, Any]:
    for key in _ATTRIBUTE_KEYS:
        attrs = detail.get(key)
        if isinstance(attrs, dict) and attrs:
            return attrs
    return {}


def parse(obj: Any, *, source: str) -> list[ContactEvent]:
    """Map one EventBridge contact event; ``[]`` when it carries nothing for the contact history."""
    if not isinstance(obj, dict):
        raise ValidationFailed.field("body", "expected a JSON object (an EventBridge event)")
    reject_nul(obj)
    ev = _ci(obj)
    detail_type = _str(ev, "detail-type", "detail-type", required=True)
    if (detail_type or "").lower() != DETAIL_TYPE.lower():
        raise ValidationFailed.field("detail-type", f"expected {DETAIL_TYPE!r}")
    event_id = _str(ev, "id", "id", required=True)
    sent = _time(_str(ev, "time", "time", required=True), "time")
    assert sent is not None and event_id is not None
    if "detail" not in ev:
        raise ValidationFailed.field("detail", "required")
    detail = _obj(ev, "detail", "detail")
    event_type = (_str(detail, "eventtype", "detail.eventType", required=True) or "").upper()
    contact_id = _str(detail, "contactid", "detail.contactId", required=True)
    assert contact_id is not None
    channel = (_str(detail, "channel", "detail.channel") or "VOICE").upper()
    if channel != "VOICE":
        return []
    initial = _str(detail, "initialcontactid", "detail.initialContactId") or contact_id
    method = (_str(detail, "initiationmethod", "detail.initiationMethod") or "").upper()
    queue_info = _obj(detail, "queueinfo", "detail.queueInfo")
    agent_info = _obj(detail, "agentinfo", "detail.agentInfo")
    queue = _arn_tail(_str(queue_info, "queuearn", "detail.queueInfo.queueArn"))
    agent = _arn_tail(_str(agent_info, "agentarn", "detail.agentInfo.agentArn"))
    enqueued = _time(_str(queue_info, "enqueuetimestamp", "detail.queueInfo.enqueueTimestamp"),
                     "detail.queueInfo.enqueueTimestamp")
    connected = _time(_str(agent_info, "connectedtoagenttimestamp", "detail.agentInfo.connectedToAgentTimestamp"),
                      "detail.agentInfo.connectedToAgentTimestamp")
    initiated = _time(_str(detail, "initiationtimestamp", "detail.initiationTimestamp"),
                      "detail.initiationTimestamp")
    disconnected = _time(_str(detail, "disconnecttimestamp", "detail.disconnectTimestamp"),
                         "detail.disconnectTimestamp")

    identifiers: list[Identifier] = []
    endpoint = _obj(detail, "customerendpoint", "detail.customerEndpoint")
    address = _str(endpoint, "address", "detail.customerEndpoint.address")
    if address and (_str(endpoint, "type", "detail.customerEndpoint.type") or "TELEPHONE_NUMBER").upper() \
            == "TELEPHONE_NUMBER":
        identifiers.append(Identifier(kind="phone", value=address))

    attrs: dict[str, Any] = {"contact_id": contact_id}
    if method:
        attrs["initiation_method"] = method
    ivr = _ivr_data(detail)
    ivr_path = ivr.get("ivrpath")
    if isinstance(ivr_path, str):
        ivr_path = [p.strip() for p in ivr_path.split(",") if p.strip()]
    if isinstance(ivr_path, list) and ivr_path:
        attrs["ivr_path"] = [str(p) for p in ivr_path]
    auth_level = ivr.get("authlevel")
    if auth_level is not None:
        if not isinstance(auth_level, str) or auth_level not in AUTH_LEVELS:
            raise ValidationFailed.field("detail.attributes.authLevel", f"one of {sorted(AUTH_LEVELS)}")
        attrs["auth_level"] = auth_level
    customer_no = ivr.get("customerno")
    if customer_no is not None:
        if not isinstance(customer_no, str) or not customer_no:
            raise ValidationFailed.field("detail.attributes.customerNo", "expected a non-empty string")
        identifiers.append(Identifier(kind="customer_no", value=customer_no))

    direction = {"INBOUND": "inbound", "TRANSFER": "inbound", "QUEUE_TRANSFER": "inbound",
                 "OUTBOUND": "outbound", "CALLBACK": "outbound"}.get(method)
    reason = _str(detail, "disconnectreason", "detail.disconnectReason")

    def make(type_: str, at: dt.datetime | None, **kw: Any) -> list[ContactEvent]:
        extra = kw.pop("attributes", {})
        return [ContactEvent(
            source=source, source_event_id=f"{contact_id}/{event_type}/{event_id}"[:200], channel="voice",
            type=type_, occurred_at=at or sent, identifiers=identifiers, interaction_id=initial,
            direction=direction, attributes={**attrs, **extra}, **kw,  # type: ignore[arg-type]
        )]

    if event_type == "INITIATED":
        if method in ("TRANSFER", "QUEUE_TRANSFER"):
            prev = _str(detail, "previouscontactid", "detail.previousContactId")
            return make("call.transferred", initiated, agent_id=agent, queue=queue,
                        attributes={"previous_contact_id": prev} if prev else {})
        return make("call.offered", initiated)
    if event_type == "QUEUED":
        return make("call.offered", enqueued, queue=queue)
    if event_type == "CONNECTED_TO_AGENT":
        hold = _seconds(enqueued, connected)
        return make("call.answered", connected, agent_id=agent, queue=queue,
                    attributes={"hold_seconds": hold} if hold is not None else {})
    if event_type == "DISCONNECTED":
        if agent_info:
            talk = _seconds(connected, disconnected) or 0
            hold = _seconds(enqueued, connected) or 0
            return make("call.ended", disconnected, agent_id=agent, queue=queue, outcome="answered",
                        reason=reason[:100] if reason else None,
                        attributes={"talk_seconds": talk, "hold_seconds": hold})
        if queue_info:
            hold = _seconds(enqueued, disconnected) or 0
            return make("call.abandoned", disconnected, queue=queue, outcome="abandoned",
                        reason=reason[:100] if reason else None, attributes={"hold_seconds": hold})
        return make("call.ended", disconnected, outcome="not_answered", reason=reason[:100] if reason else None,
                    attributes={"talk_seconds": 0, "hold_seconds": 0})
    if event_type == "CONTACT_DATA_UPDATED":
        if not ({"ivr_path", "auth_level"} & set(attrs)) and customer_no is None:
            return []
        return make("ivr.selection", sent, attributes={"verified": True} if customer_no is not None else {})
    if event_type == "COMPLETED" and agent_info:
        acw = agent_info.get("aftercontactworkduration")
        return make("contact.wrapup", sent, agent_id=agent, queue=queue,
                    attributes={"after_contact_work_seconds": acw} if isinstance(acw, int | float) else {})
    return []
