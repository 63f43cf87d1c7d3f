"""The agent desktop over HTTP with a logged-in agent: the page, pops, search, the reason code for views
outside an active interaction (audited), the timeline with filters, wrap-up through the real ingest,
link and unlink, languages, and who may watch which stream."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.app import create_app
from tests.people import add_user, csrf_of, login, people_settings
from tests.test_screenpop import PHONE, doc, ev, ingest, put_customer, ringing

HTML = {"Accept": "text/html"}


@pytest.fixture
async def desk(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Any) -> Any:
    client = await aiohttp_client(create_app(people_settings(database_url, redis_url, tmp_path)))
    app = client.server.app
    await add_user(app, "agent1", "agent", agent_id="8001", display_name="王小明")
    await add_user(app, "agent2", "agent", agent_id="8002")
    resp = await login(client, "agent1")
    assert resp.status == 303, await resp.text()
    return client


async def text(resp: Any, status: int = 200) -> str:
    body = await resp.text()
    assert resp.status == status, body
    return body


async def _current(app: Any, agent: str) -> None:
    while await app[keys.SCREENPOP].current_frame(agent) is None:
        await asyncio.sleep(0.01)


async def test_desktop_page_shows_the_current_pop_and_the_pop_panel_is_audited(desk, db):
    app = desk.server.app
    await put_customer(desk, "C0000000001", doc())
    results = await ingest(app, *ringing("D-1"))
    await asyncio.wait_for(_current(app, "8001"), 10)
    page = await text(await desk.get("/agent", headers=HTML))
    assert "坐席工作台" in page and 'data-agent="8001"' in page and "agent.js" in page
    assert "张**" in page and "贵宾客户" in page and "投诉已超时限" in page  # the pop, alerts first
    assert "139****5678" in page and "13912345678" not in page          # masked only
    panel = await text(await desk.get(f"/agent/pop?interaction_id={results[1].interaction_id}", headers=HTML))
    assert 'data-rule="vip"' in panel and 'data-rule="complaint_past_sla"' in panel
    rows = await db.fetch("SELECT actor, interaction_id FROM audit_log WHERE action = 'screenpop' AND actor = "
                          "'user:agent1'")
    assert len(rows) == 2 and all(str(r["interaction_id"]) == results[1].interaction_id for r in rows)
    # English on request
    desk.session.cookie_jar.update_cookies({"cg_lang": "en"})
    english = await text(await desk.get("/agent", headers=HTML))
    assert "Agent desktop" in english and "VIP customer" in english and "Complaint past its SLA" in english


async def test_search_and_the_reason_code_outside_an_active_interaction(desk, db):
    cid = await put_customer(desk, "C0000000001", doc())
    found = await text(await desk.get("/agent/search", params={"kind": "phone", "value": "139 1234 5678"}))
    assert f"/agent/customers/{cid}" in found and "张**" in found
    none = await text(await desk.get("/agent/search", params={"kind": "phone", "value": "13700000000"}))
    assert "未找到客户" in none
    # no active interaction: the desktop asks why first, and shows nothing of the customer
    ask = await text(await desk.get(f"/agent/customers/{cid}"))
    assert "reason-dialog" in ask and "回访客户" in ask and "张**" not in ask
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'customer.view'") == 0
    shown = await text(await desk.get(f"/agent/customers/{cid}", params={"reason": "callback"}))
    assert "张**" in shown and "客户有什么" in shown
    row = await db.fetchrow("SELECT actor, customer_id, reason, interaction_id FROM audit_log "
                            "WHERE action = 'customer.view'")
    assert (row["actor"], row["customer_id"], row["reason"], row["interaction_id"]) == (
        "user:agent1", cid, "callback", None)
    bad = await text(await desk.get(f"/agent/customers/{cid}", params={"reason": "curious"}))
    assert "reason-dialog" in bad   # only the listed codes


async def test_active_interaction_timeline_wrapup_link_and_unlink(desk, db):
    app = desk.server.app
    cid = await put_customer(desk, "C0000000001", doc())
    await ingest(app, ev("login.failed", minutes_ago=30, channel="online_banking", source="online-banking",
                         interaction_id="s-1", identifiers=[{"kind": "phone", "value": PHONE}]),
                 ev("message.received", minutes_ago=60 * 24 * 40, channel="email", source="email",
                    interaction_id="t-1", identifiers=[{"kind": "phone", "value": PHONE}], subject="对账单"))
    results = await ingest(app, *ringing("D-2"))
    iid = results[1].interaction_id
    await asyncio.wait_for(_current(app, "8001"), 10)
    # the agent's own ringing call: no reason asked, the view audited with the interaction
    panel = await text(await desk.get(f"/agent/customers/{cid}", params={"interaction_id": iid}))
    assert "reason-dialog" not in panel and "提交小结" in panel
    assert await db.fetchval("SELECT interaction_id FROM audit_log WHERE action = 'customer.view'") == uuid.UUID(iid)
    # the timeline: every channel, then filtered
    every = await text(await desk.get(f"/agent/customers/{cid}/timeline", params={"interaction_id": iid}))
    assert every.count('class="ch-') == 3 and "对账单" in every
    email = await text(await desk.get(f"/agent/customers/{cid}/timeline",
                                      params={"interaction_id": iid, "channel": "email"}))
    assert email.count('class="ch-') == 1
    recent = await text(await desk.get(f"/agent/customers/{cid}/timeline",
                                       params={"interaction_id": iid, "days": "7"}))
    assert recent.count('class="ch-') == 2
    # wrap-up: an event on the interaction through the real ingest, CSRF required
    token = await csrf_of(desk)
    form = {"disposition": "resolved_first_contact", "note": "已告知转账限额", "wrapup_id": "w1", "csrf_token": token}
    assert (await desk.post(f"/agent/interactions/{iid}/wrapup", data={**form, "csrf_token": "x"})).status == 403
    done = await text(await desk.post(f"/agent/interactions/{iid}/wrapup", data=form))
    assert "小结已保存" in done
    again = await desk.post(f"/agent/interactions/{iid}/wrapup", data=form)   # a retry is a duplicate
    assert again.status == 200
    rows = await db.fetch("SELECT source, outcome, subject, agent_id, interaction_id FROM events "
                          "WHERE type = 'contact.wrapup'")
    assert [(r["source"], r["outcome"], r["subject"], r["agent_id"], str(r["interaction_id"])) for r in rows] == [
        ("agent-desktop", "resolved_first_contact", "已告知转账限额", "8001", iid)]
    assert await app[keys.REDIS].get("cg:pop:8001") is None
    bad = await desk.post(f"/agent/interactions/{iid}/wrapup", data={**form, "disposition": "whatever"})
    assert bad.status == 422
    # unlink then link again, through the shared link service (audited with the user)
    unlinked = await text(await desk.post(f"/agent/interactions/{iid}/unlink",
                                          data={"reason": "wrong caller", "csrf_token": token}))
    assert "未识别来电" in unlinked
    linked = await text(await desk.post(f"/agent/interactions/{iid}/link",
                                        data={"customer_id": str(cid), "reason": "verified", "csrf_token": token}))
    assert "张**" in linked
    audit = await db.fetch("SELECT action, actor, reason FROM audit_log WHERE action IN ('link', 'unlink') "
                           "ORDER BY id")
    assert [(a["action"], a["actor"], a["reason"]) for a in audit] == [
        ("unlink", "user:agent1", "wrong caller"), ("link", "user:agent1", "verified")]


async def test_ambiguous_pop_choice_links_from_the_desktop(desk, db):
    app = desk.server.app
    shared = "13800138000"
    first = await put_customer(desk, "C0000000001", doc(identifiers=[{"kind": "phone", "value": shared}]))
    await put_customer(desk, "C0000000002", doc(identifiers=[{"kind": "phone", "value": shared}], name="李四",
                                                customer_no="C0000000002"))
    results = await ingest(app, *ringing("D-3", phone=shared))
    iid = results[1].interaction_id
    panel = await text(await desk.get(f"/agent/pop?interaction_id={iid}"))
    assert panel.count("data-candidate=") == 2 and "Alt+2" in panel
    token = await csrf_of(desk)
    chosen = await text(await desk.post(f"/agent/interactions/{iid}/link",
                                        data={"customer_id": str(first), "csrf_token": token}))
    assert "张**" in chosen and 'data-rule="vip"' in chosen
    assert await db.fetchval("SELECT customer_id FROM interactions WHERE id = $1", uuid.UUID(iid)) == first


async def test_streams_and_pages_need_the_right_person(desk):
    async with desk.ws_connect("/v1/agents/8001/stream") as ws:   # the agent's own, with the session cookie
        await ws.send_str("ping")
        assert (await ws.receive_json())["type"] == "pong"
    resp = await desk.get("/v1/agents/8002/stream", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                            "Sec-WebSocket-Version": "13"})
    assert resp.status == 403
    async with aiohttp.ClientSession() as anonymous:   # nobody logged in
        async with anonymous.get(desk.make_url("/agent"), headers=HTML, allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"] == "/login?next=/agent"
        async with anonymous.get(desk.make_url("/v1/screenpop?phone=13912345678")) as api:
            assert api.status == 401
