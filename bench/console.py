"""Contact-log query latency (p50/p99) for the common filters and for free-text search, with and without pg_trgm.

Usage::

    python -m bench.console                      # 10,000,000 events (seeded once, then reused)
    python -m bench.console --events 200000      # a quick run

The database ``cg_bench_console_<customers>_<events>`` on the machine PostgreSQL (default
``postgresql://root@127.0.0.1:5432``) is seeded once with ``gateway.seed.customers`` and
``gateway.seed.events`` and reused by later runs. Every query is the console's own
(:mod:`gateway.console.store`), run ``--repeat`` times with varied values, first page (50 rows) and
the next page by keyset. "Without pg_trgm" drops the trigram index inside a transaction that is
rolled back, so the same data is measured both ways. The CSV export is measured too: rows per
second and the process's peak RSS while streaming, against the RSS before.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import resource
import statistics
import sys
import time
from typing import Any

from bench.common import DEFAULT_PG, fresh_database, machine

TRGM_INDEX = "events_search_trgm_idx"


async def ensure_data(server: str, customers: int, events: int) -> str:
    """The seeded database (reused when it already holds the events). The trigram index is built after COPY."""
    from gateway.db.pool import create_pool
    from gateway.identity import IdentityHasher
    from gateway.seed.customers import seed_customers
    from gateway.seed.events import seed_events
    from gateway.settings import load_settings

    name = f"cg_bench_console_{customers}_{events}"
    url = await fresh_database(server, name, reuse=True)
    pool = await create_pool(url, min_size=1, max_size=4, command_timeout=7200)
    try:
        have = await pool.fetchval("SELECT count(*) FROM events")
        # pg_indexes shows a partitioned index as "ON ONLY events": rebuild it on every partition
        index_def = (await pool.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", TRGM_INDEX)
                     or "").replace(" ON ONLY ", " ON ")
        if have >= events * 0.99:
            print(f"reusing {name}: {have} events", flush=True)
            valid = await pool.fetchval("SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c "
                                        "ON c.oid = i.indexrelid WHERE c.relname = $1", TRGM_INDEX)
            if index_def and not valid:
                await pool.execute(f"DROP INDEX {TRGM_INDEX}")
                t = time.perf_counter()
                await pool.execute(index_def)
                print(f"rebuilt the trigram index in {time.perf_counter() - t:.0f}s", flush=True)
            return url
        if index_def:
            await pool.execute(f"DROP INDEX {TRGM_INDEX}")
        t = time.perf_counter()
        if not await pool.fetchval("SELECT count(*) FROM customers"):
            await seed_customers(pool, customers, 1, IdentityHasher(load_settings(env={}).identity_hmac_keys))
            print(f"seeded {customers} customers in {time.perf_counter() - t:.0f}s", flush=True)
        t = time.perf_counter()
        n = await seed_events(pool, events - have, 1, now=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
                              progress=lambda w: print(f"  {w} events", flush=True)
                              if w % 1_000_000 < 50_000 else None)
        print(f"seeded {n} events in {time.perf_counter() - t:.0f}s", flush=True)
        if index_def:
            t = time.perf_counter()
            await pool.execute(index_def)
            print(f"built the trigram index in {time.perf_counter() - t:.0f}s", flush=True)
        await pool.execute("VACUUM ANALYZE interactions")
        await pool.execute("ANALYZE events")
    finally:
        await pool.close()
    return url


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def measure(url: str, args: argparse.Namespace) -> None:
    import asyncpg

    from gateway.console.model import LogFilter
    from gateway.console.store import contact_log_page, export_rows
    from gateway.db.pool import init_connection

    conn = await asyncpg.connect(url)
    await init_connection(conn)
    try:
        has_trgm = bool(await conn.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", TRGM_INDEX))
        end = await conn.fetchval("SELECT max(started_at) FROM interactions")
        agents = [r[0] for r in await conn.fetch(
            "SELECT DISTINCT agent_id FROM interactions WHERE agent_id IS NOT NULL LIMIT 40")]
        customers = [r[0] for r in await conn.fetch(
            "SELECT customer_id FROM interactions WHERE customer_id IS NOT NULL "
            "AND started_at > $1::timestamptz - interval '30 days' LIMIT 200", end)]
        rng = random.Random(1)

        def window(days: int = 7) -> tuple[dt.datetime, dt.datetime]:
            until = end - dt.timedelta(days=rng.randint(0, 150))
            return until - dt.timedelta(days=days), until

        cases: dict[str, Any] = {
            "last 7 days, no filter": lambda: LogFilter(*window()),
            "7 days, channel=voice": lambda: LogFilter(*window(), channels=("voice",)),
            "7 days, voice, queue=loans": lambda: LogFilter(*window(), channels=("voice",), queue="loans"),
            "30 days, one agent": lambda: LogFilter(*window(30), agent_id=rng.choice(agents)),
            "180 days, one customer": lambda: LogFilter(end - dt.timedelta(days=180), end,
                                                        customer_id=rng.choice(customers)),
            "7 days, unidentified": lambda: LogFilter(*window(), identification="unidentified"),
            "7 days, outcome=escalated": lambda: LogFilter(*window(), outcome="escalated"),
            "30 days, text '转账失败' (4 chars)": lambda: LogFilter(*window(30), text="转账失败"),
            "30 days, text '网点服务态度' (6 chars)": lambda: LogFilter(*window(30), text="网点服务态度"),
            "30 days, text '额度' (2 chars)": lambda: LogFilter(*window(30), text="额度"),
            "30 days, text '自助机吞卡' (rare: no match)": lambda: LogFilter(*window(30), text="自助机吞卡"),
            "180 days, text 'Statement' (rare-ish, Latin)": lambda: LogFilter(end - dt.timedelta(days=180), end,
                                                                               text="statement request"),
            "7 days, voice + text '核实身份' (notes)": lambda: LogFilter(*window(), channels=("voice",),
                                                                      text="核实身份"),
        }
        results: dict[str, dict[str, tuple[float, float]]] = {}

        async def run_all(label: str, repeat: int) -> None:
            for name, make in cases.items():
                rng.seed(sum(map(ord, name)))
                first, second = [], []
                for _ in range(repeat if "text" in name else args.repeat):
                    f = make()
                    t = time.perf_counter()
                    try:
                        async with conn.transaction():       # a savepoint inside the no-index transaction
                            page = await contact_log_page(conn, f, None, 50)
                    except asyncpg.QueryCanceledError:      # over --timeout-s: recorded as infinite
                        first.append(float("inf"))
                        continue
                    first.append((time.perf_counter() - t) * 1000)
                    if page.next_key is not None:
                        t = time.perf_counter()
                        try:
                            async with conn.transaction():
                                await contact_log_page(conn, f, page.next_key, 50)
                        except asyncpg.QueryCanceledError:
                            second.append(float("inf"))
                            continue
                        second.append((time.perf_counter() - t) * 1000)
                results.setdefault(name, {})[label] = percentiles(first)
                if second:
                    results[name][label + " page 2"] = percentiles(second)
                p50, p99 = results[name][label]
                print(f"  [{label}] {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)

        await conn.execute(f"SET statement_timeout = '{args.timeout_s}s'")
        labels = []
        if has_trgm:
            await run_all("pg_trgm", args.repeat)
            labels.append("pg_trgm")
        tr = conn.transaction()
        await tr.start()
        try:
            if has_trgm:
                await conn.execute(f"DROP INDEX {TRGM_INDEX}")
            await run_all("no index", args.repeat_scan)
            labels.append("no index")
        finally:
            await tr.rollback()

        print(f"\nContact log at {await conn.fetchval('SELECT count(*) FROM events')} events, "
              f"{await conn.fetchval('SELECT count(*) FROM interactions')} interactions; {machine()}; "
              f"{args.repeat} runs each ({args.repeat_scan} for text searches without the index), "
              f"first page of 50 (ms)")
        print("| query | " + " | ".join(f"{lb} p50 | {lb} p99" for lb in labels) + " |")
        print("|---|" + "---:|---:|" * len(labels))
        for name, by in results.items():
            cells = []
            for lb in labels:
                p50, p99 = by.get(lb, (float("nan"), float("nan")))
                cells += [f"{v:.1f}" if v != float("inf") else f"> {args.timeout_s} s" for v in (p50, p99)]
            print(f"| {name} | " + " | ".join(cells) + " |")

        # export: stream every interaction of the last N days through the console's cursor
        since = end - dt.timedelta(days=args.export_days)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows = 0
        t = time.perf_counter()
        async for _chunk in export_rows(conn, LogFilter(since, end + dt.timedelta(seconds=1)), chunk=2000):
            rows += len(_chunk)
        elapsed = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"\nexport of {rows} interactions ({args.export_days} days): {elapsed:.1f} s, {rows / elapsed:.0f} rows/s;"
              f" peak RSS {rss0 / 1024:.0f} MiB before, {rss1 / 1024:.0f} MiB after")
    finally:
        await conn.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=DEFAULT_PG, help="maintenance URL of the PostgreSQL server")
    p.add_argument("--customers", type=int, default=300_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--repeat-scan", type=int, default=8, help="runs of each text search without the index")
    p.add_argument("--timeout-s", type=int, default=60, help="statement timeout; slower queries count as infinite")
    p.add_argument("--export-days", type=int, default=30)
    p.add_argument("--seed-only", action="store_true")
    args = p.parse_args()
    url = await ensure_data(args.database_url, args.customers, args.events)
    if not args.seed_only:
        await measure(url, args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
