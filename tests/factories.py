"""Building test data through the real stores' tables (no mocks): customers with identifiers, events."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import asyncpg

from gateway.identity import IdentityHasher, mask, normalize
from gateway.settings import Settings

_seq = itertools.count(1)
T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


async def insert_customer(pool: asyncpg.Pool, settings: Settings, customer_no: str, name: str = "张三",
                          identifiers: list[tuple[str, str]] = (), **profile: Any) -> int:
    """A customer row with identifiers digested exactly as the gateway does."""
    hasher = IdentityHasher(settings.identity_hmac_keys)
    values = {"customer_type": "personal", "segment": "mass", "tier": "standard", **profile}
    cols = ["customer_no", "name", *values]
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    async with pool.acquire() as conn, conn.transaction():
        cid = await conn.fetchval(f"INSERT INTO customers ({', '.join(cols)}) VALUES ({placeholders}) RETURNING id",
                                  customer_no, name, *values.values())
        for kind, value in [("customer_no", customer_no), *identifiers]:
            norm = normalize(kind, value)
            await conn.execute(
                "INSERT INTO customer_identifiers (customer_id, kind, digest, masked, key_version) "
                "VALUES ($1, $2, $3, $4, $5)", cid, kind, hasher.digest(kind, norm), mask(kind, norm),
                hasher.key_version)
    return cid


def event(type_: str = "call.ringing", *, source: str = "cti.test", sid: str | None = None,
          channel: str = "voice", at: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
    """A canonical event as a channel would post it."""
    body: dict[str, Any] = {
        "source": source,
        "source_event_id": sid or f"evt-{next(_seq)}",
        "channel": channel,
        "type": type_,
        "occurred_at": (at or T0).isoformat(),
    }
    body.update(fields)
    return body


CTI_KEY = {"X-API-Key": "dev-cti-key"}
READ_KEY = {"X-API-Key": "dev-desktop-key"}
