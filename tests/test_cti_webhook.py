"""The generic CTI webhook: golden files, malformed bodies, and POST /v1/channels/voice/events (signed)."""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from adapters.cti_webhook import EVENT_TYPES, parse
from gateway.errors import BadRequest, GatewayError, ValidationFailed
from gateway.events.model import event_from_obj
from gateway.events.types import EVENT_TYPES as CANONICAL
from tests.conftest import FIXTURES
from tests.helpers import assert_problem

CW = FIXTURES / "cti_webhook"
GOLDEN = sorted(p.stem for p in CW.glob("*.json") if not p.name.endswith(".expected.json"))
PATH = "/v1/channels/voice/events"
SECRET = "whsec_Y3RpLXdlYmhvb2stZGV2LXNlY3JldC0wMTIzNDU2Nzg5"  # the dev [sources.cti-webhook] secret


def signed(body: bytes, msg_id: str = "msg_1", at: dt.datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    at = at or dt.datetime.now(dt.UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
            "Content-Type": "application/json"}


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_bodies(name):
    events, _ = parse((CW / f"{name}.json").read_bytes(), source="cti-webhook")
    expected = json.loads((CW / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert msgspec.to_builtins(events) == expected
    for e in expected:
        event_from_obj(e)


def test_every_format_event_maps_to_a_canonical_type():
    assert set(EVENT_TYPES.values()) <= set(CANONICAL)


MALFORMED = json.loads((CW / "malformed" / "cases.json").read_text())


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
def test_malformed_bodies_name_the_field(name, field):
    with pytest.raises((ValidationFailed, BadRequest)) as info:
        parse((CW / "malformed" / name).read_bytes(), source="cti-webhook")
    exc = info.value
    assert isinstance(exc, GatewayError)
    assert exc.extensions["errors"][0]["field"] == field


async def test_signed_batch_is_stored_as_one_interaction_with_per_event_results(client, db):
    body = (CW / "call_lifecycle_batch.json").read_bytes()
    resp = await client.post(PATH, data=body, headers=signed(body))
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["accepted"] == 6 and out["duplicate"] == 0 and out["rejected"] == 0
    assert [r["status"] for r in out["results"]] == ["accepted"] * 6
    again = await client.post(PATH, data=body, headers=signed(body, "msg_2"))
    assert (await again.json())["duplicate"] == 6
    inter = await db.fetchrow("SELECT source, status, agent_id, talk_seconds, hold_seconds, event_count "
                              "FROM interactions")
    assert dict(inter) == {"source": "cti-webhook.genesys", "status": "ended", "agent_id": "8042",
                           "talk_seconds": 252, "hold_seconds": 6, "event_count": 6}
    ringing = await db.fetchrow("SELECT agent_id, attributes FROM events WHERE type = 'call.ringing'")
    assert ringing["agent_id"] == "8001"
    assert ringing["attributes"] == {"ivr_path": ["1", "3"], "auth_level": "ivr_pin"}


async def test_single_event_201_then_duplicate_200(client, db):
    body = (CW / "abandoned_voiceprint.json").read_bytes()
    resp = await client.post(PATH, data=body, headers=signed(body))
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    resp = await client.post(PATH, data=body, headers=signed(body, "msg_2"))
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    assert await db.fetchval("SELECT status FROM interactions") == "abandoned"


async def test_signatures_are_required_and_checked(client, db):
    body = (CW / "abandoned_voiceprint.json").read_bytes()
    # An API key (even a valid one of the cti source) is not a signature.
    await assert_problem(await client.post(PATH, data=body, headers={"X-API-Key": "dev-cti-key",
                                                                       "Content-Type": "application/json"}),
                         401, "unauthorized")
    await assert_problem(await client.post(PATH, data=body, headers={"Content-Type": "application/json"}),
                         401, "unauthorized")
    stale = signed(body, at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))
    await assert_problem(await client.post(PATH, data=body, headers=stale), 401, "unauthorized",
                         field="webhook-timestamp")
    forged = signed(body, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    await assert_problem(await client.post(PATH, data=body, headers=forged), 401, "unauthorized",
                         field="webhook-signature")
    tampered = signed(body)
    await assert_problem(await client.post(PATH, data=body.replace(b"74", b"75"), headers=tampered), 401,
                         "unauthorized", field="webhook-signature")
    assert await db.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
async def test_malformed_posts_are_4xx_naming_the_field(client, db, name, field):
    body = (CW / "malformed" / name).read_bytes()
    resp = await client.post(PATH, data=body, headers=signed(body))
    if name == "not_json.json":
        await assert_problem(resp, 400, "invalid-request", field=field)
    else:
        await assert_problem(resp, 422, "validation-failed", field=field)
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_wrong_media_type_and_oversized_batch(client, db):
    body = (CW / "abandoned_voiceprint.json").read_bytes()
    headers = {**signed(body), "Content-Type": "text/plain"}
    await assert_problem(await client.post(PATH, data=body, headers=headers), 415, "unsupported-media-type",
                         field="Content-Type")
    one = json.loads(body)
    many = json.dumps([{**one, "event_id": f"e-{i}"} for i in range(1001)]).encode()
    await assert_problem(await client.post(PATH, data=many, headers=signed(many)), 413, "payload-too-large",
                         field="body")


async def test_event_the_canonical_model_rejects_is_422(client, db):
    one = json.loads((CW / "abandoned_voiceprint.json").read_bytes())
    one["attributes"] = {"blob": "x" * 20000}
    body = json.dumps(one).encode()
    await assert_problem(await client.post(PATH, data=body, headers=signed(body)), 422, "validation-failed",
                         field="attributes")
    bad_phone = {**json.loads((CW / "abandoned_voiceprint.json").read_bytes()), "caller": {"number": "12"}}
    body = json.dumps(bad_phone).encode()
    await assert_problem(await client.post(PATH, data=body, headers=signed(body)), 422, "validation-failed",
                         field="identifiers[0].value")
