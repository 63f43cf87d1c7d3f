"""The customers store: every SQL statement of the customer read model, each with a name.

Writes replace whole documents: :func:`write_documents` upserts the profiles of a batch of prepared
documents in one statement, deletes their lists (and their ``core`` identifiers, keeping ``learned``
ones) and loads the new lists with COPY. The caller runs it inside one transaction, so a failure
leaves every old document intact. Reads return the frozen value objects of
:mod:`gateway.customers.model`; ``asyncpg.Record`` never leaves this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.customers.model import (
    Appointment,
    Candidate,
    Case,
    CreditApplication,
    CustomerProfile,
    CustomerView,
    Entitlement,
    Holding,
    MaskedIdentifier,
)
from gateway.db.pool import execute, fetch, fetchrow, fetchval, translate_errors
from gateway.identity import mask, mask_name

# Profile columns in the order of PreparedCustomer.profile, with their array types for unnest.
PROFILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("customer_no", "text"), ("name", "text"), ("customer_type", "text"), ("segment", "text"),
    ("tier", "text"), ("vip", "boolean"), ("home_branch", "text"), ("relationship_manager", "text"),
    ("service_group", "text"), ("preferred_language", "text"), ("preferred_channel", "text"),
    ("do_not_call", "boolean"), ("marketing_opt_out", "boolean"), ("risk_rating", "text"), ("aum_band", "text"),
)
IDENTIFIER_COLUMNS = ("customer_id", "kind", "digest", "masked", "key_version", "origin")
HOLDING_COLUMNS = ("customer_id", "product_type", "product_name", "masked_number", "balance", "balance_band",
                   "currency", "status", "opened_on")
ENTITLEMENT_COLUMNS = ("customer_id", "channel", "enabled", "daily_limit", "per_transaction_limit", "currency",
                       "restriction", "restriction_reason", "restricted_at")
CASE_COLUMNS = ("customer_id", "case_ref", "kind", "category", "status", "channel", "summary", "opened_at",
                "due_at", "closed_at", "sla_hours")
CREDIT_COLUMNS = ("customer_id", "application_ref", "product", "amount", "currency", "stage", "status",
                  "accepted_at", "investigation_at", "approval_at", "disbursement_at")
APPOINTMENT_COLUMNS = ("customer_id", "appointment_ref", "kind", "scheduled_at", "branch", "host", "purpose",
                       "status")

# The list tables a document replaces, with their COPY columns (a fixed allowlist of identifiers).
LIST_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("holdings", HOLDING_COLUMNS),
    ("entitlements", ENTITLEMENT_COLUMNS),
    ("cases", CASE_COLUMNS),
    ("credit_applications", CREDIT_COLUMNS),
    ("appointments", APPOINTMENT_COLUMNS),
)


def _upsert_sql() -> str:
    names = [c for c, _ in PROFILE_COLUMNS]
    arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(PROFILE_COLUMNS, start=1))
    now_param = f"${len(PROFILE_COLUMNS) + 1}"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
    return (
        f"INSERT INTO customers ({', '.join(names)}, updated_at) "
        f"SELECT u.*, {now_param}::timestamptz FROM unnest({arrays}) AS u "
        f"ON CONFLICT (customer_no) DO UPDATE SET {updates}, updated_at = EXCLUDED.updated_at "
        "RETURNING id, customer_no, (xmax = 0) AS inserted"
    )


_UPSERT_PROFILES = _upsert_sql()
_INSERT_NEW_PROFILES = _UPSERT_PROFILES.split(" ON CONFLICT")[0] + (
    " ON CONFLICT (customer_no) DO NOTHING RETURNING id, customer_no, true AS inserted"
)
# Deletes join an unnest of the ids rather than testing ``customer_id = ANY($1)``: with a prepared
# statement's generic plan, ANY over a parameter array of hundreds of ids is a sequential scan
# comparing every row with every id (quadratic in a bulk import); the join is an index scan.
_DELETE_CORE_IDENTIFIERS = """
DELETE FROM customer_identifiers ci USING unnest($1::bigint[]) AS u(customer_id)
WHERE ci.customer_id = u.customer_id AND (ci.origin = 'core' OR ci.digest = ANY($2::bytea[]))
"""
# Fixed statements per list table (names from LIST_TABLES, never from input).
_DELETE_LIST = {
    table: f"DELETE FROM {table} t USING unnest($1::bigint[]) AS u(customer_id) WHERE t.customer_id = u.customer_id"
    for table, _ in LIST_TABLES
}


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedCustomer:
    """A validated document ready to store: identifiers hashed and masked, numbers masked.

    ``profile`` follows :data:`PROFILE_COLUMNS`; each list holds rows in its table's COPY column
    order without the leading ``customer_id``; ``identifiers`` are ``(kind, digest, masked)``.
    """

    customer_no: str
    profile: tuple[Any, ...]
    identifiers: tuple[tuple[str, bytes, str], ...]
    holdings: tuple[tuple[Any, ...], ...] = ()
    entitlements: tuple[tuple[Any, ...], ...] = ()
    cases: tuple[tuple[Any, ...], ...] = ()
    credit_applications: tuple[tuple[Any, ...], ...] = ()
    appointments: tuple[tuple[Any, ...], ...] = ()

    def lists(self) -> tuple[tuple[tuple[Any, ...], ...], ...]:
        return (self.holdings, self.entitlements, self.cases, self.credit_applications, self.appointments)


async def _copy(conn: asyncpg.Connection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]) -> None:
    if records:
        with translate_errors():
            await conn.copy_records_to_table(table, records=records, columns=list(columns))


@dataclasses.dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_documents` stored: customer_no -> id, and which of them are new."""

    ids: dict[str, int]
    inserted: frozenset[str]


async def upsert_profiles(
    conn: asyncpg.Connection, docs: Sequence[PreparedCustomer], now: dt.datetime, *, only_new: bool = False
) -> Written:
    """Insert or update the profiles of ``docs`` (distinct customer numbers).

    With ``only_new`` existing customers are left alone and missing from the result (the seeder).
    """
    columns = list(zip(*(d.profile for d in docs), strict=True))
    sql = _INSERT_NEW_PROFILES if only_new else _UPSERT_PROFILES
    rows = await fetch(conn, "customers.upsert_profiles", sql, *(list(c) for c in columns), now)
    return Written({r["customer_no"]: r["id"] for r in rows},
                   frozenset(r["customer_no"] for r in rows if r["inserted"]))


async def replace_identifiers(
    conn: asyncpg.Connection, owned: Sequence[tuple[int, PreparedCustomer]], key_version: int, *, new: bool = False
) -> None:
    """Replace the ``core`` identifiers of these customers; ``learned`` ones stay unless re-stated.

    ``new``: the customers were created in this transaction, so there is nothing to delete.
    """
    ids = [cid for cid, _ in owned]
    digests = [digest for _, d in owned for _, digest, _ in d.identifiers]
    if not new:
        await execute(conn, "customers.delete_core_identifiers", _DELETE_CORE_IDENTIFIERS, ids, digests)
    await _copy(conn, "customer_identifiers", IDENTIFIER_COLUMNS, [
        (cid, kind, digest, masked, key_version, "core")
        for cid, d in owned for kind, digest, masked in d.identifiers
    ])


async def write_documents(
    conn: asyncpg.Connection, docs: Sequence[PreparedCustomer], key_version: int, now: dt.datetime,
    *, only_new: bool = False,
) -> Written:
    """Store complete documents (distinct customer numbers) in the caller's transaction.

    Profiles are upserted; identifiers and lists replaced (customers created by this call have
    nothing to replace, so a first load skips the deletes).
    """
    if not docs:
        return Written({}, frozenset())
    written = await upsert_profiles(conn, docs, now, only_new=only_new)
    ids = written.ids
    owned = [(ids[d.customer_no], d) for d in docs if d.customer_no in ids]
    if not owned:
        return written
    existing = [(cid, d) for cid, d in owned if d.customer_no not in written.inserted]
    created = [(cid, d) for cid, d in owned if d.customer_no in written.inserted]
    if existing:
        await replace_identifiers(conn, existing, key_version)
        id_list = [cid for cid, _ in existing]
        for table, _ in LIST_TABLES:
            await execute(conn, f"customers.delete_{table}", _DELETE_LIST[table], id_list)
    if created:
        await replace_identifiers(conn, created, key_version, new=True)
    for n, (table, columns) in enumerate(LIST_TABLES):
        await _copy(conn, table, columns, [(cid, *row) for cid, d in owned for row in d.lists()[n]])
    return written


# --- reads ---------------------------------------------------------------------------------------

_PROFILE_SELECT = """
SELECT id, customer_no, name, customer_type, segment, tier, vip, home_branch, relationship_manager,
       service_group, preferred_language, preferred_channel, do_not_call, marketing_opt_out, risk_rating,
       aum_band, updated_at
FROM customers
"""
_PROFILE_BY_NO = _PROFILE_SELECT + " WHERE customer_no = $1"
_PROFILE_BY_ID = _PROFILE_SELECT + " WHERE id = $1"
_IDENTIFIERS = """
SELECT kind, masked, origin FROM customer_identifiers WHERE customer_id = $1 ORDER BY kind, masked, origin
"""
_HOLDINGS = """
SELECT product_type, product_name, masked_number, balance, balance_band, currency, status, opened_on
FROM holdings WHERE customer_id = $1 ORDER BY id
"""
_ENTITLEMENTS = """
SELECT channel, enabled, daily_limit, per_transaction_limit, currency, restriction, restriction_reason, restricted_at
FROM entitlements WHERE customer_id = $1 ORDER BY id
"""
_CASES = """
SELECT case_ref, kind, category, status, channel, summary, opened_at, due_at, closed_at, sla_hours
FROM cases WHERE customer_id = $1 ORDER BY opened_at DESC, id
"""
_CREDIT = """
SELECT application_ref, product, amount, currency, stage, status, accepted_at, investigation_at, approval_at,
       disbursement_at
FROM credit_applications WHERE customer_id = $1 ORDER BY accepted_at DESC, id
"""
_APPOINTMENTS = """
SELECT appointment_ref, kind, scheduled_at, status, branch, host, purpose
FROM appointments WHERE customer_id = $1 ORDER BY scheduled_at DESC, id
"""


async def _load(conn: asyncpg.Connection, profile_row: asyncpg.Record | None) -> CustomerView | None:
    if profile_row is None:
        return None
    profile = CustomerProfile(**dict(profile_row))
    cid = profile.id
    idents = await fetch(conn, "customers.identifiers", _IDENTIFIERS, cid)
    holdings = await fetch(conn, "customers.holdings", _HOLDINGS, cid)
    entitlements = await fetch(conn, "customers.entitlements", _ENTITLEMENTS, cid)
    cases = await fetch(conn, "customers.cases", _CASES, cid)
    credit = await fetch(conn, "customers.credit_applications", _CREDIT, cid)
    appointments = await fetch(conn, "customers.appointments", _APPOINTMENTS, cid)
    return CustomerView(
        profile=profile,
        identifiers=tuple(MaskedIdentifier(**dict(r)) for r in idents),
        holdings=tuple(Holding(**dict(r)) for r in holdings),
        entitlements=tuple(Entitlement(**dict(r)) for r in entitlements),
        cases=tuple(Case(**dict(r)) for r in cases),
        credit_applications=tuple(CreditApplication(**dict(r)) for r in credit),
        appointments=tuple(Appointment(**dict(r)) for r in appointments),
    )


async def load_customer(pool: asyncpg.Pool, customer_id: int) -> CustomerView | None:
    """A customer's full document by id, read in one consistent snapshot; None when there is none."""
    with translate_errors():
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await fetchrow(conn, "customers.profile_by_id", _PROFILE_BY_ID, customer_id)
            return await _load(conn, row)


async def load_customer_by_no(pool: asyncpg.Pool, customer_no: str) -> CustomerView | None:
    """A customer's full document by customer number; None when there is none."""
    with translate_errors():
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await fetchrow(conn, "customers.profile_by_no", _PROFILE_BY_NO, customer_no)
            return await _load(conn, row)


_RESOLVE = """
SELECT ci.customer_id, ci.kind, ci.masked, ci.origin, c.customer_no, c.name, c.customer_type, c.segment,
       c.tier, c.vip
FROM customer_identifiers ci JOIN customers c ON c.id = ci.customer_id
WHERE ci.digest = ANY($1::bytea[])
ORDER BY ci.customer_id
"""


async def find_candidates(conn: Any, digests: Sequence[bytes]) -> list[Candidate]:
    """Every customer owning one of these digests (one identifier under each configured key)."""
    rows = await fetch(conn, "customers.resolve", _RESOLVE, list(digests))
    by_customer: dict[int, list[asyncpg.Record]] = {}
    for r in rows:
        by_customer.setdefault(r["customer_id"], []).append(r)
    out = []
    for cid, matched in by_customer.items():
        first = matched[0]
        out.append(Candidate(
            customer_id=cid,
            customer_no_masked=mask("customer_no", first["customer_no"]),
            name_masked=mask_name(first["name"]),
            customer_type=first["customer_type"],
            segment=first["segment"],
            tier=first["tier"],
            vip=first["vip"],
            matched=tuple(MaskedIdentifier(r["kind"], r["masked"], r["origin"]) for r in matched),
        ))
    return out


_COUNT_CUSTOMERS = "SELECT count(*) FROM customers"
_ANY_CUSTOMER = "SELECT EXISTS (SELECT 1 FROM customers)"


async def has_customers(pool: asyncpg.Pool) -> bool:
    with translate_errors():
        async with pool.acquire() as conn:
            return bool(await fetchval(conn, "customers.any", _ANY_CUSTOMER))


async def count_customers(pool: asyncpg.Pool) -> int:
    with translate_errors():
        async with pool.acquire() as conn:
            return int(await fetchval(conn, "customers.count", _COUNT_CUSTOMERS))


_IDS_BY_NO = """
SELECT c.customer_no, c.id FROM customers c JOIN unnest($1::text[]) AS u(customer_no) ON c.customer_no = u.customer_no
"""


async def ids_by_customer_no(conn: asyncpg.Connection, numbers: Sequence[str]) -> dict[str, int]:
    rows = await fetch(conn, "customers.ids_by_no", _IDS_BY_NO, list(numbers))
    return {r["customer_no"]: r["id"] for r in rows}


_KEY_VERSIONS = """
SELECT key_version, origin, count(*) AS n FROM customer_identifiers GROUP BY key_version, origin
ORDER BY key_version, origin
"""
_PRUNE_STALE = "DELETE FROM customer_identifiers WHERE NOT (key_version = ANY($1::smallint[]))"


async def key_version_counts(pool: asyncpg.Pool) -> list[tuple[int, str, int]]:
    """(key_version, origin, count) of the stored identifiers: what a rotation still has to re-digest."""
    with translate_errors():
        async with pool.acquire() as conn:
            rows = await fetch(conn, "customers.key_versions", _KEY_VERSIONS)
    return [(r["key_version"], r["origin"], r["n"]) for r in rows]


async def prune_stale(pool: asyncpg.Pool, keep_versions: Sequence[int]) -> int:
    """Delete identifiers digested under keys other than ``keep_versions``; return how many."""
    with translate_errors():
        async with pool.acquire() as conn:
            status = await execute(conn, "customers.prune_stale", _PRUNE_STALE, list(keep_versions))
    return int(status.split()[-1])
