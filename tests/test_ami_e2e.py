"""AMI end to end: fake Asterisk over TCP → the gateway's AMI client (run by the app) → real ingest on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from adapters.ami import Frame
from gateway import keys
from gateway.app import create_app
from tests.ami_fake_server import FakeAmiServer
from tests.conftest import FIXTURES, make_settings

AMI = FIXTURES / "ami"


@pytest.fixture
async def fake_ami():
    s = FakeAmiServer()
    await s.start()
    yield s
    await s.close()


async def _app(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Any, port: int, **ami: Any) -> Any:
    values = {"enabled": True, "host": "127.0.0.1", "port": port, "username": "gateway", "secret": "s3cret",
              "reconnect_initial": 0.02, "reconnect_max": 0.1, "ping_interval": 0.0}
    values.update(ami)
    client = await aiohttp_client(create_app(make_settings(database_url, redis_url, tmp_path, ami=values)))
    return client.server.app


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    """Poll a condition on the database/client (committed rows have no notification to await)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def _frames(data: bytes) -> list[bytes]:
    return [f + b"\r\n\r\n" for f in data.split(b"\r\n\r\n") if f.strip()]


async def test_queue_call_with_disconnect_lands_once_in_postgres(aiohttp_client, database_url, redis_url, tmp_path,
                                                                 db, fake_ami):
    app = await _app(aiohttp_client, database_url, redis_url, tmp_path, fake_ami.port)
    client = app[keys.AMI]
    await asyncio.wait_for(client.reconciled.wait(), 10)
    data = (AMI / "queue_call_answered.txt").read_bytes()
    expected = json.loads((AMI / "queue_call_answered.expected.json").read_text(encoding="utf-8"))
    frames = _frames(data)
    await fake_ami.send(b"".join(frames[:9]))
    await _until(lambda: _count(db, 6))
    # Disconnect while both agents ring; agent 8001 answers meanwhile.
    fake_ami.channels = [
        Frame.of(("Channel", "PJSIP/trunk-cmcc-00000027"), ("Uniqueid", "1722863811.39"),
                 ("Linkedid", "1722863811.39"), ("CallerIDNum", "13912345678"), ("BridgeId", "b1")),
        Frame.of(("Channel", "PJSIP/8001-00000028"), ("Uniqueid", "1722863820.40"),
                 ("Linkedid", "1722863811.39"), ("CallerIDNum", "8001"), ("BridgeId", "b1")),
    ]
    client.reconciled.clear()
    await fake_ami.drop()
    await fake_ami.wait_logins(2)
    await asyncio.wait_for(client.reconciled.wait(), 10)
    # After the reconnect the peer repeats the last frame it sent (as a confused PBX might) and goes on.
    await fake_ami.send(frames[8] + b"".join(frames[12:]))
    await _until(lambda: _count(db, 8))
    await asyncio.sleep(0.1)
    rows = await db.fetch("SELECT source, source_event_id, type, agent_id, attributes FROM events ORDER BY occurred_at")
    ids = [r["source_event_id"] for r in rows]
    assert sorted(ids) == sorted(e["source_event_id"] for e in expected)
    assert all(r["source"] == "cti.asterisk" for r in rows)
    inter = await db.fetchrow("SELECT status, agent_id, queue, talk_seconds, hold_seconds, event_count "
                              "FROM interactions")
    assert inter["status"] == "ended" and inter["agent_id"] == "8001" and inter["queue"] == "vip"
    assert inter["talk_seconds"] == 132 and inter["hold_seconds"] == 6 and inter["event_count"] == 8
    assert client.stats.rejected == 0 and client.stats.sessions == 2


async def test_malformed_frame_quarantined_in_postgres_and_counted(aiohttp_client, database_url, redis_url, tmp_path,
                                                                   db, fake_ami):
    app = await _app(aiohttp_client, database_url, redis_url, tmp_path, fake_ami.port,
                     internal_number_pattern="^[0-9]{2,4}$")
    client = app[keys.AMI]
    await asyncio.wait_for(client.reconciled.wait(), 10)
    data = (AMI / "queue_call_abandoned.txt").read_bytes()
    bad = b"Event: Newchannel\r\nCallerIDName: \xff\xfe\xff\r\nUniqueid: 1.1\r\n\r\n"
    frames = _frames(data)
    await fake_ami.send(frames[0] + bad + b"".join(frames[1:]))
    await _until(lambda: _count(db, 4))
    q = await db.fetchrow("SELECT adapter, source, error, raw, source_ref FROM quarantine")
    assert (q["adapter"], q["source"]) == ("ami", "cti.asterisk")
    assert bytes(q["raw"]) == bad[:-4] and "GB18030" in q["error"]
    assert q["source_ref"].startswith(f"127.0.0.1:{fake_ami.port}/")
    assert app[keys.METRICS].quarantined.labels(adapter="ami")._value.get() == 1
    status = await db.fetchval("SELECT status FROM interactions")
    assert status == "abandoned"


async def _count(db: Any, n: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM events") >= n
