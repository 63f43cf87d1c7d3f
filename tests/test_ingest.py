"""POST /v1/events: validation, dedupe, batches, CloudEvents, auth, partitions — on real PostgreSQL."""

import asyncio
import datetime as dt
import json

import pytest
from standardwebhooks.webhooks import Webhook

from gateway.app import create_app
from tests.conftest import FIXTURES, make_settings
from tests.factories import CTI_KEY, T0, event
from tests.helpers import assert_problem


async def count(db, table="events"):
    return await db.fetchval(f"SELECT count(*) FROM {table}")


async def test_single_event_accepted_then_duplicate(client, db):
    body = event("call.offered", sid="a-1", interaction_id="1722863811.39", queue="vip",
                 identifiers=[{"kind": "phone", "value": "+86 139 1234 5678"}])
    resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    assert first["status"] == "accepted" and first["event_id"] and first["interaction_id"]

    resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
    assert resp.status == 200
    again = await resp.json()
    assert again["status"] == "duplicate"
    assert again["event_id"] == first["event_id"]
    assert again["interaction_id"] == first["interaction_id"]
    assert await count(db) == 1
    row = await db.fetchrow("SELECT identifiers, customer_id, identification FROM events")
    assert row["identifiers"] == [{"kind": "phone", "masked": "139****5678"}], "only the masked form is stored"
    assert row["identification"] == "unidentified"


async def test_batch_answers_per_event_and_one_bad_event_does_not_sink_it(client, db):
    good = event("call.offered", sid="b-1")
    bad = event("call.offered", sid="b-2", channel="fax")
    dup = event("call.offered", sid="b-1")
    also_good = event("login.failed", sid="b-3", channel="online_banking", source="cti.test")
    resp = await client.post("/v1/events", json=[good, bad, dup, also_good], headers=CTI_KEY)
    assert resp.status == 200
    body = await resp.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted", "rejected", "duplicate", "accepted"]
    assert body["results"][1]["field"] == "[1].channel"
    assert body["results"][2]["event_id"] == body["results"][0]["event_id"]
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 1)
    assert await count(db) == 2


async def test_batch_items_that_decode_are_still_checked_one_by_one(client, db):
    """A batch whose items all decode is decoded in one call; the rules msgspec does not check (a known
    type, the source's pattern, bounded attributes) still reject the bad item alone, naming its field."""
    batch = [event(sid="c-1"), event(sid="c-2", type="call.teleported"), event(sid="c-3", source="cti test"),
             event(sid="c-4", attributes={"blob": "x" * 20000}), event(sid="c-5")]
    resp = await client.post("/v1/events", json=batch, headers=CTI_KEY)
    results = (await resp.json())["results"]
    assert [(r["status"], r.get("field")) for r in results] == [
        ("accepted", None), ("rejected", "[1].type"), ("rejected", "[2].source"), ("rejected", "[3].attributes"),
        ("accepted", None)]
    assert await count(db) == 2


async def test_batch_limit(client, db):
    resp = await client.post("/v1/events", json=[event(sid=f"x{i}") for i in range(1001)], headers=CTI_KEY)
    await assert_problem(resp, 413, "payload-too-large", field="body")
    assert await count(db) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source_event_id": 17}, "source_event_id"),
        ({"type": "call.teleported"}, "type"),
        ({"type": "NotDotted"}, "type"),
        ({"source": "cti test"}, "source"),
        ({"source": ""}, "source"),
        ({"channel": "pigeon"}, "channel"),
        ({"occurred_at": "2026-11-28T09:41:07"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"identifiers": [{"kind": "fax", "value": "1"}]}, "identifiers[0].kind"),
        ({"identifiers": [{"kind": "phone", "value": "12"}]}, "identifiers[0].value"),
        ({"identifiers": [{"kind": "national_id", "value": "110101199003071234"}]}, "identifiers[0].value"),
        ({"identifiers": [{"kind": "card_no", "value": "6217000010000000001"}]}, "identifiers[0].value"),
        ({"subject": "x" * 501}, "subject"),
        ({"attributes": {"blob": "x" * 20000}}, "attributes"),
        ({"surprise": 1}, "surprise"),
        ({"direction": "sideways"}, "direction"),
    ],
)
async def test_bad_event_is_422_naming_the_field_and_nothing_stored(client, db, change, field):
    body = event("call.ringing")
    body.update(change)
    resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
    await assert_problem(resp, 422, "validation-failed", field=field)
    assert await count(db) == 0


async def test_nul_character_is_422_naming_the_field(client, db):
    """PostgreSQL stores no U+0000 in text or jsonb: refused up front, never a 500."""
    for change, field in (({"subject": "a\u0000b"}, "subject"),
                          ({"attributes": {"note": ["ok", "x\u0000"]}}, "attributes.note[1]")):
        body = event("call.ringing")
        body.update(change)
        resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
        await assert_problem(resp, 422, "validation-failed", field=field)
    resp = await client.post("/v1/events", json=[event(sid="n-ok"), event(sid="n-bad", reason="\u0000")],
                             headers=CTI_KEY)
    assert [r["status"] for r in (await resp.json())["results"]] == ["accepted", "rejected"]
    assert await count(db) == 1


@pytest.mark.parametrize("missing", ["source", "source_event_id", "channel", "type", "occurred_at"])
async def test_missing_required_field(client, db, missing):
    body = event()
    del body[missing]
    await assert_problem(await client.post("/v1/events", json=body, headers=CTI_KEY), 422, "validation-failed",
                         field=missing)


async def test_invalid_json_wrong_type_and_empty(client, db):
    resp = await client.post("/v1/events", data=b'{"source": ', headers={**CTI_KEY, "Content-Type": "application/json"})
    await assert_problem(resp, 400, "invalid-request", field="body")
    resp = await client.post("/v1/events", data=b"<xml/>", headers={**CTI_KEY, "Content-Type": "text/xml"})
    await assert_problem(resp, 415, "unsupported-media-type", field="Content-Type")
    resp = await client.post("/v1/events", data=b"[]", headers={**CTI_KEY, "Content-Type": "application/json"})
    await assert_problem(resp, 422, "validation-failed", field="body")
    resp = await client.post("/v1/events", data=b"42", headers={**CTI_KEY, "Content-Type": "application/json"})
    await assert_problem(resp, 422, "validation-failed")
    assert await count(db) == 0


async def test_oversize_body_is_413(aiohttp_client, database_url, redis_url, tmp_path, db):
    settings = make_settings(database_url, redis_url, tmp_path, max_body_bytes=4096)
    client = await aiohttp_client(create_app(settings))
    body = [event(sid=f"big-{i}", subject="y" * 400) for i in range(20)]
    resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
    await assert_problem(resp, 413, "payload-too-large")
    assert await count(db) == 0


async def test_authentication(client, db):
    body = event()
    await assert_problem(await client.post("/v1/events", json=body), 401, "unauthorized")
    await assert_problem(await client.post("/v1/events", json=body, headers={"X-API-Key": "wrong"}), 401,
                         "unauthorized")
    # a CTI credential may not post as the online-banking source
    other = event(source="online-banking")
    await assert_problem(await client.post("/v1/events", json=other, headers=CTI_KEY), 403, "forbidden",
                         field="source")
    # core banking has the events scope, the desktop source does not
    await assert_problem(await client.post("/v1/events", json=body, headers={"X-API-Key": "dev-desktop-key"}),
                         403, "forbidden")
    assert await count(db) == 0


WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _signed(body: bytes, msg_id: str, at: dt.datetime, secret: str = WH_SECRET) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
            "Content-Type": "application/json"}


async def test_standard_webhooks_signed_post(client, db):
    now = dt.datetime.now(dt.UTC)
    payload = json.dumps(event("login.failed", source="online-banking", channel="online_banking",
                               sid="wh-1")).encode()
    resp = await client.post("/v1/events", data=payload, headers=_signed(payload, "msg_1", now))
    assert resp.status == 201, await resp.text()
    stale = _signed(payload, "msg_2", now - dt.timedelta(minutes=6))
    await assert_problem(await client.post("/v1/events", data=payload, headers=stale), 401, "unauthorized",
                         field="webhook-timestamp")
    forged = _signed(payload, "msg_3", now, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    await assert_problem(await client.post("/v1/events", data=payload, headers=forged), 401, "unauthorized",
                         field="webhook-signature")
    malformed = {**_signed(payload, "msg_4", now), "webhook-signature": "not-a-signature"}
    await assert_problem(await client.post("/v1/events", data=payload, headers=malformed), 401, "unauthorized")
    assert await count(db) == 1


async def test_cloudevents_structured_batch_and_binary(client, db):
    ce = {"specversion": "1.0", "id": "ce-1", "source": "cti.genesys", "type": "call.offered",
          "time": "2026-11-28T09:41:07+08:00", "datacontenttype": "application/json",
          "data": {"channel": "voice", "interaction_id": "g-1", "queue": "vip",
                   "identifiers": [{"kind": "phone", "value": "13912345678"}]}}
    resp = await client.post("/v1/events", data=json.dumps(ce),
                             headers={**CTI_KEY, "Content-Type": "application/cloudevents+json"})
    assert resp.status == 201, await resp.text()

    batch = [dict(ce, id="ce-2", type="call.ringing", data={**ce["data"], "agent_id": "8001"}),
             dict(ce, id="ce-3", type="call.flying"), dict(ce, id="ce-1")]
    resp = await client.post("/v1/events", data=json.dumps(batch),
                             headers={**CTI_KEY, "Content-Type": "application/cloudevents-batch+json"})
    body = await resp.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "duplicate"]
    assert body["results"][1]["field"] == "[1].type"

    # binary mode, as the cloudevents SDK sends by default
    headers = {**CTI_KEY, "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "ce-4",
               "ce-source": "cti.genesys", "ce-type": "call.answered", "ce-time": "2026-11-28T09:41:30+08:00"}
    resp = await client.post("/v1/events", data=json.dumps({"channel": "voice", "interaction_id": "g-1",
                                                            "agent_id": "8001"}), headers=headers)
    assert resp.status == 201, await resp.text()
    row = await db.fetchrow("SELECT status, agent_id, event_count FROM interactions WHERE external_id = 'g-1'")
    assert (row["status"], row["agent_id"], row["event_count"]) == ("answered", "8001", 3)

    missing_time = {k: v for k, v in ce.items() if k != "time"} | {"id": "ce-5"}
    resp = await client.post("/v1/events", data=json.dumps(missing_time),
                             headers={**CTI_KEY, "Content-Type": "application/cloudevents+json"})
    await assert_problem(resp, 422, "validation-failed", field="time")


async def test_cloudevents_spec_batch_sample_is_rejected_per_event(client, db):
    """The spec's batch example has placeholder types and no canonical data: every event is rejected, clearly."""
    sample = (FIXTURES / "samples" / "cloudevents_json_batch_example_spec.json").read_bytes()
    resp = await client.post("/v1/events", data=sample,
                             headers={**CTI_KEY, "Content-Type": "application/cloudevents-batch+json"})
    assert resp.status == 200
    body = await resp.json()
    assert body["accepted"] == 0 and body["rejected"] == len(body["results"]) > 0
    assert all(r["field"] for r in body["results"])


async def test_event_in_a_month_without_partition(client, db):
    far = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.UTC)
    old = dt.datetime(2015, 2, 2, 8, 0, tzinfo=dt.UTC)
    assert await db.fetchval("SELECT to_regclass('events_y2031m05')") is None
    for sid, at in (("future-1", far), ("past-1", old)):
        resp = await client.post("/v1/events", json=event("login.failed", sid=sid, channel="online_banking",
                                                          at=at), headers=CTI_KEY)
        assert resp.status == 201, await resp.text()
    assert await db.fetchval("SELECT to_regclass('events_y2031m05')::text") == "events_y2031m05"
    assert await db.fetchval("SELECT count(*) FROM events_y2015m02") == 1


async def test_month_boundary_in_utc(client, db):
    # 00:30 on 1 Dec in Beijing is still November in UTC: the event lands in the November partition.
    at = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    resp = await client.post("/v1/events", json=event("call.offered", sid="edge", at=at), headers=CTI_KEY)
    assert resp.status == 201
    assert await db.fetchval("SELECT count(*) FROM events_y2026m11") == 1


async def test_partitions_created_ahead(client, db):
    names = {r[0] for r in await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'")}
    now = dt.datetime.now(dt.UTC)
    for n in range(4):
        y, m = divmod(now.month - 1 + n, 12)
        assert f"events_y{now.year + y:04d}m{m + 1:02d}" in names


async def test_concurrent_posts_group_commit_and_concurrent_duplicates(client, db):
    bodies = [event("call.offered", sid=f"c-{i}", interaction_id=f"call-{i % 10}") for i in range(200)]
    resps = await asyncio.gather(*(client.post("/v1/events", json=b, headers=CTI_KEY) for b in bodies))
    assert all(r.status == 201 for r in resps)
    assert await count(db) == 200
    assert await db.fetchval("SELECT sum(event_count) FROM interactions") == 200

    same = event("call.ended", sid="same-1", interaction_id="call-1")
    resps = await asyncio.gather(*(client.post("/v1/events", json=same, headers=CTI_KEY) for _ in range(20)))
    statuses = sorted([(await r.json())["status"] for r in resps])
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 19
    ids = {(await r.json())["event_id"] for r in resps}
    assert len(ids) == 1
    assert await db.fetchval("SELECT count(*) FROM events WHERE source_event_id = 'same-1'") == 1


async def test_a_new_group_is_one_statement_and_a_retry_among_it_the_careful_way(client, db, monkeypatch):
    """New events are stored by one statement; a group holding an event stored already fails that statement
    with nothing written, then commits statement by statement: the new ones accepted once, the old one a
    duplicate with the original's id, and the interactions counted once per event."""
    from gateway.events import store

    careful = []
    insert_keys = store.insert_keys

    async def counting(conn, rows):
        careful.append(len(rows))
        return await insert_keys(conn, rows)

    monkeypatch.setattr(store, "insert_keys", counting)
    first = event("call.offered", sid="f-1", interaction_id="call-f")
    resp = await client.post("/v1/events", json=first, headers=CTI_KEY)
    assert resp.status == 201 and careful == [], "a new event takes the one-statement way"
    original = (await resp.json())["event_id"]

    batch = [event("call.ringing", sid="f-2", interaction_id="call-f", agent_id="8001"), first,
             event("call.answered", sid="f-3", interaction_id="call-f", agent_id="8001")]
    resp = await client.post("/v1/events", json=batch, headers=CTI_KEY)
    body = await resp.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "accepted"]
    assert body["results"][1]["event_id"] == original
    assert careful == [3], "the group with a retried event went the careful way"
    assert await count(db) == 3 and await count(db, "event_keys") == 3
    row = await db.fetchrow("SELECT event_count, status FROM interactions")
    assert (row["event_count"], row["status"]) == (3, "answered")


async def test_schema_document(client):
    resp = await client.get("/v1/schema/contact-event.json")
    assert resp.status == 200
    schema = await resp.json(content_type=None)
    ce = schema["$defs"]["ContactEvent"]
    assert set(ce["required"]) == {"source", "source_event_id", "channel", "type", "occurred_at"}
    assert "call.ringing" in ce["properties"]["type"]["enum"]
    assert ce["properties"]["source"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._:-]*$"


async def test_schema_validates_the_design_example(client):
    import jsonschema

    schema = await (await client.get("/v1/schema/contact-event.json")).json(content_type=None)
    example = event("call.ringing", sid="1722863811.39/AgentCalled/8001", source="cti.zs-callcentre",
                    interaction_id="1722863811.39", agent_id="8001", queue="vip", direction="inbound",
                    identifiers=[{"kind": "phone", "value": "+86 139 1234 5678"}],
                    attributes={"ivr_path": ["1", "3"], "auth_level": "ivr_pin"})
    jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "type": "call.teleported"}, schema)


async def test_store_unavailable_is_503_and_nothing_acknowledged(aiohttp_client, tmp_path, redis_url):
    from gateway.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg")
    url = pg.start()
    try:
        client = await aiohttp_client(create_app(make_settings(url, redis_url, tmp_path)))
        assert (await client.post("/v1/events", json=event(sid="before"), headers=CTI_KEY)).status == 201
        await asyncio.get_running_loop().run_in_executor(None, pg.stop)
        resp = await client.post("/v1/events", json=event(sid="during"), headers=CTI_KEY)
        await assert_problem(resp, 503, "store-unavailable")
        await asyncio.get_running_loop().run_in_executor(None, pg.start)
        for _ in range(20):
            resp = await client.post("/v1/events", json=event(sid="during"), headers=CTI_KEY)
            if resp.status != 503:
                break
            await asyncio.sleep(0.25)
        assert resp.status == 201, "the retried event is stored once PostgreSQL is back"
    finally:
        pg.stop()


def test_t0_is_aware():
    assert T0.tzinfo is not None
