"""The console's queries: contact log (page and export), dashboard figures, quality review, audit trail.

Every query has a name and ``$n`` parameters. The contact log's WHERE clause is composed from the
constant fragments below, one per filter that is set, so that PostgreSQL plans each combination with
the indexes it can use; no user text ever reaches the SQL (sort keys come from the allowlist
:data:`gateway.console.model.SORTS`).

Free text: each term is matched with ``ILIKE '%term%'`` against ``event_search_text(subject,
attributes)`` (subject, wrap-up note, email text) of the interaction's events. Where pg_trgm is
installed, migration 0009 made a trigram index on exactly that expression and predicate, which
PostgreSQL uses for terms of three characters or more; elsewhere the same query scans the events
from ``since`` on (the partitions before are pruned).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from gateway.console.model import (
    SORTS,
    AuditFilter,
    AuditRow,
    CallFigures,
    LogFilter,
    LogPage,
    LogRow,
    QaReview,
    QaSample,
    SortKey,
)
from gateway.db.pool import execute, fetch, fetchrow, fetchval, translate_errors
from gateway.identity import mask, mask_name

_LOG_SELECT = """
SELECT i.id, i.channel, i.kind, i.direction, i.status, i.identification, i.started_at, i.answered_at, i.ended_at,
       i.handle_seconds, i.agent_id, i.queue, i.outcome, i.reason, i.subject, i.event_count, i.customer_id,
       c.customer_no, c.name AS customer_name, {key} AS sort_value
FROM interactions i LEFT JOIN customers c ON c.id = i.customer_id
"""

# filter name -> SQL fragment with one parameter, written as {p}
_FRAGMENTS: dict[str, str] = {
    "since": "i.started_at >= {p}",
    "until": "i.started_at < {p}",
    "channels": "i.channel = ANY({p}::text[])",
    "kind": "i.kind = {p}",
    "queue": "i.queue = {p}",
    "agent_id": "i.agent_id = {p}",
    "customer_id": "i.customer_id = {p}",
    "outcome": "i.outcome = {p}",
    "identification": "i.identification = {p}",
    "status": "i.status = {p}",
}
# one per search term: {since}/{until} are the range's parameters (they prune partitions), {p} the pattern
# An interaction's events are searched from its range's start to SEARCH_TAIL after the range's end, so that
# a search over an old week reads that week's partitions, not everything since (a note or an email more than
# SEARCH_TAIL after the range is not searched: widen the range to find it).
SEARCH_TAIL = "31 days"
_TEXT_FRAGMENT = (
    "i.id IN (SELECT e.interaction_id FROM events e WHERE e.occurred_at >= {since} "
    "AND e.occurred_at < {until}::timestamptz + interval '" + SEARCH_TAIL + "' "
    "AND (e.subject IS NOT NULL OR e.attributes ? 'note' OR e.attributes ? 'body_text') "
    "AND event_search_text(e.subject, e.attributes) ILIKE {p})"
)
# A term of one or two characters has no trigram: the index would be read whole and every row rechecked,
# which measured slower than scanning the events (bench/console.py: '额度' 13.8 s vs the scan). Such terms
# match an expression the index does not cover, so PostgreSQL scans the partitions from `since` on.
_SHORT_TEXT_FRAGMENT = _TEXT_FRAGMENT.replace("event_search_text(e.subject, e.attributes) ILIKE",
                                              "(event_search_text(e.subject, e.attributes) || '') ILIKE")
TRIGRAM = 3
MAX_TERMS = 5


def like_pattern(term: str) -> str:
    """``%term%`` with LIKE's own wildcards in the term taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_terms(text: str | None) -> list[str]:
    return [t for t in (text or "").split() if t][:MAX_TERMS]


def _where(f: LogFilter, args: list[Any]) -> list[str]:
    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = []
    since_p, until_p = param(f.since), param(f.until)
    clauses.append(_FRAGMENTS["since"].format(p=since_p))
    clauses.append(_FRAGMENTS["until"].format(p=until_p))
    for name in ("channels", "kind", "queue", "agent_id", "customer_id", "outcome", "identification", "status"):
        value = getattr(f, name)
        if value:
            clauses.append(_FRAGMENTS[name].format(p=param(list(value) if name == "channels" else value)))
    for term in search_terms(f.text):
        fragment = _TEXT_FRAGMENT if len(term) >= TRIGRAM else _SHORT_TEXT_FRAGMENT
        clauses.append(fragment.format(since=since_p, until=until_p, p=param(like_pattern(term))))
    return clauses


def contact_log_sql(f: LogFilter, after: SortKey | None, limit: int | None) -> tuple[str, list[Any]]:
    """The contact log's statement for one filter, keyset position and page size (None: every row)."""
    key, direction = SORTS[f.sort]
    args: list[Any] = []
    clauses = _where(f, args)
    if after is not None:
        args.extend([after.value, after.id])
        op = "<" if direction == "DESC" else ">"
        clauses.append(f"({key}, i.id) {op} (${len(args) - 1}, ${len(args)})")
    sql = _LOG_SELECT.format(key=key) + "WHERE " + "\n  AND ".join(clauses) + \
        f"\nORDER BY {key} {direction}, i.id {direction}"
    if limit is not None:
        args.append(limit)
        sql += f"\nLIMIT ${len(args)}"
    return sql, args


def _masked_no(customer_no: str | None) -> str | None:
    return mask("customer_no", customer_no) if customer_no else None


def _log_row(r: asyncpg.Record) -> LogRow:
    return LogRow(r["id"], r["channel"], r["kind"], r["direction"], r["status"], r["identification"],
                  r["started_at"], r["answered_at"], r["ended_at"], r["handle_seconds"], r["agent_id"], r["queue"],
                  r["outcome"], r["reason"], r["subject"], r["event_count"], r["customer_id"], _masked_no(r["customer_no"]),
                  mask_name(r["customer_name"]) if r["customer_name"] else None)


async def contact_log_page(conn: Any, f: LogFilter, after: SortKey | None, limit: int) -> LogPage:
    sql, args = contact_log_sql(f, after, limit + 1)
    records = await fetch(conn, "console.contact_log", sql, *args)
    more = len(records) > limit
    records = records[:limit]
    next_key = SortKey(records[-1]["sort_value"], records[-1]["id"]) if more and records else None
    return LogPage([_log_row(r) for r in records], next_key)


async def export_rows(conn: asyncpg.Connection, f: LogFilter, *, chunk: int = 2000
                      ) -> AsyncIterator[list[LogRow]]:
    """Every row of the filter, in order, through a server-side cursor: ``chunk`` rows in memory at a time."""
    sql, args = contact_log_sql(f, None, None)
    with translate_errors():
        async with conn.transaction(readonly=True):
            cursor = conn.cursor(sql, *args, prefetch=chunk)
            batch: list[LogRow] = []
            async for r in cursor:
                batch.append(_log_row(r))
                if len(batch) >= chunk:
                    yield batch
                    batch = []
            if batch:
                yield batch


# -- interactions and their events ---------------------------------------------------------------------

_CUSTOMER_BRIEF = "SELECT id, customer_no, name FROM customers WHERE id = ANY($1::bigint[])"
_CUSTOMER_BY_NO = "SELECT id FROM customers WHERE customer_no = $1"


async def customer_briefs(conn: Any, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """customer id -> (masked customer number, masked name)."""
    rows = await fetch(conn, "console.customer_briefs", _CUSTOMER_BRIEF, list(ids))
    return {r["id"]: (mask("customer_no", r["customer_no"]), mask_name(r["name"])) for r in rows}


async def customer_id_by_no(conn: Any, customer_no: str) -> int | None:
    return await fetchval(conn, "console.customer_by_no", _CUSTOMER_BY_NO, customer_no)


# -- dashboard --------------------------------------------------------------------------------------------

_VOLUME = """
SELECT date_trunc($3, i.started_at AT TIME ZONE $4) AS bucket, i.channel, count(*) AS n
FROM interactions i WHERE i.started_at >= $1 AND i.started_at < $2
GROUP BY 1, 2 ORDER BY 1, 2
"""
_CHANNEL_TOTALS = """
SELECT i.channel, count(*) AS n, count(*) FILTER (WHERE i.identification = 'unidentified') AS unidentified
FROM interactions i WHERE i.started_at >= $1 AND i.started_at < $2
GROUP BY 1 ORDER BY 2 DESC, 1
"""
# Inbound calls (direction inbound or not given). Service level: answered within N seconds of entering
# the queue, over all offered calls.
_CALLS = """
SELECT count(*) AS offered,
       count(*) FILTER (WHERE i.answered_at IS NOT NULL) AS answered,
       count(*) FILTER (WHERE i.status = 'abandoned') AS abandoned,
       count(*) FILTER (WHERE i.answered_at IS NOT NULL
                        AND i.answered_at - i.started_at <= make_interval(secs => $3)) AS within_sl,
       avg(i.handle_seconds) AS aht
FROM interactions i
WHERE i.started_at >= $1 AND i.started_at < $2 AND i.channel = 'voice' AND i.kind = 'call'
  AND coalesce(i.direction, 'inbound') = 'inbound'
"""
_AHT = """
SELECT i.channel, avg(i.handle_seconds) AS aht, count(*) AS n
FROM interactions i
WHERE i.started_at >= $1 AND i.started_at < $2 AND i.handle_seconds IS NOT NULL
GROUP BY 1 ORDER BY 1
"""
# A contact is repeated when the same customer contacts again, on any of the counted channels, within
# $4 days after it started (the look-ahead may run past the range's end).
_REPEAT = """
SELECT count(*) AS base,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM interactions j
           WHERE j.customer_id = i.customer_id AND j.channel = ANY($3::text[]) AND j.id <> i.id
             AND j.started_at >= i.started_at AND j.started_at <= i.started_at + make_interval(days => $4)
       )) AS repeated
FROM interactions i
WHERE i.started_at >= $1 AND i.started_at < $2 AND i.customer_id IS NOT NULL AND i.channel = ANY($3::text[])
"""
# Open complaints now, by age, against their SLA (due_at, else opened_at + sla_hours).
_COMPLAINTS = """
WITH open AS (
    SELECT $1::timestamptz - c.opened_at AS age,
           coalesce(c.due_at, c.opened_at + make_interval(hours => c.sla_hours)) AS due
    FROM cases c WHERE c.kind = 'complaint' AND c.status IN ('open', 'in_progress')
)
SELECT CASE WHEN age < interval '1 day' THEN 0 WHEN age < interval '3 days' THEN 1
            WHEN age < interval '7 days' THEN 2 ELSE 3 END AS bucket,
       count(*) FILTER (WHERE due >= $1) AS within_sla,
       count(*) FILTER (WHERE due < $1) AS breached,
       count(*) FILTER (WHERE due IS NULL) AS no_sla
FROM open GROUP BY 1 ORDER BY 1
"""
COMPLAINT_BUCKETS = ("<1d", "1-3d", "3-7d", ">=7d")
_REASONS = """
SELECT i.reason, count(*) AS n FROM interactions i
WHERE i.started_at >= $1 AND i.started_at < $2 AND i.reason IS NOT NULL
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3
"""
_QA_BY_AGENT = """
SELECT coalesce(q.agent_id, '') AS agent_id, count(*) AS n, avg(q.score_percent)::double precision AS avg
FROM qa_reviews q WHERE q.status = 'scored' AND q.reviewed_at >= $1 AND q.reviewed_at < $2
GROUP BY 1 ORDER BY 1
"""
_QA_OVER_TIME = """
SELECT date_trunc($3, q.reviewed_at AT TIME ZONE $4) AS bucket, count(*) AS n,
       avg(q.score_percent)::double precision AS avg
FROM qa_reviews q WHERE q.status = 'scored' AND q.reviewed_at >= $1 AND q.reviewed_at < $2
GROUP BY 1 ORDER BY 1
"""


async def volume(conn: Any, since: dt.datetime, until: dt.datetime, bucket: str, tz: str
                 ) -> list[tuple[dt.datetime, str, int]]:
    rows = await fetch(conn, "console.volume", _VOLUME, since, until, bucket, tz)
    return [(r["bucket"], r["channel"], r["n"]) for r in rows]


async def channel_totals(conn: Any, since: dt.datetime, until: dt.datetime) -> list[tuple[str, int, int]]:
    rows = await fetch(conn, "console.channel_totals", _CHANNEL_TOTALS, since, until)
    return [(r["channel"], r["n"], r["unidentified"]) for r in rows]


async def call_figures(conn: Any, since: dt.datetime, until: dt.datetime, sl_seconds: int) -> CallFigures:
    r = await fetchrow(conn, "console.calls", _CALLS, since, until, float(sl_seconds))
    assert r is not None
    return CallFigures(r["offered"], r["answered"], r["abandoned"], r["within_sl"],
                       float(r["aht"]) if r["aht"] is not None else None)


async def aht_by_channel(conn: Any, since: dt.datetime, until: dt.datetime) -> list[tuple[str, float, int]]:
    rows = await fetch(conn, "console.aht", _AHT, since, until)
    return [(r["channel"], float(r["aht"]), r["n"]) for r in rows]


async def repeat_contacts(conn: Any, since: dt.datetime, until: dt.datetime, channels: Sequence[str],
                          days: int) -> tuple[int, int]:
    r = await fetchrow(conn, "console.repeat_contacts", _REPEAT, since, until, list(channels), days)
    assert r is not None
    return r["repeated"], r["base"]


async def open_complaints(conn: Any, now: dt.datetime) -> list[tuple[str, int, int, int]]:
    rows = {r["bucket"]: r for r in await fetch(conn, "console.open_complaints", _COMPLAINTS, now)}
    return [(label, rows[i]["within_sla"] if i in rows else 0, rows[i]["breached"] if i in rows else 0,
             rows[i]["no_sla"] if i in rows else 0) for i, label in enumerate(COMPLAINT_BUCKETS)]


async def top_reasons(conn: Any, since: dt.datetime, until: dt.datetime, limit: int) -> list[tuple[str, int]]:
    return [(r["reason"], r["n"]) for r in await fetch(conn, "console.top_reasons", _REASONS, since, until, limit)]


async def qa_by_agent(conn: Any, since: dt.datetime, until: dt.datetime) -> list[tuple[str, int, float]]:
    rows = await fetch(conn, "console.qa_by_agent", _QA_BY_AGENT, since, until)
    return [(r["agent_id"], r["n"], r["avg"]) for r in rows]


async def qa_over_time(conn: Any, since: dt.datetime, until: dt.datetime, bucket: str, tz: str
                       ) -> list[tuple[dt.datetime, int, float]]:
    rows = await fetch(conn, "console.qa_over_time", _QA_OVER_TIME, since, until, bucket, tz)
    return [(r["bucket"], r["n"], r["avg"]) for r in rows]


# -- quality review ---------------------------------------------------------------------------------------

_INSERT_SAMPLE = """
INSERT INTO qa_samples (created_at, created_by, criteria, requested, drawn) VALUES ($1, $2, $3, $4, 0)
RETURNING id
"""
# A uniform random sample of the matching interactions (ORDER BY random() over the filtered range).
_DRAW = """
INSERT INTO qa_reviews (sample_id, interaction_id, agent_id, channel, queue, started_at)
SELECT $1, i.id, i.agent_id, i.channel, i.queue, i.started_at
FROM interactions i
WHERE i.started_at >= $2 AND i.started_at < $3
  AND ($4::text IS NULL OR i.agent_id = $4) AND ($5::text IS NULL OR i.channel = $5)
  AND ($6::text IS NULL OR i.queue = $6) AND i.status <> 'abandoned'
ORDER BY random()
LIMIT $7
"""
_SET_DRAWN = "UPDATE qa_samples SET drawn = (SELECT count(*) FROM qa_reviews WHERE sample_id = $1) WHERE id = $1 " \
             "RETURNING drawn"
_REVIEW_COLUMNS = """q.id, q.sample_id, q.interaction_id, q.agent_id, q.channel, q.queue, q.started_at, q.status,
q.form_id, q.form_version, q.scores, q.score_percent::double precision AS score_percent, q.comment, q.reviewer,
q.reviewed_at"""
_SAMPLES = """
SELECT s.id, s.created_at, s.created_by, s.criteria, s.requested, s.drawn,
       (SELECT count(*) FROM qa_reviews q WHERE q.sample_id = s.id AND q.status = 'scored') AS scored
FROM qa_samples s ORDER BY s.id DESC LIMIT $1
"""
_SAMPLE = _SAMPLES.replace("ORDER BY s.id DESC LIMIT $1", "WHERE s.id = $1")
_SAMPLE_REVIEWS = f"SELECT {_REVIEW_COLUMNS} FROM qa_reviews q WHERE q.sample_id = $1 ORDER BY q.id"
_REVIEW = f"SELECT {_REVIEW_COLUMNS} FROM qa_reviews q WHERE q.id = $1"
_INTERACTION_REVIEWS = f"SELECT {_REVIEW_COLUMNS} FROM qa_reviews q WHERE q.interaction_id = $1 ORDER BY q.id"
_SCORE = """
UPDATE qa_reviews SET status = 'scored', form_id = $2, form_version = $3, scores = $4, score_percent = $5,
       comment = $6, reviewer = $7, reviewed_at = $8
WHERE id = $1
"""


def _review(r: asyncpg.Record) -> QaReview:
    return QaReview(**dict(r))


async def create_sample(conn: asyncpg.Connection, now: dt.datetime, actor: str, criteria: dict[str, Any],
                        since: dt.datetime, until: dt.datetime, agent_id: str | None, channel: str | None,
                        queue: str | None, size: int) -> tuple[int, int]:
    """Draw a sample (in the caller's transaction); returns (sample id, interactions drawn)."""
    sample_id = await fetchval(conn, "qa.insert_sample", _INSERT_SAMPLE, now, actor, criteria, size)
    await execute(conn, "qa.draw", _DRAW, sample_id, since, until, agent_id, channel, queue, size)
    drawn = await fetchval(conn, "qa.set_drawn", _SET_DRAWN, sample_id)
    return sample_id, drawn


async def list_samples(conn: Any, limit: int) -> list[QaSample]:
    return [QaSample(**dict(r)) for r in await fetch(conn, "qa.samples", _SAMPLES, limit)]


async def get_sample(conn: Any, sample_id: int) -> QaSample | None:
    r = await fetchrow(conn, "qa.sample", _SAMPLE, sample_id)
    return QaSample(**dict(r)) if r is not None else None


async def sample_reviews(conn: Any, sample_id: int) -> list[QaReview]:
    return [_review(r) for r in await fetch(conn, "qa.sample_reviews", _SAMPLE_REVIEWS, sample_id)]


async def get_review(conn: Any, review_id: int) -> QaReview | None:
    r = await fetchrow(conn, "qa.review", _REVIEW, review_id)
    return _review(r) if r is not None else None


async def interaction_reviews(conn: Any, interaction_id: uuid.UUID) -> list[QaReview]:
    return [_review(r) for r in await fetch(conn, "qa.interaction_reviews", _INTERACTION_REVIEWS, interaction_id)]


async def score_review(conn: Any, review_id: int, form_id: str, form_version: int, scores: dict[str, int],
                       percent: float, comment: str | None, reviewer: str, now: dt.datetime) -> None:
    await execute(conn, "qa.score", _SCORE, review_id, form_id, form_version, scores, percent, comment, reviewer,
                  now)


# -- audit trail ------------------------------------------------------------------------------------------

_AUDIT = """
SELECT a.id, a.at, a.actor, a.actor_role, a.action, a.customer_id, c.customer_no, c.name AS customer_name,
       a.interaction_id, a.reason, a.request_id, a.details
FROM audit_log a LEFT JOIN customers c ON c.id = a.customer_id
WHERE ($1::timestamptz IS NULL OR a.at >= $1) AND ($2::timestamptz IS NULL OR a.at < $2)
  AND ($3::text IS NULL OR a.actor = $3) AND ($4::text IS NULL OR a.action = $4)
  AND ($5::bigint IS NULL OR a.customer_id = $5) AND ($6::uuid IS NULL OR a.interaction_id = $6)
  AND ($7::bigint IS NULL OR a.id < $7)
ORDER BY a.id DESC
LIMIT $8
"""
_AUDIT_ACTIONS = "SELECT DISTINCT action FROM audit_log ORDER BY 1"


async def audit_page(conn: Any, f: AuditFilter, before_id: int | None, limit: int) -> list[AuditRow]:
    rows = await fetch(conn, "console.audit", _AUDIT, f.since, f.until, f.actor, f.action, f.customer_id,
                       f.interaction_id, before_id, limit)
    return [AuditRow(r["id"], r["at"], r["actor"], r["actor_role"], r["action"], r["customer_id"], _masked_no(r["customer_no"]),
                     mask_name(r["customer_name"]) if r["customer_name"] else None, r["interaction_id"],
                     r["reason"], r["request_id"], r["details"]) for r in rows]


async def audit_actions(conn: Any) -> list[str]:
    return [r["action"] for r in await fetch(conn, "console.audit_actions", _AUDIT_ACTIONS)]
