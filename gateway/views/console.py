"""The supervisor console (班组长): pages for supervisors and admins only.

- ``GET /console``: dashboards for any time range (``since``/``until``), SVG charts with their figures;
- ``GET /console/interactions``: the contact log — filters, free text, sorting, keyset pages;
- ``GET /console/interactions/export.csv``: the same filter as a streamed CSV (UTF-8 with BOM), audited;
- ``GET /console/interactions/{id}``: one interaction with all its events, links and QA reviews, audited;
- ``GET /console/qa``, ``POST /console/qa/samples``, ``GET /console/qa/samples/{id}``,
  ``GET``/``POST /console/qa/reviews/{id}``: quality review — draw a random sample, score, comment;
- ``GET /console/audit``: the audit trail, filterable (read-only: there is no route that changes it).

Times in the query string are ``YYYY-MM-DDTHH:MM`` in the console's time zone (what a
``datetime-local`` input sends) or RFC 3339 with an offset. A bad filter answers a 422 problem page
naming the field.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import uuid
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.console import charts
from gateway.console.model import IDENTIFICATIONS, KINDS, SORTS, AuditFilter, LogFilter, SortKey
from gateway.console.service import ConsoleService
from gateway.errors import ValidationFailed
from gateway.events.types import CHANNELS
from gateway.i18n import lang_of, translator
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route
from gateway.views.access import CONSOLE, Principal, require_user, users
from gateway.views.pages import render_page

MAX_RANGE = dt.timedelta(days=400)
MAX_TEXT = 100


def _service(request: web.Request) -> ConsoleService:
    return request.app[keys.CONSOLE]


async def _user(request: web.Request) -> Principal:
    return await require_user(request, roles=CONSOLE)


# -- parsing the query -----------------------------------------------------------------------------------

def parse_time(svc: ConsoleService, name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed.field(name, "a date and time, e.g. 2026-11-28T09:00") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=svc.tz)


def time_range(request: web.Request, svc: ConsoleService, default_days: int = 7) -> tuple[dt.datetime, dt.datetime]:
    """``since``/``until`` from the query; by default the last ``default_days`` whole local days."""
    q = request.query
    now = request.app[keys.CLOCK].now().astimezone(svc.tz)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    until = parse_time(svc, "until", q["until"]) if q.get("until") else tomorrow
    since = parse_time(svc, "since", q["since"]) if q.get("since") else until - dt.timedelta(days=default_days)
    if since >= until:
        raise ValidationFailed.field("since", "must be before until")
    if until - since > MAX_RANGE:
        raise ValidationFailed.field("since", f"a range of at most {MAX_RANGE.days} days")
    return since, until


def _one_of(request: web.Request, name: str, allowed: tuple[str, ...] | frozenset[str]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationFailed.field(name, f"one of {', '.join(sorted(allowed))}")
    return value


def _short(request: web.Request, name: str, limit: int = 64) -> str | None:
    value = (request.query.get(name) or "").strip()
    if len(value) > limit:
        raise ValidationFailed.field(name, f"at most {limit} characters")
    return value or None


async def parse_filter(request: web.Request, svc: ConsoleService) -> LogFilter:
    since, until = time_range(request, svc)
    channels = tuple(c for v in request.query.getall("channel", []) for c in v.split(",") if c)
    for c in channels:
        if c not in CHANNELS:
            raise ValidationFailed.field("channel", f"unknown channel {c!r}")
    customer_no = _short(request, "customer")
    customer_id = await svc.customer_id(customer_no) if customer_no else None
    return LogFilter(
        since, until, channels=channels, kind=_one_of(request, "kind", KINDS), queue=_short(request, "queue"),
        agent_id=_short(request, "agent"), customer_id=customer_id, outcome=_short(request, "outcome"),
        identification=_one_of(request, "identification", IDENTIFICATIONS), status=_short(request, "status"),
        text=_short(request, "q", MAX_TEXT), sort=_one_of(request, "sort", tuple(SORTS)) or "-started_at",
    )


def encode_key(sort: str, key: SortKey) -> str:
    value = key.value.isoformat() if isinstance(key.value, dt.datetime) else repr(float(key.value))
    return base64.urlsafe_b64encode(f"{sort}|{value}|{key.id}".encode()).decode().rstrip("=")


def decode_key(sort: str, text: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        got_sort, value, iid = raw.split("|")
        if got_sort != sort:
            raise ValueError("another sort")
        parsed: dt.datetime | float = dt.datetime.fromisoformat(value) if "started_at" in sort else float(value)
        return SortKey(parsed, uuid.UUID(iid))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.field("after", "not a position this page gave") from None


def _query_without(request: web.Request, *names: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query.items() if k not in names]


# -- pages --------------------------------------------------------------------------------------------------

async def dashboard(request: web.Request) -> web.Response:
    await _user(request)
    svc = _service(request)
    since, until = time_range(request, svc)
    d = await svc.dashboard(since, until)
    _ = translator(lang_of(request))
    buckets = sorted({b for b, _, _ in d.volume})
    channels = [c for c, _, _ in d.channel_totals]
    series = {c: [0] * len(buckets) for c in channels}
    index = {b: i for i, b in enumerate(buckets)}
    for b, c, n in d.volume:
        series[c][index[b]] = n
    fmt = "%m-%d %H:00" if d.bucket == "hour" else "%Y-%m-%d"
    labels = [b.strftime("%H:00" if d.bucket == "hour" and len({x.date() for x in buckets}) == 1 else fmt)
              for b in buckets]
    volume_chart = charts.stacked_bars(labels, series, title=_("dash.volume"))
    reasons_chart = charts.hbars(d.reasons, title=_("dash.reasons"))
    qa_agents_chart = charts.hbars([(a or "-", round(avg, 1)) for a, _, avg in d.qa_by_agent],
                                   title=_("dash.qa_by_agent"), unit="%")
    qa_time_chart = charts.line([(b.strftime("%m-%d"), avg) for b, _, avg in d.qa_over_time],
                                title=_("dash.qa_over_time"))
    return render_page("console/dashboard.html", request, {
        "d": d, "since": since, "until": until, "volume_chart": volume_chart, "reasons_chart": reasons_chart,
        "qa_agents_chart": qa_agents_chart, "qa_time_chart": qa_time_chart, "volume_rows": [
            (label, [series[c][i] for c in channels], sum(series[c][i] for c in channels))
            for i, label in enumerate(labels)],
        "channels": channels,
    })


async def contact_log(request: web.Request) -> web.Response:
    await _user(request)
    svc = _service(request)
    f = await parse_filter(request, svc)
    after = decode_key(f.sort, request.query["after"]) if request.query.get("after") else None
    page = await svc.contact_log(f, after)
    base = _query_without(request, "after")
    next_query = base + [("after", encode_key(f.sort, page.next_key))] if page.next_key else None
    return render_page("console/interactions.html", request, {
        "f": f, "page": page, "next_query": next_query, "base_query": base, "channels": sorted(CHANNELS),
        "kinds": KINDS, "identifications": IDENTIFICATIONS, "sorts": list(SORTS),
        "customer": request.query.get("customer", ""), "since": f.since, "until": f.until,
        "export_query": _query_without(request, "after"), "first_page": after is None,
    })


async def export_csv(request: web.Request) -> web.StreamResponse:
    user = await _user(request)
    svc = _service(request)
    f = await parse_filter(request, svc)
    stamp = request.app[keys.CLOCK].now().astimezone(svc.tz).strftime("%Y%m%d-%H%M")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="contact-log-{stamp}.csv"',
        "Cache-Control": "no-store",
    })
    chunks = svc.export_csv(f, actor=user.actor, actor_role=user.role, request_id=request_id_of(request),
                            chunk=svc.settings.export_chunk_rows)
    async with contextlib.aclosing(chunks):
        first = await anext(chunks)       # audited and the query started before any byte is sent
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


def _iid(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["interaction_id"])
    except ValueError:
        raise web.HTTPNotFound() from None


def _attributes(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in attributes.items()]


async def interaction_page(request: web.Request) -> web.Response:
    user = await _user(request)
    svc = _service(request)
    data = await svc.interaction(_iid(request), actor=user.actor, actor_role=user.role,
                                 request_id=request_id_of(request))
    return render_page("console/interaction.html", request, {**data, "attributes": _attributes,
                                                            "back": request.query.get("back", "")})


async def qa_home(request: web.Request) -> web.Response:
    await _user(request)
    svc = _service(request)
    since, until = time_range(request, svc, default_days=30)
    d = await svc.dashboard(since, until)
    return render_page("console/qa.html", request, {
        "samples": await svc.samples(), "since": since, "until": until, "channels": sorted(CHANNELS),
        "qa_by_agent": d.qa_by_agent, "max_size": svc.settings.qa_sample_max,
    })


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def qa_draw(request: web.Request) -> web.StreamResponse:
    user = await _user(request)
    svc = _service(request)
    form = await _form(request)
    try:
        size = int(form.get("size", ""))
    except ValueError:
        raise ValidationFailed.field("size", "a whole number") from None
    if not form.get("since") or not form.get("until"):
        raise ValidationFailed.field("since", "give the period to sample from")
    since, until = parse_time(svc, "since", form["since"]), parse_time(svc, "until", form["until"])
    if since >= until:
        raise ValidationFailed.field("since", "must be before until")
    channel = form.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        raise ValidationFailed.field("channel", f"unknown channel {channel!r}")
    sample_id, _drawn = await svc.draw_sample(
        since=since, until=until, agent_id=(form.get("agent") or "").strip() or None, channel=channel,
        queue=(form.get("queue") or "").strip() or None, size=size, actor=user.actor, actor_role=user.role,
        request_id=request_id_of(request))
    raise web.HTTPSeeOther(f"/console/qa/samples/{sample_id}")


def _int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None


async def qa_sample(request: web.Request) -> web.Response:
    await _user(request)
    sample, reviews = await _service(request).sample(_int_param(request, "sample_id"))
    return render_page("console/qa_sample.html", request, {"sample": sample, "reviews": reviews})


async def qa_review(request: web.Request) -> web.Response:
    user = await _user(request)
    svc = _service(request)
    review = await svc.review(_int_param(request, "review_id"))
    data = await svc.interaction(review.interaction_id, actor=user.actor, actor_role=user.role,
                                 request_id=request_id_of(request))
    return render_page("console/qa_review.html", request, {
        "review": review, "form": svc.form, **data, "attributes": _attributes})


async def qa_score(request: web.Request) -> web.StreamResponse:
    user = await _user(request)
    svc = _service(request)
    review_id = _int_param(request, "review_id")
    form = await _form(request)
    await svc.score(review_id, form, form.get("comment", ""), actor=user.actor, actor_role=user.role,
                    request_id=request_id_of(request))
    review = await svc.review(review_id)
    raise web.HTTPSeeOther(f"/console/qa/samples/{review.sample_id}")


async def audit_page(request: web.Request) -> web.Response:
    await _user(request)
    svc = _service(request)
    q = request.query
    since = parse_time(svc, "since", q["since"]) if q.get("since") else None
    until = parse_time(svc, "until", q["until"]) if q.get("until") else None
    customer_no = _short(request, "customer")
    interaction = None
    if q.get("interaction"):
        try:
            interaction = uuid.UUID(q["interaction"])
        except ValueError:
            raise ValidationFailed.field("interaction", "an interaction id") from None
    actor = _short(request, "actor", 100)
    if actor and ":" not in actor:
        actor = "user:" + actor
    f = AuditFilter(since, until, actor, _short(request, "action"),
                    await svc.customer_id(customer_no) if customer_no else None, interaction)
    before = None
    if q.get("before"):
        try:
            before = int(q["before"])
        except ValueError:
            raise ValidationFailed.field("before", "not a position this page gave") from None
    rows, next_before = await svc.audit_page(f, before)
    base = _query_without(request, "before")
    return render_page("console/audit.html", request, {
        "rows": rows, "actions": await svc.audit_actions(), "q": q,
        "next_query": base + [("before", str(next_before))] if next_before else None,
    })


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    console = users(*CONSOLE)
    add_route(app, api, "GET", "/console", dashboard, html=True, access=console)
    add_route(app, api, "GET", "/console/interactions", contact_log, html=True, access=console)
    add_route(app, api, "GET", "/console/interactions/export.csv", export_csv, html=True, access=console)
    add_route(app, api, "GET", "/console/interactions/{interaction_id}", interaction_page, html=True,
              access=console)
    add_route(app, api, "GET", "/console/qa", qa_home, html=True, access=console)
    add_route(app, api, "POST", "/console/qa/samples", qa_draw, html=True, access=console)
    add_route(app, api, "GET", "/console/qa/samples/{sample_id}", qa_sample, html=True, access=console)
    add_route(app, api, "GET", "/console/qa/reviews/{review_id}", qa_review, html=True, access=console)
    add_route(app, api, "POST", "/console/qa/reviews/{review_id}", qa_score, html=True, access=console)
    add_route(app, api, "GET", "/console/audit", audit_page, html=True, access=console)
