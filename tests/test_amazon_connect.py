"""Amazon Connect contact events: golden files, malformed samples, and POST /v1/channels/voice/amazon-connect."""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from adapters.amazon_connect import parse
from gateway.app import create_app
from gateway.errors import ValidationFailed
from gateway.events.model import event_from_obj
from tests.conftest import FIXTURES, make_settings
from tests.helpers import assert_problem

AC = FIXTURES / "amazon_connect"
GOLDEN = sorted(p.stem for p in AC.glob("*.json") if not p.name.endswith(".expected.json"))
CTI_KEY = {"X-API-Key": "dev-cti-key"}
PATH = "/v1/channels/voice/amazon-connect"
WH_SECRET = "whsec_YW1hem9uLWNvbm5lY3QtdGVzdC1zZWNyZXQtMDAwMQ=="


def _body(name: str) -> bytes:
    return (AC / f"{name}.json").read_bytes()


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_events(name):
    events = parse(json.loads(_body(name)), source="cti.amazon-connect")
    expected = json.loads((AC / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert msgspec.to_builtins(events) == expected
    for e in expected:
        event_from_obj(e)


def test_mixed_casing_of_the_aws_sample_is_read():
    (e,) = parse(json.loads(_body("connected_to_agent_awsdocs")), source="cti.amazon-connect")
    assert e.type == "call.answered" and e.agent_id == "arn" and e.queue == "arn"  # AgentInfo.AgentArn, queueInfo
    assert e.interaction_id == "11111111-2222-3333-4444-555555555555"  # initialContactId groups transfers


MALFORMED = json.loads((AC / "malformed" / "cases.json").read_text())


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
def test_malformed_events_name_the_field(name, field):
    with pytest.raises(ValidationFailed) as info:
        parse(json.loads((AC / "malformed" / name).read_bytes()), source="cti.amazon-connect")
    assert info.value.errors[0]["field"] == field


async def test_post_with_api_key_then_duplicate(client, db):
    body = _body("queued")
    resp = await client.post(PATH, data=body, headers={**CTI_KEY, "Content-Type": "application/json"})
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    assert first["status"] == "accepted" and first["source_event_id"].startswith("c0ffee00-")
    resp = await client.post(PATH, data=body, headers={**CTI_KEY, "Content-Type": "application/json"})
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    row = await db.fetchrow("SELECT source, type, queue FROM events")
    assert dict(row) == {"source": "cti.amazon-connect", "type": "call.offered",
                         "queue": "2b7e9f10-aaaa-4bbb-8ccc-0123456789ab"}


async def test_whole_contact_becomes_one_ended_interaction(client, db):
    for name in ("initiated_inbound", "contact_data_updated_ivr", "queued", "disconnected_after_agent"):
        resp = await client.post(PATH, data=_body(name), headers={**CTI_KEY, "Content-Type": "application/json"})
        assert resp.status == 201, (name, await resp.text())
    inter = await db.fetchrow("SELECT status, agent_id, talk_seconds, hold_seconds, event_count FROM interactions")
    assert inter["status"] == "ended" and inter["agent_id"] == "9d3f5a71-cccc-4ddd-8eee-fedcba987654"
    assert (inter["talk_seconds"], inter["hold_seconds"], inter["event_count"]) == (149, 12, 4)


async def test_post_signed_with_standard_webhooks(aiohttp_client, database_url, redis_url, tmp_path, db):
    settings = make_settings(database_url, redis_url, tmp_path,
                             sources={"connect": {"auth": "webhook", "webhook_secrets": [WH_SECRET]}})
    client = await aiohttp_client(create_app(settings))
    body = _body("disconnected_abandoned_in_queue")
    now = dt.datetime.now(dt.UTC)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(WH_SECRET).sign("msg_1", now, body.decode()),
               "Content-Type": "application/json"}
    resp = await client.post(PATH, data=body, headers=headers)
    assert resp.status == 201, await resp.text()
    assert await db.fetchval("SELECT source FROM events") == "connect.amazon-connect"
    assert await db.fetchval("SELECT status FROM interactions") == "abandoned"


async def test_event_types_without_history_are_ignored_with_200(client, db):
    resp = await client.post(PATH, data=_body("chat_connected_ignored"),
                             headers={**CTI_KEY, "Content-Type": "application/json"})
    assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    assert await db.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
async def test_malformed_posts_are_422_naming_the_field(client, db, name, field):
    resp = await client.post(PATH, data=(AC / "malformed" / name).read_bytes(),
                             headers={**CTI_KEY, "Content-Type": "application/json"})
    await assert_problem(resp, 422, "validation-failed", field=field)


async def test_invalid_json_unauthenticated_and_wrong_media_type(client, db):
    await assert_problem(await client.post(PATH, data=b"{nope", headers={**CTI_KEY, "Content-Type": "application/json"}),
                         400, "invalid-request", field="body")
    await assert_problem(await client.post(PATH, data=_body("queued"), headers={"Content-Type": "application/json"}),
                         401, "unauthorized")
    await assert_problem(await client.post(PATH, data=_body("queued"),
                                           headers={"X-API-Key": "wrong", "Content-Type": "application/json"}),
                         401, "unauthorized")
    await assert_problem(await client.post(PATH, data=_body("queued"), headers={**CTI_KEY, "Content-Type": "text/plain"}),
                         415, "unsupported-media-type", field="Content-Type")
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_events_are_stored_under_the_authenticated_source_name(client, db):
    resp = await client.post(PATH, data=_body("queued"),
                             headers={"X-API-Key": "dev-mobile-write-key", "Content-Type": "application/json"})
    # mobile-banking may post any channel in the dev config: its events are stored under its own name
    assert resp.status == 201
    assert await db.fetchval("SELECT source FROM events") == "mobile-banking.amazon-connect"


async def test_source_restricted_by_channels(aiohttp_client, database_url, redis_url, tmp_path, db):
    settings = make_settings(database_url, redis_url, tmp_path,
                             sources={"web": {"auth": "api_key", "api_keys": ["web-key"],
                                              "channels": ["online_banking"]}})
    client = await aiohttp_client(create_app(settings))
    resp = await client.post(PATH, data=_body("queued"),
                             headers={"X-API-Key": "web-key", "Content-Type": "application/json"})
    await assert_problem(resp, 403, "forbidden", field="source")
