"""SQL of the contact history: event keys, events, interactions, links. Every query is named.

Rows leave this module as frozen value objects (:class:`InteractionRow`,
:class:`EventRow`), never as ``asyncpg.Record``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from gateway.customers.version import VERSION_LATERAL, version_token
from gateway.db.pool import execute, executemany, fetch, fetchrow

_rows_encoder = msgspec.json.Encoder()

INSERT_KEYS = """
INSERT INTO event_keys (source, source_event_id, event_id, occurred_at, interaction_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::uuid[])
ON CONFLICT DO NOTHING
RETURNING source, source_event_id
"""

SELECT_KEYS = """
SELECT k.source, k.source_event_id, k.event_id, k.interaction_id
FROM unnest($1::text[], $2::text[]) AS q(source, source_event_id)
JOIN event_keys k USING (source, source_event_id)
"""

# Joining an unnest (not "= ANY($1)") keeps index lookups when a group brings thousands of digests:
# a generic plan for "= ANY" over a large array can turn into a sequential scan.
RESOLVE_DIGESTS = """
SELECT c.digest, c.customer_id FROM (SELECT DISTINCT d FROM unnest($1::bytea[]) AS q(d)) q
JOIN customer_identifiers c ON c.digest = q.d
"""

# Rows travel as ONE parameter, a JSON array of arrays (encoded by msgspec, parsed by PostgreSQL): for a
# group of 500 events that cost a third of the client CPU of one array parameter per column, with no more
# work on the server (PostgreSQL 15, this machine). Per-row arrays are array literals in a JSON string.
EVENT_COLUMNS_INSERTED = """id, occurred_at, received_at, source, source_event_id, channel, type, interaction_id,
    external_interaction_id, customer_id, identification, identifiers, agent_id, queue, direction, subject,
    outcome, reason, attributes"""
_EVENT_VALUES = """(r->>0)::uuid, (r->>1)::timestamptz, (r->>2)::timestamptz, r->>3, r->>4, r->>5, r->>6,
    (r->>7)::uuid, r->>8, (r->>9)::bigint, r->>10, r->11, r->>12, r->>13, r->>14, r->>15, r->>16, r->>17, r->18"""
INSERT_EVENTS = f"""
INSERT INTO events ({EVENT_COLUMNS_INSERTED})
SELECT {_EVENT_VALUES} FROM jsonb_array_elements($1::text::jsonb) AS r
"""

# One row per interaction touched by a batch (aggregated in Python first, sorted by id so that
# concurrent batches lock interactions in the same order). Later states win by rank; timestamps
# merge with least/greatest; the customer link only moves to a stronger one (manual links are 9).
UPSERT_INTERACTION = """
INSERT INTO interactions AS i (
    id, source, external_id, kind, channel, customer_id, identification, candidates, link_strength, linked_by,
    identifier_digests, status, state_rank, started_at, answered_at, ended_at, last_event_at, talk_seconds,
    hold_seconds, agent_id, queue, direction, subject, outcome, reason, event_count, last_type)
SELECT (r->>0)::uuid, r->>1, r->>2, r->>3, r->>4, (r->>5)::bigint, r->>6, (r->>7)::bigint[], (r->>8)::smallint,
       r->>9, (r->>10)::bytea[], r->>11, (r->>12)::smallint, (r->>13)::timestamptz, (r->>14)::timestamptz,
       (r->>15)::timestamptz, (r->>16)::timestamptz, (r->>17)::float8, (r->>18)::float8, r->>19, r->>20, r->>21,
       r->>22, r->>23, r->>24, (r->>25)::int, r->>26
FROM jsonb_array_elements($1::text::jsonb) AS r
ON CONFLICT (id) DO UPDATE SET
    customer_id = CASE WHEN excluded.link_strength > i.link_strength THEN excluded.customer_id ELSE i.customer_id END,
    identification = CASE WHEN excluded.link_strength > i.link_strength
                          THEN excluded.identification ELSE i.identification END,
    candidates = CASE WHEN excluded.link_strength > i.link_strength THEN excluded.candidates ELSE i.candidates END,
    linked_by = CASE WHEN excluded.link_strength > i.link_strength THEN excluded.linked_by ELSE i.linked_by END,
    link_strength = greatest(i.link_strength, excluded.link_strength),
    identifier_digests = CASE WHEN i.identifier_digests @> excluded.identifier_digests THEN i.identifier_digests
                              ELSE ARRAY(SELECT DISTINCT d FROM unnest(i.identifier_digests
                                                                       || excluded.identifier_digests) d) END,
    status = CASE WHEN excluded.state_rank >= i.state_rank THEN excluded.status ELSE i.status END,
    state_rank = greatest(i.state_rank, excluded.state_rank),
    started_at = least(i.started_at, excluded.started_at),
    answered_at = least(i.answered_at, excluded.answered_at),
    ended_at = greatest(i.ended_at, excluded.ended_at),
    last_event_at = greatest(i.last_event_at, excluded.last_event_at),
    talk_seconds = coalesce(excluded.talk_seconds, i.talk_seconds),
    hold_seconds = coalesce(excluded.hold_seconds, i.hold_seconds),
    agent_id = CASE WHEN excluded.last_event_at >= i.last_event_at THEN coalesce(excluded.agent_id, i.agent_id)
                    ELSE coalesce(i.agent_id, excluded.agent_id) END,
    queue = coalesce(i.queue, excluded.queue),
    direction = coalesce(i.direction, excluded.direction),
    subject = CASE WHEN excluded.started_at < i.started_at THEN coalesce(excluded.subject, i.subject)
                   ELSE coalesce(i.subject, excluded.subject) END,
    outcome = CASE WHEN excluded.last_event_at >= i.last_event_at THEN coalesce(excluded.outcome, i.outcome)
                   ELSE coalesce(i.outcome, excluded.outcome) END,
    reason = CASE WHEN excluded.last_event_at >= i.last_event_at THEN coalesce(excluded.reason, i.reason)
                  ELSE coalesce(i.reason, excluded.reason) END,
    event_count = i.event_count + excluded.event_count,
    last_type = CASE WHEN excluded.last_event_at >= i.last_event_at THEN excluded.last_type ELSE i.last_type END,
    updated_at = now()
"""

# A group of events none of which is a duplicate, in ONE statement (so one implicit transaction and one
# round trip): their dedupe keys (without ON CONFLICT: a key already stored fails the whole statement with
# a unique violation on event_keys_pkey, and the group goes the statement-by-statement way instead), the
# events, and the interactions, whose links after the upsert come back.
FRESH_KEY_CONSTRAINT = "event_keys_pkey"
COMMIT_FRESH = f"""
WITH ev AS (SELECT r FROM jsonb_array_elements($1::text::jsonb) AS r),
k AS (
    INSERT INTO event_keys (source, source_event_id, event_id, occurred_at, interaction_id)
    SELECT r->>3, r->>4, (r->>0)::uuid, (r->>1)::timestamptz, (r->>7)::uuid FROM ev
), e AS (
    INSERT INTO events ({EVENT_COLUMNS_INSERTED})
    SELECT {_EVENT_VALUES} FROM ev
), upserted AS ({UPSERT_INTERACTION.replace("$1::", "$2::")}
    RETURNING id, customer_id, identification)
SELECT id::text AS id, customer_id, identification FROM upserted
"""

SELECT_INTERACTION_LINKS = """
SELECT i.id::text AS id, i.customer_id, i.identification
FROM unnest($1::uuid[]) AS q(id) JOIN interactions i ON i.id = q.id
"""

# The early link of a ringing event, in one round trip: the customers owning its digests (kind 'd'), the
# link its interaction already has (kind 'i'), and the version of every customer either names (kind 'v').
EARLY_LINK = f"""
WITH d AS (SELECT c.digest, c.customer_id
           FROM (SELECT DISTINCT d FROM unnest($2::bytea[]) AS q(d)) q
           JOIN customer_identifiers c ON c.digest = q.d),
     i AS (SELECT customer_id, identification, candidates, link_strength FROM interactions WHERE id = $1)
SELECT 'd' AS k, digest, customer_id, NULL::text AS identification, NULL::bigint[] AS candidates,
       NULL::smallint AS link_strength, NULL::timestamptz AS updated_at, NULL::bigint AS n, NULL::bigint AS events,
       NULL::timestamptz AS last
FROM d
UNION ALL
SELECT 'i', NULL, customer_id, identification, candidates, link_strength, NULL, NULL, NULL, NULL FROM i
UNION ALL
SELECT 'v', NULL, c.id, NULL, NULL, NULL, c.updated_at, v.n, v.events, v.last
FROM customers c, {VERSION_LATERAL}
WHERE c.id IN (SELECT customer_id FROM d UNION SELECT customer_id FROM i)
"""

LEARN_IDENTIFIER = """
INSERT INTO customer_identifiers (customer_id, kind, digest, masked, key_version, origin)
VALUES ($1, $2, $3, $4, $5, 'learned')
ON CONFLICT DO NOTHING
"""

RELINK_BY_DIGESTS = """
UPDATE interactions
SET customer_id = $1, identification = 'identified', candidates = '{}', link_strength = $3, linked_by = $4,
    updated_at = now()
WHERE identifier_digests && $2::bytea[] AND link_strength < $3
RETURNING id
"""

INSERT_LINK_HISTORY = """
INSERT INTO interaction_links (interaction_id, action, customer_id, actor, reason)
SELECT unnest($1::uuid[]), $2, $3, $4, $5
"""

SET_LINK = """
UPDATE interactions
SET customer_id = $2, identification = $3, candidates = '{}', link_strength = 9, linked_by = $4, updated_at = now()
WHERE id = $1
RETURNING id
"""

INTERACTION_COLUMNS = """
    id, source, external_id, kind, channel, customer_id, identification, candidates, linked_by, status,
    started_at, answered_at, ended_at, last_event_at, handle_seconds, talk_seconds, hold_seconds, agent_id,
    queue, direction, subject, outcome, reason, event_count, last_type
"""

GET_INTERACTION = f"SELECT {INTERACTION_COLUMNS} FROM interactions WHERE id = $1"

# Keyset pagination on (started_at, id), newest first. $2/$3: the cursor (NULL for the first page),
# $4/$5/$6: channel filter (NULL: all) and time window, $7: page size.
_PAGE = """
  AND ($2::timestamptz IS NULL OR (started_at, id) < ($2, $3::uuid))
  AND ($4::text[] IS NULL OR channel = ANY($4))
  AND ($5::timestamptz IS NULL OR started_at >= $5)
  AND ($6::timestamptz IS NULL OR started_at < $6)
ORDER BY started_at DESC, id DESC
LIMIT $7
"""

LIST_CUSTOMER_INTERACTIONS = f"SELECT {INTERACTION_COLUMNS} FROM interactions WHERE customer_id = $1 {_PAGE}"

# The same page by customer number, in one statement: one row with NULL interaction columns when the
# customer has none in the page, no row when there is no such customer.
LIST_TIMELINE_BY_NO = f"""
SELECT c.id AS owner_id, i.* FROM customers c
LEFT JOIN LATERAL (SELECT {INTERACTION_COLUMNS} FROM interactions WHERE customer_id = c.id {_PAGE}) i ON true
WHERE c.customer_no = $1
"""

EVENT_COLUMNS = """
    id, source, source_event_id, channel, type, occurred_at, received_at, interaction_id, customer_id,
    identification, identifiers, agent_id, queue, direction, subject, outcome, reason, attributes
"""

LIST_INTERACTION_EVENTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE interaction_id = $1 AND occurred_at >= $2 AND occurred_at <= $3
ORDER BY occurred_at DESC, id DESC
LIMIT $4
"""

LIST_LINK_HISTORY = """
SELECT at, action, customer_id, actor, reason FROM interaction_links WHERE interaction_id = $1 ORDER BY at, id
"""


@dataclasses.dataclass(frozen=True, slots=True)
class InteractionRow:
    id: uuid.UUID
    source: str
    external_id: str
    kind: str
    channel: str
    customer_id: int | None
    identification: str
    candidates: tuple[int, ...]
    linked_by: str | None
    status: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    last_event_at: dt.datetime
    handle_seconds: float | None
    talk_seconds: float | None
    hold_seconds: float | None
    agent_id: str | None
    queue: str | None
    direction: str | None
    subject: str | None
    outcome: str | None
    reason: str | None
    event_count: int
    last_type: str | None

    @classmethod
    def from_record(cls, r: asyncpg.Record | dict[str, Any]) -> InteractionRow:
        d = dict(r)
        d["candidates"] = tuple(d["candidates"] or ())
        return cls(**d)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRow:
    id: uuid.UUID
    source: str
    source_event_id: str
    channel: str
    type: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    interaction_id: uuid.UUID
    customer_id: int | None
    identification: str
    identifiers: list[dict[str, str]]
    agent_id: str | None
    queue: str | None
    direction: str | None
    subject: str | None
    outcome: str | None
    reason: str | None
    attributes: dict[str, Any]

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> EventRow:
        return cls(**dict(r))


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRow:
    at: dt.datetime
    action: str
    customer_id: int | None
    actor: str
    reason: str | None


async def insert_keys(conn: asyncpg.Connection,
                      rows: Sequence[tuple[str, str, uuid.UUID, dt.datetime, uuid.UUID]]) -> set[tuple[str, str]]:
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], [], [], []]
    records = await fetch(conn, "events.insert_keys", INSERT_KEYS, *cols)
    return {(r["source"], r["source_event_id"]) for r in records}


async def select_keys(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
                      ) -> dict[tuple[str, str], tuple[uuid.UUID, uuid.UUID]]:
    if not keys:
        return {}
    sources, ids = zip(*keys, strict=True)
    records = await fetch(conn, "events.select_keys", SELECT_KEYS, list(sources), list(ids))
    return {(r["source"], r["source_event_id"]): (r["event_id"], r["interaction_id"]) for r in records}


async def resolve_digests(conn: asyncpg.Connection, digests: Sequence[bytes]) -> dict[bytes, set[int]]:
    out: dict[bytes, set[int]] = {}
    if not digests:
        return out
    for r in await fetch(conn, "identity.resolve_digests", RESOLVE_DIGESTS, list(digests)):
        out.setdefault(bytes(r["digest"]), set()).add(r["customer_id"])
    return out


def rows_json(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as the one JSON parameter the statements above take."""
    return _rows_encoder.encode(rows).decode()


async def insert_events(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Insert a group of events in one statement (rows in ``_EVENT_VALUES`` order)."""
    await execute(conn, "events.insert", INSERT_EVENTS, rows_json(rows))


def array_literal(values: Sequence[int] | Sequence[bytes]) -> str:
    """A PostgreSQL array literal: per-row arrays travel as text inside the rows' JSON."""
    if values and isinstance(values[0], bytes):
        return "{" + ",".join(f'"\\\\x{v.hex()}"' for v in values) + "}"  # type: ignore[union-attr]
    return "{" + ",".join(str(v) for v in values) + "}"


async def upsert_interactions(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Upsert a group of interactions in one statement; rows are unique by id and sorted by it."""
    await execute(conn, "interactions.upsert", UPSERT_INTERACTION, rows_json(rows))


async def commit_fresh(conn: asyncpg.Connection, event_rows: Sequence[Sequence[Any]],
                       interaction_rows: Sequence[Sequence[Any]]) -> dict[str, tuple[int | None, str]]:
    """Store a group of new events and their interactions in one statement (see ``COMMIT_FRESH``); return
    each interaction's link after it, by the interaction id's text. Raises ``asyncpg.UniqueViolationError`` (constraint
    ``FRESH_KEY_CONSTRAINT``), with nothing stored, when one of the events is stored already."""
    records = await fetch(conn, "events.commit_fresh", COMMIT_FRESH, rows_json(event_rows),
                          rows_json(interaction_rows))
    return {r["id"]: (r["customer_id"], r["identification"]) for r in records}


async def interaction_links(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, tuple[int | None, str]]:
    """Each interaction's link, by the id's text."""
    records = await fetch(conn, "interactions.links", SELECT_INTERACTION_LINKS, list(ids))
    return {r["id"]: (r["customer_id"], r["identification"]) for r in records}


@dataclasses.dataclass(frozen=True, slots=True)
class EarlyLink:
    matches: dict[bytes, set[int]]                                # digest -> its owners
    stored: tuple[int | None, str, tuple[int, ...], int] | None   # the interaction's link and its strength
    versions: dict[int, str]                                      # customer -> version token


async def early_link(conn: asyncpg.Connection, interaction_id: str, digests: Sequence[bytes]) -> EarlyLink:
    """The digests' owners (as :func:`resolve_digests`), the stored interaction's link, and their versions."""
    matches: dict[bytes, set[int]] = {}
    stored = None
    versions: dict[int, str] = {}
    for r in await fetch(conn, "interactions.early_link", EARLY_LINK, interaction_id, list(digests)):
        if r["k"] == "d":
            matches.setdefault(bytes(r["digest"]), set()).add(r["customer_id"])
        elif r["k"] == "i":
            stored = (r["customer_id"], r["identification"], tuple(r["candidates"] or ()), r["link_strength"])
        else:
            versions[r["customer_id"]] = version_token(r["updated_at"], r["n"], r["events"], r["last"])
    return EarlyLink(matches, stored, versions)


async def learn_identifiers(conn: asyncpg.Connection, rows: Sequence[tuple[int, str, bytes, str, int]]) -> None:
    await executemany(conn, "identity.learn", LEARN_IDENTIFIER, rows)


async def relink_by_digests(conn: asyncpg.Connection, customer_id: int, digests: Sequence[bytes],
                            strength: int, linked_by: str) -> list[uuid.UUID]:
    records = await fetch(conn, "interactions.relink_by_digests", RELINK_BY_DIGESTS, customer_id,
                          list(digests), strength, linked_by)
    return [r["id"] for r in records]


async def add_link_history(conn: asyncpg.Connection, ids: Sequence[uuid.UUID], action: str,
                           customer_id: int | None, actor: str, reason: str | None) -> None:
    if ids:
        await execute(conn, "interactions.link_history", INSERT_LINK_HISTORY, list(ids), action, customer_id,
                      actor, reason)


async def set_link(conn: asyncpg.Connection, interaction_id: uuid.UUID, customer_id: int | None,
                   actor: str) -> bool:
    identification = "identified" if customer_id is not None else "unidentified"
    row = await fetchrow(conn, "interactions.set_link", SET_LINK, interaction_id, customer_id, identification, actor)
    return row is not None


async def get_interaction(conn: asyncpg.Connection, interaction_id: uuid.UUID) -> InteractionRow | None:
    r = await fetchrow(conn, "interactions.get", GET_INTERACTION, interaction_id)
    return InteractionRow.from_record(r) if r else None


async def list_customer_interactions(
    conn: asyncpg.Connection, customer_id: int, *, before: tuple[dt.datetime, uuid.UUID] | None,
    channels: Sequence[str] | None, since: dt.datetime | None, until: dt.datetime | None, limit: int,
) -> list[InteractionRow]:
    records = await fetch(
        conn, "interactions.list_for_customer", LIST_CUSTOMER_INTERACTIONS, customer_id,
        before[0] if before else None, before[1] if before else None,
        list(channels) if channels else None, since, until, limit,
    )
    return [InteractionRow.from_record(r) for r in records]


async def timeline_by_customer_no(
    conn: asyncpg.Connection, customer_no: str, *, before: tuple[dt.datetime, uuid.UUID] | None,
    channels: Sequence[str] | None, since: dt.datetime | None, until: dt.datetime | None, limit: int,
) -> tuple[int | None, list[InteractionRow]]:
    """(customer id, a page of its interactions) by customer number in one round trip; (None, []) when
    there is no such customer."""
    records = await fetch(
        conn, "interactions.timeline_by_no", LIST_TIMELINE_BY_NO, customer_no,
        before[0] if before else None, before[1] if before else None,
        list(channels) if channels else None, since, until, limit,
    )
    if not records:
        return None, []
    rows = [InteractionRow.from_record({k: v for k, v in r.items() if k != "owner_id"})
            for r in records if r["id"] is not None]
    return records[0]["owner_id"], rows


async def list_interaction_events(conn: asyncpg.Connection, interaction: InteractionRow, limit: int
                                  ) -> list[EventRow]:
    # Bounding occurred_at by the interaction's own span lets PostgreSQL prune partitions.
    records = await fetch(conn, "events.list_for_interaction", LIST_INTERACTION_EVENTS, interaction.id,
                          interaction.started_at, interaction.last_event_at, limit)
    return [EventRow.from_record(r) for r in records]


async def list_link_history(conn: asyncpg.Connection, interaction_id: uuid.UUID) -> list[LinkRow]:
    return [LinkRow(**dict(r)) for r in await fetch(conn, "interactions.link_history_list",
                                                    LIST_LINK_HISTORY, interaction_id)]
