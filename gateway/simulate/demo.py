"""``serve --demo``: the simulated PBX and the demo traffic, run inside the gateway process.

The CLI points the AMI client at a local port (``[ami]`` with a per-start secret) and adds
:func:`setup_demo_traffic` to the app: it listens on that port as the PBX, waits until the
gateway answers ``/readyz``, puts the demo customers through the customer API and then plays
the scenarios of :class:`gateway.simulate.traffic.Simulator` in the background, so calls ring
at the demo agents within seconds of the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import socket
import sys
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway import keys
from gateway.settings import Secret, Settings
from gateway.simulate.pbx import DemoPbx
from gateway.simulate.traffic import AmiPhone, Simulator

log = structlog.get_logger("gateway.simulate.demo")

DEMO_AMI_USER = "demo-pbx"
# (name, display name, role, agent id, password): demo accounts only, created by `serve --demo`.
DEMO_USERS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("agent1", "王小明", "agent", "8001", "demo-agent1-pass"),
    ("agent2", "李小红", "agent", "8002", "demo-agent2-pass"),
    ("super1", "陈班长", "supervisor", None, "demo-super1-pass"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_settings(settings: Settings) -> Settings:
    """Settings with the AMI client pointed at the simulated PBX (unless AMI is configured already)."""
    if settings.ami.enabled:
        return settings
    ami = dataclasses.replace(settings.ami, enabled=True, host="127.0.0.1", port=free_port(), username=DEMO_AMI_USER,
                              secret=Secret(secrets.token_urlsafe(16)))
    return settings.replace(ami=ami)


async def ensure_demo_users(app: web.Application) -> None:
    """Create the demo accounts that do not exist yet, and say how to log in."""
    users = app[keys.USERS]
    for name, display, role, agent_id, password in DEMO_USERS:
        if await users.get(name) is None:
            await users.add(name, display, role, agent_id, password, actor="system:demo")
    url = app[keys.SETTINGS].base_url()
    lines = [f"  {name} / {password}  ({role}{', agent ' + agent_id if agent_id else ''})"
             for name, _, role, agent_id, password in DEMO_USERS]
    print(f"\ncontact-gateway demo: open {url}/agent and log in as one of\n" + "\n".join(lines)
          + "\ncalls ring at agents 8001 and 8002 every few seconds.\n", file=sys.stderr, flush=True)


def setup_demo_traffic(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    if not settings.demo:
        return

    async def demo_users_ctx(app: web.Application) -> AsyncIterator[None]:
        await ensure_demo_users(app)
        yield

    app.cleanup_ctx.append(demo_users_ctx)
    if not (settings.ami.enabled and settings.ami.username == DEMO_AMI_USER):
        return

    async def demo_traffic_ctx(app: web.Application) -> AsyncIterator[None]:
        pbx = DemoPbx(settings.ami.username, settings.ami.secret.get(), port=settings.ami.port)
        await pbx.start()

        async def play() -> None:
            async with Simulator(settings.base_url(), settings, AmiPhone(pbx),
                                 interval=settings.screenpop.demo_call_interval_seconds) as sim:
                await sim.wait_ready()
                await sim.setup()
                await asyncio.wait_for(pbx.logged_in.wait(), 60)
                log.info("demo.traffic_started", agents="8001,8002")
                await sim.run()

        task = asyncio.create_task(play(), name="demo-traffic")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await pbx.close()

    app.cleanup_ctx.append(demo_traffic_ctx)
