"""The Segment-compatible mobile API over HTTP: auth, limits, gzip, answers, per-message rejections."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.clock import FrozenClock
from gateway.errors import StoreUnavailable
from gateway.events.model import ContactEvent
from gateway.events.sink import EventSink, IngestResult
from tests.conftest import FIXTURES, make_settings

BASE = "/v1/channels/mobile/v1"
KEY = "dev-mobile-write-key"
NOW = dt.datetime(2026, 11, 28, 1, 32, 20, tzinfo=dt.UTC)
SESSION = json.loads((FIXTURES / "segment" / "mobile_session_batch.json").read_text())


class FlakySink:
    """Wraps the app's real ingest (a test double of *our* EventSink interface, never of PostgreSQL).

    ``fail_next``: the next submits raise StoreUnavailable before anything is stored.
    ``commit_then_fail``: the next submits are committed by the real ingest, then raise StoreUnavailable
    — a reply lost after commit, which makes clients retry what is already stored.
    """

    def __init__(self) -> None:
        self.inner: EventSink | None = None
        self.calls = 0
        self.fail_next = 0
        self.commit_then_fail = 0

    async def submit(self, events: Sequence[ContactEvent]) -> list[IngestResult]:
        assert self.inner is not None
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("PostgreSQL is unavailable")
        results = await self.inner.submit(events)
        if self.commit_then_fail:
            self.commit_then_fail -= 1
            raise StoreUnavailable("connection lost after commit")
        return results

    def install(self, app: web.Application) -> None:
        """``extra_setup`` step: wrap the real ingest once it has started."""

        async def wrap(app: web.Application) -> None:
            self.inner = app[keys.INGEST]
            app[keys.INGEST] = self

        app.on_startup.append(wrap)


async def stored(db: asyncpg.Pool, source: str = "mobile-banking") -> list[asyncpg.Record]:
    """The events of a source as PostgreSQL holds them (the source of truth)."""
    async with db.acquire() as conn:
        return await conn.fetch("SELECT source_event_id, type, customer_id, identifiers, attributes, reason "
                                "FROM events WHERE source = $1 ORDER BY occurred_at, source_event_id", source)


def basic(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def assert_segment_error(resp: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """Segment's error shape (what the SDKs read) plus our problem fields, as application/json."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    body = json.loads(text)
    assert body["success"] is False and body["code"] == code and body["message"], body
    assert body["status"] == status and body["type"].startswith("https://contact-gateway.dev/problems/")
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


@pytest.fixture
def sink() -> FlakySink:
    return FlakySink()


@pytest.fixture
async def seg_client(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Any, sink: FlakySink) -> Any:
    settings = make_settings(database_url, redis_url, tmp_path)
    return await aiohttp_client(create_app(settings, clock=FrozenClock(NOW), extra_setup=[sink.install]))


async def test_batch_with_basic_auth_answers_success_true(seg_client: Any, db: asyncpg.Pool):
    resp = await seg_client.post(f"{BASE}/batch", json={**SESSION, "writeKey": None}, headers=basic())
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"success": True}
    rows = await stored(db)
    assert len(rows) == len(SESSION["batch"])
    again = await seg_client.post(f"{BASE}/batch", json={**SESSION, "writeKey": None}, headers=basic())
    assert again.status == 200 and await again.json() == {"success": True}
    assert len(await stored(db)) == len(SESSION["batch"])  # the retry answered success, stored nothing twice


async def test_write_key_in_body_only(seg_client: Any, db: asyncpg.Pool):
    resp = await seg_client.post(f"{BASE}/batch", json=SESSION)
    assert resp.status == 200, await resp.text()
    assert {r["source_event_id"] for r in await stored(db)} == {m["messageId"] for m in SESSION["batch"]}


@pytest.mark.parametrize("call", ["track", "identify", "screen", "page", "alias"])
async def test_single_calls(seg_client: Any, db: asyncpg.Pool, call: str):
    msg = {"track": {"event": "Login Failed", "anonymousId": "a1"},
           "identify": {"userId": "u1", "anonymousId": "a1"},
           "screen": {"name": "Home", "anonymousId": "a1"},
           "page": {"name": "Help", "anonymousId": "a1"},
           "alias": {"userId": "u1", "previousId": "a1"}}[call]
    resp = await seg_client.post(f"{BASE}/{call}", json={**msg, "messageId": f"{call}-1", "writeKey": KEY})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"success": True}
    assert [r["source_event_id"] for r in await stored(db)] == [f"{call}-1"]


async def test_gzip_body_is_limited_after_decompression(seg_client: Any, db: asyncpg.Pool):
    ok = gzip.compress(json.dumps(SESSION).encode())
    resp = await seg_client.post(f"{BASE}/batch", data=ok,
                                 headers={**basic(), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    # 600 KB of JSON compresses to a few KB: the limit must see the inflated size
    filler = [{"type": "track", "event": "x", "anonymousId": "a", "messageId": f"f{i}",
               "properties": {"pad": "z" * 5000}} for i in range(120)]
    bomb = gzip.compress(json.dumps({"batch": filler}).encode())
    assert len(bomb) < 64 * 1024
    resp = await seg_client.post(f"{BASE}/batch", data=bomb,
                                 headers={**basic(), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    await assert_segment_error(resp, 413, "payload_too_large")
    assert len(await stored(db)) == len(SESSION["batch"])  # only the first batch


async def test_broken_gzip_is_400(seg_client: Any):
    resp = await seg_client.post(f"{BASE}/batch", data=b"\x1f\x8b\x08\x00garbage-not-deflate",
                                 headers={**basic(), "Content-Encoding": "gzip"})
    await assert_segment_error(resp, 400, "invalid_request")


async def test_single_call_over_32_kb_is_413(seg_client: Any):
    msg = {"event": "x", "anonymousId": "a", "properties": {"pad": "z" * 33000}, "writeKey": KEY}
    resp = await seg_client.post(f"{BASE}/track", json=msg)
    await assert_segment_error(resp, 413, "payload_too_large")


@pytest.mark.parametrize(("headers", "body_key"), [
    ({}, None),                                    # no key at all
    (basic("wrong-key"), None),
    ({}, "wrong-key"),
    (basic(KEY), "another-key"),                   # both given and different
    ({"Authorization": "Basic !!!not-base64"}, None),
    (basic("dev-cti-key"), None),                  # a real key, but of another source
])
async def test_bad_write_keys_are_401(seg_client: Any, db: asyncpg.Pool, headers: dict[str, str],
                                      body_key: str | None):
    body = {**SESSION}
    body.pop("writeKey")
    if body_key:
        body["writeKey"] = body_key
    resp = await seg_client.post(f"{BASE}/batch", json=body, headers=headers)
    await assert_segment_error(resp, 401, "invalid_write_key")
    assert await stored(db) == []


@pytest.mark.parametrize("data", [b"{not json", b"[1,2]", b'{"batch": 5}'])
async def test_bad_json_is_400(seg_client: Any, data: bytes):
    resp = await seg_client.post(f"{BASE}/batch", data=data, headers={**basic(), "Content-Type": "application/json"})
    await assert_segment_error(resp, 400, "invalid_request")


async def test_bad_messages_do_not_sink_the_batch(seg_client: Any, db: asyncpg.Pool):
    bad = json.loads((FIXTURES / "segment" / "bad_messages_batch.json").read_text())
    resp = await seg_client.post(f"{BASE}/batch", json=bad, headers=basic())
    body = await assert_segment_error(resp, 400, "invalid_request", field="batch[3].timestamp")
    assert body["stored"] == 1 and len(body["errors"]) == 7
    assert [r["source_event_id"] for r in await stored(db)] == ["b-8"]


async def test_invalid_single_call_is_400_naming_the_field(seg_client: Any):
    resp = await seg_client.post(f"{BASE}/track", json={"anonymousId": "a", "writeKey": KEY})
    await assert_segment_error(resp, 400, "invalid_request", field="event")


async def test_store_unavailable_is_503_with_code(seg_client: Any, db: asyncpg.Pool, sink: FlakySink):
    sink.fail_next = 1
    resp = await seg_client.post(f"{BASE}/batch", json=SESSION)
    await assert_segment_error(resp, 503, "store_unavailable")
    assert await stored(db) == []
    resp = await seg_client.post(f"{BASE}/batch", json=SESSION)
    assert resp.status == 200
    assert len(await stored(db)) == len(SESSION["batch"])


async def test_ingest_rejection_of_one_message_is_reported(seg_client: Any, db: asyncpg.Pool):
    """A message the parser accepts but ingest refuses (an invalid card number) is named in the 400."""
    batch = {"batch": [
        {"type": "track", "event": "Card Frozen", "userId": "u1", "messageId": "c-1",
         "properties": {"card_no": "1234"}},
        {"type": "track", "event": "Card Frozen", "userId": "u1", "messageId": "c-2"},
    ], "writeKey": KEY}
    resp = await seg_client.post(f"{BASE}/batch", json=batch)
    body = await assert_segment_error(resp, 400, "invalid_request")
    assert body["stored"] == 1 and body["errors"][0]["field"].startswith("batch[0].identifiers")
    assert [r["source_event_id"] for r in await stored(db)] == ["c-2"]


async def test_every_segment_route_is_in_openapi(seg_client: Any):
    doc = await (await seg_client.get("/openapi.json")).json()
    for call in ("batch", "track", "identify", "screen", "page", "alias"):
        op = doc["paths"][f"{BASE}/{call}"]["post"]
        assert op["responses"]["200"] and op["requestBody"]


async def test_alias_and_trait_customer_number_link_the_device(seg_client: Any, db: asyncpg.Pool, settings: Any):
    """``alias`` (previousId = the web visitor's anonymous id) and an ``identify`` whose userId the bank does
    not know but whose traits carry the customer number both attach earlier anonymous interactions."""
    from tests.factories import READ_KEY, insert_customer

    await insert_customer(db, settings, "C0077001")
    await insert_customer(db, settings, "C0077002", identifiers=[("online_user_id", "lisi_02")])
    early = {"batch": [
        {"type": "page", "name": "Loans", "anonymousId": "web-anon-1", "messageId": "p-1",
         "timestamp": "2026-11-27T02:00:00Z"},
        {"type": "track", "event": "Login Failed", "anonymousId": "app-anon-2", "messageId": "p-2",
         "timestamp": "2026-11-27T02:00:00Z"},
    ], "writeKey": KEY}
    assert (await seg_client.post(f"{BASE}/batch", json=early)).status == 200
    later = {"batch": [
        {"type": "identify", "userId": "app-user-unknown", "anonymousId": "app-anon-2", "messageId": "p-3",
         "traits": {"customerNo": "C0077001"}, "timestamp": "2026-11-28T01:00:00Z"},
        {"type": "alias", "previousId": "web-anon-1", "userId": "lisi_02", "messageId": "p-4",
         "timestamp": "2026-11-28T01:00:00Z"},
    ], "writeKey": KEY}
    resp = await seg_client.post(f"{BASE}/batch", json=later)
    assert resp.status == 200, await resp.text()
    for customer_no, first_type in (("C0077001", "login.failed"), ("C0077002", "screen.viewed")):
        resp = await seg_client.get(f"/v1/customers/{customer_no}/interactions", headers=READ_KEY)
        items = sorted((await resp.json())["items"], key=lambda i: i["started_at"])
        assert [i["last_type"] for i in items] == [first_type, "identity.linked"], items
        assert items[0]["linked_by"] == "auto:device_id"
