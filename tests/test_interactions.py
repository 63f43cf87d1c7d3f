"""Interactions maintained from their events, identity linking, the read API, publication on Redis."""

import asyncio
import datetime as dt
import itertools
import json
import random

from gateway.app import create_app
from gateway.embedded import EmbeddedRedis
from gateway import keys, redis_keys
from tests.conftest import make_settings
from tests.factories import CTI_KEY, READ_KEY, T0, event, insert_customer
from tests.helpers import assert_problem

PHONE = "+86 139 1234 5678"
FAMILY_PHONE = "13800138000"


def call_events(linked: str, *, phone: str | None = PHONE, answered: bool = True, agent: str = "8001"):
    ids = [{"kind": "phone", "value": phone}] if phone else []
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    evs = [
        event("call.offered", sid=f"{linked}/offered", interaction_id=linked, queue="vip", at=at(0),
              identifiers=ids, direction="inbound"),
        event("call.ringing", sid=f"{linked}/ringing", interaction_id=linked, agent_id=agent, at=at(12)),
    ]
    if answered:
        evs += [
            event("call.answered", sid=f"{linked}/answered", interaction_id=linked, agent_id=agent, at=at(15)),
            event("call.ended", sid=f"{linked}/ended", interaction_id=linked, agent_id=agent, at=at(195),
                  outcome="resolved", attributes={"talk_seconds": 170, "hold_seconds": 10}),
        ]
    else:
        evs.append(event("call.abandoned", sid=f"{linked}/abandoned", interaction_id=linked, at=at(40)))
    return evs


async def interaction(db, external_id):
    return await db.fetchrow("SELECT * FROM interactions WHERE external_id = $1", external_id)


async def test_call_lifecycle_in_order(client, db):
    for e in call_events("L-1"):
        assert (await client.post("/v1/events", json=e, headers=CTI_KEY)).status == 201
    row = await interaction(db, "L-1")
    assert row["kind"] == "call" and row["status"] == "ended" and row["event_count"] == 4
    assert row["started_at"] == T0 and row["answered_at"] == T0 + dt.timedelta(seconds=15)
    assert row["handle_seconds"] == 180.0 and row["talk_seconds"] == 170.0 and row["hold_seconds"] == 10.0
    assert (row["agent_id"], row["queue"], row["outcome"], row["direction"]) == ("8001", "vip", "resolved", "inbound")


async def test_out_of_order_and_repeated_events_converge(client, db):
    evs = call_events("L-2")
    shuffled = evs[::-1] + evs[1:3]  # ended first, then the rest, then two repeats
    for e in shuffled:
        assert (await client.post("/v1/events", json=e, headers=CTI_KEY)).status in (200, 201)
    row = await interaction(db, "L-2")
    ordered = await interaction(db, "L-2")
    assert row["status"] == "ended" and row["event_count"] == 4
    assert row["started_at"] == T0 and row["answered_at"] == T0 + dt.timedelta(seconds=15)
    assert row["ended_at"] == T0 + dt.timedelta(seconds=195) and row["handle_seconds"] == 180.0
    assert row["outcome"] == "resolved" and ordered["last_type"] == "call.ended"

    # every permutation-ish (random orders, batched and not) gives the same final state
    for n in range(3):
        evs = call_events(f"L-r{n}")
        random.Random(n).shuffle(evs)
        await client.post("/v1/events", json=evs[:2], headers=CTI_KEY)
        await asyncio.gather(*(client.post("/v1/events", json=e, headers=CTI_KEY) for e in evs[2:] + evs[:1]))
        r = await interaction(db, f"L-r{n}")
        assert (r["status"], r["event_count"], r["handle_seconds"]) == ("ended", 4, 180.0)


async def test_abandoned_call(client, db):
    await client.post("/v1/events", json=call_events("L-3", answered=False), headers=CTI_KEY)
    row = await interaction(db, "L-3")
    assert row["status"] == "abandoned" and row["answered_at"] is None and row["handle_seconds"] is None
    assert row["ended_at"] == T0 + dt.timedelta(seconds=40)


async def test_identity_resolved_ambiguous_unidentified(client, db, settings):
    zhang = await insert_customer(db, settings, "C0001", "张伟", [("phone", PHONE)])
    li = await insert_customer(db, settings, "C0002", "李娜", [("phone", FAMILY_PHONE)])
    wang = await insert_customer(db, settings, "C0003", "王芳", [("phone", FAMILY_PHONE)])

    await client.post("/v1/events", json=call_events("R-1"), headers=CTI_KEY)
    row = await interaction(db, "R-1")
    assert (row["customer_id"], row["identification"], row["linked_by"]) == (zhang, "identified", "auto:phone")

    await client.post("/v1/events", json=call_events("R-2", phone=FAMILY_PHONE), headers=CTI_KEY)
    row = await interaction(db, "R-2")
    assert row["identification"] == "ambiguous" and row["customer_id"] is None
    assert sorted(row["candidates"]) == sorted([li, wang]), "all candidates, never a guess"

    await client.post("/v1/events", json=call_events("R-3", phone="+1 212 555 0100"), headers=CTI_KEY)
    row = await interaction(db, "R-3")
    assert row["identification"] == "unidentified" and row["customer_id"] is None

    # the IVR verifies the caller of the ambiguous call: the whole interaction is linked
    ivr = event("ivr.selection", sid="R-2/ivr", interaction_id="R-2", at=T0 + dt.timedelta(seconds=5),
                identifiers=[{"kind": "customer_no", "value": "C0003"}], attributes={"auth_level": "ivr_pin"})
    await client.post("/v1/events", json=ivr, headers=CTI_KEY)
    row = await interaction(db, "R-2")
    assert (row["customer_id"], row["identification"], row["linked_by"]) == (wang, "identified", "auto:customer_no")

    resp = await client.get(f"/v1/interactions/{row['id']}", headers=READ_KEY)
    body = await resp.json()
    assert body["customer_no"] == "C0003" and len(body["events"]) == 5


async def test_strong_identifier_beats_weak_and_weak_does_not_override(client, db, settings):
    a = await insert_customer(db, settings, "C0101", "赵敏", [("phone", PHONE)])
    b = await insert_customer(db, settings, "C0102", "周强")
    await client.post("/v1/events", json=call_events("S-1"), headers=CTI_KEY)
    assert (await interaction(db, "S-1"))["customer_id"] == a
    ivr = event("ivr.selection", sid="S-1/ivr", interaction_id="S-1", identifiers=[
        {"kind": "customer_no", "value": "C0102"}])
    await client.post("/v1/events", json=ivr, headers=CTI_KEY)
    assert (await interaction(db, "S-1"))["customer_id"] == b
    late = event("call.held", sid="S-1/held", interaction_id="S-1", identifiers=[{"kind": "phone", "value": PHONE}])
    await client.post("/v1/events", json=late, headers=CTI_KEY)
    assert (await interaction(db, "S-1"))["customer_id"] == b


async def test_device_learned_from_identity_linked_relinks_earlier_events(client, db, settings):
    cid = await insert_customer(db, settings, "C0201", "孙丽", [("online_user_id", "sunli88")])
    mobile = {"X-API-Key": "dev-mobile-write-key"}
    anon = [event("screen.viewed", source="mobile-banking", channel="mobile_banking", sid=f"m-{i}",
                  interaction_id="app-session-1", identifiers=[{"kind": "device_id", "value": "dev-abc"}])
            for i in range(3)]
    anon.append(event("transfer.failed", source="mobile-banking", channel="mobile_banking", sid="m-9",
                      interaction_id="app-session-2", reason="insufficient_funds",
                      identifiers=[{"kind": "device_id", "value": "dev-abc"}]))
    await client.post("/v1/events", json=anon, headers=mobile)
    assert await db.fetchval("SELECT count(*) FROM interactions WHERE customer_id IS NOT NULL") == 0

    link = event("identity.linked", source="mobile-banking", channel="mobile_banking", sid="m-link",
                 interaction_id="app-session-3", identifiers=[{"kind": "online_user_id", "value": "sunli88"},
                                                              {"kind": "device_id", "value": "dev-abc"}])
    assert (await client.post("/v1/events", json=link, headers=mobile)).status == 201
    linked = await db.fetch("SELECT external_id, linked_by FROM interactions WHERE customer_id = $1 "
                            "ORDER BY external_id", cid)
    assert [r["external_id"] for r in linked] == ["app-session-1", "app-session-2", "app-session-3"]
    assert await db.fetchval("SELECT origin FROM customer_identifiers WHERE kind = 'device_id'") == "learned"

    # and the device now identifies the customer directly
    later = event("login.failed", source="mobile-banking", channel="mobile_banking", sid="m-later",
                  interaction_id="app-session-4", identifiers=[{"kind": "device_id", "value": "dev-abc"}])
    body = await (await client.post("/v1/events", json=later, headers=mobile)).json()
    assert (await interaction(db, "app-session-4"))["customer_id"] == cid
    assert body["status"] == "accepted"


async def test_manual_link_and_unlink_are_audited_and_sticky(client, db, settings):
    cid = await insert_customer(db, settings, "C0301", "钱进")
    other = await insert_customer(db, settings, "C0302", "吴越", [("phone", PHONE)])
    await client.post("/v1/events", json=call_events("M-1", phone="13700000001"), headers=CTI_KEY)
    iid = (await interaction(db, "M-1"))["id"]

    resp = await client.post(f"/v1/interactions/{iid}/link", json={"customer_no": "C0301", "reason": "verbal ID"},
                             headers=READ_KEY)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["customer_no"] == "C0301"
    row = await interaction(db, "M-1")
    assert row["customer_id"] == cid and row["linked_by"] == "source:desktop"

    # an automatic identification later does not override a person's decision
    await client.post("/v1/events", json=event("call.held", sid="M-1/held", interaction_id="M-1",
                                               identifiers=[{"kind": "phone", "value": PHONE}]), headers=CTI_KEY)
    assert (await interaction(db, "M-1"))["customer_id"] == cid

    resp = await client.post(f"/v1/interactions/{iid}/unlink", json={"reason": "wrong customer"}, headers=READ_KEY)
    assert resp.status == 200
    assert (await interaction(db, "M-1"))["customer_id"] is None
    audit = await db.fetch("SELECT actor, action, customer_id, interaction_id, reason FROM audit_log "
                           "WHERE action IN ('link', 'unlink') ORDER BY id")  # (the ringing call's pop is audited too)
    assert [(a["action"], a["customer_id"], a["reason"]) for a in audit] == [
        ("link", cid, "verbal ID"), ("unlink", cid, "wrong customer")]
    assert all(a["actor"] == "source:desktop" and a["interaction_id"] == iid for a in audit)
    detail = await (await client.get(f"/v1/interactions/{iid}", headers=READ_KEY)).json()
    assert [ln["action"] for ln in detail["links"]] == ["link", "unlink"]
    assert other  # the phone's owner exists, and still did not win

    await assert_problem(await client.post(f"/v1/interactions/{iid}/link", json={"reason": "x"}, headers=READ_KEY),
                         422, "validation-failed", field="customer_no")
    await assert_problem(await client.post(f"/v1/interactions/{iid}/link", json={"customer_no": "NOPE",
                                                                                  "reason": "x"}, headers=READ_KEY),
                         422, "validation-failed", field="customer_no")
    await assert_problem(await client.post(f"/v1/interactions/{iid}/link", json={"customer_no": "C0301",
                                                                                  "reason": "x"}, headers=CTI_KEY),
                         403, "forbidden")


async def test_customer_timeline_newest_first_with_keyset_pages_and_filters(client, db, settings):
    await insert_customer(db, settings, "C0401", "冯军", [("phone", PHONE)])
    evs = []
    for n in range(25):
        at = T0 + dt.timedelta(hours=n)
        channel, kind = (("voice", "call.offered") if n % 2 else ("online_banking", "login.failed"))
        evs.append(event(kind, sid=f"t-{n}", channel=channel, interaction_id=f"T-{n}", at=at,
                         identifiers=[{"kind": "phone", "value": PHONE}]))
    await client.post("/v1/events", json=evs, headers=CTI_KEY)

    seen, cursor = [], None
    for _ in range(10):
        url = "/v1/customers/C0401/interactions?limit=10" + (f"&cursor={cursor}" if cursor else "")
        body = await (await client.get(url, headers=READ_KEY)).json()
        seen += [i["external_id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [f"T-{n}" for n in range(24, -1, -1)]

    body = await (await client.get("/v1/customers/C0401/interactions?channel=voice", headers=READ_KEY)).json()
    assert {i["channel"] for i in body["items"]} == {"voice"} and len(body["items"]) == 12
    since = (T0 + dt.timedelta(hours=20)).isoformat()
    resp = await client.get("/v1/customers/C0401/interactions", params={"since": since}, headers=READ_KEY)
    assert len((await resp.json())["items"]) == 5

    await assert_problem(await client.get("/v1/customers/NOPE/interactions", headers=READ_KEY), 404, "not-found")
    await assert_problem(await client.get("/v1/customers/C0401/interactions?limit=0", headers=READ_KEY), 422,
                         "validation-failed", field="limit")
    await assert_problem(await client.get("/v1/customers/C0401/interactions?cursor=zzz", headers=READ_KEY), 422,
                         "validation-failed", field="cursor")
    await assert_problem(await client.get("/v1/customers/C0401/interactions?channel=fax", headers=READ_KEY), 422,
                         "validation-failed", field="channel")
    await assert_problem(await client.get("/v1/customers/C0401/interactions?since=2026-01-01", headers=READ_KEY),
                         422, "validation-failed", field="since")
    await assert_problem(await client.get("/v1/customers/C0401/interactions"), 401, "unauthorized")
    await assert_problem(await client.get("/v1/interactions/not-a-uuid", headers=READ_KEY), 404, "not-found")


async def test_events_published_per_customer_and_agent_after_commit(client, db, settings, redis_client):
    cid = await insert_customer(db, settings, "C0501", "陈晨", [("phone", PHONE)])
    await redis_client.set(redis_keys.summary_cache(str(cid)), b"stale")
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(redis_keys.customer_channel(str(cid)), redis_keys.agent_channel("8001"))
    await pubsub.get_message(timeout=1)
    await pubsub.get_message(timeout=1)
    resp = await client.post("/v1/events", json=call_events("P-1")[:2], headers=CTI_KEY)
    assert resp.status == 200
    got = []
    for _ in range(10):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if msg:
            got.append((msg["channel"].decode(), json.loads(msg["data"])))
        if len(got) == 3:
            break
    await pubsub.aclose()
    channels = sorted(c for c, _ in got)
    assert channels == sorted([redis_keys.customer_channel(str(cid))] * 2 + [redis_keys.agent_channel("8001")])
    ringing = next(m for c, m in got if c == redis_keys.agent_channel("8001"))
    assert ringing["type"] == "call.ringing" and ringing["customer_id"] == cid
    assert ringing["identification"] == "identified"
    offered = next(m for c, m in got if m["type"] == "call.offered")
    assert offered["identifiers"] == [{"kind": "phone", "masked": "139****5678"}]
    assert "13912345678" not in json.dumps([m for _, m in got])
    assert await redis_client.get(redis_keys.summary_cache(str(cid))) is None, "cached summary invalidated"


async def test_a_group_published_in_one_command_arrives_whole_on_every_channel(client, db, settings, redis_client):
    """The publisher sends a committed group's payloads concatenated, split again by byte length in Redis:
    multi-byte text, customers and agents (some events with neither) all come out as sent."""
    cid = await insert_customer(db, settings, "C0502", "欧阳娜娜", [("phone", PHONE)])
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(redis_keys.ALL_EVENTS_CHANNEL, redis_keys.customer_channel(str(cid)),
                           redis_keys.agent_channel("坐席-07"))
    for _ in range(3):
        await pubsub.get_message(timeout=1)
    batch = [event("message.received", sid=f"pub-{i}", channel="email", subject=f"投诉：第{i}次转账失败 ✉",
                   identifiers=[{"kind": "phone", "value": PHONE}] if i % 2 else [],
                   **({"agent_id": "坐席-07"} if i % 3 == 0 else {})) for i in range(7)]
    resp = await client.post("/v1/events", json=batch, headers=CTI_KEY)
    assert (await resp.json())["accepted"] == 7
    got: dict[str, list[dict]] = {}
    for _ in range(40):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if msg:
            got.setdefault(msg["channel"].decode(), []).append(json.loads(msg["data"]))
        if sum(map(len, got.values())) == 7 + 3 + 3:
            break
    await pubsub.aclose()
    assert sorted(m["source_event_id"] for m in got[redis_keys.ALL_EVENTS_CHANNEL]) == [f"pub-{i}" for i in range(7)]
    assert sorted(m["source_event_id"] for m in got[redis_keys.customer_channel(str(cid))]) == ["pub-1", "pub-3",
                                                                                               "pub-5"]
    assert sorted(m["source_event_id"] for m in got[redis_keys.agent_channel("坐席-07")]) == ["pub-0", "pub-3",
                                                                                            "pub-6"]
    assert all(m["customer_id"] == cid for m in got[redis_keys.customer_channel(str(cid))])
    assert all(m["agent_id"] == "坐席-07" for m in got[redis_keys.agent_channel("坐席-07")])


async def test_ingest_carries_on_while_redis_is_down_and_recovers(aiohttp_client, database_url, tmp_path, db,
                                                                   settings):
    rd = EmbeddedRedis(tmp_path / "rd", persist=False)
    url = rd.start()
    try:
        app = create_app(make_settings(database_url, url, tmp_path))
        client = await aiohttp_client(app)
        cid = await insert_customer(db, settings, "C0601", "林木", [("phone", PHONE)])
        await asyncio.get_running_loop().run_in_executor(None, rd.stop)
        seq = itertools.count()
        for _ in range(5):
            e = event("call.offered", sid=f"down-{next(seq)}", identifiers=[{"kind": "phone", "value": PHONE}])
            assert (await client.post("/v1/events", json=e, headers=CTI_KEY)).status == 201
        await app[keys.PUBLISHER].drain(5)
        text = await (await client.get("/metrics")).text()
        failed = [ln for ln in text.splitlines() if ln.startswith("cg_events_publish_failed_total")]
        assert failed and float(failed[0].split()[-1]) >= 1

        await asyncio.get_running_loop().run_in_executor(None, rd.start)
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(url)
        await r.set(redis_keys.summary_cache(str(cid)), b"stale-from-before")
        pubsub = r.pubsub()
        await pubsub.subscribe(redis_keys.ALL_EVENTS_CHANNEL)
        await pubsub.get_message(timeout=1)
        msg = None
        for i in range(40):  # recovery is automatic: a later event is published again
            await client.post("/v1/events", json=event("call.offered", sid=f"up-{i}"), headers=CTI_KEY)
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg:
                break
        assert msg is not None
        for _ in range(20):  # and the invalidations missed during the outage are replayed
            if await r.get(redis_keys.summary_cache(str(cid))) is None:
                break
            await asyncio.sleep(0.1)
        assert await r.get(redis_keys.summary_cache(str(cid))) is None
        await pubsub.aclose()
        await r.aclose()
    finally:
        rd.stop()


def test_interaction_ids_made_without_uuid_objects_equal_uuid5():
    """Ingest keys interactions by ``interaction_id_text``, made from SHA-1 by hand; it must be the very id
    that ``interaction_uuid`` (``uuid.uuid5``) gives, which other modules and stored rows use."""
    from gateway.events.ingest import interaction_id_text, interaction_uuid

    cases = [("cti.asterisk", "1722863811.39"), ("email", "<a@b.cn>"), ("mobile", "会话-7"), ("x", ""),
             ("cti.test", "cg:0190f1c2-3d4e-7f60-8a9b-0c1d2e3f4a5b"), ("cti.test", "cg:not-a-uuid")]
    cases += [(f"src{i}", f"ext-{i}-{'z' * (i % 70)}") for i in range(500)]
    for source, external in cases:
        assert interaction_id_text(source, external) == str(interaction_uuid(source, external))
