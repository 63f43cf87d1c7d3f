"""Crash consistency: kill -9 a real gateway under concurrent load; nothing acknowledged is lost or doubled."""

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from tests.factories import CTI_KEY, event

pytestmark = pytest.mark.slow


async def _start(database_url: str, redis_url: str, port: int, tmp_path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CG_")}
    env.update({"CG_DATABASE_URL": database_url, "CG_REDIS_URL": redis_url, "CG_HTTP_PORT": str(port),
                "CG_DATA_DIR": str(tmp_path / "var"), "CG_LOG_LEVEL": "warning", "CG_ACCESS_LOG": "false"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    async with aiohttp.ClientSession() as s:
        for _ in range(400):
            try:
                if (await s.get(f"http://127.0.0.1:{port}/readyz")).status == 200:
                    return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway did not become ready")


async def test_kill_9_mid_stream_loses_and_doubles_nothing(database_url, redis_url, db, unused_tcp_port, tmp_path):
    port = unused_tcp_port
    url = f"http://127.0.0.1:{port}/v1/events"
    proc = await _start(database_url, redis_url, port, tmp_path)
    acked: set[str] = set()
    unacked: set[str] = set()
    stop = asyncio.Event()

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        i = 0
        while not stop.is_set():
            sid = f"k{n}-{i}"
            i += 1
            batch = n % 4 == 0  # a quarter of the clients post batches of 5
            body = [event("call.offered", sid=f"{sid}.{j}", interaction_id=f"crash-{n}") for j in range(5)] \
                if batch else event("call.offered", sid=sid, interaction_id=f"crash-{n}")
            sids = [b["source_event_id"] for b in body] if batch else [sid]
            try:
                resp = await session.post(url, json=body, headers=CTI_KEY, timeout=aiohttp.ClientTimeout(total=5))
                if resp.status in (200, 201):
                    acked.update(sids)
                else:
                    unacked.update(sids)
            except (aiohttp.ClientError, TimeoutError):
                unacked.update(sids)
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(n, session)) for n in range(16)]
        while len(acked) < 300:
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
        await proc.wait()
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)

    unacked -= acked
    assert acked, "some events were acknowledged before the crash"
    stored = {r["source_event_id"] for r in await db.fetch("SELECT source_event_id FROM events")}
    assert acked <= stored, f"acknowledged but lost: {sorted(acked - stored)[:5]}"

    # restart; clients retry everything unacknowledged (and, as real clients do, some acknowledged ones)
    proc = await _start(database_url, redis_url, port, tmp_path)
    try:
        retry = sorted(unacked) + sorted(acked)[:50]
        async with aiohttp.ClientSession() as session:
            async def send(sid: str) -> int:
                n = int(sid[1:].split("-")[0])
                resp = await session.post(url, json=event("call.offered", sid=sid, interaction_id=f"crash-{n}"),
                                          headers=CTI_KEY)
                return resp.status
            statuses = await asyncio.gather(*(send(s) for s in retry))
        assert set(statuses) <= {200, 201}
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()

    rows = await db.fetch("SELECT source_event_id, count(*) AS n FROM events GROUP BY 1")
    counts = {r["source_event_id"]: r["n"] for r in rows}
    assert all(n == 1 for n in counts.values()), "an event stored twice"
    assert set(counts) == acked | unacked, "every event sent is stored exactly once after the retries"
    assert await db.fetchval("SELECT count(*) FROM event_keys") == len(counts)
    total = await db.fetchval("SELECT sum(event_count) FROM interactions")
    assert total == len(counts), "interaction counters agree with the stored events"
