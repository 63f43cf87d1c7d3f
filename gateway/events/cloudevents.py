"""CloudEvents 1.0 → canonical contact event.

A channel that already speaks CloudEvents posts its events as they are, in
structured mode (``application/cloudevents+json``), batch mode
(``application/cloudevents-batch+json``, a JSON array) or binary mode
(``ce-*`` headers, the ``data`` as the body). The mapping:

=================  ===============================================
CloudEvents        canonical event
=================  ===============================================
``id``             ``source_event_id`` (unique within ``source``)
``source``         ``source``
``type``           ``type`` (a canonical dotted type, e.g. ``call.ringing``)
``time``           ``occurred_at`` (required here, with an offset)
``subject``        ``subject`` (unless ``data`` has one)
``channel`` ext.   ``channel`` (or inside ``data``)
``data``           the other canonical fields: ``channel``, ``identifiers``,
                   ``interaction_id``, ``agent_id``, ``queue``, ``direction``,
                   ``subject``, ``outcome``, ``reason``, ``attributes``
=================  ===============================================

Errors name the CloudEvents attribute (``id``, ``time``, ``data.identifiers[0].kind``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import ValidationFailed
from gateway.events.model import ContactEvent, event_from_obj

CE_REQUIRED = ("specversion", "id", "source", "type")
DATA_FIELDS = ("channel", "identifiers", "interaction_id", "agent_id", "queue", "direction", "subject", "outcome",
               "reason", "attributes")
_RENAME = {"source_event_id": "id", "occurred_at": "time"}


def _rename(field: str) -> str:
    head = field.split(".", 1)[0].split("[", 1)[0]
    if head in _RENAME:
        return _RENAME[head] + field[len(head):]
    if head in DATA_FIELDS:
        return "data." + field
    return field


def from_cloudevent(ce: Any, prefix: str = "") -> ContactEvent:
    """Map one structured-mode CloudEvent (a decoded JSON object) onto a contact event."""
    if not isinstance(ce, Mapping):
        raise ValidationFailed.field(prefix.rstrip(".") or "body", "a CloudEvent is a JSON object")
    for attr in CE_REQUIRED:
        if attr not in ce:
            raise ValidationFailed.field(prefix + attr, "required")
    if ce["specversion"] != "1.0":
        raise ValidationFailed.field(prefix + "specversion", "only CloudEvents 1.0 is supported")
    if "time" not in ce:
        raise ValidationFailed.field(prefix + "time", "required: when the event happened, RFC 3339 with offset")
    data = ce.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValidationFailed.field(prefix + "data", "must be a JSON object of canonical fields")
    unknown = set(data) - set(DATA_FIELDS)
    if unknown:
        raise ValidationFailed.field(prefix + "data." + sorted(unknown)[0], "unknown field")
    obj: dict[str, Any] = {"source": ce["source"], "source_event_id": ce["id"], "type": ce["type"],
                           "occurred_at": ce["time"]}
    if "channel" in ce:
        obj["channel"] = ce["channel"]
    if "subject" in ce:
        obj["subject"] = ce["subject"]
    obj.update(data)
    try:
        return event_from_obj(obj)
    except ValidationFailed as exc:
        raise ValidationFailed([{"field": prefix + _rename(e["field"]), "message": e["message"]}
                                for e in exc.errors]) from None


def from_binary(headers: Mapping[str, str], data: Any) -> ContactEvent:
    """Binary mode: attributes in ``ce-*`` headers, the body is ``data``."""
    ce: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-"):
            ce[lower[3:]] = value
    ce["data"] = data
    return from_cloudevent(ce)
