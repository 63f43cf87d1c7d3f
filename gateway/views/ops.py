"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from gateway import keys
from gateway.db.migrate import current_version, latest_version
from gateway.errors import NotReady
from gateway.openapi import ApiRegistry, add_route, json_response, openapi_view
from gateway.views.access import PUBLIC

READY_TIMEOUT = 2.0

HEALTH_SCHEMA = {"type": "object", "required": ["status"],
                 "properties": {"status": {"type": "string"}, "pid": {"type": "integer"}}}
READY_SCHEMA = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {"status": {"type": "string"}, "checks": {"type": "object"}},
}


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (``pid``: which worker). Says nothing of the stores (that is /readyz)."""
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def _check_postgres(app: web.Application) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with app[keys.DB].acquire() as conn:
                version = await current_version(conn)
    except Exception as exc:  # any failure means not ready; the kind is reported
        return f"unreachable: {type(exc).__name__}"
    want = latest_version()
    if version != want:
        return f"migrations pending: at {version}, want {want}"
    return "ok"


async def _check_redis(app: web.Application) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await app[keys.REDIS].ping()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """Ready: PostgreSQL and Redis answer and the schema is current; else 503 naming what failed."""
    pg, rd = await asyncio.gather(_check_postgres(request.app), _check_redis(request.app))
    checks = {"postgresql": pg, "redis": rd}
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        raise NotReady(f"not ready: {', '.join(f'{n} {checks[n]}' for n in failed)}", checks=checks)
    return web.json_response({"status": "ready", "checks": checks})


async def metrics_view(request: web.Request) -> web.Response:
    m = request.app[keys.METRICS]
    pool = request.app[keys.DB]
    m.pool_size.set(pool.get_size())
    m.pool_idle.set(pool.get_idle_size())
    registry = m.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # serve --workers N: every worker's samples, merged
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    resp = web.Response(body=generate_latest(registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    add_route(app, api, "GET", "/healthz", healthz, {
        "operationId": "healthz", "summary": "Liveness", "tags": ["operations"],
        "responses": {"200": json_response("The process is alive", HEALTH_SCHEMA)},
    }, access=PUBLIC)
    add_route(app, api, "GET", "/readyz", readyz, {
        "operationId": "readyz", "summary": "Readiness: PostgreSQL, Redis, migrations", "tags": ["operations"],
        "responses": {"200": json_response("Ready", READY_SCHEMA)},
    }, access=PUBLIC)
    add_route(app, api, "GET", "/metrics", metrics_view, {
        "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["operations"],
        "responses": {"200": {"description": "Prometheus text exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }, access=PUBLIC)
    add_route(app, api, "GET", "/openapi.json", openapi_view, {
        "operationId": "openapi", "summary": "This OpenAPI document", "tags": ["operations"],
        "responses": {"200": json_response("OpenAPI 3.1 document")},
    }, access=PUBLIC)
