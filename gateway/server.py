"""Running the app: bind, serve until SIGTERM/SIGINT, then shut down gracefully.

On a signal the listening sockets close first (no new connections), in-flight
requests get up to ``shutdown_grace_seconds`` to finish, then the cleanup
contexts close the pools and stop any embedded stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from aiohttp import web
from prometheus_client import multiprocess

from gateway.settings import Settings

log = structlog.get_logger("gateway.server")

T = TypeVar("T")
GC_YOUNG_THRESHOLD = 50_000


def run_loop(coro: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run ``coro`` to completion on the configured event loop (``event_loop``: uvloop or asyncio)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def serve_app(
    app: web.Application,
    settings: Settings,
    *,
    on_started: Callable[[str], Awaitable[None] | None] | None = None,
    reuse_port: bool = False,
    quiet: bool = False,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_address=True,
                           reuse_port=reuse_port or None)
        await site.start()
        # Everything built so far (modules, app, pools) lives as long as the process: out of the cyclic
        # collector's way, a full collection scans a third of the objects (pauses of ~50 ms under load
        # became ~12 ms in bench/screenpop.py). Objects are still freed by reference counting.
        gc.collect()
        gc.freeze()
        # Requests allocate many short-lived objects that reference counting frees; with the default
        # threshold (700 allocations) the young generation was collected thousands of times a second,
        # a fifth of the CPU of batch ingest (bench/ingest.py).
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        port = runner.addresses[0][1] if runner.addresses else settings.http_port
        url = settings.replace(http_port=port).base_url()
        log.info("server.started", url=url)
        if not quiet:
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


# -- several processes on one port ---------------------------------------------------------------------

RESTART_BACKOFF = 1.0


def worker_settings(settings: Settings, index: int) -> Settings:
    """What worker ``index`` runs: the first keeps the singletons (AMI client, IMAP poller, demo seeding);
    the parent has migrated already."""
    settings = settings.replace(migrate_on_start=False)
    if index == 0:
        return settings
    return settings.replace(demo=False, ami=dataclasses.replace(settings.ami, enabled=False),
                            imap=dataclasses.replace(settings.imap, enabled=False))


def serve_workers(settings: Settings, workers: int,
                  make_app: Callable[[Settings, int], web.Application]) -> int:
    """Run ``workers`` gateway processes on one port (SO_REUSEPORT) until SIGTERM/SIGINT; return 0.

    The parent starts the embedded stores when no URLs are configured (all workers share them), applies
    the migrations once, forks the workers (``make_app(settings, index)`` builds each one's app),
    replaces a worker that dies, and on a signal passes SIGTERM on and waits for every worker's graceful
    shutdown before stopping the stores.
    """
    from gateway.db.migrate import migrate_dsn
    from gateway.embedded import EmbeddedStores
    from gateway.settings import Secret

    multiproc_dir = tempfile.mkdtemp(prefix="cg-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    stores = None
    if settings.embedded_postgres or settings.embedded_redis:
        stores = EmbeddedStores(settings.data_dir, postgres=settings.embedded_postgres,
                                redis=settings.embedded_redis)
        pg_url, redis_url = stores.start()
        if pg_url:
            settings = settings.replace(database_url=Secret(pg_url))
        if redis_url:
            settings = settings.replace(redis_url=Secret(redis_url))
    if settings.http_port == 0:
        with socket.socket() as s:
            s.bind((settings.http_host, 0))
            settings = settings.replace(http_port=s.getsockname()[1])
    if settings.migrate_on_start:
        asyncio.run(migrate_dsn(settings.database_url.get()))

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx = multiprocessing.get_context("fork")
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def start(index: int) -> None:
        proc = ctx.Process(target=_worker, args=(make_app, worker_settings(settings, index), index),
                           name=f"contact-gateway-worker-{index}")
        proc.start()
        procs[index] = proc

    try:
        for index in range(workers):
            start(index)
        log.info("server.workers_started", workers=workers, url=settings.base_url(),
                 pids=[p.pid for p in procs.values()])
        print(f"contact-gateway is listening on {settings.base_url()} with {workers} worker processes  "
              f"(agent desktop {settings.base_url()}/agent, console {settings.base_url()}/console)",
              file=sys.stderr, flush=True)
        while not stopping:
            time.sleep(0.2)
            for index, proc in list(procs.items()):
                if not proc.is_alive() and not stopping:
                    log.error("server.worker_died", index=index, pid=proc.pid, exitcode=proc.exitcode)
                    multiprocess.mark_process_dead(proc.pid)
                    time.sleep(RESTART_BACKOFF)
                    start(index)
    finally:
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.join(settings.shutdown_grace_seconds + 30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if stores is not None:
            stores.stop()
        shutil.rmtree(multiproc_dir, ignore_errors=True)
        log.info("server.workers_stopped")
    return 0


def _worker(make_app: Callable[[Settings, int], web.Application], settings: Settings, index: int) -> None:
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # chosen at import, before the parent set the directory
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run_loop(serve_app(make_app(settings, index), settings, reuse_port=True, quiet=True), settings)
