"""Screen-pop end to end on real PostgreSQL and Redis: summary from the store, cache, Redis down,
push across two gateway instances, reconnect, unidentified and ambiguous callers, the lookup API."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
from typing import Any

import asyncpg
import pytest

from gateway import keys, redis_keys
from gateway.app import create_app
from gateway.events.model import event_from_obj
from tests.conftest import FIXTURES, make_settings
from tests.helpers import assert_problem

CORE = {"X-API-Key": "dev-core-banking-key"}
READ = {"X-API-Key": "dev-desktop-key"}
CTI = {"X-API-Key": "dev-cti-key"}
PHONE = "+86 139 1234 5678"
SHARED_PHONE = "13800138000"
_n = iter(range(1, 1_000_000))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def doc(**changes: Any) -> dict[str, Any]:
    d = json.loads((FIXTURES / "customers" / "zhang_san.json").read_text(encoding="utf-8"))
    d.update(changes)
    return d


async def put_customer(client: Any, customer_no: str, body: dict[str, Any]) -> int:
    resp = await client.put(f"/v1/customers/{customer_no}", json=body, headers=CORE)
    assert resp.status in (200, 201), await resp.text()
    return int((await resp.json())["customer_id"])


async def ingest(app: Any, *events: dict[str, Any]) -> list[Any]:
    results = await app[keys.INGEST].submit([event_from_obj(e) for e in events])
    assert all(r.status == "accepted" for r in results), results
    return results


def ev(type_: str, *, minutes_ago: float = 0, channel: str = "voice", source: str = "cti.test",
       **fields: Any) -> dict[str, Any]:
    body = {"source": source, "source_event_id": f"sp-{next(_n)}", "channel": channel, "type": type_,
            "occurred_at": (now() - dt.timedelta(minutes=minutes_ago)).isoformat()}
    body.update(fields)
    return body


def ringing(linked: str, agent: str = "8001", phone: str | None = PHONE) -> list[dict[str, Any]]:
    ids = [{"kind": "phone", "value": phone}] if phone else []
    return [ev("call.offered", interaction_id=linked, queue="vip", identifiers=ids, direction="inbound"),
            ev("call.ringing", interaction_id=linked, agent_id=agent, queue="vip", identifiers=ids)]


async def two_apps(aiohttp_client: Any, settings: Any) -> tuple[Any, Any]:
    a = await aiohttp_client(create_app(settings))
    b = await aiohttp_client(create_app(settings))
    for c in (a, b):
        await asyncio.wait_for(c.server.app[keys.POP_HUB].subscribed.wait(), 10)
    return a, b


async def next_frame(ws: Any, kind: str = "pop", timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json()
            if frame["type"] == kind:
                return frame


async def audited_pops(db: Any, expected: int) -> list[Any]:
    """The screenpop audit rows, once there are ``expected`` of them (the audit follows the push)."""
    for _ in range(100):
        rows = await db.fetch("SELECT actor, customer_id, details FROM audit_log WHERE action = 'screenpop'")
        if len(rows) >= expected:
            return rows
        await asyncio.sleep(0.05)
    return rows


async def test_summary_from_the_store(client):
    app = client.server.app
    cid = await put_customer(client, "C0000000001", doc())
    await ingest(app, ev("login.failed", minutes_ago=50, channel="online_banking", source="online-banking",
                         interaction_id="s-1", identifiers=[{"kind": "phone", "value": PHONE}],
                         reason="wrong_password"),
                 ev("transfer.failed", minutes_ago=5, channel="mobile_banking", source="mobile-banking",
                    interaction_id="s-2", identifiers=[{"kind": "phone", "value": PHONE}],
                    reason="daily_limit_exceeded", attributes={"amount": "60000"}),
                 *ringing("L-1"))
    summary = await app[keys.SCREENPOP].summary(cid)
    assert summary is not None
    assert summary.who.customer_no == "C0000000001" and summary.who.name_masked == "张**" and summary.who.vip
    assert {g.product_type for g in summary.has.groups} == {"debit_card", "savings_account", "wealth_product"}
    assert [e.channel for e in summary.can.restrictions] == ["online_banking"]
    assert [c.channel for c in summary.did.last_by_channel] == ["voice", "mobile_banking", "online_banking"]
    assert [e.type for e in summary.did.digital_failures] == ["transfer.failed", "login.failed"]
    assert summary.did.credit_in_progress[0].stage == "approval"
    fired = {a.rule: a for a in summary.alerts}
    assert {"vip", "complaint_past_sla", "likely_reason_digital_failure"} <= set(fired)
    assert fired["likely_reason_digital_failure"].why["en"].startswith("transfer failed on mobile banking 5 min ago")
    assert "CS-2026-0001" in fired["complaint_past_sla"].why["zh-CN"]


async def test_cache_is_used_until_a_new_event_and_a_late_stale_fill_is_never_served(client, redis_client):
    app = client.server.app
    service = app[keys.SCREENPOP]
    cid = await put_customer(client, "C0000000001", doc())
    await ingest(app, *ringing("L-2"))
    await app[keys.PUBLISHER].drain()
    await asyncio.wait_for(_current(app, "8001"), 10)  # the pop of the ringing call filled the cache
    hits, misses = service.cache.hits, service.cache.misses
    first = await service.facts(cid)
    assert first is not None and (service.cache.hits, service.cache.misses) == (hits + 1, misses)
    assert await redis_client.exists(redis_keys.summary_cache(str(cid)))
    again = await service.facts(cid)
    assert again == first and service.cache.hits == hits + 2
    # a new event of the customer: the publisher drops the entry after commit ...
    await ingest(app, ev("transfer.failed", minutes_ago=1, channel="mobile_banking", source="mobile-banking",
                         interaction_id="s-9", identifiers=[{"kind": "phone", "value": PHONE}]))
    await app[keys.PUBLISHER].drain()
    assert not await redis_client.exists(redis_keys.summary_cache(str(cid)))
    # ... and a fill that read before the commit but writes after the invalidation is not served:
    await service.cache.put(first)
    fresh = await service.facts(cid)
    assert fresh is not None and fresh.version != first.version
    assert any(e.type == "transfer.failed" for e in fresh.events)
    # a core-banking update of the document changes the version too
    await put_customer(client, "C0000000001", doc(vip=False))
    latest = await service.facts(cid)
    assert latest is not None and latest.customer.profile.vip is False


async def test_manual_link_changes_the_version(client):
    app = client.server.app
    service = app[keys.SCREENPOP]
    cid = await put_customer(client, "C0000000001", doc())
    other = await put_customer(client, "C0000000002", doc(identifiers=[], customer_no="C0000000002"))
    results = await ingest(app, ev("message.received", channel="email", source="email", interaction_id="t-1",
                                   subject="请问如何销户"))
    before = await service.summary(cid)
    assert before is not None and "churn_closure_enquiry" not in {a.rule for a in before.alerts}
    resp = await client.post(f"/v1/interactions/{results[0].interaction_id}/link",
                             json={"customer_no": "C0000000001", "reason": "caller confirmed"}, headers=READ)
    assert resp.status == 200
    after = await service.summary(cid)
    assert after is not None and "churn_closure_enquiry" in {a.rule for a in after.alerts}
    assert other != cid


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_down_pops_are_built_from_postgres(aiohttp_client, database_url, tmp_path):
    settings = make_settings(database_url, f"redis://127.0.0.1:{_closed_port()}/0", tmp_path)
    client = await aiohttp_client(create_app(settings))
    app = client.server.app
    cid = await put_customer(client, "C0000000001", doc())
    await ingest(app, *ringing("L-3"))
    summary = await app[keys.SCREENPOP].summary(cid)
    assert summary is not None and summary.who.customer_id == cid
    resp = await client.get("/v1/screenpop", params={"phone": "13912345678"}, headers=READ)
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "identified" and body["summary"]["who"]["customer_no"] == "C0000000001"
    # the desktop reconnecting gets the call ringing at it, rebuilt from PostgreSQL
    async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        frame = await next_frame(ws)
        assert frame["pop"]["summary"]["who"]["customer_id"] == cid
        assert frame["pop"]["interaction_id"] is not None
    assert app[keys.SCREENPOP].breaker.open


async def test_push_reaches_the_socket_on_the_other_instance_then_reconnect(aiohttp_client, settings, db):
    a, b = await two_apps(aiohttp_client, settings)
    await put_customer(a, "C0000000001", doc())
    async with b.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        results = await ingest(a.server.app, *ringing("L-4"))
        frame = await next_frame(ws)
        pop = frame["pop"]
        assert pop["state"] == "identified" and pop["agent_id"] == "8001"
        assert pop["interaction_id"] == results[1].interaction_id and pop["pop_id"] == results[1].event_id
        assert pop["summary"]["who"]["customer_no"] == "C0000000001"
        assert {"vip", "complaint_past_sla"} <= {x["rule"] for x in pop["summary"]["alerts"]}
        assert pop["call"]["caller"] == [{"kind": "phone", "masked": "139****5678"}]
        assert pop["url"].endswith(f"/agent?interaction_id={results[1].interaction_id}")
        # the call's later events reach the desktop as call frames
        await ingest(a.server.app, ev("call.answered", interaction_id="L-4", agent_id="8001"))
        call = await next_frame(ws, "call")
        assert call["event"] == "call.answered" and call["interaction_id"] == results[1].interaction_id
    # exactly one instance built the pop, and it was audited once (the audit follows the push)
    assert a.server.app[keys.POP_HUB].pops_built + b.server.app[keys.POP_HUB].pops_built == 1
    rows = await audited_pops(db, 1)
    assert len(rows) == 1 and rows[0]["actor"] == "source:cti.test"
    assert rows[0]["details"]["state"] == "identified" and "vip" in rows[0]["details"]["alerts"]
    # a desktop that reconnects (here, to the other instance) gets the current pop first
    async with a.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        again = await next_frame(ws)
        assert again["pop"]["pop_id"] == pop["pop_id"]


async def test_ringing_pops_while_its_commit_waits_from_a_summary_warmed_in_the_queue(client, db, redis_client):
    """Early ringing: the caller identified in the queue, the summary warmed there, the ringing (no identifier
    of its own) pops from the stored link while its transaction is still blocked, and exactly once."""
    app = client.server.app
    service, hub = app[keys.SCREENPOP], app[keys.POP_HUB]
    await asyncio.wait_for(hub.subscribed.wait(), 10)
    cid = await put_customer(client, "C0000000001", doc())
    await ingest(app, ev("login.failed", minutes_ago=20, channel="online_banking", source="online-banking",
                         interaction_id="s-1", identifiers=[{"kind": "phone", "value": PHONE}]))
    offered = await ingest(app, ev("call.offered", interaction_id="L-9", queue="vip", direction="inbound",
                                   identifiers=[{"kind": "phone", "value": PHONE}]))
    await app[keys.PUBLISHER].drain()
    for _ in range(200):  # the publisher's hook warms the queued caller's summary
        if await redis_client.exists(redis_keys.summary_cache(str(cid))):
            break
        await asyncio.sleep(0.02)
    assert await redis_client.exists(redis_keys.summary_cache(str(cid))), "summary warmed while queued"
    hits = service.cache.hits
    iid = __import__("uuid").UUID(offered[0].interaction_id)
    blocker = await asyncpg.connect(client.server.app[keys.SETTINGS].database_url.get())
    try:
        async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM interactions WHERE id = $1 FOR UPDATE", iid)
            ring = ev("call.ringing", interaction_id="L-9", agent_id="8001", queue="vip")
            committing = asyncio.create_task(ingest(app, ring))
            pop = (await next_frame(ws))["pop"]
            assert not committing.done(), "the pop arrived while the ringing's transaction was blocked"
            assert pop["state"] == "identified" and pop["summary"]["who"]["customer_no"] == "C0000000001"
            assert pop["interaction_id"] == str(iid)
            assert str(iid) not in [c["interaction_id"] for c in pop["summary"]["did"]["last_contacts"]]
            assert [c["channel"] for c in pop["summary"]["did"]["last_contacts"]] == ["online_banking"]
            assert service.cache.hits == hits + 1, "the warmed summary was used"
            await tx.rollback()
            results = await asyncio.wait_for(committing, 10)
            assert pop["pop_id"] == results[0].event_id
            # the published copy after the commit, and a retry of the ringing, do not pop again
            await app[keys.PUBLISHER].drain()
            retry = await app[keys.INGEST].submit([event_from_obj(ring)])
            assert retry[0].status == "duplicate"
            await app[keys.PUBLISHER].drain()
            await asyncio.sleep(0.3)
    finally:
        await blocker.close()
    assert hub.pops_built == 1
    assert len(await audited_pops(db, 1)) == 1


async def test_a_ringing_that_cannot_be_linked_early_pops_after_its_commit(client, db, monkeypatch):
    from gateway.events import store as event_store

    async def broken(*args: Any) -> Any:
        raise OSError("simulated: no connection for the early link")

    monkeypatch.setattr(event_store, "early_link", broken)
    app = client.server.app
    await asyncio.wait_for(app[keys.POP_HUB].subscribed.wait(), 10)
    await put_customer(client, "C0000000001", doc())
    await ingest(app, ev("call.offered", interaction_id="L-10", queue="vip",
                         identifiers=[{"kind": "phone", "value": PHONE}]))
    async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        results = await ingest(app, ev("call.ringing", interaction_id="L-10", agent_id="8001", queue="vip"))
        pop = (await next_frame(ws))["pop"]
        assert pop["pop_id"] == results[0].event_id and pop["state"] == "identified"
        await app[keys.PUBLISHER].drain()
        await asyncio.sleep(0.3)
    assert app[keys.POP_HUB].pops_built == 1
    assert len(await audited_pops(db, 1)) == 1


async def test_without_early_pops_a_ringing_pops_after_its_commit(aiohttp_client, database_url, redis_url,
                                                                   tmp_path, db):
    """``screenpop.early_pop = false``: the pop waits for the commit and its publication (DESIGN.md §5 as
    written); the ingestor hands nothing over early."""
    app = create_app(make_settings(database_url, redis_url, tmp_path, screenpop={"early_pop": False}))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[keys.POP_HUB].subscribed.wait(), 10)
    assert app[keys.INGEST].on_ringing is None
    await put_customer(client, "C0000000001", doc())
    async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        results = await ingest(app, *ringing("L-20"))
        pop = (await next_frame(ws))["pop"]
        assert pop["pop_id"] == results[1].event_id and pop["state"] == "identified"
    assert len(await audited_pops(db, 1)) == 1


async def test_a_burst_of_ringing_calls_all_pop_with_few_redis_connections(aiohttp_client, database_url, redis_url,
                                                                            tmp_path, db):
    """100 calls ringing at once through a 4-connection Redis pool: every one is popped and audited
    (the pool waits for a free connection, the hub builds a bounded number at once)."""
    app = create_app(make_settings(database_url, redis_url, tmp_path, redis_pool_max=4))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[keys.POP_HUB].subscribed.wait(), 10)
    await put_customer(client, "C0000000001", doc())
    calls = [ev("call.ringing", interaction_id=f"B-{n}", agent_id="8001", queue="vip",
                identifiers=[{"kind": "phone", "value": PHONE}]) for n in range(100)]
    results = await asyncio.gather(*(app[keys.INGEST].submit([event_from_obj(c)]) for c in calls))
    assert all(r[0].status == "accepted" for r in results)
    assert len(await audited_pops(db, 100)) == 100
    assert app[keys.POP_HUB].pops_built == 100


async def test_a_process_subscribes_only_to_the_agents_whose_desktops_it_holds(client, redis_client):
    app = client.server.app
    await asyncio.wait_for(app[keys.POP_HUB].subscribed.wait(), 10)
    channels = [redis_keys.agent_channel("8001"), redis_keys.pop_channel("8001")]

    async def subscribers() -> list[int]:
        counts = dict(await redis_client.pubsub_numsub(*channels))
        return [counts[c.encode()] for c in channels]

    assert await subscribers() == [0, 0], "no desktop: nothing of agent 8001 is sent to this process"
    async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        assert await subscribers() == [1, 1], "subscribed (and confirmed) when the desktop connected"
        await ingest(app, *ringing("S-1"))
        assert (await next_frame(ws))["pop"]["interaction_id"] is not None
        await ingest(app, ev("call.answered", interaction_id="S-1", agent_id="8001"))
        assert (await next_frame(ws, "call"))["event"] == "call.answered"
    for _ in range(100):
        if await subscribers() == [0, 0]:
            break
        await asyncio.sleep(0.02)
    assert await subscribers() == [0, 0], "unsubscribed when the last desktop closed"


async def test_a_lost_pubsub_connection_resubscribes_the_desktops_it_holds(aiohttp_client, settings, redis_client):
    """Redis drops the pop hubs' pub/sub connections: the hub holding agent 8001's desktop subscribes to
    its channels again, and a pop built on the other instance reaches the desktop."""
    a, b = await two_apps(aiohttp_client, settings)
    await put_customer(a, "C0000000001", doc())
    pop_channel = redis_keys.pop_channel("8001")

    async def subscribers() -> int:
        return int(dict(await redis_client.pubsub_numsub(pop_channel))[pop_channel.encode()])

    async with b.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        assert await subscribers() == 1
        assert await redis_client.client_kill_filter(_type="pubsub") >= 2
        for _ in range(200):
            if await subscribers() == 1 and b.server.app[keys.POP_HUB].subscribed.is_set():
                break
            await asyncio.sleep(0.05)
        assert await subscribers() == 1, "the hub subscribed again"
        results = await ingest(a.server.app, *ringing("K-1"))
        pop = (await next_frame(ws))["pop"]
        assert pop["interaction_id"] == results[1].interaction_id and pop["state"] == "identified"


async def test_a_call_replayed_whole_in_one_batch_does_not_pop(client, db):
    """A CTI replaying finished calls: a ringing committed together with its call's end pops nobody (and
    audits nothing); a call still ringing in the same batch pops."""
    app = client.server.app
    await asyncio.wait_for(app[keys.POP_HUB].subscribed.wait(), 10)
    await put_customer(client, "C0000000001", doc())
    done = [*ringing("R-1"), ev("call.answered", interaction_id="R-1", agent_id="8001"),
            ev("call.ended", interaction_id="R-1", agent_id="8001")]
    live = ringing("R-2")
    async with client.ws_connect("/v1/agents/8001/stream", headers=READ) as ws:
        results = await ingest(app, *done, *live)
        pop = (await next_frame(ws))["pop"]
        assert pop["interaction_id"] == results[-1].interaction_id
        await app[keys.PUBLISHER].drain()
        await asyncio.sleep(0.3)
    assert app[keys.POP_HUB].pops_built == 1
    assert len(await audited_pops(db, 1)) == 1


async def test_unidentified_and_ambiguous_callers_and_the_choice_links(aiohttp_client, settings, db):
    a, b = await two_apps(aiohttp_client, settings)
    first = await put_customer(a, "C0000000001", doc(identifiers=[{"kind": "phone", "value": SHARED_PHONE}]))
    second = await put_customer(a, "C0000000002", doc(identifiers=[{"kind": "phone", "value": SHARED_PHONE}],
                                                      name="李四", vip=False, customer_no="C0000000002"))
    async with a.ws_connect("/v1/agents/8002/stream", headers=READ) as ws:
        await ingest(b.server.app, *ringing("L-5", agent="8002", phone="13700000000"))
        pop = (await next_frame(ws))["pop"]
        assert pop["state"] == "unidentified" and pop["summary"] is None and pop["candidates"] == []
        assert pop["call"]["caller"] == [{"kind": "phone", "masked": "137****0000"}]

        results = await ingest(b.server.app, *ringing("L-6", agent="8002", phone=SHARED_PHONE))
        pop = (await next_frame(ws))["pop"]
        assert pop["state"] == "ambiguous" and pop["summary"] is None
        assert [(c["customer_id"], c["name_masked"]) for c in pop["candidates"]] == [(first, "张**"), (second, "李*")]
        assert all("*" in c["customer_no"] for c in pop["candidates"])
    service = a.server.app[keys.SCREENPOP]
    chosen = await service.choose(pop["interaction_id"], second, actor="user:agent2", role="agent",
                                  reason="verified date of birth")
    assert chosen is not None and chosen.state == "identified" and chosen.summary is not None
    assert chosen.summary.customer_id == second
    row = await db.fetchrow("SELECT customer_id, linked_by, identification FROM interactions WHERE id = $1",
                            __import__("uuid").UUID(results[1].interaction_id))
    assert (row["customer_id"], row["linked_by"], row["identification"]) == (second, "user:agent2", "identified")
    audit = await db.fetchrow("SELECT actor, reason FROM audit_log WHERE action = 'link'")
    assert (audit["actor"], audit["reason"]) == ("user:agent2", "verified date of birth")


async def test_screenpop_lookup_api(client, db):
    app = client.server.app
    cid = await put_customer(client, "C0000000001", doc())
    results = await ingest(app, *ringing("L-7", agent="8009"))
    for params in ({"phone": "139 1234 5678"}, {"interaction_id": results[1].interaction_id},
                   {"interaction_id": "cg:" + results[1].interaction_id},
                   {"interaction_id": "L-7", "source": "cti.test"}, {"customer_no": "C0000000001"}):
        resp = await client.get("/v1/screenpop", params=params, headers=READ)
        assert resp.status == 200, (params, await resp.text())
        body = await resp.json()
        assert body["state"] == "identified" and body["summary"]["who"]["customer_id"] == cid, params
    await asyncio.wait_for(_current(app, "8009"), 10)
    resp = await client.get("/v1/screenpop", params={"agent_id": "8009"}, headers=READ)
    assert resp.status == 200 and (await resp.json())["interaction_id"] == results[1].interaction_id
    unknown = await (await client.get("/v1/screenpop", params={"phone": "13700000000"}, headers=READ)).json()
    assert unknown["state"] == "unidentified"
    audited = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'screenpop' AND actor = "
                                "'source:desktop'")
    assert audited == 7
    await assert_problem(await client.get("/v1/screenpop", headers=READ), 422, "validation-failed", field="query")
    await assert_problem(await client.get("/v1/screenpop", params={"phone": "1", "email": "a@b.c"}, headers=READ),
                         422, "validation-failed", field="query")
    await assert_problem(await client.get("/v1/screenpop", params={"colour": "red"}, headers=READ), 422,
                         "validation-failed", field="colour")
    await assert_problem(await client.get("/v1/screenpop", params={"phone": "not a phone"}, headers=READ), 422,
                         "validation-failed", field="phone")
    await assert_problem(await client.get("/v1/screenpop", params={"interaction_id": "nope"}, headers=READ), 404,
                         "not-found")
    await assert_problem(await client.get("/v1/screenpop", params={"agent_id": "9999"}, headers=READ), 404,
                         "not-found")
    await assert_problem(await client.get("/v1/screenpop", params={"phone": "13912345678"}), 401, "unauthorized")
    await assert_problem(await client.get("/v1/screenpop", params={"phone": "13912345678"}, headers=CTI), 403,
                         "forbidden")
    await assert_problem(await client.get("/v1/agents/8001/stream", headers=READ), 400, "invalid-request")
    await assert_problem(await client.get("/v1/agents/8001/stream"), 401, "unauthorized")


async def _current(app: Any, agent: str) -> None:
    while await app[keys.REDIS].get(redis_keys.current_pop(agent)) is None:
        await asyncio.sleep(0.01)


async def test_pop_url_template_is_configurable(aiohttp_client, database_url, redis_url, tmp_path):
    settings = make_settings(database_url, redis_url, tmp_path, public_url="https://gw.bank.example",
                             screenpop={"pop_url_template": "{base_url}/crm/pop?call={interaction_id}&a={agent_id}"})
    client = await aiohttp_client(create_app(settings))
    results = await ingest(client.server.app, *ringing("L-8", agent="8003"))
    body = await (await client.get("/v1/screenpop", params={"interaction_id": results[1].interaction_id},
                                   headers=READ)).json()
    assert body["url"] == f"https://gw.bank.example/crm/pop?call={results[1].interaction_id}&a=8003"


async def test_summary_value_objects_are_frozen(client):
    app = client.server.app
    cid = await put_customer(client, "C0000000001", doc())
    summary = await app[keys.SCREENPOP].summary(cid)
    assert summary is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.who.vip = False  # type: ignore[misc]
    facts = await app[keys.SCREENPOP].facts(cid)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.version = "x"  # type: ignore[misc,union-attr]
