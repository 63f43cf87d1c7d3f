"""Running the app: bind, serve until SIGTERM/SIGINT, then shut down gracefully.

On a signal the listening sockets close first (no new connections), in-flight
requests get up to ``shutdown_grace_seconds`` to finish, then the cleanup
contexts close the pools and stop any embedded stores.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.settings import Settings

log = structlog.get_logger("gateway.server")


async def serve_app(
    app: web.Application,
    settings: Settings,
    *,
    on_started: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_address=True)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.http_port
        url = settings.replace(http_port=port).base_url()
        log.info("server.started", url=url)
        print(f"contact-gateway is listening on {url}  (agent desktop {url}/agent, console {url}/console)",
              file=sys.stderr, flush=True)
        if on_started is not None:
            result = on_started(url)
            if asyncio.iscoroutine(result):
                await result
        await stop.wait()
        log.info("server.stopping", grace_seconds=settings.shutdown_grace_seconds)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("server.stopped")
