"""The real Segment and RudderStack Python SDKs pointed at the gateway (a real port), as their host."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from gateway import keys
from gateway.app import create_app
from tests.conftest import make_settings
from tests.test_segment_http import KEY, RecordingSink

AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def host(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Any, sink: RecordingSink) -> str:
    """The SDK ``host``: the SDKs append ``/v1/batch`` themselves."""
    settings = make_settings(database_url, redis_url, tmp_path)

    def install(app: Any) -> None:
        app[keys.INGEST] = sink

    client = await aiohttp_client(create_app(settings, extra_setup=[install]))
    return str(client.make_url("/v1/channels/mobile"))


def _session(client: Any, prefix: str) -> None:
    """An app session as the SDK sends it: anonymous screen and failure, then identify and a transfer."""
    client.screen(anonymous_id="anon-1", name="Login", timestamp=AT, message_id=f"{prefix}-1")
    client.track(anonymous_id="anon-1", event="Login Failed", properties={"reason": "WRONG_PASSWORD"},
                 timestamp=AT, message_id=f"{prefix}-2")
    client.identify(user_id="zhangsan_88", anonymous_id="anon-1", traits={"customerNo": "C0012345"},
                    timestamp=AT, message_id=f"{prefix}-3")
    client.track(user_id="zhangsan_88", anonymous_id="anon-1", event="Transfer Failed",
                 properties={"reason": "DAILY_LIMIT_EXCEEDED", "amount": 25000}, timestamp=AT,
                 message_id=f"{prefix}-4")
    client.alias(previous_id="anon-1", user_id="zhangsan_88", timestamp=AT, message_id=f"{prefix}-5")
    client.page(anonymous_id="anon-1", name="Help", timestamp=AT, message_id=f"{prefix}-6")


def _types(sink: RecordingSink, prefix: str) -> list[str]:
    return [sink.stored[("mobile-banking", f"{prefix}-{i}")].type for i in range(1, 7)]


EXPECTED = ["screen.viewed", "login.failed", "identity.linked", "transfer.failed", "identity.linked",
            "screen.viewed"]


@pytest.mark.parametrize("gzip", [False, True])
async def test_segment_sdk_sync_mode(host: str, sink: RecordingSink, gzip: bool):
    client = SegmentClient(write_key=KEY, host=host, sync_mode=True, gzip=gzip)
    await asyncio.to_thread(_session, client, "seg")
    assert _types(sink, "seg") == EXPECTED
    linked = sink.stored[("mobile-banking", "seg-3")]
    assert {(i.kind, i.value) for i in linked.identifiers} == {
        ("online_user_id", "zhangsan_88"), ("customer_no", "C0012345"), ("device_id", "anon-1")}


async def test_rudderstack_sdk_sync_mode_gzip(host: str, sink: RecordingSink):
    client = RudderClient(write_key=KEY, host=host, sync_mode=True)  # gzip is its default
    await asyncio.to_thread(_session, client, "rs")
    assert _types(sink, "rs") == EXPECTED
    # RudderStack puts identify traits under context.traits: the customer number is still found
    linked = sink.stored[("mobile-banking", "rs-3")]
    assert ("customer_no", "C0012345") in {(i.kind, i.value) for i in linked.identifiers}


def _flush(client: Any) -> None:
    try:
        client.flush()
    finally:
        client.join()


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_sdk_retry_after_a_lost_reply_stores_once(host: str, sink: RecordingSink, sdk: str):
    """The first upload is committed but answered 503 (as if the reply were lost): the SDK retries the
    same batch, the gateway answers 200 and nothing is stored twice."""
    sink.commit_then_fail = 1
    errors: list[Any] = []
    cls = SegmentClient if sdk == "segment" else RudderClient
    client = cls(write_key=KEY, host=host, upload_interval=0.05, max_retries=3,
                 on_error=lambda e, batch: errors.append(e))
    _session(client, sdk)
    await asyncio.to_thread(_flush, client)
    assert errors == []
    assert sink.calls == 2
    assert len(sink.stored) == 6 and _types(sink, sdk) == EXPECTED


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_sdk_reads_code_and_message_and_does_not_retry_a_bad_key(host: str, sink: RecordingSink, sdk: str):
    errors: list[Any] = []
    cls = SegmentClient if sdk == "segment" else RudderClient
    client = cls(write_key="not-a-key", host=host, upload_interval=0.05, max_retries=3,
                 on_error=lambda e, batch: errors.append(e))
    client.track(anonymous_id="a", event="Login Failed", message_id="bad-1")
    await asyncio.to_thread(_flush, client)
    assert len(errors) == 1
    assert errors[0].status == 401 and errors[0].code == "invalid_write_key" and errors[0].message
    assert sink.calls == 0 and sink.stored == {}
