"""The audit trail: who saw or did what to which customer, and why. Append-only in PostgreSQL.

Actions in use: ``customer.view``, ``screenpop``, ``link``, ``unlink``, ``export``, ``login``,
``login.failed``, ``logout``, ``user.*``. Every call names its actor (``user:<name>`` or
``source:<name>``) and, where there is one, the customer, the interaction and the reason.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from gateway.db.pool import execute

_INSERT = """
INSERT INTO audit_log (actor, actor_role, action, customer_id, interaction_id, reason, request_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    actor: str,
    action: str,
    actor_role: str | None = None,
    customer_id: int | None = None,
    interaction_id: uuid.UUID | None = None,
    reason: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await execute(conn, "audit.record", _INSERT, actor, actor_role, action, customer_id, interaction_id, reason,
                  request_id, details or {})
