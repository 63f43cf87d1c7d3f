"""Ingest benchmark (issue 4). One run prints one table:

(a) single-event POSTs, 64 concurrent keep-alive clients (wrk): events/s, ack latency p50/p99
(b) 500-event batches: events/s, and the CPU time per event of the gateway, PostgreSQL, Redis and wrk
(c) baseline in the same run: a minimal aiohttp handler decoding the same JSON and doing one durable INSERT per
    request into a plain table (bench/baseline_server.py), same load
(d) the ratio (a)/(c)
(e) customer timeline read over HTTP, p50/p99, with N events stored (default 10,000,000)

(a) and (c) alternate ``--repeat`` times and the medians are reported, because this machine is shared and noisy.
The gateway runs as ``serve --workers N`` for each N of ``--workers`` (default ``1,2``: one process, and one
per core), and every figure is reported per N; the baseline is one process.
PostgreSQL, Redis, the gateway and wrk all run on this machine; commits are durable (synchronous_commit on).

    python bench/ingest.py                      # everything, 10M events for (e) (seeding takes a while)
    python bench/ingest.py --history-events 1000000 --duration 5 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CPU_GROUPS,
    DEFAULT_PG,
    DEFAULT_REDIS,
    drop_database,
    free_port,
    fresh_database,
    gateway_process,
    machine,
    percentiles,
    python_process,
    run_wrk,
    seeded_history,
    timed_gets,
    with_database,
)

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "post_event.lua"


def gateways(db_url: str, redis: str, workers: list[int], stack: contextlib.ExitStack) -> dict[int, str]:
    """A running gateway per process count, for the whole run: {workers: base URL}."""
    return {n: stack.enter_context(gateway_process(db_url, redis, http_workers=str(n))) for n in workers}


def single_and_baseline(urls: dict[int, str], base_db_url: str, args: argparse.Namespace) -> dict[str, list]:
    runs: dict[str, list] = {"baseline": [], **{f"gateway{n}": [] for n in urls}}
    for url in urls.values():
        run_wrk(url + "/v1/events", SCRIPT, connections=args.connections, duration=2,
                env={"BENCH_RUN": "warm-" + uuid.uuid4().hex[:6]})
    for _ in range(args.repeat):
        for n, url in urls.items():
            r = run_wrk(url + "/v1/events", SCRIPT, connections=args.connections, duration=args.duration,
                        env={"BENCH_RUN": uuid.uuid4().hex[:10]})
            runs[f"gateway{n}"].append(r)
            print(f"  gateway x{n} {r}", flush=True)
        port = free_port()
        with python_process([str(HERE / "baseline_server.py"), base_db_url, str(port)],
                            f"http://127.0.0.1:{port}/readyz"):
            b = run_wrk(f"http://127.0.0.1:{port}/v1/events", SCRIPT, connections=args.connections,
                        duration=args.duration, env={"BENCH_RUN": uuid.uuid4().hex[:10]})
        runs["baseline"].append(b)
        print(f"  baseline    {b}", flush=True)
    return runs


def batches(urls: dict[int, str], args: argparse.Namespace) -> dict[int, list[dict[str, float]]]:
    """Per process count, per run: events/s and the CPU µs per event of each group of processes."""
    out: dict[int, list[dict[str, float]]] = {n: [] for n in urls}
    for _ in range(args.repeat):
        for n, url in urls.items():
            r = run_wrk(url + "/v1/events", SCRIPT, connections=8, duration=args.duration,
                        env={"BENCH_RUN": uuid.uuid4().hex[:10], "BENCH_BATCH": "500"}, cpu=True)
            events = r["rps"] * 500 * r["seconds"]
            run = {"events": r["rps"] * 500,
                   **{g: r[f"cpu_{g}"] * 1e6 / events for g in (*CPU_GROUPS, "wrk")}}
            out[n].append(run)
            print(f"  batch500 x{n} {r['rps'] * 500:.0f} events/s, CPU µs/event: "
                  + ", ".join(f"{g} {run[g]:.1f}" for g in (*CPU_GROUPS, "wrk")), flush=True)
    return out


async def timeline(url_db: str, redis: str, args: argparse.Namespace) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(url_db)
    try:
        nos = [r["customer_no"] for r in await conn.fetch(
            "SELECT c.customer_no FROM customers c WHERE EXISTS "
            "(SELECT 1 FROM interactions i WHERE i.customer_id = c.id) "
            "ORDER BY c.id LIMIT 20000")]
    finally:
        await conn.close()
    random.Random(1).shuffle(nos)
    with gateway_process(url_db, redis) as url:
        headers = {"X-API-Key": "dev-desktop-key"}
        await timed_gets([f"{url}/v1/customers/{n}/interactions?limit=20" for n in nos[:500]], headers, 8)
        lat = await timed_gets([f"{url}/v1/customers/{n}/interactions?limit=20" for n in nos[:args.reads]],
                               headers, args.read_concurrency)
    return percentiles(lat)


def med(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=DEFAULT_PG)
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", default="1,2",
                   help="gateway process counts to measure, comma-separated (serve --workers); the baseline is one")
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--history-events", type=int, default=10_000_000)
    p.add_argument("--reads", type=int, default=5000)
    p.add_argument("--read-concurrency", type=int, default=4)
    p.add_argument("--skip-timeline", action="store_true")
    p.add_argument("--timeline-only", action="store_true", help="only (e)")
    p.add_argument("--keep", action="store_true", help="keep the ingest databases")
    args = p.parse_args()

    print(f"machine: {machine()}; PostgreSQL, Redis, gateway and wrk on the same machine", flush=True)
    workers = [int(w) for w in args.workers.split(",")]
    runs: dict[str, list] = {}
    batch_runs: dict[int, list[dict[str, float]]] = {}
    if not args.timeline_only:
        ingest_db = await fresh_database(args.database_url, "cg_bench_ingest")
        base_db = with_database(args.database_url, "cg_bench_baseline")
        await fresh_database(args.database_url, "cg_bench_baseline")
        with contextlib.ExitStack() as stack:
            urls = gateways(ingest_db, args.redis_url, workers, stack)
            print("(a)+(c) single events, alternating gateway and baseline:", flush=True)
            runs = single_and_baseline(urls, base_db, args)
            print("(b) 500-event batches:", flush=True)
            batch_runs = batches(urls, args)
        if not args.keep:
            await drop_database(args.database_url, "cg_bench_ingest")
            await drop_database(args.database_url, "cg_bench_baseline")
    tl = None
    if not args.skip_timeline:
        print(f"(e) timeline with {args.history_events} events:", flush=True)
        history = await seeded_history(args.database_url, args.customers, args.history_events)
        tl = await timeline(history, args.redis_url, args)

    print()
    print(f"| measure ({machine()}, medians of {args.repeat}) | value |")
    print("|---|---|")
    b = runs.get("baseline")
    if b:
        b_rps = med([r["rps"] for r in b])
        for n in workers:
            g = runs[f"gateway{n}"]
            g_rps = med([r["rps"] for r in g])
            print(f"| (a) single-event ingest, {args.connections} clients, {n} gateway process(es) | "
                  f"{g_rps:,.0f} events/s, ack p50 {med([r['p50'] for r in g]):.2f} ms / "
                  f"p99 {med([r['p99'] for r in g]):.2f} ms |")
        for n in workers:
            runs_n = batch_runs[n]
            cpu = ", ".join(f"{g} {med([r[g] for r in runs_n]):.1f}" for g in (*CPU_GROUPS, "wrk"))
            print(f"| (b) 500-event batches, 8 clients, {n} gateway process(es) | "
                  f"{med([r['events'] for r in runs_n]):,.0f} events/s (CPU µs per event: {cpu}) |")
        print(f"| (c) baseline: one durable INSERT per request, 1 process | {b_rps:,.0f} requests/s "
              f"(p50 {med([r['p50'] for r in b]):.2f} ms / p99 {med([r['p99'] for r in b]):.2f} ms) |")
        for n in workers:
            print(f"| (d) ratio (a)/(c), {n} gateway process(es) | "
                  f"{med([r['rps'] for r in runs[f'gateway{n}']]) / b_rps:.2f}x |")
    if tl:
        print(f"| (e) timeline read over HTTP, {args.history_events:,} events | p50 {tl['p50']:.2f} ms / "
              f"p99 {tl['p99']:.2f} ms ({int(tl['n'])} reads, {args.read_concurrency} clients) |")
    errors = sum(r.get("errors", 0) for n in workers for r in runs.get(f"gateway{n}", []))
    if errors:
        print(f"WARNING: {errors:.0f} non-2xx responses from the gateway")


if __name__ == "__main__":
    asyncio.run(main())
