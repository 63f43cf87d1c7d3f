"""Manual linking of an interaction to a customer (or unlinking it): one rule for every caller.

``POST /v1/interactions/{id}/link`` and ``…/unlink``, the agent desktop's link and unlink, and the
choice among the candidates of an ambiguous screen-pop all go through :func:`set_link`: in one
transaction it sets the link (strength 9, manual: ingest never overrides it), appends the link
history and writes the audit record naming the actor and the reason.
"""

from __future__ import annotations

import dataclasses
import uuid

import asyncpg

from gateway import audit
from gateway.db.pool import fetchval, translate_errors
from gateway.errors import NotFound, ValidationFailed
from gateway.events import store

_CUSTOMER_ID = "SELECT id FROM customers WHERE customer_no = $1"
_CUSTOMER_EXISTS = "SELECT id FROM customers WHERE id = $1"


@dataclasses.dataclass(frozen=True, slots=True)
class LinkChange:
    """The interaction before and after a manual link or unlink."""

    before: store.InteractionRow
    after: store.InteractionRow


async def set_link(pool: asyncpg.Pool, interaction_id: uuid.UUID, *, actor: str, role: str, reason: str,
                   customer_no: str | None = None, customer_id: int | None = None,
                   request_id: str | None = None) -> LinkChange:
    """Link to the customer given by number or id (neither: unlink); raise NotFound / ValidationFailed."""
    with translate_errors():
        async with pool.acquire() as conn, conn.transaction():
            if customer_no is not None:
                customer_id = await fetchval(conn, "customers.id_by_no", _CUSTOMER_ID, customer_no)
                if customer_id is None:
                    raise ValidationFailed.field("customer_no", "no such customer")
            elif customer_id is not None and await fetchval(conn, "customers.exists", _CUSTOMER_EXISTS,
                                                              customer_id) is None:
                raise ValidationFailed.field("customer_id", "no such customer")
            before = await store.get_interaction(conn, interaction_id)
            if before is None:
                raise NotFound("no such interaction")
            await store.set_link(conn, interaction_id, customer_id, actor)
            action = "link" if customer_id is not None else "unlink"
            await store.add_link_history(conn, [interaction_id], action, customer_id, actor, reason)
            await audit.record(conn, actor=actor, actor_role=role, action=action,
                               customer_id=customer_id if customer_id is not None else before.customer_id,
                               interaction_id=interaction_id, reason=reason, request_id=request_id)
            after = await store.get_interaction(conn, interaction_id)
    assert after is not None
    return LinkChange(before, after)
