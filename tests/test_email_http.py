"""POST /v1/channels/email/inbound: raw MIME in, events and threads out — real ingest, real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES
from tests.factories import insert_customer
from tests.helpers import assert_problem

EMAIL = FIXTURES / "email"
SAMPLES = FIXTURES / "samples"
URL = "/v1/channels/email/inbound"
KEY = {"X-API-Key": "dev-email-key", "Content-Type": "message/rfc822"}

GOOD = sorted(p for p in EMAIL.glob("*.eml") if not p.name.startswith("malformed_")) + sorted(
    SAMPLES.glob("email_*.eml"))


async def post(client, raw: bytes, headers=KEY):
    return await client.post(URL, data=raw, headers=headers)


async def test_every_sample_is_stored_once(client, db):
    ids = {}
    for path in GOOD:
        resp = await post(client, path.read_bytes())
        assert resp.status == 201, (path.name, await resp.text())
        body = await resp.json()
        assert body["status"] == "accepted"
        ids[path.name] = body["event_id"]
    for path in GOOD:  # a retry, or the same mail pulled by IMAP: a duplicate, never a second row
        resp = await post(client, path.read_bytes())
        assert resp.status == 200
        again = await resp.json()
        assert again["status"] == "duplicate" and again["event_id"] == ids[path.name]
    assert await db.fetchval("SELECT count(*) FROM events WHERE channel = 'email'") == len(GOOD)
    row = await db.fetchrow("SELECT subject, attributes, identifiers, type, direction FROM events "
                            "WHERE source_event_id = $1", "20261124021458.A1B2C3@mail.example.com.tw")
    assert row["subject"] == "信用卡刷卡失敗"
    assert row["type"] == "message.received" and row["direction"] == "inbound"
    assert "刷卡失敗兩次" in row["attributes"]["body_text"]
    assert row["identifiers"] == [{"kind": "email", "masked": row["identifiers"][0]["masked"]}]
    assert "Chen.MeiLing" not in str(row["identifiers"]), "only the masked address is stored"


async def test_thread_joins_whatever_order_the_mails_arrive_in(client, db):
    # the third mail first (its parent and root have not arrived), then the root, then the middle one
    order = [EMAIL / "reply_on_wrote_utf8.eml", SAMPLES / "email_thread_1_root_usascii.eml",
             SAMPLES / "email_thread_2_reply_gb2312_base64_outlook.eml"]
    interaction_ids = set()
    for path in order:
        resp = await post(client, path.read_bytes())
        assert resp.status == 201, await resp.text()
        interaction_ids.add((await resp.json())["interaction_id"])
    assert len(interaction_ids) == 1
    row = await db.fetchrow("SELECT kind, channel, event_count, external_id, started_at, subject FROM interactions")
    assert row["kind"] == "thread" and row["channel"] == "email" and row["event_count"] == 3
    assert row["external_id"] == "20210604014702.2087584-1-zhangwei3@mail.example.cn"
    assert await db.fetchval("SELECT count(*) FROM interactions") == 1


async def test_sender_address_identifies_the_customer(client, db, settings):
    cid = await insert_customer(db, settings, "88001234", identifiers=[("email", "WANG.JUN@example.cn")])
    resp = await post(client, (EMAIL / "gbk_8bit_reply_parent_missing.eml").read_bytes())
    assert resp.status == 201, await resp.text()
    row = await db.fetchrow("SELECT customer_id, identification FROM interactions")
    assert row["customer_id"] == cid and row["identification"] == "identified"


async def test_bounce_and_auto_reply_are_marked(client, db):
    for name in ("bounce_sendmail_report_mikel_mail.eml", "auto_reply_exchange_oof_gb2312.eml"):
        assert (await post(client, (EMAIL / name).read_bytes())).status == 201
    outcomes = dict(await db.fetch("SELECT source_event_id, outcome FROM events"))
    assert outcomes == {"200712232303.lBNN3rDp003436@mail12.rrrr.com.au": "bounced",
                        "a1b2c3d4e5f6@CORPEX01.corp.example.cn": "auto_reply"}


@pytest.mark.parametrize("name, field", [
    ("malformed_unknown_charset.eml", "part:0 (text/plain)"),
    ("malformed_multipart_no_boundary.eml", "part:0"),
    ("malformed_no_from.eml", "header:From"),
    ("malformed_undecodable_gb2312_body.eml", "part:0 (text/plain)"),
])
async def test_malformed_mail_is_422_naming_the_part_and_nothing_stored(client, db, name, field):
    resp = await post(client, (EMAIL / name).read_bytes())
    await assert_problem(resp, 422, "validation-failed", field=field)
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_wrong_media_type_empty_body_and_credentials(client, db):
    raw = (SAMPLES / "email_thread_1_root_usascii.eml").read_bytes()
    await assert_problem(await post(client, raw, {"X-API-Key": "dev-email-key", "Content-Type": "text/plain"}),
                         415, "unsupported-media-type")
    await assert_problem(await post(client, b"", KEY), 400, "invalid-request", field="body")
    await assert_problem(await post(client, raw, {"Content-Type": "message/rfc822"}), 401, "unauthorized")
    await assert_problem(await post(client, raw, {"X-API-Key": "nope", "Content-Type": "message/rfc822"}),
                         401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_route_is_in_the_openapi_document(client):
    doc = await (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/channels/email/inbound"]["post"]
    assert "message/rfc822" in op["requestBody"]["content"]
    assert {"201", "200", "415", "422"} <= set(op["responses"])
