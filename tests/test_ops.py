import asyncio
import os

from aiohttp import web

from gateway.app import create_app
from gateway.db.migrate import latest_version
from gateway.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import make_settings
from tests.helpers import assert_problem


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "pid": os.getpid()}


async def test_readyz_ok(client):
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["checks"] == {"postgresql": "ok", "redis": "ok"}


async def test_unknown_route_is_404_problem(client):
    resp = await client.get("/no/such/route")
    body = await assert_problem(resp, 404, "not-found")
    assert body["instance"] == "/no/such/route"


async def test_wrong_method_is_405_problem(client):
    resp = await client.delete("/healthz")
    await assert_problem(resp, 405, "method-not-allowed")
    assert "GET" in resp.headers["Allow"]


async def test_unexpected_exception_is_500_problem_without_internals(aiohttp_client, settings, capsys):
    async def boom(request):
        raise RuntimeError("secret internal detail 6217000012345678")

    def add_boom(app: web.Application) -> None:
        from gateway.views.access import PUBLIC, declare

        app.router.add_route("GET", "/boom", boom)
        declare(app, "GET", "/boom", PUBLIC)

    client = await aiohttp_client(create_app(settings, extra_setup=[add_boom]))
    resp = await client.get("/boom", headers={"X-Request-ID": "req-500-test"})
    body = await assert_problem(resp, 500, "internal-error")
    assert body["request_id"] == "req-500-test"
    assert "secret internal" not in await resp.text()


async def test_request_id_echoed_or_generated(client):
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    generated = resp.headers["X-Request-ID"]
    assert generated and generated != "bad id with spaces"
    resp = await client.get("/nowhere", headers={"X-Request-ID": "abc-404"})
    assert resp.headers["X-Request-ID"] == "abc-404"
    assert (await resp.json(content_type=None))["request_id"] == "abc-404"


async def test_request_id_bound_to_log_lines(aiohttp_client, settings, capsys):
    from gateway.logs import configure_logging

    import sys

    configure_logging(settings, stream=sys.stdout)
    client = await aiohttp_client(create_app(settings))
    await client.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "http.request" in line)
    assert '"request_id": "trace-me-42"' in line
    assert '"route": "/healthz"' in line and '"status": 200' in line


async def test_metrics_exposition(client):
    await client.get("/healthz")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'cg_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "cg_http_request_duration_seconds_bucket" in text
    assert "cg_db_pool_size" in text


async def test_readyz_names_missing_store_and_recovers(aiohttp_client, tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pgdata")
    rd = EmbeddedRedis(tmp_path / "rd", persist=False)
    pg_url = pg.start()
    rd_url = rd.start()
    try:
        settings = make_settings(pg_url, rd_url, tmp_path)
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/readyz")).status == 200

        await asyncio.get_running_loop().run_in_executor(None, rd.stop)
        body = await assert_problem(await client.get("/readyz"), 503, "not-ready")
        assert body["checks"]["redis"].startswith("unreachable")
        assert body["checks"]["postgresql"] == "ok"
        await asyncio.get_running_loop().run_in_executor(None, rd.start)
        assert (await client.get("/readyz")).status == 200

        await asyncio.get_running_loop().run_in_executor(None, pg.stop)
        body = await assert_problem(await client.get("/readyz"), 503, "not-ready")
        assert body["checks"]["postgresql"].startswith("unreachable")
        assert "postgresql" in body["detail"]
        await asyncio.get_running_loop().run_in_executor(None, pg.start)
        for _ in range(20):
            resp = await client.get("/readyz")
            if resp.status == 200:
                break
            await asyncio.sleep(0.25)
        assert resp.status == 200, await resp.text()
    finally:
        rd.stop()
        pg.stop()


async def test_readyz_reports_pending_migrations(aiohttp_client, settings, db):
    await db.execute("DELETE FROM schema_version WHERE version = $1", latest_version())
    client = await aiohttp_client(create_app(settings.replace(migrate_on_start=False)))
    body = await assert_problem(await client.get("/readyz"), 503, "not-ready")
    assert "migrations pending" in body["checks"]["postgresql"]
