"""Frozen value objects of the screen-pop: the facts a summary is built from, the summary, the pop.

``SummaryFacts`` is what the store reads for one customer (the customer document, recent
interactions, recent events of interest) with the *version* it was read at; it is what the cache
keeps. ``Summary`` (who / has / can / did / alerts) is computed from facts by a pure function at a
given time, so alerts that depend on the clock (an SLA passing, a window closing) are always
current even when the facts come from the cache.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
from typing import Any, Literal

from gateway.customers.model import (
    Appointment,
    Case,
    CreditApplication,
    CustomerView,
    Entitlement,
    Holding,
    MaskedIdentifier,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ContactFact:
    """One interaction of the customer, as the summary needs it."""

    interaction_id: uuid.UUID
    kind: str
    channel: str
    status: str
    started_at: dt.datetime
    last_event_at: dt.datetime
    direction: str | None
    queue: str | None
    agent_id: str | None
    subject: str | None
    outcome: str | None
    reason: str | None
    last_type: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class EventFact:
    """One event of interest (failures, transfers, complaints, enquiries) in the customer's interactions."""

    id: uuid.UUID
    interaction_id: uuid.UUID
    type: str
    channel: str
    occurred_at: dt.datetime
    subject: str | None
    outcome: str | None
    reason: str | None
    attributes: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class SummaryFacts:
    """Everything a summary is computed from, read at ``version`` (see :mod:`gateway.screenpop.store`)."""

    version: str
    read_at: dt.datetime
    customer: CustomerView
    contacts: tuple[ContactFact, ...]
    events: tuple[EventFact, ...]


Severity = Literal["critical", "warning", "info"]


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """A rule that fired, with why, in each language."""

    rule: str
    severity: str
    category: str
    title: dict[str, str]
    why: dict[str, str]
    facts: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Who:
    customer_id: int
    customer_no: str
    name_masked: str
    customer_type: str
    segment: str
    tier: str
    vip: bool
    risk_rating: str | None
    aum_band: str | None
    home_branch: str | None
    relationship_manager: str | None
    service_group: str | None
    preferred_language: str
    preferred_channel: str | None
    do_not_call: bool
    marketing_opt_out: bool
    identifiers: tuple[MaskedIdentifier, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Total:
    currency: str
    amount: decimal.Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class HoldingGroup:
    product_type: str
    count: int
    totals: tuple[Total, ...]
    bands: tuple[str, ...]
    items: tuple[Holding, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Has:
    groups: tuple[HoldingGroup, ...]
    totals: tuple[Total, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Can:
    entitlements: tuple[Entitlement, ...]
    restrictions: tuple[Entitlement, ...]
    frozen_holdings: tuple[Holding, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CaseLine:
    case: Case
    sla_state: str            # overdue / due_soon / on_track / no_sla
    hours_left: float | None  # negative when overdue


@dataclasses.dataclass(frozen=True, slots=True)
class Did:
    last_contacts: tuple[ContactFact, ...]
    last_by_channel: tuple[ContactFact, ...]
    open_cases: tuple[CaseLine, ...]
    credit_in_progress: tuple[CreditApplication, ...]
    next_reception: Appointment | None
    digital_failures: tuple[EventFact, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    customer_id: int
    version: str
    at: dt.datetime
    who: Who
    has: Has
    can: Can
    did: Did
    alerts: tuple[Alert, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CandidateLine:
    """One customer an ambiguous caller may be: enough to choose, nothing raw."""

    customer_id: int
    customer_no: str
    name_masked: str
    segment: str
    tier: str
    vip: bool


@dataclasses.dataclass(frozen=True, slots=True)
class CallInfo:
    channel: str
    queue: str | None
    direction: str | None
    caller: tuple[dict[str, str], ...]   # [{kind, masked}]
    attributes: dict[str, Any]


PopState = Literal["identified", "ambiguous", "unidentified"]


@dataclasses.dataclass(frozen=True, slots=True)
class Pop:
    """What an agent's desktop shows for one ringing call (or one lookup)."""

    pop_id: str
    state: str
    agent_id: str | None
    interaction_id: str | None
    occurred_at: dt.datetime | None
    built_at: dt.datetime
    url: str
    call: CallInfo | None
    summary: Summary | None
    candidates: tuple[CandidateLine, ...]
