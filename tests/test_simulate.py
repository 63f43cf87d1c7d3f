"""The demo traffic, through the real adapters: a simulated PBX over AMI, signed online-banking webhooks,
email events; every scenario's call pops on the demo agents' desktops with what it was made to show."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from adapters.ami import parse_transcript
from gateway import keys
from gateway.app import create_app
from gateway.simulate.pbx import DemoPbx, call_frames
from gateway.simulate.traffic import AmiPhone, Simulator
from tests.conftest import make_settings

READ = {"X-API-Key": "dev-desktop-key"}


def test_call_frames_parse_into_a_full_call():
    ring, answer, ended = call_frames("1764400000.7", "13912345678", "张伟", "8002", "vip", time.time(), ("1", "3"))
    events, bad = parse_transcript(ring + answer + ended, dt.datetime.now(dt.UTC))
    assert bad == []
    assert [e.type for e in events] == ["call.offered", "ivr.selection", "ivr.selection", "call.offered",
                                        "call.ringing", "call.answered", "call.ended"]
    ringing = events[4]
    assert (ringing.agent_id, ringing.queue, ringing.attributes["ivr_path"]) == ("8002", "vip", ["1", "3"])
    assert events[-1].attributes["talk_seconds"] == 30


async def test_simulated_traffic_pops_at_the_demo_agents(aiohttp_client, database_url, redis_url, tmp_path, db):
    pbx = DemoPbx("demo-pbx", "s3cret")
    port = await pbx.start()
    settings = make_settings(database_url, redis_url, tmp_path, ami={
        "enabled": True, "host": "127.0.0.1", "port": port, "username": "demo-pbx", "secret": "s3cret",
        "reconnect_initial": 0.05, "reconnect_max": 0.2, "ping_interval": 0.0})
    client = await aiohttp_client(create_app(settings))
    await asyncio.wait_for(client.server.app[keys.POP_HUB].subscribed.wait(), 10)
    await asyncio.wait_for(pbx.logged_in.wait(), 10)
    pops: dict[str, list[dict[str, Any]]] = {"8001": [], "8002": []}
    sockets = {a: await client.ws_connect(f"/v1/agents/{a}/stream", headers=READ) for a in pops}

    async def collect(agent: str) -> None:
        async for msg in sockets[agent]:
            frame = msg.json()
            if frame["type"] == "pop":
                pops[agent].append(frame["pop"])

    readers = [asyncio.create_task(collect(a)) for a in pops]
    base = str(client.make_url("/")).rstrip("/")
    async with Simulator(base, settings, AmiPhone(pbx, answer_after=60), interval=0.01, seed=1) as sim:
        await sim.setup()
        await sim.run(rounds=6)
    try:
        async with asyncio.timeout(20):
            while sum(len(p) for p in pops.values()) < 6:
                await asyncio.sleep(0.05)
    finally:
        for r in readers:
            r.cancel()
        for ws in sockets.values():
            await ws.close()
        await pbx.close()
    assert len(pops["8001"]) == 3 and len(pops["8002"]) == 3  # the agents take turns
    every = pops["8001"] + pops["8002"]
    by_customer = {p["summary"]["who"]["customer_no"]: p for p in every if p["state"] == "identified"}
    assert set(by_customer) == {"C9000000001", "C9000000002", "C9000000003", "C9000000006"}
    rules = {no: {a["rule"] for a in p["summary"]["alerts"]} for no, p in by_customer.items()}
    assert {"vip", "complaint_past_sla", "likely_reason_digital_failure"} <= rules["C9000000001"]
    assert {"priority_private_banking", "churn_large_outflow"} <= rules["C9000000002"]
    assert "likely_reason_digital_failure" in rules["C9000000003"]
    assert "churn_closure_enquiry" in rules["C9000000006"]
    states = sorted(p["state"] for p in every)
    assert states.count("ambiguous") == 1 and states.count("unidentified") == 1
    ambiguous = next(p for p in every if p["state"] == "ambiguous")
    assert len(ambiguous["candidates"]) == 2
    # everything came through the adapters: AMI calls, online-banking webhooks, email events
    sources = {r["source"] for r in await db.fetch("SELECT DISTINCT source FROM events")}
    assert sources == {"cti.asterisk", "online-banking", "email"}
