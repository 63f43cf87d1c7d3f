"""Value objects of the console: filters, rows, pages, figures. Rows carry masked names only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

IDENTIFICATIONS = ("identified", "ambiguous", "unidentified")
KINDS = ("call", "session", "thread", "case", "visit")
# sort name -> the SQL key expression and direction (a fixed allowlist: never user text in SQL)
SORTS: dict[str, tuple[str, str]] = {
    "-started_at": ("i.started_at", "DESC"),
    "started_at": ("i.started_at", "ASC"),
    "-handle_seconds": ("coalesce(i.handle_seconds, -1)", "DESC"),
    "handle_seconds": ("coalesce(i.handle_seconds, -1)", "ASC"),
    "-event_count": ("i.event_count::double precision", "DESC"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class LogFilter:
    """What the contact log shows: interactions started in ``[since, until)`` matching every given filter.

    ``text`` matches subjects, wrap-up notes and email text (every whitespace-separated term must occur,
    case-insensitively, in one of the interaction's events).
    """

    since: dt.datetime
    until: dt.datetime
    channels: tuple[str, ...] = ()
    kind: str | None = None
    queue: str | None = None
    agent_id: str | None = None
    customer_id: int | None = None
    outcome: str | None = None
    identification: str | None = None
    status: str | None = None
    text: str | None = None
    sort: str = "-started_at"

    def describe(self) -> dict[str, Any]:
        """The filter as the audit records it."""
        out: dict[str, Any] = {"since": self.since.isoformat(), "until": self.until.isoformat(), "sort": self.sort}
        for name in ("kind", "queue", "agent_id", "customer_id", "outcome", "identification", "status", "text"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.channels:
            out["channels"] = list(self.channels)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class SortKey:
    """Where a keyset page starts: the sort key's value and the interaction id of the last row shown."""

    value: dt.datetime | float
    id: uuid.UUID


@dataclasses.dataclass(frozen=True, slots=True)
class LogRow:
    id: uuid.UUID
    channel: str
    kind: str
    direction: str | None
    status: str
    identification: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    handle_seconds: float | None
    agent_id: str | None
    queue: str | None
    outcome: str | None
    reason: str | None
    subject: str | None
    event_count: int
    customer_id: int | None
    customer_no_masked: str | None
    customer_name_masked: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[LogRow]
    next_key: SortKey | None


@dataclasses.dataclass(frozen=True, slots=True)
class AuditFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actor: str | None = None
    action: str | None = None
    customer_id: int | None = None
    interaction_id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: dt.datetime
    actor: str
    actor_role: str | None
    action: str
    customer_id: int | None
    customer_no_masked: str | None
    customer_name_masked: str | None
    interaction_id: uuid.UUID | None
    reason: str | None
    request_id: str | None
    details: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class CallFigures:
    offered: int
    answered: int
    abandoned: int
    answered_within_sl: int
    aht_seconds: float | None

    def rate(self, n: int) -> float | None:
        return n / self.offered if self.offered else None


@dataclasses.dataclass(frozen=True, slots=True)
class Dashboard:
    since: dt.datetime
    until: dt.datetime
    bucket: str                                   # "hour" or "day"
    volume: list[tuple[dt.datetime, str, int]]    # (bucket start, local time; channel; interactions)
    channel_totals: list[tuple[str, int, int]]    # (channel, interactions, unidentified)
    calls: CallFigures
    service_level_seconds: int
    aht_by_channel: list[tuple[str, float, int]]  # (channel, average handle seconds, interactions with one)
    repeat_contacts: int
    repeat_base: int
    repeat_days: int
    complaints: list[tuple[str, int, int, int]]   # (age bucket, within SLA, breached, no SLA)
    reasons: list[tuple[str, int]]
    qa_by_agent: list[tuple[str, int, float]]     # (agent, reviews, average %)
    qa_over_time: list[tuple[dt.datetime, int, float]]

    @property
    def total(self) -> int:
        return sum(n for _, n, _ in self.channel_totals)

    @property
    def unidentified(self) -> int:
        return sum(u for _, _, u in self.channel_totals)


@dataclasses.dataclass(frozen=True, slots=True)
class QaReview:
    id: int
    sample_id: int
    interaction_id: uuid.UUID
    agent_id: str | None
    channel: str
    queue: str | None
    started_at: dt.datetime
    status: str
    form_id: str | None
    form_version: int | None
    scores: dict[str, int]
    score_percent: float | None
    comment: str | None
    reviewer: str | None
    reviewed_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class QaSample:
    id: int
    created_at: dt.datetime
    created_by: str
    criteria: dict[str, Any]
    requested: int
    drawn: int
    scored: int
