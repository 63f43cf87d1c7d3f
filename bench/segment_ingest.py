"""Segment batch ingest over HTTP: events/s through the real gateway into real PostgreSQL.

Starts the gateway as a separate process (``python -m gateway serve``; embedded PostgreSQL and
Redis under a temporary directory unless ``--database-url`` names a server, in which case a
uniquely named database is created there and dropped afterwards), then posts Segment batches of
``--batch-size`` messages (a mobile-banking mix: mapped and unmapped ``track``, ``screen``,
``identify``) from ``--concurrency`` HTTP connections, as a Segment SDK fleet would. Every
response must be ``200 {"success": true}``; a run counts only once every batch is committed.

Baseline, measured in the same run on the same gateway: the same events as canonical
``POST /v1/events`` JSON arrays of the same size. The ratio shows what the Segment adapter
(write-key auth, gzip, parsing, mapping) costs on top of ingest itself.

    python bench/segment_ingest.py                      # 5 runs of 20,000 events, batches of 100
    python bench/segment_ingest.py --gzip --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gzip as gzip_mod
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
KEY = "dev-mobile-write-key"
TRACK_NAMES = ["Login Failed", "Transfer Failed", "Transfer Succeeded", "Card Frozen", "Wealth Banner Tapped",
               "Bill Payment Failed", "Fund Detail Opened"]
SCREENS = ["Home", "Transfer", "Accounts", "Cards", "Wealth", "Help"]
T0 = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)


def segment_batch(run: str, b: int, size: int, devices: int) -> dict[str, Any]:
    msgs = []
    for i in range(size):
        n = b * size + i
        anon = f"dev-{n % devices:05d}"
        ts = (T0 + dt.timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
        common = {"anonymousId": anon, "messageId": f"{run}-{n}", "timestamp": ts,
                  "context": {"app": {"name": "ZS Mobile Bank", "version": "9.2.1"},
                              "os": {"name": "Android", "version": "15"},
                              "library": {"name": "analytics-android", "version": "4.11.3"}}}
        if n % 20 == 0:
            msgs.append({"type": "identify", "userId": f"user-{n % devices:05d}", **common})
        elif n % 4 == 0:
            msgs.append({"type": "screen", "name": SCREENS[n % len(SCREENS)], **common})
        else:
            msgs.append({"type": "track", "event": TRACK_NAMES[n % len(TRACK_NAMES)],
                         "properties": {"reason": "DAILY_LIMIT_EXCEEDED", "amount": 100 + n % 900}, **common})
    return {"batch": msgs, "writeKey": KEY, "sentAt": T0.isoformat()}


def canonical_batch(run: str, b: int, size: int, devices: int) -> list[dict[str, Any]]:
    out = []
    for i in range(size):
        n = b * size + i
        ts = (T0 + dt.timedelta(milliseconds=n)).isoformat()
        out.append({"source": "mobile-banking", "source_event_id": f"{run}-{n}", "channel": "mobile_banking",
                    "type": "app.action", "occurred_at": ts, "subject": TRACK_NAMES[n % len(TRACK_NAMES)],
                    "interaction_id": f"app-day:d{n % devices:05d}:2026-11-28",
                    "identifiers": [{"kind": "device_id", "value": f"dev-{n % devices:05d}"}],
                    "attributes": {"segment_type": "track", "properties": {"amount": 100 + n % 900}}})
    return out


async def one_run(base: str, kind: str, run: str, total: int, size: int, concurrency: int, devices: int,
                  gzip: bool) -> float:
    batches = total // size
    if kind == "segment":
        bodies = [json.dumps(segment_batch(run, b, size, devices)).encode() for b in range(batches)]
        url = base + "/v1/channels/mobile/v1/batch"
        headers = {"Content-Type": "application/json",
                   "Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
        if gzip:
            bodies = [gzip_mod.compress(b) for b in bodies]
            headers["Content-Encoding"] = "gzip"
    else:
        bodies = [json.dumps(canonical_batch(run, b, size, devices)).encode() for b in range(batches)]
        url = base + "/v1/events"
        headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                failed = resp.status != 200 or (kind == "canonical" and any(
                    r["status"] == "rejected" for r in json.loads(text)["results"]))
                if failed:
                    raise RuntimeError(f"{kind} batch failed: {resp.status} {text[:300]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return batches * size / elapsed


def start_gateway(data_dir: Path, database_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "CG_DATA_DIR": str(data_dir), "CG_HTTP_PORT": "0", "CG_LOG_LEVEL": "warning",
           "CG_ACCESS_LOG": "false", "CG_LOG_FORMAT": "json", "CG_DATABASE_URL": database_url,
           "CG_REDIS_URL": os.environ.get("CG_BENCH_REDIS_URL", "")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("the gateway exited before listening")
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            # keep draining its output so a chatty log never blocks the gateway on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the gateway did not start within 120 s")


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("gateway not ready")


async def main_async(args: argparse.Namespace) -> None:
    created = None
    database_url = ""
    if args.database_url:
        created = f"cg_bench_segment_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(args.database_url)
        await conn.execute(f'CREATE DATABASE "{created}"')
        await conn.close()
        parts = urlsplit(args.database_url)
        database_url = urlunsplit((parts.scheme, parts.netloc, "/" + created, parts.query, parts.fragment))
    with tempfile.TemporaryDirectory(prefix="cg-bench-segment-") as tmp:
        proc, base = start_gateway(Path(tmp), database_url)
        try:
            await wait_ready(base)
            await one_run(base, "segment", "warm", args.batch_size * 10, args.batch_size, args.concurrency,
                          args.devices, args.gzip)
            seg, canon = [], []
            for r in range(args.runs):
                seg.append(await one_run(base, "segment", f"s{r}", args.events, args.batch_size, args.concurrency,
                                         args.devices, args.gzip))
                if not args.no_baseline:
                    canon.append(await one_run(base, "canonical", f"c{r}", args.events, args.batch_size,
                                               args.concurrency, args.devices, False))
                print(f"run {r + 1}: segment {seg[-1]:,.0f} events/s"
                      + (f", canonical /v1/events {canon[-1]:,.0f} events/s" if canon else ""), flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if created:
        conn = await asyncpg.connect(args.database_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
        await conn.close()
    where = "server PostgreSQL" if args.database_url else "embedded PostgreSQL 16 (pgserver)"
    print(f"\nSegment /v1/batch, batches of {args.batch_size}, {args.concurrency} connections, "
          f"{'gzip, ' if args.gzip else ''}{args.events:,} events x {args.runs} runs, {where}, "
          f"{os.cpu_count()} CPUs")
    print(f"median: {statistics.median(seg):,.0f} events/s")
    if canon:
        print(f"baseline canonical POST /v1/events (same events, same batch size): "
              f"{statistics.median(canon):,.0f} events/s; ratio segment/canonical "
              f"{statistics.median(seg) / statistics.median(canon):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    p.add_argument("--batch-size", type=int, default=100, help="messages per batch (default 100)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP connections (default 8)")
    p.add_argument("--runs", type=int, default=5, help="runs; the median is reported (default 5)")
    p.add_argument("--devices", type=int, default=2000, help="distinct anonymous devices (default 2000)")
    p.add_argument("--gzip", action="store_true", help="gzip the Segment bodies, as RudderStack does")
    p.add_argument("--no-baseline", action="store_true", help="skip the canonical /v1/events baseline")
    p.add_argument("--database-url", default="", help="PostgreSQL server to create a scratch database on "
                                                      "(default: embedded PostgreSQL)")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
