"""Screen-pop latency: from the CTI ringing event entering the gateway to the WebSocket frame at the agent.

    python bench/screenpop.py                              # 1,000,000 customers, 10,000,000 events
    python bench/screenpop.py --customers 20000 --events 200000 --calls 200   # a quick run

A real gateway process (``python -m gateway serve``) on the machine's PostgreSQL and Redis, with its
AMI client connected to a simulated PBX in this process (:mod:`gateway.simulate.pbx`). The data are
seeded with ``gateway.seed.customers`` / ``gateway.seed.events`` into the database
``cg_bench_history_<customers>_<events>`` (shared with ``bench/ingest.py``, reused when it already
holds them). While a background load (its own process) posts ``--background`` events/s through
``POST /v1/events`` (customers picked at random, so their cached summaries are invalidated all the
time), each measured call:

1. plays the call's frames up to the queue (offered, IVR with the verified customer number,
   queue join), waits for them to be stored, then ``--queue-wait`` seconds (a real caller spends
   seconds in the IVR and the queue; this is when the gateway warms the caller's summary);
2. takes ``t0`` and writes the ``AgentCalled`` frame (the ringing) on the AMI socket;
3. takes ``t1`` when the pop of that interaction arrives on the agent's WebSocket.

Every call is for a different customer chosen at random among those with a history, so nothing
about the caller is cached when the call is offered. Two phases on the same data, each with its own
gateway process: ``early`` (the default configuration: the pop is built while the ringing event
commits, from a summary warmed while the caller was queued) and ``after-commit``
(``screenpop.early_pop = false``: the pop waits for the ringing's commit and its publication, and
builds the summary from PostgreSQL then). Prints p50/p99 of ``t1 - t0`` for each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_PG, DEFAULT_REDIS, gateway_process, machine, percentiles, seeded_history
from gateway.events.ingest import interaction_uuid
from gateway.simulate.pbx import AGENT_CALLED, DemoPbx, call_frames

AGENT = "8999"
READ = {"X-API-Key": "dev-desktop-key"}
MOBILE = {"X-API-Key": "dev-mobile-write-key"}


async def sample_customers(url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.customer_no FROM customers c TABLESAMPLE SYSTEM (5) "
            "WHERE EXISTS (SELECT 1 FROM interactions i WHERE i.customer_id = c.id) LIMIT $1", n * 3)
    finally:
        await conn.close()
    nos = [r["customer_no"] for r in rows]
    random.Random(7).shuffle(nos)
    return nos[:n]


def background(url: str, customers: list[str], rate: int, stop: Any, sent: Any, posters: int = 4) -> None:
    """In its own process (the measuring client's event loop stays free): post ``rate`` events/s until
    ``stop`` is set, ``posters`` clients each posting a batch every 20 ms; ``sent`` counts accepted events."""
    async def go() -> None:
        await asyncio.gather(*(_poster(url, customers, rate // posters, stop, sent, n) for n in range(posters)))

    asyncio.run(go())


async def _poster(url: str, customers: list[str], rate: int, stop: Any, sent: Any, k: int) -> None:
    rng = random.Random(3 + k)
    run = uuid.uuid4().hex[:8]
    types = ("login.succeeded", "login.failed", "transfer.succeeded", "transfer.failed", "screen.viewed")
    per_tick, tick = max(rate // 50, 1), 0.02
    n = 0
    async with aiohttp.ClientSession() as session:
        next_at = time.perf_counter()
        while not stop.is_set():
            batch = []
            for _ in range(per_tick):
                n += 1
                batch.append({
                    "source": "mobile-banking", "source_event_id": f"bg-{run}-{n}", "channel": "mobile_banking",
                    "type": rng.choice(types),
                    "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                    "identifiers": [{"kind": "customer_no", "value": rng.choice(customers)}],
                    "interaction_id": f"bg-{run}-{n // 5}", "attributes": {"amount": rng.randrange(100, 90000)}})
            async with session.post(url + "/v1/events", json=batch, headers=MOBILE) as r:
                await r.read()
                if r.status == 200:
                    with sent.get_lock():
                        sent.value += len(batch)
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def measure(url: str, pbx: DemoPbx, db_url: str, customers: list[str], calls: int, queue_wait: float
                  ) -> list[float]:
    latencies: list[float] = []
    conn = await asyncpg.connect(db_url)
    run = f"{int(time.time())}"
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("http", "ws") + f"/v1/agents/{AGENT}/stream", headers=READ) as ws:
        for i, customer_no in enumerate(customers[:calls]):
            linked = f"{run}.{i}"
            ring, _, _ = call_frames(linked, f"1390000{i:04d}", "", AGENT, "vip", time.time(), ("1",),
                                     customer_no=customer_no)
            cut = ring.index(AGENT_CALLED)
            await pbx.play(ring[:cut])
            iid = interaction_uuid("cti.asterisk", linked)
            for _ in range(2000):   # the queued call is stored (the IVR takes seconds in real life)
                if await conn.fetchval("SELECT 1 FROM interactions WHERE id = $1 AND status = 'offered'", iid):
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(queue_wait)
            want = str(iid)
            t0 = time.perf_counter()
            await pbx.play(ring[cut:])
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                frame = json.loads(msg.data)
                if frame["type"] == "pop" and frame["pop"]["interaction_id"] == want:
                    t1 = time.perf_counter()
                    assert frame["pop"]["state"] == "identified", frame["pop"]["state"]
                    break
            latencies.append((t1 - t0) * 1000)
            await asyncio.sleep(0.02)
    await conn.close()
    return latencies


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=DEFAULT_PG)
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--background", type=int, default=1000, help="background ingest, events/s")
    p.add_argument("--queue-wait", type=float, default=0.2, help="seconds a call waits queued before ringing")
    p.add_argument("--phases", default="early,after-commit")
    args = p.parse_args()
    print(f"machine: {machine()}", flush=True)
    db_url = await seeded_history(args.database_url, args.customers, args.events)
    phases = args.phases.split(",")
    customers = await sample_customers(db_url, len(phases) * (args.calls + 50) + 5000)
    results = {}
    each = args.calls + 50
    for n, phase in enumerate(phases):
        results[phase] = await run_phase(db_url, args, phase, customers[n * each:(n + 1) * each],
                                         customers[len(phases) * each:])
    print()
    print(f"screen-pop, ringing in (AMI) -> WebSocket frame out, {args.calls} calls per phase, "
          f"{args.customers} customers / {args.events} events, {machine()}:")
    for phase, (r, rate) in results.items():
        print(f"  {phase:13s} p50 {r['p50']:.2f} ms   p99 {r['p99']:.2f} ms   max {r['max']:.2f} ms   "
              f"(background ingest {rate:.0f} events/s)", flush=True)


async def run_phase(db_url: str, args: argparse.Namespace, phase: str, callers: list[str], others: list[str]
                    ) -> tuple[dict[str, float], float]:
    pbx = DemoPbx("bench", "bench-secret")
    port = await pbx.start()
    env = {"ami__enabled": "true", "ami__host": "127.0.0.1", "ami__port": str(port), "ami__username": "bench",
           "ami__secret": "bench-secret", "ami__ping_interval": "0", "db_pool_max": "16",
           "screenpop__early_pop": "true" if phase == "early" else "false"}
    loop = asyncio.get_running_loop()
    with gateway_process(db_url, args.redis_url, **env) as url:
        await asyncio.wait_for(pbx.logged_in.wait(), 60)
        ctx = multiprocessing.get_context("spawn")
        stop, sent = ctx.Event(), ctx.Value("q", 0)
        bg = ctx.Process(target=background, args=(url, others, args.background, stop, sent), daemon=True)
        bg.start()
        await asyncio.sleep(3)
        await measure(url, pbx, db_url, callers[args.calls:], 50, args.queue_wait)   # warm-up
        t = loop.time()
        lat = await measure(url, pbx, db_url, callers, args.calls, args.queue_wait)
        elapsed = loop.time() - t
        stop.set()
        bg.join(30)
    await pbx.close()
    r = percentiles(lat)
    r["max"] = max(lat)
    print(f"  {phase}: p50 {r['p50']:.2f} ms   p99 {r['p99']:.2f} ms   max {r['max']:.2f} ms", flush=True)
    return r, sent.value / max(elapsed + 3, 1)


if __name__ == "__main__":
    asyncio.run(main())
