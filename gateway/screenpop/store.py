"""SQL of the screen-pop: a customer's version, recent contacts and events of interest, candidates.

**Version.** A summary may be served from the cache only when nothing it depends on changed
since it was read: :func:`customer_version` reads the token of :mod:`gateway.customers.version`,
*before* the facts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.customers.store import load_customer
from gateway.customers.version import VERSION_LATERAL, version_token
from gateway.db.pool import fetch, fetchrow, translate_errors
from gateway.identity import mask, mask_name
from gateway.screenpop.model import CandidateLine, ContactFact, EventFact, SummaryFacts

VERSION = f"""
SELECT c.updated_at, v.n, v.events, v.last FROM customers c, {VERSION_LATERAL} WHERE c.id = $1
"""

# The newest contacts, and every contact within the rules' window, capped.
CONTACTS = """
SELECT id AS interaction_id, kind, channel, status, started_at, last_event_at, direction, queue, agent_id, subject,
       outcome, reason, last_type
FROM interactions
WHERE customer_id = $1
ORDER BY started_at DESC, id DESC
LIMIT $2
"""

# Events of interest in the customer's interactions within the window. Bounding occurred_at lets
# PostgreSQL prune the monthly partitions.
EVENTS = """
SELECT e.id, e.interaction_id, e.type, e.channel, e.occurred_at, e.subject, e.outcome, e.reason, e.attributes
FROM interactions i
JOIN events e ON e.interaction_id = i.id AND e.occurred_at >= $2
WHERE i.customer_id = $1 AND i.last_event_at >= $2 AND (e.type = ANY($3::text[]) OR e.reason = ANY($4::text[]))
ORDER BY e.occurred_at DESC
LIMIT $5
"""

CANDIDATES = """
SELECT id, customer_no, name, segment, tier, vip FROM customers WHERE id = ANY($1::bigint[]) ORDER BY id
"""

# The interaction a pop is about, and the latest call still ringing or answered at an agent.
INTERACTION = """
SELECT id, channel, customer_id, identification, candidates, agent_id, queue, direction, status, started_at,
       last_event_at
FROM interactions WHERE id = $1
"""
AGENT_CURRENT_CALL = """
SELECT id FROM interactions
WHERE agent_id = $1 AND kind = 'call' AND status IN ('ringing', 'answered') AND last_event_at >= $2
ORDER BY last_event_at DESC LIMIT 1
"""
RINGING_EVENT = """
SELECT id, occurred_at, agent_id, identifiers, attributes FROM events
WHERE interaction_id = $1 AND type = 'call.ringing' AND occurred_at >= $2
ORDER BY occurred_at DESC LIMIT 1
"""

MAX_CONTACTS = 200
MAX_EVENTS = 500


async def customer_version(pool: asyncpg.Pool, customer_id: int) -> str | None:
    """The customer's current version token, or None when there is no such customer."""
    with translate_errors():
        async with pool.acquire() as conn:
            row = await fetchrow(conn, "screenpop.version", VERSION, customer_id)
    return version_token(row["updated_at"], row["n"], row["events"], row["last"]) if row else None


async def read_facts(pool: asyncpg.Pool, customer_id: int, version: str, now: dt.datetime, lookback: dt.timedelta,
                     event_types: Sequence[str], reasons: Sequence[str]) -> SummaryFacts | None:
    """The facts of one customer (call :func:`customer_version` first, see the module docstring).

    The document, the contacts and the events are read concurrently on three pooled connections: a pop
    waits for the slowest of them, not for their sum.
    """
    since = now - lookback

    async def contacts() -> list[asyncpg.Record]:
        with translate_errors():
            async with pool.acquire() as conn:
                return await fetch(conn, "screenpop.contacts", CONTACTS, customer_id, MAX_CONTACTS)

    async def events() -> list[asyncpg.Record]:
        with translate_errors():
            async with pool.acquire() as conn:
                return await fetch(conn, "screenpop.events", EVENTS, customer_id, since, list(event_types),
                                   list(reasons), MAX_EVENTS)

    view, contact_rows, event_rows = await asyncio.gather(load_customer(pool, customer_id), contacts(), events())
    if view is None:
        return None
    return SummaryFacts(
        version=version, read_at=now, customer=view,
        contacts=tuple(ContactFact(**dict(r)) for r in contact_rows),
        events=tuple(EventFact(**dict(r)) for r in event_rows),
    )


async def candidates(pool: asyncpg.Pool, ids: Sequence[int]) -> tuple[CandidateLine, ...]:
    if not ids:
        return ()
    with translate_errors():
        async with pool.acquire() as conn:
            rows = await fetch(conn, "screenpop.candidates", CANDIDATES, list(ids))
    return tuple(CandidateLine(r["id"], mask("customer_no", r["customer_no"]), mask_name(r["name"]), r["segment"],
                               r["tier"], r["vip"]) for r in rows)


@dataclasses.dataclass(frozen=True, slots=True)
class InteractionBrief:
    id: uuid.UUID
    channel: str
    customer_id: int | None
    identification: str
    candidates: tuple[int, ...]
    agent_id: str | None
    queue: str | None
    direction: str | None
    status: str
    started_at: dt.datetime
    last_event_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RingingBrief:
    id: uuid.UUID
    occurred_at: dt.datetime
    agent_id: str | None
    identifiers: list[dict[str, str]]
    attributes: dict[str, Any]


async def interaction(pool: asyncpg.Pool, interaction_id: uuid.UUID) -> InteractionBrief | None:
    with translate_errors():
        async with pool.acquire() as conn:
            r = await fetchrow(conn, "screenpop.interaction", INTERACTION, interaction_id)
    if r is None:
        return None
    d = dict(r)
    d["candidates"] = tuple(d["candidates"] or ())
    return InteractionBrief(**d)


async def ringing_event(pool: asyncpg.Pool, interaction_id: uuid.UUID, since: dt.datetime) -> RingingBrief | None:
    with translate_errors():
        async with pool.acquire() as conn:
            r = await fetchrow(conn, "screenpop.ringing_event", RINGING_EVENT, interaction_id, since)
    return RingingBrief(**dict(r)) if r else None


async def agent_current_call(pool: asyncpg.Pool, agent_id: str, since: dt.datetime) -> uuid.UUID | None:
    with translate_errors():
        async with pool.acquire() as conn:
            row = await fetchrow(conn, "screenpop.agent_current_call", AGENT_CURRENT_CALL, agent_id, since)
    return row["id"] if row else None
