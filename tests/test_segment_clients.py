"""The real Segment and RudderStack Python SDKs pointed at the gateway (a real port) as their host,
with the real ingest on PostgreSQL: events stored exactly once, even when the SDK retries."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from gateway.app import create_app
from tests.conftest import make_settings
from tests.factories import insert_customer
from tests.test_segment_http import KEY, FlakySink, stored

AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
READ = {"X-API-Key": "dev-desktop-key"}
EXPECTED = ["screen.viewed", "login.failed", "identity.linked", "transfer.failed", "identity.linked",
            "screen.viewed"]


@pytest.fixture
def sink() -> FlakySink:
    return FlakySink()


@pytest.fixture
def app_settings(database_url: str, redis_url: str, tmp_path: Any) -> Any:
    return make_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def gateway(aiohttp_client: Any, app_settings: Any, sink: FlakySink) -> Any:
    return await aiohttp_client(create_app(app_settings, extra_setup=[sink.install]))


@pytest.fixture
def host(gateway: Any) -> str:
    """The SDK ``host``: the SDKs append ``/v1/batch`` themselves."""
    return str(gateway.make_url("/v1/channels/mobile"))


def _session(client: Any, prefix: str, at: dt.datetime = AT) -> None:
    """An app session as the SDK sends it: anonymous screen and failure, identify, a transfer, alias, page."""
    tick = iter(range(100))

    def t() -> dt.datetime:
        return at + dt.timedelta(seconds=next(tick))

    client.screen(anonymous_id="anon-1", name="Login", timestamp=t(), message_id=f"{prefix}-1")
    client.track(anonymous_id="anon-1", event="Login Failed", properties={"reason": "WRONG_PASSWORD"},
                 timestamp=t(), message_id=f"{prefix}-2")
    client.identify(user_id="zhangsan_88", anonymous_id="anon-1", traits={"customerNo": "C0012345"},
                    timestamp=t(), message_id=f"{prefix}-3")
    client.track(user_id="zhangsan_88", anonymous_id="anon-1", event="Transfer Failed",
                 properties={"reason": "DAILY_LIMIT_EXCEEDED", "amount": 25000}, timestamp=t(),
                 message_id=f"{prefix}-4")
    client.alias(previous_id="anon-1", user_id="zhangsan_88", timestamp=t(), message_id=f"{prefix}-5")
    client.page(anonymous_id="anon-1", name="Help", timestamp=t(), message_id=f"{prefix}-6")


async def _types(db: asyncpg.Pool) -> list[str]:
    return [r["type"] for r in await stored(db)]


@pytest.mark.parametrize("gzip", [False, True])
async def test_segment_sdk_sync_mode(host: str, db: asyncpg.Pool, gzip: bool):
    client = SegmentClient(write_key=KEY, host=host, sync_mode=True, gzip=gzip)
    await asyncio.to_thread(_session, client, "seg")
    rows = await stored(db)
    assert [r["type"] for r in rows] == EXPECTED
    assert [r["source_event_id"] for r in rows] == [f"seg-{i}" for i in range(1, 7)]
    kinds = {i["kind"] for i in rows[2]["identifiers"]}
    assert kinds == {"online_user_id", "customer_no", "device_id"}


async def test_rudderstack_sdk_sync_mode_gzip(host: str, db: asyncpg.Pool):
    client = RudderClient(write_key=KEY, host=host, sync_mode=True)  # gzip is its default
    await asyncio.to_thread(_session, client, "rs")
    rows = await stored(db)
    assert [r["type"] for r in rows] == EXPECTED
    # RudderStack puts identify traits under context.traits: the customer number is still found
    assert "customer_no" in {i["kind"] for i in rows[2]["identifiers"]}


def _flush(client: Any) -> None:
    try:
        client.flush()
    finally:
        client.join()


def _client(sdk: str, key: str, host: str, errors: list[Any]) -> Any:
    cls = SegmentClient if sdk == "segment" else RudderClient
    return cls(write_key=key, host=host, upload_interval=0.05, max_retries=3,
               on_error=lambda e, batch: errors.append(e))


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_sdk_retry_after_a_lost_reply_stores_once(host: str, sink: FlakySink, db: asyncpg.Pool, sdk: str):
    """The first upload is committed but answered 503 (as if the reply were lost): the SDK retries the
    same batch, the gateway answers 200 and PostgreSQL holds every event once."""
    sink.commit_then_fail = 1
    errors: list[Any] = []
    client = _client(sdk, KEY, host, errors)
    _session(client, sdk)
    await asyncio.to_thread(_flush, client)
    assert errors == []
    assert sink.calls >= 2                    # the retry happened
    assert await _types(db) == EXPECTED      # ... and stored nothing twice


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_sdk_reads_code_and_message_and_does_not_retry_a_bad_key(host: str, sink: FlakySink,
                                                                       db: asyncpg.Pool, sdk: str):
    errors: list[Any] = []
    client = _client(sdk, "not-a-key", host, errors)
    client.track(anonymous_id="a", event="Login Failed", message_id="bad-1")
    await asyncio.to_thread(_flush, client)
    assert len(errors) == 1
    assert errors[0].status == 401 and errors[0].code == "invalid_write_key" and errors[0].message
    assert sink.calls == 0 and await stored(db) == []


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_identify_links_earlier_anonymous_events_to_the_customer(
        gateway: Any, host: str, db: asyncpg.Pool, app_settings: Any, sdk: str):
    """Anonymous app use yesterday and today, then identify: the agent's view of the customer
    (GET /v1/customers/{no}/interactions) holds both days' anonymous interactions."""
    await insert_customer(db, app_settings, "C0012345", identifiers=[("online_user_id", "zhangsan_88")])
    cls = SegmentClient if sdk == "segment" else RudderClient
    client = cls(write_key=KEY, host=host, sync_mode=True)
    yesterday = AT - dt.timedelta(days=1)

    def anonymous_use() -> None:
        client.screen(anonymous_id="dev-9", name="Transfer", timestamp=yesterday, message_id="x-1")
        client.track(anonymous_id="dev-9", event="Login Failed", properties={"reason": "WRONG_PASSWORD"},
                     timestamp=AT, message_id="x-2")

    await asyncio.to_thread(anonymous_use)
    resp = await gateway.get("/v1/customers/C0012345/interactions", headers=READ)
    assert (await resp.json())["items"] == []          # nothing known of the device yet
    assert {r["source_event_id"]: r["customer_id"] for r in await stored(db)} == {"x-1": None, "x-2": None}

    await asyncio.to_thread(client.identify, user_id="zhangsan_88", anonymous_id="dev-9",
                            timestamp=AT + dt.timedelta(seconds=30), message_id="x-3")
    resp = await gateway.get("/v1/customers/C0012345/interactions", headers=READ)
    assert resp.status == 200, await resp.text()
    items = sorted((await resp.json())["items"], key=lambda i: i["started_at"])
    assert [(i["channel"], i["customer_no"], i["event_count"]) for i in items] == [
        ("mobile_banking", "C0012345", 1),        # yesterday: linked through the learned device id
        ("mobile_banking", "C0012345", 2),        # today's session: the failed login, then identify
    ]
    assert items[0]["linked_by"] == "auto:device_id"
    assert items[1]["last_type"] == "identity.linked"

    # and a later anonymous event of that device is the customer's straight away
    await asyncio.to_thread(client.track, anonymous_id="dev-9", event="Card Frozen",
                            timestamp=AT + dt.timedelta(days=1), message_id="x-4")
    rows = {r["source_event_id"]: r["customer_id"] for r in await stored(db)}
    assert rows["x-4"] is not None and rows["x-4"] == rows["x-3"]
