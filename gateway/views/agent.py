"""The agent desktop (``/agent``): server-rendered pages and fragments, a little JavaScript (``static/agent.js``).

- ``GET /agent`` — the desktop: live pop panel (the WebSocket ``/v1/agents/{agent_id}/stream``), search,
  and, with ``?interaction_id=…`` or an identifier (``?phone=…``), that pop opened (the pop-URL target
  for CTI systems that open URLs).
- ``GET /agent/pop`` — the pop panel of an interaction or an identifier (fragment).
- ``GET /agent/search`` — customers matching one identifier (masked candidates; fragment).
- ``GET /agent/customers/{customer_id}`` — the customer panel: summary, timeline, link, wrap-up. Outside an
  active interaction of this agent it first asks for a reason code; the audit keeps it.
- ``GET /agent/customers/{customer_id}/timeline`` — the cross-channel history with filters (fragment).
- ``POST /agent/interactions/{id}/wrapup`` — disposition and note → a ``contact.wrapup`` event on the
  interaction through the real ingest.
- ``POST /agent/interactions/{id}/link`` / ``…/unlink`` — the same link service as the API.

Every customer shown is audited (``customer.view``, or ``screenpop`` for a pop), with the interaction or the
reason code. Fragments are HTML; forms post with the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import aiohttp_jinja2
import msgspec
from aiohttp import web

from gateway import audit, keys
from gateway.errors import NotFound, ValidationFailed
from gateway.events import links
from gateway.events import store as events_store
from gateway.events.model import ContactEvent
from gateway.i18n import translator
from gateway.identity import KINDS
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route
from gateway.screenpop import store as sp_store
from gateway.screenpop.labels import DISPOSITIONS, label
from gateway.screenpop.model import Pop
from gateway.screenpop.words import MESSAGES, REASON_CODES
from gateway.views.access import Principal, require_user, users
from gateway.views.pages import page_context

ROLES = ("agent", "supervisor")
DESKTOP_SOURCE = "agent-desktop"
ACTIVE_WINDOW = dt.timedelta(hours=2)
TIMELINE_PAGE = 20
SEARCH_KINDS = ("phone", "customer_no", "national_id", "card_no", "account_no", "email", "online_user_id")


class PopFrame(msgspec.Struct):
    type: str
    pop: Pop


def _context(request: web.Request, extra: dict[str, Any]) -> dict[str, Any]:
    ctx = page_context(request)
    lang = ctx["lang"]
    ctx.update({"_": translator(lang, MESSAGES), "label": lambda code: label(code, lang), "reason_codes": REASON_CODES,
                "dispositions": DISPOSITIONS, "search_kinds": SEARCH_KINDS, "when": _when, "money": _money})
    ctx.update(extra)
    return ctx


CN = dt.timezone(dt.timedelta(hours=8))


def _when(value: dt.datetime | None) -> str:
    """A time as the bank's staff read it: local (UTC+8), month-day hour:minute."""
    return value.astimezone(CN).strftime("%m-%d %H:%M") if value else ""


def _money(value: decimal.Decimal | None) -> str:
    return f"{value:,.2f}" if value is not None else "—"


def _fragment(request: web.Request, template: str, extra: dict[str, Any], status: int = 200) -> web.Response:
    resp = aiohttp_jinja2.render_template(template, request, _context(request, extra), status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _iid(text: str | None) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text.removeprefix("cg:"))
    except ValueError:
        return None


async def _pop_from_query(request: web.Request, principal: Principal) -> Pop | None:
    service = request.app[keys.SCREENPOP]
    q = request.query
    if q.get("interaction_id"):
        pop = await service.pop_for_interaction(q["interaction_id"], principal.agent_id)
        if pop is None:
            raise NotFound("no such interaction")
        return pop
    for kind in KINDS:
        if q.get(kind):
            return await service.pop_for_identifier(kind, q[kind])
    return None


async def desktop(request: web.Request) -> web.Response:
    principal = await require_user(request, ROLES)
    service = request.app[keys.SCREENPOP]
    pop = await _pop_from_query(request, principal)
    if pop is None and principal.agent_id:
        frame = await service.current_frame(principal.agent_id)
        if frame:
            pop = msgspec.json.decode(frame, type=PopFrame).pop
    if pop is not None:
        await service.audit_pop(pop, actor=principal.actor, role=principal.role, request_id=request_id_of(request))
    return _fragment(request, "agent/desktop.html", {"pop": pop, "agent_id": principal.agent_id})


async def pop_panel(request: web.Request) -> web.Response:
    principal = await require_user(request, ROLES)
    pop = await _pop_from_query(request, principal)
    if pop is None:
        raise ValidationFailed.field("query", "give interaction_id or one identifier")
    await request.app[keys.SCREENPOP].audit_pop(pop, actor=principal.actor, role=principal.role,
                                                request_id=request_id_of(request))
    return _fragment(request, "agent/_pop.html", {"pop": pop})


async def search(request: web.Request) -> web.Response:
    await require_user(request, ROLES)
    kind = request.query.get("kind", "phone")
    value = request.query.get("value", "").strip()
    if kind not in SEARCH_KINDS:
        raise ValidationFailed.field("kind", "unknown identifier kind")
    if not value:
        raise ValidationFailed.field("value", "required")
    res = await request.app[keys.CUSTOMERS].resolve(kind, value)
    return _fragment(request, "agent/_search.html", {"resolution": res,
                                                      "interaction_id": request.query.get("interaction_id", "")})


async def _active(request: web.Request, principal: Principal, customer_id: int,
                  interaction_id: uuid.UUID | None) -> bool:
    """Is this an active interaction of this agent, with this customer or not yet linked to anyone?"""
    if interaction_id is None:
        return False
    brief = await sp_store.interaction(request.app[keys.DB], interaction_id)
    if brief is None:
        return False
    mine = principal.role == "supervisor" or (principal.agent_id is not None and brief.agent_id == principal.agent_id)
    recent = brief.last_event_at >= request.app[keys.CLOCK].now() - ACTIVE_WINDOW
    customer_ok = brief.customer_id in (None, customer_id) or customer_id in brief.candidates
    return mine and recent and customer_ok


def _customer_id(request: web.Request) -> int:
    try:
        return int(request.match_info["customer_id"])
    except ValueError:
        raise NotFound("no such customer") from None


async def _authorise_view(request: web.Request, principal: Principal, customer_id: int, part: str
                          ) -> tuple[uuid.UUID | None, str | None] | web.Response:
    """The interaction or reason this view is made under (audited), or the reason form to answer first."""
    iid = _iid(request.query.get("interaction_id"))
    active = await _active(request, principal, customer_id, iid)
    reason = request.query.get("reason")
    if not active:
        iid = None
        if reason not in REASON_CODES:
            return _fragment(request, "agent/_reason.html", {"customer_id": customer_id, "part": part})
    else:
        reason = None
    await audit.record(request.app[keys.DB], actor=principal.actor, actor_role=principal.role,
                       action="customer.view", customer_id=customer_id, interaction_id=iid, reason=reason,
                       request_id=request_id_of(request), details={"part": part})
    return iid, reason


async def customer_panel(request: web.Request) -> web.Response:
    principal = await require_user(request, ROLES)
    customer_id = _customer_id(request)
    decided = await _authorise_view(request, principal, customer_id, "summary")
    if isinstance(decided, web.Response):
        return decided
    iid, reason = decided
    summary = await request.app[keys.SCREENPOP].summary(customer_id, str(iid) if iid else None)
    if summary is None:
        raise NotFound("no such customer")
    linked = False
    if iid is not None:
        brief = await sp_store.interaction(request.app[keys.DB], iid)
        linked = brief is not None and brief.customer_id == customer_id
    timeline = await _timeline(request, customer_id, None, None, None)
    return _fragment(request, "agent/_customer.html", {
        "s": summary, "interaction_id": str(iid) if iid else "", "reason": reason or "", "linked": linked,
        "wrapup_id": uuid.uuid4().hex, **timeline})


async def _timeline(request: web.Request, customer_id: int, channels: list[str] | None, days: int | None,
                    before: tuple[dt.datetime, uuid.UUID] | None) -> dict[str, Any]:
    since = request.app[keys.CLOCK].now() - dt.timedelta(days=days) if days else None
    pool = request.app[keys.DB]
    async with pool.acquire() as conn:
        rows = await events_store.list_customer_interactions(conn, customer_id, before=before, channels=channels,
                                                             since=since, until=None, limit=TIMELINE_PAGE + 1)
        page = rows[:TIMELINE_PAGE]
        events = {i.id: await events_store.list_interaction_events(conn, i, 50) for i in page}
    more = None
    if len(rows) > TIMELINE_PAGE:
        last = page[-1]
        more = f"{last.started_at.isoformat()}|{last.id}"
    return {"interactions": page, "events": events, "more": more, "customer_id": customer_id,
            "channels": channels or [], "days": days}


async def timeline(request: web.Request) -> web.Response:
    principal = await require_user(request, ROLES)
    customer_id = _customer_id(request)
    decided = await _authorise_view(request, principal, customer_id, "timeline")
    if isinstance(decided, web.Response):
        return decided
    iid, reason = decided
    from gateway.events.types import CHANNELS

    channels = [c for c in request.query.getall("channel", []) if c in CHANNELS] or None
    days_text = request.query.get("days", "")
    days = int(days_text) if days_text.isdigit() and 0 < int(days_text) <= 3650 else None
    before = None
    if request.query.get("before"):
        try:
            ts, _, ident = request.query["before"].partition("|")
            before = (dt.datetime.fromisoformat(ts), uuid.UUID(ident))
        except ValueError:
            raise ValidationFailed.field("before", "not a cursor this page gave") from None
    ctx = await _timeline(request, customer_id, channels, days, before)
    return _fragment(request, "agent/_timeline.html", {**ctx, "interaction_id": str(iid) if iid else "",
                                                        "reason": reason or "", "append": before is not None})


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def wrapup(request: web.Request) -> web.Response:
    principal = await require_user(request, ROLES)
    iid = _iid(request.match_info["interaction_id"])
    form = await _form(request)
    disposition, note = form.get("disposition", ""), form.get("note", "").strip()
    wrapup_id = form.get("wrapup_id", "")
    if disposition not in DISPOSITIONS:
        raise ValidationFailed.field("disposition", "choose a disposition")
    if len(note) > 500:
        raise ValidationFailed.field("note", "at most 500 characters")
    if not wrapup_id.isalnum() or len(wrapup_id) > 64:
        raise ValidationFailed.field("wrapup_id", "missing; reload the page")
    brief = await sp_store.interaction(request.app[keys.DB], iid) if iid else None
    if brief is None or iid is None:
        raise NotFound("no such interaction")
    event = ContactEvent(
        source=DESKTOP_SOURCE, source_event_id=f"wrapup/{wrapup_id}", channel=brief.channel,  # type: ignore[arg-type]
        type="contact.wrapup", occurred_at=request.app[keys.CLOCK].now(), interaction_id=f"cg:{iid}",
        agent_id=principal.agent_id, outcome=disposition, subject=note or None,
        attributes={"by": principal.name})
    (result,) = await request.app[keys.INGEST].submit([event])
    if result.status == "rejected":
        raise ValidationFailed.field(result.field or "note", result.message or "rejected")
    if principal.agent_id:
        await request.app[keys.SCREENPOP].clear_current(principal.agent_id, str(iid))
    return _fragment(request, "agent/_wrapped.html", {"disposition": disposition})


async def _link(request: web.Request, customer_id: int | None) -> web.Response:
    principal = await require_user(request, ROLES)
    iid = _iid(request.match_info["interaction_id"])
    if iid is None:
        raise NotFound("no such interaction")
    form = await _form(request)
    reason = form.get("reason", "").strip() or MESSAGES["link.reason_default"][1]
    if len(reason) > 200:
        raise ValidationFailed.field("reason", "at most 200 characters")
    if customer_id is None and form.get("customer_id"):
        raise ValidationFailed.field("customer_id", "not expected when unlinking")
    await links.set_link(request.app[keys.DB], iid, actor=principal.actor, role=principal.role, reason=reason,
                         customer_id=customer_id, request_id=request_id_of(request))
    pop = await request.app[keys.SCREENPOP].pop_for_interaction(str(iid), principal.agent_id)
    assert pop is not None
    return _fragment(request, "agent/_pop.html", {"pop": pop})


async def link(request: web.Request) -> web.Response:
    form = await _form(request)
    try:
        customer_id = int(form.get("customer_id", ""))
    except ValueError:
        raise ValidationFailed.field("customer_id", "required") from None
    return await _link(request, customer_id)


async def unlink(request: web.Request) -> web.Response:
    return await _link(request, None)


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    access = users(*ROLES)
    add_route(app, api, "GET", "/agent", desktop, html=True, access=access)
    add_route(app, api, "GET", "/agent/pop", pop_panel, html=True, access=access)
    add_route(app, api, "GET", "/agent/search", search, html=True, access=access)
    add_route(app, api, "GET", "/agent/customers/{customer_id}", customer_panel, html=True, access=access)
    add_route(app, api, "GET", "/agent/customers/{customer_id}/timeline", timeline, html=True, access=access)
    add_route(app, api, "POST", "/agent/interactions/{interaction_id}/wrapup", wrapup, html=True, access=access)
    add_route(app, api, "POST", "/agent/interactions/{interaction_id}/link", link, html=True, access=access)
    add_route(app, api, "POST", "/agent/interactions/{interaction_id}/unlink", unlink, html=True, access=access)

