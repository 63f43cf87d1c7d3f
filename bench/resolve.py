"""Benchmark: identity resolution latency with a million customers, import rate and import memory.

    python bench/resolve.py                      # 1,000,000 customers (a few minutes)
    python bench/resolve.py --customers 50000 --import-customers 20000   # a quick run

Creates a uniquely named database on the PostgreSQL at ``--server`` (default the machine's
127.0.0.1:5432), seeds it with ``gateway.seed.customers.seed_customers``, then prints:

- seed rate (customers/s);
- resolve latency p50/p99 by phone and by national ID, in-process (``CustomerService.resolve``:
  normalise + HMAC + one indexed query) and over HTTP (``GET /v1/customers/resolve`` on a real
  server on 127.0.0.1, one request at a time, client in the same process);
- import rate (customers/s) of ``contact-gateway import FILE.ndjson`` run as a child process, and its
  RSS sampled every 50 ms: the RSS once the import is under way, and the peak (flat memory means
  the two are close whatever the file size);
and drops the database afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stdnum.cn import ric

from gateway.app import create_app
from gateway.clock import SystemClock
from gateway.customers.service import CustomerService
from gateway.customers.store import find_candidates
from gateway.db.migrate import migrate_dsn
from gateway.db.pool import create_pool
from gateway.identity import IdentityHasher, normalize
from gateway.seed.customers import BATCH, REGIONS, _Generator, luhn_check_digit, seed_customers
from gateway.settings import load_settings

SEED = 42
NOW = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)


class _Recording(_Generator):
    """The seeder's generator, keeping the raw identifiers of the customers it makes (for sampling)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.raw: list[tuple[str, str]] = []

    def _ident(self, out: list[tuple[str, bytes, str]], kind: str, normalized: str) -> None:
        self.raw.append((kind, normalized))
        super()._ident(out, kind, normalized)


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def _fmt(name: str, samples_ms: list[float]) -> str:
    return (f"  {name:<34} p50 {statistics.median(samples_ms):7.3f} ms   p99 {_pct(samples_ms, 0.99):7.3f} ms"
            f"   (n={len(samples_ms)})")


def _with_db(server: str, name: str) -> str:
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}"


def _import_document(n: int) -> dict[str, Any]:
    """A core-banking document for the import file (valid identifiers, a few list rows)."""
    body = f"{REGIONS[n % len(REGIONS)]}{1950 + n % 55}{1 + n % 12:02d}{1 + n % 28:02d}{n % 1000:03d}"
    national_id = body + ric.calc_check_digit(body + "0")
    card_body = f"621700{n:09d}"
    card = card_body + luhn_check_digit(card_body)
    doc: dict[str, Any] = {
        "customer_no": f"I{n:010d}", "name": "陈晓明", "customer_type": "personal", "segment": "mass",
        "tier": "silver", "home_branch": "天河支行", "risk_rating": "C2",
        "identifiers": [{"kind": "phone", "value": f"+86 138 {n // 10000 % 10000:04d} {n % 10000:04d}"},
                        {"kind": "national_id", "value": national_id}, {"kind": "card_no", "value": card}],
        "holdings": [{"product_type": "debit_card", "status": "active", "number": card},
                     {"product_type": "savings_account", "status": "active", "balance": f"{n % 100000}.50"}],
        "entitlements": [{"channel": "mobile_banking", "enabled": True, "daily_limit": "200000"},
                         {"channel": "online_banking", "enabled": True, "daily_limit": "200000"}],
    }
    if n % 7 == 0:
        doc["cases"] = [{"case_ref": f"CS{n}", "kind": "complaint", "category": "转账延迟", "status": "open",
                         "opened_at": "2026-11-25T09:00:00+08:00", "due_at": "2026-11-27T09:00:00+08:00",
                         "sla_hours": 48}]
    return doc


async def _resolve_in_process(service: CustomerService, samples: dict[str, list[str]]) -> None:
    for kind, values in samples.items():
        for v in values[:50]:
            await service.resolve(kind, v)  # warm up connections and caches
        times = []
        outcomes: dict[str, int] = {}
        for v in values:
            t = time.perf_counter()
            res = await service.resolve(kind, v)
            times.append((time.perf_counter() - t) * 1000)
            outcomes[res.outcome] = outcomes.get(res.outcome, 0) + 1
        print(_fmt(f"in-process resolve by {kind}", times), outcomes)
        # The same work on a connection already held (as the ingest and the screen-pop do inside
        # their own transaction): without the pool's acquire and reset round trip.
        async with service.pool.acquire() as conn:
            times = []
            for v in values:
                t = time.perf_counter()
                await find_candidates(conn, service.hasher.all_digests(kind, normalize(kind, v)))
                times.append((time.perf_counter() - t) * 1000)
        print(_fmt(f"  same, connection held, by {kind}", times))


async def _resolve_http(dsn: str, samples: dict[str, list[str]], tmp: Path) -> None:
    settings = load_settings(env={}, database_url=dsn, redis_url=os.environ.get("BENCH_REDIS_URL",
                                                                                 "redis://127.0.0.1:6379/15"),
                             http_port=0, access_log=False, log_level="warning", data_dir=str(tmp / "var"),
                             migrate_on_start=False)
    app = create_app(settings)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    headers = {"X-API-Key": "dev-core-banking-key"}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            for kind, values in samples.items():
                for v in values[:50]:
                    async with http.get("/v1/customers/resolve", params={kind: v}) as r:
                        await r.read()
                times = []
                for v in values:
                    t = time.perf_counter()
                    async with http.get("/v1/customers/resolve", params={kind: v}) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    times.append((time.perf_counter() - t) * 1000)
                print(_fmt(f"HTTP GET /v1/customers/resolve {kind}", times))
    finally:
        await runner.cleanup()


async def _import(dsn: str, count: int, tmp: Path) -> None:
    path = tmp / "import.ndjson"
    enc = msgspec.json.Encoder()
    with path.open("wb") as fh:
        for n in range(count):
            fh.write(enc.encode(_import_document(n)) + b"\n")
    size_mb = path.stat().st_size / 2**20
    env = {**os.environ, "CG_DATABASE_URL": dsn, "CG_LOG_FORMAT": "json", "CG_LOG_LEVEL": "warning"}
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "import", str(path), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    while proc.returncode is None:
        try:
            samples.append((time.perf_counter() - start, ps.memory_info().rss))
        except psutil.Error:
            break
        try:
            await asyncio.wait_for(proc.wait(), 0.05)
        except TimeoutError:
            pass
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        print(err.decode()[-2000:])
        raise SystemExit(f"import failed with exit code {proc.returncode}")
    rss = [r for _, r in samples]
    quarter = [r for t, r in samples if t >= elapsed * 0.25] or rss
    print(f"  import of {count} customers ({size_mb:.0f} MiB NDJSON) by `contact-gateway import`: "
          f"{elapsed:.1f} s = {count / elapsed:,.0f} customers/s")
    print(f"  import RSS: at 25% {quarter[0] / 2**20:.0f} MiB, peak {max(rss) / 2**20:.0f} MiB, "
          f"median {statistics.median(rss) / 2**20:.0f} MiB (file {size_mb:.0f} MiB)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--import-customers", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=2000, help="resolves per kind and path")
    parser.add_argument("--server", default=os.environ.get("BENCH_DATABASE_URL",
                                                           "postgresql://root@127.0.0.1:5432/test"))
    args = parser.parse_args()
    name = f"cg_bench_resolve_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(args.server, name)
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"load average {os.getloadavg()[0]:.1f}; database {name}")
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            await migrate_dsn(dsn)
            settings = load_settings(env={})
            hasher = IdentityHasher(settings.identity_hmac_keys)
            pool = await create_pool(dsn, min_size=2, max_size=4, command_timeout=900)
            try:
                start = time.perf_counter()
                await seed_customers(pool, args.customers, SEED, hasher, now=NOW)
                elapsed = time.perf_counter() - start
                print(f"  seeded {args.customers} customers in {elapsed:.1f} s = "
                      f"{args.customers / elapsed:,.0f} customers/s")
                await pool.execute("VACUUM ANALYZE customer_identifiers")
                await pool.execute("ANALYZE customers")
                rows = await pool.fetchrow("SELECT (SELECT count(*) FROM customer_identifiers) AS ids, "
                                           "pg_size_pretty(pg_database_size(current_database())) AS size")
                print(f"  {rows['ids']} identifiers; database size {rows['size']}")
                raw: list[tuple[str, str]] = []
                n_blocks = -(-args.customers // BATCH)
                picked = sorted({b * n_blocks // 10 for b in range(10)})  # spread over the whole table
                per_block = -(-args.samples * 11 // 10 // len(picked))
                for block in picked:
                    gen = _Recording(SEED, hasher, NOW, block)
                    for i in range(block * BATCH, min(block * BATCH + per_block, args.customers)):
                        gen.customer(i)
                    raw += gen.raw
                samples = {kind: [v for k, v in raw if k == kind][:args.samples] for kind in ("phone", "national_id")}
                service = CustomerService(pool, hasher, SystemClock())
                await _resolve_in_process(service, samples)
            finally:
                await pool.close()
            await _resolve_http(dsn, samples, tmp)
            await _import(dsn, args.import_customers, tmp)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        print(f"dropped {name}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
