"""AMI throughput: a replayed stream of AMI events over real TCP into the gateway's AMI client and real ingest.

A local fake Asterisk (``tests/ami_fake_server.py``, the real protocol: banner, MD5 login,
``CoreShowChannels``/``QueueStatus``) streams ``--frames`` AMI events (default 100,000:
queue calls of 10 frames each — Newchannel ×2, Newexten, VarSet, QueueCallerJoin,
AgentCalled, AgentConnect, AgentComplete, Hangup ×2 — 6 canonical events per call) as fast
as the client reads them. The client is the one the app runs (``[ami] enabled``), feeding
the real group-commit ingest on a real PostgreSQL (a fresh database, dropped afterwards).

Three figures per run, medians over ``--runs``:

- ``parse``: the pure frame parser + call tracker on the same bytes in-process (baseline);
- ``tcp``: TCP + parse + mapping into a sink that commits nothing (what the transport costs);
- ``ingest``: TCP + parse + mapping + commit in PostgreSQL: AMI frames/s and events committed/s.

The fake Asterisk runs in the same process and event loop as the client (its part is one large
socket write), and PostgreSQL on the same machine: on 2 cores the figures are a floor.

Usage (from the project root)::

    python bench/ami.py [--frames 100000] [--runs 3] [--database-url postgresql://…] [--redis-url redis://…]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg
from aiohttp import web

from adapters.ami import CallTracker, Frame, FrameParser
from adapters.ami_client import AmiClient
from gateway import keys
from gateway.app import create_app
from gateway.db.migrate import migrate_dsn
from gateway.events.model import ContactEvent
from gateway.events.sink import IngestResult
from gateway.logs import configure_logging
from gateway.settings import load_settings
from tests.ami_fake_server import FakeAmiServer

FRAMES_PER_CALL = 10
EVENTS_PER_CALL = 6


def stream(n_frames: int, run: str) -> tuple[bytes, int]:
    """``n_frames`` AMI frames of whole queue calls (timestamped), and the canonical events they make."""
    calls = n_frames // FRAMES_PER_CALL
    base_ts = 1764300000
    out: list[bytes] = []
    for i in range(calls):
        lid = f"{run}-{base_ts + i}.{i}"
        leg = f"{run}-{base_ts + i}.{i}9"
        ts = base_ts + i
        caller = f"139{i % 100000000:08d}"
        common = [("Privilege", "call,all"), ("Channel", f"PJSIP/trunk-{i:08x}"), ("ChannelState", "6"),
                  ("ChannelStateDesc", "Up"), ("CallerIDNum", caller), ("CallerIDName", "张三"),
                  ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"), ("Language", "zh"),
                  ("AccountCode", ""), ("Context", "from-pstn"), ("Exten", "95588"), ("Priority", "1"),
                  ("Uniqueid", lid), ("Linkedid", lid)]
        agent = [("DestChannel", f"PJSIP/8001-{i:08x}"), ("DestUniqueid", leg), ("DestLinkedid", lid),
                 ("Queue", "vip"), ("MemberName", "Li Wei"), ("Interface", "PJSIP/8001")]

        def f(event: str, t: float, *extra: tuple[str, str], fields: Sequence[tuple[str, str]] = common) -> bytes:
            return Frame((("Event", event), ("Timestamp", f"{t:.6f}"), *fields, *extra)).encode()

        agent_leg = [(k, v) for k, v in common if k not in ("Uniqueid", "Channel", "CallerIDNum")] + [
            ("Channel", f"PJSIP/8001-{i:08x}"), ("CallerIDNum", "8001"), ("Uniqueid", leg)]
        out += [
            f("Newchannel", ts),
            f("Newexten", ts + 0.01, ("Extension", "s"), ("Application", "Background"), ("AppData", "menu")),
            f("VarSet", ts + 3, ("Variable", "IVR_CHOICE"), ("Value", "1")),
            f("QueueCallerJoin", ts + 4, ("Queue", "vip"), ("Position", "1"), ("Count", "1")),
            f("Newchannel", ts + 4.01, fields=agent_leg),
            f("AgentCalled", ts + 4.02, *agent),
            f("AgentConnect", ts + 9, *agent, ("RingTime", "5"), ("HoldTime", "5")),
            f("AgentComplete", ts + 99, *agent, ("HoldTime", "5"), ("TalkTime", "90"), ("Reason", "caller")),
            f("Hangup", ts + 99.01, ("Cause", "16"), ("Cause-txt", "Normal Clearing"), fields=agent_leg),
            f("Hangup", ts + 99.02, ("Cause", "16"), ("Cause-txt", "Normal Clearing")),
        ]
    return b"".join(out), calls * EVENTS_PER_CALL


def pure_parse(data: bytes) -> tuple[float, int, int]:
    """Seconds to parse and map the bytes in-process, frames, events."""
    at = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    parser, tracker = FrameParser(), CallTracker()
    frames = events = 0
    view = memoryview(data)
    for i in range(0, len(data), 65536):  # the client reads 64 KiB at a time
        for item in parser.feed(bytes(view[i:i + 65536])):
            frames += 1
            events += len(tracker.feed(item, at))  # type: ignore[arg-type]
    return time.perf_counter() - t0, frames, events


class NullSink:
    """Accepts everything, commits nothing: isolates the transport's cost."""

    async def submit(self, events: Sequence[ContactEvent]) -> list[IngestResult]:
        return [IngestResult("accepted", e.source_event_id) for e in events]


async def _until(pred, timeout: float = 600.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.005)


async def through_tcp(client: AmiClient, server: FakeAmiServer, data: bytes, n_frames: int, n_events: int
                      ) -> float:
    """Seconds from the first byte sent until every frame was read and every event handed over (committed)."""
    frames0, events0 = client.stats.frames, client.stats.events
    t0 = time.perf_counter()
    sender = asyncio.create_task(server.send(data))
    await _until(lambda: client.stats.frames - frames0 >= n_frames and client.stats.events - events0 >= n_events)
    elapsed = time.perf_counter() - t0
    await sender
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--database-url", default=os.environ.get("CG_BENCH_DATABASE_URL",
                                                             "postgresql://root@127.0.0.1:5432/test"))
    ap.add_argument("--redis-url", default=os.environ.get("CG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()

    server = FakeAmiServer(secret="bench")
    port = await server.start()
    name = f"cg_bench_ami_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = args.database_url.rsplit("/", 1)[0] + "/" + name
    settings = load_settings(env={}, database_url=dsn, redis_url=args.redis_url, log_level="error",
                             log_format="json", access_log=False,
                             ami={"enabled": True, "port": port, "username": "gateway", "secret": "bench",
                                  "ping_interval": 0.0})
    server.username = settings.ami.username
    configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115, ASYNC230 - once, before the run
    await migrate_dsn(dsn)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    results: dict[str, list[float]] = {"parse": [], "tcp": [], "ingest_frames": [], "ingest_events": []}
    try:
        client = app[keys.AMI]
        await asyncio.wait_for(client.reconciled.wait(), 30)
        null_client = AmiClient(settings.ami, NullSink(), quarantine=_no_quarantine)
        for r in range(args.runs):
            data, n_events = stream(args.frames, f"r{r}")
            n_frames = args.frames // FRAMES_PER_CALL * FRAMES_PER_CALL
            secs, frames, events = pure_parse(data)
            assert (frames, events) == (n_frames, n_events), (frames, events)
            results["parse"].append(frames / secs)

            # TCP into a null sink: swap the app's client for a bare one on the same server.
            await server.drop()
            task = asyncio.create_task(null_client.run())
            await server.wait_logins(server.logins_ok + 1)
            await asyncio.wait_for(null_client.reconciled.wait(), 30)
            secs = await through_tcp(null_client, server, data, n_frames, n_events)
            results["tcp"].append(n_frames / secs)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.drop()

            # TCP into the real ingest on PostgreSQL (the app's own client reconnects by itself).
            await server.wait_logins(server.logins_ok + 1, timeout=30)
            client.reconciled.clear()
            await asyncio.wait_for(client.reconciled.wait(), 30)
            data, n_events = stream(args.frames, f"i{r}")
            secs = await through_tcp(client, server, data, n_frames, n_events)
            results["ingest_frames"].append(n_frames / secs)
            results["ingest_events"].append(n_events / secs)
            print(f"run {r + 1}: parse {results['parse'][-1]:,.0f} frames/s | tcp {results['tcp'][-1]:,.0f} "
                  f"frames/s | ingest {results['ingest_frames'][-1]:,.0f} frames/s, "
                  f"{results['ingest_events'][-1]:,.0f} events committed/s", flush=True)
        stored = await _count(dsn)
        assert stored == args.runs * n_events, (stored, args.runs * n_events)
        assert client.stats.rejected == 0 and client.stats.quarantined == 0
    finally:
        await runner.cleanup()
        await server.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{args.frames:,} AMI frames per run, {args.runs} runs, medians "
          f"(cores: {os.cpu_count()}, PostgreSQL and the fake Asterisk on the same machine):")
    print(f"  pure parse + mapping (baseline):     {med['parse']:>10,.0f} frames/s")
    print(f"  TCP + parse, null sink:              {med['tcp']:>10,.0f} frames/s "
          f"({med['tcp'] / med['parse']:.2f}x baseline)")
    print(f"  TCP + parse + ingest (PostgreSQL):   {med['ingest_frames']:>10,.0f} frames/s "
          f"({med['ingest_frames'] / med['parse']:.2f}x baseline)")
    print(f"  events committed:                    {med['ingest_events']:>10,.0f} events/s "
          f"({EVENTS_PER_CALL} per {FRAMES_PER_CALL} frames)")


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE source = 'cti.asterisk'"))
    finally:
        await conn.close()


async def _no_quarantine(raw: bytes, error: str, ref: str) -> None:
    raise AssertionError(f"unexpected malformed frame: {error}")


if __name__ == "__main__":
    asyncio.run(main())
