"""The baseline of bench/ingest.py: a minimal aiohttp handler that decodes the same JSON and does one durable
INSERT per request into a plain table (no validation, no identity, no interactions, no publish).

    python bench/baseline_server.py DATABASE_URL PORT
"""

from __future__ import annotations

import sys

import asyncpg
import msgspec
from aiohttp import web

_decode = msgspec.json.Decoder()


async def init(app: web.Application) -> None:
    app["pool"] = await asyncpg.create_pool(sys.argv[1], min_size=2, max_size=10)
    async with app["pool"].acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS baseline_events "
                           "(id bigserial PRIMARY KEY, source text, source_event_id text, body jsonb)")


async def close(app: web.Application) -> None:
    await app["pool"].close()


async def post(request: web.Request) -> web.Response:
    raw = await request.read()
    body = _decode.decode(raw)
    await request.app["pool"].execute(
        "INSERT INTO baseline_events (source, source_event_id, body) VALUES ($1, $2, $3::jsonb)",
        body["source"], body["source_event_id"], raw.decode())
    return web.json_response({"status": "accepted"}, status=201)


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main() -> None:
    app = web.Application()
    app.on_startup.append(init)
    app.on_cleanup.append(close)
    app.router.add_post("/v1/events", post)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)


if __name__ == "__main__":
    main()
