"""POST /v1/channels/online-banking/webhook, signed by the reference ``standardwebhooks`` package."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from gateway.app import create_app
from gateway.clock import FrozenClock
from tests.conftest import FIXTURES, make_settings
from tests.helpers import assert_problem
from tests.test_segment_http import FlakySink, stored

PATH = "/v1/channels/online-banking/webhook"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"          # config/default.toml's dev secret
NEW_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
NOW = dt.datetime(2026, 11, 28, 1, 40, tzinfo=dt.UTC)
BODY = (FIXTURES / "online_banking" / "transfer_failed.json").read_bytes()


def signed(msg_id: str, body: bytes, *, at: dt.datetime = NOW, secret: str = SECRET) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them, with the reference implementation."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "Content-Type": "application/json",
    }


@pytest.fixture
def sink() -> FlakySink:
    return FlakySink()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def ob_client(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Any, sink: FlakySink,
                    clock: FrozenClock) -> Any:
    settings = make_settings(database_url, redis_url, tmp_path, sources={
        "online-banking": {"auth": "webhook", "webhook_secrets": [SECRET, NEW_SECRET]},
        "desktop": {"auth": "api_key", "api_keys": ["dev-desktop-key"], "scopes": ["read"]},
    })
    return await aiohttp_client(create_app(settings, clock=clock, extra_setup=[sink.install]))


async def test_signed_webhook_is_ingested_once_and_a_replay_is_a_duplicate(ob_client: Any, db: asyncpg.Pool):
    headers = signed("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", BODY)
    first = await ob_client.post(PATH, data=BODY, headers=headers)
    assert first.status == 200, await first.text()
    one = await first.json()
    assert one["status"] == "accepted" and one["source_event_id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    again = await ob_client.post(PATH, data=BODY, headers=headers)
    assert again.status == 200
    two = await again.json()
    assert two["status"] == "duplicate" and two["event_id"] == one["event_id"]
    rows = await stored(db, "online-banking")
    assert [(r["source_event_id"], r["type"], r["reason"]) for r in rows] == [
        ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "transfer.failed", "DAILY_LIMIT_EXCEEDED")]
    # identifiers are stored masked only
    assert "6217001234567890122" not in str(rows[0]["identifiers"])


async def test_a_replay_after_the_window_is_refused(ob_client: Any, db: asyncpg.Pool, clock: FrozenClock):
    """A captured webhook replayed later than 5 minutes fails on its timestamp: 401, nothing stored twice."""
    headers = signed("msg_replayed", BODY)
    assert (await ob_client.post(PATH, data=BODY, headers=headers)).status == 200
    clock.advance(6 * 60)
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    await assert_problem(resp, 401, "unauthorized", field="webhook-timestamp")
    assert len(await stored(db, "online-banking")) == 1


async def test_oversized_body_is_413(ob_client: Any):
    body = b'{"type":"login.failed","timestamp":"2026-11-28T10:00:00Z","data":{"pad":"' + b"x" * 5_000_000 + b'"}}'
    resp = await ob_client.post(PATH, data=io.BytesIO(body), headers=signed("msg_big", body))
    await assert_problem(resp, 413, "payload-too-large")


async def test_rotated_secret_and_several_signatures(ob_client: Any, db: asyncpg.Pool):
    headers = signed("msg_rot", BODY, secret=NEW_SECRET)
    headers["webhook-signature"] = "v1,bm90LXRoZS1zaWduYXR1cmU= " + headers["webhook-signature"] + " v1a,ed25519sig"
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(("change", "field"), [
    ({"webhook-signature": "v1,AAAA"}, "webhook-signature"),
    ({"webhook-signature": "garbage-without-comma"}, "webhook-signature"),
    ({"webhook-signature": "v1,\u00e9\u00e9"}, "webhook-signature"),                 # non-ASCII
    ({"webhook-timestamp": "yesterday"}, "webhook-timestamp"),
    ({"webhook-timestamp": "99999999999999999999"}, "webhook-timestamp"),           # overflows datetime
    ({"webhook-timestamp": "-1"}, "webhook-timestamp"),
    ({"webhook-timestamp": str(int((NOW - dt.timedelta(minutes=5, seconds=1)).timestamp()))}, "webhook-timestamp"),
    ({"webhook-timestamp": str(int((NOW + dt.timedelta(minutes=6)).timestamp()))}, "webhook-timestamp"),
    ({"webhook-id": ""}, "webhook-id"),
])
async def test_bad_signatures_are_401_problems_never_500(ob_client: Any, db: asyncpg.Pool, change: dict[str, str],
                                                        field: str):
    headers = signed("msg_bad", BODY)
    headers.update(change)
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    await assert_problem(resp, 401, "unauthorized", field=field)
    assert await stored(db, "online-banking") == []


async def test_malformed_header_bytes_are_401(ob_client: Any):
    """Raw non-UTF-8 bytes in the headers (aiohttp keeps them as surrogates) must not become a 500."""
    reader, writer = await _raw_connection(ob_client)
    writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nwebhook-id: m\xff\xfe\r\n"
                 b"webhook-timestamp: " + str(int(NOW.timestamp())).encode() + b"\r\n"
                 b"webhook-signature: v1,\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert b" 401 " in status_line, status_line


async def _raw_connection(client: Any) -> Any:
    import asyncio

    return await asyncio.open_connection(client.server.host, client.server.port)


async def test_unsigned_and_tampered_bodies(ob_client: Any):
    resp = await ob_client.post(PATH, data=BODY, headers={"Content-Type": "application/json"})
    await assert_problem(resp, 401, "unauthorized")
    headers = signed("msg_t", BODY)
    resp = await ob_client.post(PATH, data=BODY.replace(b"25000.00", b"95000.00"), headers=headers)
    await assert_problem(resp, 401, "unauthorized", field="webhook-signature")


async def test_reference_verifier_agrees_with_ours():
    """Sanity: the package we sign with verifies the same headers (on its own clock, so a fresh timestamp)."""
    now = dt.datetime.now(dt.UTC)
    headers = signed("msg_ref", BODY, at=now)
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)


@pytest.mark.parametrize("name", json.loads((FIXTURES / "online_banking" / "expected_bad_fields.json").read_text()))
async def test_invalid_events_are_422_naming_the_field(ob_client: Any, db: asyncpg.Pool, name: str):
    body = (FIXTURES / "online_banking" / name).read_bytes()
    field = json.loads((FIXTURES / "online_banking" / "expected_bad_fields.json").read_text())[name]
    resp = await ob_client.post(PATH, data=body, headers=signed(f"msg_{name}", body))
    if name == "bad_not_json.json":
        await assert_problem(resp, 400, "invalid-request", field=field)
    else:
        await assert_problem(resp, 422, "validation-failed", field=field)
    assert await stored(db, "online-banking") == []


async def test_store_unavailable_is_503_and_the_retry_stores_once(ob_client: Any, sink: FlakySink, db: asyncpg.Pool):
    sink.fail_next = 1
    headers = signed("msg_503", BODY)
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    await assert_problem(resp, 503, "store-unavailable")
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    assert resp.status == 200 and (await resp.json())["status"] == "accepted"
    assert len(await stored(db, "online-banking")) == 1


async def test_reply_lost_after_commit_then_redelivery_is_a_duplicate(ob_client: Any, sink: FlakySink,
                                                                       db: asyncpg.Pool):
    sink.commit_then_fail = 1
    headers = signed("msg_lost", BODY)
    await assert_problem(await ob_client.post(PATH, data=BODY, headers=headers), 503, "store-unavailable")
    resp = await ob_client.post(PATH, data=BODY, headers=headers)
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    assert len(await stored(db, "online-banking")) == 1


async def test_failures_join_the_customer_history(ob_client: Any, db: asyncpg.Pool, settings: Any):
    """Online-banking events with the login id are the customer's: the agent sees the failed transfer."""
    from tests.factories import insert_customer

    await insert_customer(db, settings, "C0012345", identifiers=[("online_user_id", "zhangsan_88")])
    for name in ("login_failed", "transfer_failed", "complaint_submitted"):
        body = (FIXTURES / "online_banking" / f"{name}.json").read_bytes()
        resp = await ob_client.post(PATH, data=body, headers=signed(f"msg_{name}", body))
        assert resp.status == 200, await resp.text()
    resp = await ob_client.get("/v1/customers/C0012345/interactions", headers={"X-API-Key": "dev-desktop-key"})
    assert resp.status == 200, await resp.text()
    items = (await resp.json())["items"]
    assert {(i["channel"], i["last_type"]) for i in items} >= {
        ("online_banking", "transfer.failed"), ("online_banking", "complaint.opened")}
    failed = next(i for i in items if i["last_type"] == "transfer.failed")
    assert failed["reason"] == "DAILY_LIMIT_EXCEEDED" and failed["customer_no"] == "C0012345"


async def test_webhook_route_is_in_openapi(ob_client: Any):
    doc = await (await ob_client.get("/openapi.json")).json()
    op = doc["paths"][PATH]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["properties"]["type"]["enum"]
