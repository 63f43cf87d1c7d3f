"""The customer read model's schema (migration 0002)."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.identity import IdentityHasher, mask, normalize
from gateway.settings import Secret

CUSTOMER_OWNED = ("customer_identifiers", "holdings", "entitlements", "cases", "credit_applications", "appointments")


async def test_every_customer_owned_table_carries_customer_id(db):
    for table in CUSTOMER_OWNED:
        col = await db.fetchrow(
            "SELECT is_nullable FROM information_schema.columns WHERE table_name = $1 AND column_name = 'customer_id'",
            table,
        )
        assert col is not None and col["is_nullable"] == "NO", table


async def test_identifier_lookup_as_the_ingest_runs_it_and_cascade(db):
    hasher = IdentityHasher((Secret("k"),))
    phone = normalize("phone", "13812345678")
    digest = hasher.digest("phone", phone)
    cid = await db.fetchval("INSERT INTO customers (customer_no, name, customer_type, segment, tier) "
                            "VALUES ('C1', '张三', 'personal', 'mass', 'standard') RETURNING id")
    await db.execute("INSERT INTO customer_identifiers (customer_id, kind, digest, masked, key_version) "
                     "VALUES ($1, 'phone', $2, $3, $4)", cid, digest, mask("phone", phone), hasher.key_version)
    rows = await db.fetch("SELECT digest, customer_id FROM customer_identifiers WHERE digest = ANY($1::bytea[])",
                          hasher.all_digests("phone", phone))
    assert [(r["digest"], r["customer_id"]) for r in rows] == [(digest, cid)]
    origin = await db.fetchval("SELECT origin FROM customer_identifiers")
    assert origin == "core"
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await db.execute("INSERT INTO customer_identifiers (customer_id, kind, digest, masked) "
                         "VALUES ($1, 'phone', $2, 'x')", cid, digest)
    await db.execute("DELETE FROM customers WHERE id = $1", cid)
    assert await db.fetchval("SELECT count(*) FROM customer_identifiers") == 0
