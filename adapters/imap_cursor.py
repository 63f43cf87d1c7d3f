"""The IMAP poller's cursor store: per account and mailbox, UIDVALIDITY and the last committed UID."""

from __future__ import annotations

import dataclasses

import asyncpg

from gateway.db.pool import execute, fetchrow

_GET = """
SELECT uidvalidity, last_uid FROM imap_cursor WHERE account = $1 AND mailbox = $2
"""

# A cursor only moves forward within one UIDVALIDITY; a new UIDVALIDITY replaces it.
_SAVE = """
INSERT INTO imap_cursor (account, mailbox, uidvalidity, last_uid)
VALUES ($1, $2, $3, $4)
ON CONFLICT (account, mailbox) DO UPDATE SET
    last_uid = CASE WHEN imap_cursor.uidvalidity = EXCLUDED.uidvalidity
                    THEN GREATEST(imap_cursor.last_uid, EXCLUDED.last_uid)
                    ELSE EXCLUDED.last_uid END,
    uidvalidity = EXCLUDED.uidvalidity,
    updated_at = now()
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    uidvalidity: int
    last_uid: int


class ImapCursorStore:
    """Reads and advances cursors; the poller saves one only after the batch's mail is committed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, account: str, mailbox: str) -> Cursor | None:
        async with self._pool.acquire() as conn:
            row = await fetchrow(conn, "imap_cursor.get", _GET, account, mailbox)
        return Cursor(row["uidvalidity"], row["last_uid"]) if row else None

    async def save(self, account: str, mailbox: str, cursor: Cursor) -> None:
        async with self._pool.acquire() as conn:
            await execute(conn, "imap_cursor.save", _SAVE, account, mailbox, cursor.uidvalidity, cursor.last_uid)
