"""The interface every adapter hands its canonical events to.

HTTP adapters and pullers (AMI, IMAP) call ``await sink.submit(events)``; it
returns one :class:`IngestResult` per event, in order, **only after the
accepted events are committed** in PostgreSQL. A puller advances its cursor
(acknowledges a frame, marks a mail) only after ``submit`` returned. When
PostgreSQL is unreachable ``submit`` raises
:class:`gateway.errors.StoreUnavailable` and nothing was stored; retrying the
same events is always safe, because ``(source, source_event_id)`` is unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from gateway.events.model import ContactEvent

Status = Literal["accepted", "duplicate", "rejected"]


class IngestResult(msgspec.Struct, frozen=True, gc=False):
    """What happened to one submitted event.

    ``accepted``: stored now, ``event_id`` is its new id. ``duplicate``: stored
    before, ``event_id`` is the original's. ``rejected``: not stored; ``field``
    and ``message`` say why. (A struct: one is made per event, and a frozen
    dataclass's ``__init__`` costs four times as much.)
    """

    status: Status
    source_event_id: str
    event_id: str | None = None
    interaction_id: str | None = None
    customer_id: int | None = None
    field: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status, "source_event_id": self.source_event_id}
        if self.event_id:
            out["event_id"] = self.event_id
        if self.interaction_id:
            out["interaction_id"] = self.interaction_id
        if self.status == "rejected":
            out["field"] = self.field or ""
            out["message"] = self.message or ""
        return out


class EventSink(Protocol):
    async def submit(self, events: Sequence[ContactEvent], *, nul_free: bool = False) -> list[IngestResult]:
        """Validate, resolve, store and publish; return after commit, one result per event. ``nul_free``:
        the caller has seen that no string of the events holds U+0000 (in the JSON they came from)."""
        ...
