import datetime as dt

from gateway.seed.events import seed_events
from tests.factories import CTI_KEY, insert_customer


async def test_seeded_histories_are_consistent_and_deterministic(client, db, settings):
    for n in range(30):
        await insert_customer(db, settings, f"S{n:04d}", "测试", [("phone", f"139{n:08d}"),
                                                               ("email", f"user{n}@example.com")])
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    written = await seed_events(db, 3000, seed=7, now=now)
    assert written >= 3000
    assert await db.fetchval("SELECT count(*) FROM events") == written
    assert await db.fetchval("SELECT count(*) FROM event_keys") == written
    assert await db.fetchval("SELECT sum(event_count) FROM interactions") == written
    # every event belongs to an interaction, and keys point at their events
    assert await db.fetchval("SELECT count(*) FROM events e LEFT JOIN interactions i ON i.id = e.interaction_id "
                             "WHERE i.id IS NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM event_keys k JOIN events e ON e.id = k.event_id "
                             "AND e.occurred_at = k.occurred_at") == written
    kinds = {r["type"] for r in await db.fetch("SELECT DISTINCT type FROM events")}
    assert {"call.offered", "call.answered", "call.abandoned", "ivr.selection", "login.failed", "transfer.failed",
            "message.received", "complaint.opened", "survey.answered"} <= kinds
    statuses = {r["status"] for r in await db.fetch("SELECT DISTINCT status FROM interactions WHERE kind='call'")}
    assert statuses == {"ended", "abandoned"}
    assert await db.fetchval("SELECT min(occurred_at) FROM events") >= now - dt.timedelta(days=181)
    assert await db.fetchval("SELECT count(*) FROM interactions WHERE customer_id IS NOT NULL") > 0
    # handle time is derived as for ingested calls
    assert await db.fetchval("SELECT count(*) FROM interactions WHERE status='ended' AND kind='call' "
                             "AND handle_seconds IS NULL") == 0

    first = await db.fetch("SELECT source_event_id, type FROM events ORDER BY source_event_id LIMIT 20")
    await db.execute("TRUNCATE events, event_keys, interactions, interaction_links")
    await seed_events(db, 3000, seed=7, now=now)
    again = await db.fetch("SELECT source_event_id, type FROM events ORDER BY source_event_id LIMIT 20")
    assert first == again, "the same seed gives the same data"

    # the live ingest path treats a seeded event's key as already stored
    sid = first[0]["source_event_id"]
    src = await db.fetchrow("SELECT source, channel, type, occurred_at FROM events WHERE source_event_id=$1", sid)
    if src["source"].startswith("cti."):
        body = {"source": src["source"], "source_event_id": sid, "channel": src["channel"], "type": src["type"],
                "occurred_at": src["occurred_at"].isoformat()}
        resp = await client.post("/v1/events", json=body, headers=CTI_KEY)
        assert (await resp.json())["status"] == "duplicate"
