"""The real process: embedded stores, graceful shutdown, the OpenAPI document's completeness."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import aiohttp
import pytest

from gateway.app import create_app
from gateway.embedded import EmbeddedPostgres, EmbeddedRedis

SLOW_SERVER = textwrap.dedent("""
    import asyncio, sys
    from aiohttp import web
    from gateway.app import create_app
    from gateway.server import serve_app
    from gateway.settings import load_settings

    async def slow(request):
        await asyncio.sleep(1.5)
        return web.json_response({"finished": True})

    def add_slow(app):
        from gateway.views.access import PUBLIC, declare

        app.router.add_route("GET", "/slow", slow)
        declare(app, "GET", "/slow", PUBLIC)

    settings = load_settings(env={}, database_url=sys.argv[1], redis_url=sys.argv[2], http_port=0,
                             shutdown_grace_seconds=10.0, log_format="json")

    async def started(url):
        print("URL " + url, flush=True)

    asyncio.run(serve_app(create_app(settings, extra_setup=[add_slow]), settings, on_started=started))
""")


async def _read_url(proc: asyncio.subprocess.Process) -> str:
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            raise AssertionError("server exited before it listened")
        if line.startswith(b"URL "):
            return line[4:].decode().strip()


async def test_graceful_shutdown_finishes_in_flight_request(database_url, redis_url):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLOW_SERVER, database_url, redis_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = await _read_url(proc)
        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(session.get(url + "/slow"))
            await asyncio.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            resp = await in_flight
            assert resp.status == 200
            assert await resp.json() == {"finished": True}
            # no new connections once stopping
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientError):
                await session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=2))
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_embedded_stores_start_stop_and_reuse(tmp_path):
    pg = EmbeddedPostgres(tmp_path)
    url = pg.start()
    assert "host=" in url
    assert (tmp_path / "postgres" / "PG_VERSION").exists()
    pg.stop()
    again = EmbeddedPostgres(tmp_path)
    assert again.start()  # the same data directory is reused, no initdb
    again.stop()

    rd = EmbeddedRedis(tmp_path)
    rd.start()
    import redis

    r = redis.Redis.from_url(rd.url)
    r.set("k", "v")
    r.close()
    rd.stop()
    rd2 = EmbeddedRedis(tmp_path)
    rd2.start()
    r = redis.Redis.from_url(rd2.url)
    assert r.get("k") == b"v", "the append-only file kept the data across restarts"
    r.close()
    rd2.stop()


async def test_serve_with_embedded_stores_end_to_end(tmp_path, unused_tcp_port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CG_")}
    env.update({"CG_DATA_DIR": str(tmp_path / "var"), "CG_HTTP_PORT": str(unused_tcp_port),
                "CG_LOG_FORMAT": "json"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{unused_tcp_port}"
        status = None
        async with aiohttp.ClientSession() as session:
            for _ in range(720):  # initdb of a fresh embedded PostgreSQL is slow on a loaded machine
                assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
                try:
                    resp = await session.get(url + "/readyz")
                    status = resp.status
                    if status == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.25)
        assert status == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        err = (await proc.stderr.read()).decode()
        assert "embedded.postgres_stopped" in err and "embedded.redis_stopped" in err
        assert f"listening on {url}" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_every_json_route_is_in_the_openapi_document(settings):
    app = create_app(settings)
    doc = app[__import__("gateway.keys", fromlist=["API"]).API].document()
    html_prefixes = ("/agent", "/console", "/login", "/logout", "/static", "/lang/")
    missing = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "*") or path == "/" or path.startswith(html_prefixes):
            continue
        if route.method.lower() not in doc["paths"].get(path, {}):
            missing.append(f"{route.method} {path}")
    assert not missing, f"routes missing from /openapi.json: {missing}"


async def test_workers_share_the_port_merge_metrics_replace_a_dead_worker_and_stop_together(
        database_url, redis_url, unused_tcp_port, tmp_path):
    """`serve --workers 2`: both processes answer on one port, /metrics counts what either ingested, a worker
    killed with SIGKILL is replaced, and SIGTERM stops the parent after every worker's graceful shutdown."""
    from tests.factories import CTI_KEY, event

    port = unused_tcp_port
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CG_", "PROMETHEUS_"))}
    env.update({"CG_DATABASE_URL": database_url, "CG_REDIS_URL": redis_url, "CG_HTTP_PORT": str(port),
                "CG_DATA_DIR": str(tmp_path / "var"), "CG_LOG_LEVEL": "warning", "CG_ACCESS_LOG": "false"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", "--workers", "2", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def pids(session: aiohttp.ClientSession, want: int) -> set[int]:
        seen: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 60
        while len(seen) < want and asyncio.get_running_loop().time() < deadline:
            try:  # a new connection each time: the kernel spreads them over the workers
                async with session.get(base + "/healthz", headers={"Connection": "close"}) as r:
                    seen.add((await r.json())["pid"])
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
        return seen

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            first = await pids(session, 2)
            assert len(first) == 2 and proc.pid not in first
            for i in range(30):
                r = await session.post(base + "/v1/events", json=event("call.offered", sid=f"w-{i}"), headers=CTI_KEY)
                assert r.status == 201
            text = await (await session.get(base + "/metrics")).text()
            accepted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("cg_events_ingested_total{") and 'outcome="accepted"' in line)
            assert accepted == 30, text[:2000]
            victim = sorted(first)[0]
            os.kill(victim, signal.SIGKILL)
            await asyncio.sleep(0.5)
            after = await pids(session, 2)
            assert len(after) == 2 and victim not in after, "the dead worker was replaced"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        for pid in after:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
