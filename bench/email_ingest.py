"""Email benchmark: MIME parse rate, and raw MIME POSTed to a real gateway on a real PostgreSQL.

Three figures, each the median of ``--rounds`` timed rounds:

1. **parse**: ``adapters.email_mime.parse`` over the email fixtures and samples
   (Chinese GB2312/GBK/Big5, HTML-only, bounces, auto-replies, attachments), in
   one process, no I/O — mails/s.
2. **POST raw MIME**: ``--concurrency`` clients POST the same mails (each with a
   fresh Message-ID, so every one is a new event) to
   ``/v1/channels/email/inbound`` of a gateway started as a subprocess
   (``python -m gateway serve``) on a fresh database of ``--database-url`` —
   parse + identity + group commit + ack after commit — mails/s and latency.
3. **baseline** in the same run: the same events, already parsed, POSTed as
   canonical JSON to ``/v1/events``; the ratio says what MIME parsing costs at
   the HTTP edge.

Run (the machine's PostgreSQL; the gateway starts an embedded Redis)::

    .venv/bin/python -m bench.email_ingest --database-url postgresql://root@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.email_mime import _parse_header, parse

FIXTURES = ROOT / "tests" / "fixtures"
KEY = "dev-email-key"
FALLBACK = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
_MSGID = re.compile(rb"^Message-I[dD]:.*?\r?\n(?![ \t])", re.MULTILINE | re.DOTALL)


def corpus() -> list[bytes]:
    mails = [p.read_bytes() for p in sorted((FIXTURES / "email").glob("*.eml")) if not p.name.startswith("malformed_")]
    mails += [p.read_bytes() for p in sorted((FIXTURES / "samples").glob("email_*.eml"))]
    return mails


def with_fresh_id(raw: bytes, tag: str) -> bytes:
    """The mail with its Message-ID replaced, so the gateway stores it as a new event."""
    return f"Message-ID: <{tag}@bench.example>\r\n".encode() + _MSGID.sub(b"", raw, count=1)


def bench_parse(mails: list[bytes], seconds: float, *, cold: bool) -> float:
    """Mails/s; ``cold`` empties the parsed-header memo before every mail (no header parsed earlier helps)."""
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for raw in mails:
            if cold:
                _parse_header.cache_clear()
            parse(raw, source="email", fallback_time=FALLBACK)
        n += len(mails)
    return n / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def post_round(session: aiohttp.ClientSession, url: str, bodies: list[tuple[bytes, dict[str, str]]],
                     concurrency: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            body, headers = queue.get_nowait()
            t = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"unexpected {resp.status}: {await resp.text()}")
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies) / (time.perf_counter() - start), latencies


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def bench_http(args: argparse.Namespace, mails: list[bytes]) -> dict[str, object]:
    name = f"cg_bench_email_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="cg-bench-email-")
    env = {**os.environ, "CG_DATABASE_URL": with_database(args.database_url, name), "CG_REDIS_URL": "",
           "CG_DATA_DIR": data_dir, "CG_HTTP_PORT": str(port), "CG_LOG_LEVEL": "warning",
           "CG_ACCESS_LOG": "false", "CG_LOG_FORMAT": "json"}
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", cwd=ROOT, env=env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:
            for _ in range(600):
                try:
                    async with session.get(base + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("gateway did not become ready")
            mime_headers = {"X-API-Key": KEY, "Content-Type": "message/rfc822"}
            json_headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
            # warm-up (connections, partitions, code paths), not timed
            warm = [(with_fresh_id(m, f"warm-{i}-{uuid.uuid4().hex}"), mime_headers)
                    for i, m in enumerate(mails * 3)]
            await post_round(session, base + "/v1/channels/email/inbound", warm, args.concurrency)
            mime_rates, json_rates, mime_lat, json_lat = [], [], [], []
            for r in range(args.rounds):
                tag = uuid.uuid4().hex
                raws = [with_fresh_id(mails[i % len(mails)], f"r{r}-{i}-{tag}") for i in range(args.mails)]
                rate, lat = await post_round(session, base + "/v1/channels/email/inbound",
                                             [(raw, mime_headers) for raw in raws], args.concurrency)
                mime_rates.append(rate)
                mime_lat += lat
                # baseline: the same events, parsed beforehand (new ids), as canonical JSON
                events = [msgspec.json.encode(parse(with_fresh_id(raw, f"j{r}-{i}-{tag}"), source="email",
                                                    fallback_time=FALLBACK))
                          for i, raw in enumerate(raws)]
                rate, lat = await post_round(session, base + "/v1/events",
                                             [(e, json_headers) for e in events], args.concurrency)
                json_rates.append(rate)
                json_lat += lat
            out = {
                "post_mime_mails_per_s": statistics.median(mime_rates),
                "post_mime_p50_ms": pct(mime_lat, 0.5), "post_mime_p99_ms": pct(mime_lat, 0.99),
                "baseline_json_events_per_s": statistics.median(json_rates),
                "baseline_json_p50_ms": pct(json_lat, 0.5), "baseline_json_p99_ms": pct(json_lat, 0.99),
            }
            out["mime_vs_json_ratio"] = out["post_mime_mails_per_s"] / out["baseline_json_events_per_s"]  # type: ignore[operator]
    finally:
        server.terminate()
        try:
            await asyncio.wait_for(server.wait(), 30)
        except TimeoutError:
            server.kill()
            await server.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("CG_BENCH_DATABASE_URL",
                                                             "postgresql://root@127.0.0.1:5432/test"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mails", type=int, default=2000, help="mails POSTed per round")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--parse-seconds", type=float, default=2.0)
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args()

    mails = corpus()
    sizes = sorted(len(m) for m in mails)
    print(f"corpus: {len(mails)} mails, median {statistics.median(sizes):.0f} bytes")
    for cold in (True, False):
        rates = [bench_parse(mails, args.parse_seconds, cold=cold) for _ in range(args.rounds)]
        print(f"parse (pure, one process, header memo {'emptied per mail' if cold else 'warm'}): "
              f"median {statistics.median(rates):,.0f} mails/s over {args.rounds} rounds")
    if args.skip_http:
        return
    res = asyncio.run(bench_http(args, mails))
    print(f"POST raw MIME -> /v1/channels/email/inbound (c={args.concurrency}, {args.mails} mails/round): "
          f"median {res['post_mime_mails_per_s']:,.0f} mails/s, p50 {res['post_mime_p50_ms']:.1f} ms, "
          f"p99 {res['post_mime_p99_ms']:.1f} ms")
    print(f"baseline: same events as JSON -> /v1/events: median {res['baseline_json_events_per_s']:,.0f} events/s, "
          f"p50 {res['baseline_json_p50_ms']:.1f} ms, p99 {res['baseline_json_p99_ms']:.1f} ms")
    print(f"ratio MIME/JSON: {res['mime_vs_json_ratio']:.2f}")


if __name__ == "__main__":
    main()
