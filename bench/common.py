"""Shared benchmark plumbing: fresh databases, gateway processes, wrk, percentiles.

Benchmarks talk to real servers: the PostgreSQL and Redis given by
``--database-url`` / ``--redis-url`` (default: this machine's 127.0.0.1:5432 and
:6379). Each run creates its own database and drops it unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql://root@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def machine() -> str:
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cores} cores, {mem:.0f} GiB"


def with_database(dsn: str, database: str) -> str:
    p = urlsplit(dsn)
    return urlunsplit((p.scheme, p.netloc, "/" + database, p.query, p.fragment))


async def fresh_database(server: str, name: str, *, reuse: bool = False) -> str:
    conn = await asyncpg.connect(server)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not reuse:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or not reuse:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server, name)
    from gateway.db.migrate import migrate_dsn

    await migrate_dsn(url)
    return url


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seeded_history(server: str, customers: int, events: int) -> str:
    """``cg_bench_history_<customers>_<events>``: seeded customers and events, reused when already there.

    Shared by the ingest (timeline) and screen-pop benchmarks, so that one seeding serves both."""
    from gateway.db.pool import create_pool
    from gateway.identity import IdentityHasher
    from gateway.seed.customers import seed_customers
    from gateway.seed.events import seed_events
    from gateway.settings import load_settings

    name = f"cg_bench_history_{customers}_{events}"
    url = await fresh_database(server, name, reuse=True)
    pool = await create_pool(url, min_size=1, max_size=4, command_timeout=7200)
    try:
        have_customers = await pool.fetchval("SELECT count(*) FROM customers")
        if have_customers < customers:
            t = time.perf_counter()
            await seed_customers(pool, customers, 1,  # skips the customer numbers already there
                                 IdentityHasher(load_settings(env={}).identity_hmac_keys))
            print(f"  seeded {customers} customers in {time.perf_counter() - t:.0f}s", flush=True)
        have = await pool.fetchval("SELECT count(*) FROM events")
        if have < events * 0.99:
            t = time.perf_counter()
            n = await seed_events(pool, events - have, 1,
                                  progress=lambda w: print(f"    {w} events", flush=True)
                                  if w % 1_000_000 < 50_000 else None)
            took = time.perf_counter() - t
            print(f"  seeded {n} events in {took:.0f}s ({n / took:.0f}/s)", flush=True)
        else:
            print(f"  reusing {name}: {have_customers} customers, {have} events", flush=True)
    finally:
        await pool.close()
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway_process(database_url: str, redis_url: str, **settings: str) -> Iterator[str]:
    """A real `python -m gateway serve` process; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CG_")}
    env.update({"CG_DATABASE_URL": database_url, "CG_REDIS_URL": redis_url, "CG_HTTP_PORT": str(port),
                "CG_LOG_LEVEL": "warning", "CG_ACCESS_LOG": "false", "CG_LOG_FORMAT": "json",
                "CG_DATA_DIR": tempfile.mkdtemp(prefix="cg-bench-")})
    env.update({f"CG_{k.upper()}": v for k, v in settings.items()})
    url = f"http://127.0.0.1:{port}"
    with python_process(["-m", "gateway", "serve"], url + "/readyz", env=env):
        yield url


@contextlib.contextmanager
def python_process(args: list[str], ready_url: str, env: dict[str, str] | None = None
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """A Python child process (a server), waited for until ``ready_url`` answers 200; SIGTERM on exit."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def need_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("this benchmark drives load with wrk: apt-get install -y wrk")
    return path


_LAT = re.compile(r"^\s+(50|75|90|99)(?:\.\d+)?%\s+([\d.]+)(us|ms|s)\s*$")
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)")
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, script: Path, *, connections: int, duration: int, threads: int = 1,
            env: dict[str, str] | None = None, cpu: bool = False) -> dict[str, float]:
    """Run wrk with a Lua script; return requests/s and latency percentiles in ms (``cpu``: and the CPU
    seconds each group of processes used meanwhile, as ``cpu_<group>``, and the wall time, ``seconds``)."""
    if cpu:
        before, children, started = cpu_seconds_by_group(), _children_cpu(), time.perf_counter()
    out = subprocess.run(
        [need_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True, timeout=duration + 60,
    ).stdout
    result: dict[str, float] = {}
    for line in out.splitlines():
        m = _LAT.match(line)
        if m:
            result[f"p{m.group(1)}"] = float(m.group(2)) * _UNIT[m.group(3)]
        m = _RPS.match(line)
        if m:
            result["rps"] = float(m.group(1))
        if "Non-2xx or 3xx responses" in line:
            result["errors"] = float(line.split(":")[1])
    if cpu:
        result["seconds"] = time.perf_counter() - started
        after = cpu_seconds_by_group()
        for group in CPU_GROUPS:
            result[f"cpu_{group}"] = after[group] - before[group]
        result["cpu_wrk"] = _children_cpu() - children
    return result


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


CPU_GROUPS = ("gateway", "postgres", "redis")


def cpu_seconds_by_group() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the machine's gateway, PostgreSQL and Redis processes,
    summed by role (Linux /proc). A process that exits between two readings is missing from the second,
    so wrk's CPU is read from this process's finished children instead (see :func:`run_wrk`)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(CPU_GROUPS, 0.0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if comm.startswith("postgres") or cmd.startswith("postgres"):
            group = "postgres"
        elif "gateway serve" in cmd:
            group = "gateway"
        elif comm.startswith("redis"):
            group = "redis"
        else:
            continue
        out[group] += used
    return out


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return {"p50": statistics.median(s), "p99": q[98], "n": float(len(s))}


async def timed_gets(urls: list[str], headers: dict[str, str], concurrency: int) -> list[float]:
    """GET every URL with ``concurrency`` keep-alive clients; return per-request latency in ms."""
    out: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            while not queue.empty():
                u = queue.get_nowait()
                t = time.perf_counter()
                async with session.get(u, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"GET {u}: {r.status}")
                out.append((time.perf_counter() - t) * 1000)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out
