"""Demo traffic, played through the gateway's real adapters and APIs.

:class:`Simulator` first puts a handful of demo customers through the customer API (each made to
show some part of the screen-pop: a VIP with a complaint past its SLA, a private-banking customer
moving money out, a customer whose transfer just failed, a family sharing a home phone, an
enquiry about closing an account), then loops over scenarios, each ending with a call that rings
at one of the demo agents:

- online-banking failures (signed Standard Webhooks to ``/v1/channels/online-banking/webhook``),
- emails (``POST /v1/events`` with the email source's key),
- calls through a CTI adapter: the AMI adapter via the simulated PBX (:mod:`gateway.simulate.pbx`),
  or the generic signed CTI webhook (``/v1/channels/voice/events``) against a remote gateway.

Nothing here writes to the database: every event goes through the same ingest as production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, Self

import aiohttp
import structlog

from gateway.auth import sign_webhook
from gateway.settings import Settings
from gateway.simulate.pbx import DemoPbx, call_frames

log = structlog.get_logger("gateway.simulate")

DEMO_AGENTS: tuple[str, ...] = ("8001", "8002")
CN = dt.timezone(dt.timedelta(hours=8))


def _doc(name: str, *, segment: str = "mass", tier: str = "standard", vip: bool = False,
         identifiers: Sequence[tuple[str, str]] = (), **extra: Any) -> dict[str, Any]:
    now = dt.datetime.now(CN)
    body: dict[str, Any] = {
        "name": name, "customer_type": "personal", "segment": segment, "tier": tier, "vip": vip,
        "home_branch": "天河支行", "relationship_manager": "RM1024", "service_group": "财富管理二组",
        "risk_rating": "C3", "identifiers": [{"kind": k, "value": v} for k, v in identifiers],
        "holdings": [
            {"product_type": "debit_card", "product_name": "借记卡", "status": "active"},
            {"product_type": "savings_account", "product_name": "活期储蓄", "balance": "86420.15", "status": "active"},
        ],
        "entitlements": [
            {"channel": "mobile_banking", "enabled": True, "daily_limit": "500000", "per_transaction_limit": "50000"},
            {"channel": "online_banking", "enabled": True, "daily_limit": "1000000",
             "per_transaction_limit": "200000"},
        ],
    }
    for key, value in extra.items():
        body[key] = value(now) if callable(value) else value
    return body


def demo_customers() -> dict[str, dict[str, Any]]:
    """customer_no -> document. Phone numbers are fictitious."""
    iso = lambda d: d.isoformat()
    return {
        "C9000000001": _doc(
            "张伟", segment="wealth", tier="platinum", vip=True,
            identifiers=[("phone", "13912345678"), ("email", "zhang.wei@example.com"), ("online_user_id", "zhangwei88")],
            holdings=[
                {"product_type": "debit_card", "product_name": "借记卡", "status": "active"},
                {"product_type": "savings_account", "product_name": "活期储蓄", "balance": "268450.30", "status": "active"},
                {"product_type": "time_deposit", "product_name": "三年定期", "balance": "500000.00", "status": "active"},
                {"product_type": "wealth_product", "product_name": "稳健理财 180 天", "balance_band": "1m-6m",
                 "status": "active"},
                {"product_type": "credit_card", "product_name": "白金信用卡", "status": "active"},
            ],
            entitlements=[
                {"channel": "mobile_banking", "enabled": True, "daily_limit": "500000",
                 "per_transaction_limit": "100000"},
                {"channel": "online_banking", "enabled": False, "restriction": "block",
                 "restriction_reason": "多次密码错误锁定", "restricted_at": iso(dt.datetime.now(CN) - dt.timedelta(days=2))},
            ],
            cases=lambda now: [{"case_ref": "TS-2026-1107", "kind": "complaint", "category": "转账到账延迟",
                                "status": "open", "channel": "voice", "opened_at": iso(now - dt.timedelta(days=4)),
                                "due_at": iso(now - dt.timedelta(hours=30)), "sla_hours": 48}],
            credit_applications=lambda now: [{"application_ref": "XD-2026-0420", "product": "个人消费贷",
                                              "amount": "200000.00", "stage": "approval", "status": "in_progress",
                                              "accepted_at": iso(now - dt.timedelta(days=12)),
                                              "investigation_at": iso(now - dt.timedelta(days=10)),
                                              "approval_at": iso(now - dt.timedelta(days=3))}],
            appointments=lambda now: [{"appointment_ref": "JD-2026-031", "kind": "reception_day",
                                       "scheduled_at": iso((now + dt.timedelta(days=6)).replace(hour=10, minute=0)),
                                       "branch": "天河支行", "host": "王行长", "purpose": "理财规划面谈",
                                       "status": "booked"}]),
        "C9000000002": _doc("王芳", segment="private_banking", tier="diamond", vip=True,
                            identifiers=[("phone", "13800001111"), ("online_user_id", "wangfang01")]),
        "C9000000003": _doc("李娜", identifiers=[("phone", "13700002222"), ("online_user_id", "lina_2020")]),
        "C9000000004": _doc("刘洋", identifiers=[("phone", "02088886666"), ("phone", "13600003333")]),
        "C9000000005": _doc("陈静", identifiers=[("phone", "02088886666"), ("phone", "13600004444")]),
        "C9000000006": _doc("赵磊", identifiers=[("phone", "13500005555"), ("email", "zhao.lei@example.com")]),
    }


UNKNOWN_CALLER = "13600009999"


class Phone(Protocol):
    """How calls reach the gateway: ``ring`` now, the rest of the call played later in the background."""

    async def call(self, linked: str, caller: str, name: str, agent: str, queue: str,
                   ivr: tuple[str, ...]) -> None: ...


class AmiPhone(Phone):
    """Calls through the AMI adapter: the simulated PBX writes the frames to the gateway's AMI client."""

    def __init__(self, pbx: DemoPbx, answer_after: float = 8.0, talk: float = 30.0) -> None:
        self.pbx = pbx
        self.answer_after = answer_after
        self.talk = talk
        self._later: set[asyncio.Task[None]] = set()

    async def call(self, linked: str, caller: str, name: str, agent: str, queue: str,
                   ivr: tuple[str, ...]) -> None:
        ring, answer, ended = call_frames(linked, caller, name, agent, queue, time.time(), ivr)
        await self.pbx.play(ring)

        async def rest() -> None:
            await asyncio.sleep(self.answer_after)
            await self.pbx.play(answer)
            await asyncio.sleep(self.talk)
            await self.pbx.play(ended)

        task = asyncio.create_task(rest())
        self._later.add(task)
        task.add_done_callback(self._later.discard)


class WebhookPhone(Phone):
    """Calls through the generic CTI webhook (signed), for a gateway without the simulated PBX."""

    def __init__(self, post: Callable[[str, Any], Awaitable[None]], answer_after: float = 8.0) -> None:
        self.post = post
        self.answer_after = answer_after

    async def call(self, linked: str, caller: str, name: str, agent: str, queue: str,
                   ivr: tuple[str, ...]) -> None:
        at = dt.datetime.now(CN)
        base = {"call_id": linked, "system": "simulated", "queue": queue}
        await self.post(linked, [
            {**base, "event_id": f"{linked}-offered", "event": "offered", "occurred_at": at.isoformat(),
             "caller": {"number": caller, "name": name}},
            {**base, "event_id": f"{linked}-ringing", "event": "ringing", "agent_id": agent,
             "occurred_at": (at + dt.timedelta(seconds=1)).isoformat(), "caller": {"number": caller},
             "ivr": {"path": list(ivr)}},
        ])


class Simulator:
    """Plays the demo scenarios against a gateway at ``base_url`` (see the module docstring)."""

    def __init__(self, base_url: str, settings: Settings, phone: Phone | None, *, interval: float = 12.0,
                 agents: Sequence[str] = DEMO_AGENTS, seed: int | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.settings = settings
        self.phone = phone
        self.interval = interval
        self.agents = itertools.cycle(agents)
        self.rng = random.Random(seed)
        self.calls = 0
        self._session: aiohttp.ClientSession | None = None
        self._run = uuid.uuid4().hex[:6]
        self._seq = itertools.count(1)

    def _key(self, source: str) -> str:
        return self.settings.sources[source].api_keys[0].get()

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, **kw: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, self.base + path, **kw) as resp:
            if resp.status >= 400:
                log.warning("simulate.refused", path=path, status=resp.status)
                return None
            return await resp.json(content_type=None)

    async def _signed(self, path: str, source: str, msg_id: str, body: Any) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        ts = int(time.time())
        secret = self.settings.sources[source].webhook_secrets[0].get()
        await self._send("POST", path, data=raw, headers={
            "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_webhook(secret, msg_id, ts, raw)})

    async def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                assert self._session is not None
                async with self._session.get(self.base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError("the gateway did not become ready")

    async def setup(self) -> None:
        for customer_no, doc in demo_customers().items():
            await self._send("PUT", f"/v1/customers/{customer_no}", json=doc,
                             headers={"X-API-Key": self._key("core-banking")})

    # -- channels ------------------------------------------------------------------------------------
    async def online_banking(self, native_type: str, data: dict[str, Any]) -> None:
        msg = f"msg_sim_{self._run}_{next(self._seq)}"
        body = {"type": native_type, "timestamp": dt.datetime.now(CN).isoformat(), "data": data}
        await self._signed("/v1/channels/online-banking/webhook", "online-banking", msg, body)

    async def email(self, sender: str, subject: str, reason: str | None = None) -> None:
        n = next(self._seq)
        event: dict[str, Any] = {
            "source": "email", "source_event_id": f"<sim-{self._run}-{n}@mail.example.com>", "channel": "email",
            "type": "message.received", "occurred_at": dt.datetime.now(CN).isoformat(),
            "identifiers": [{"kind": "email", "value": sender}], "interaction_id": f"thread-{self._run}-{n}",
            "subject": subject, "direction": "inbound"}
        if reason:
            event["reason"] = reason
        await self._send("POST", "/v1/events", json=event, headers={"X-API-Key": self._key("email")})

    async def call(self, caller: str, name: str, queue: str = "general", ivr: tuple[str, ...] = ("1",)) -> str:
        agent = next(self.agents)
        linked = f"{int(time.time())}.{self._run}{next(self._seq)}"
        if self.phone is not None:
            await self.phone.call(linked, caller, name, agent, queue, ivr)
            self.calls += 1
            log.info("simulate.call", agent_id=agent, queue=queue)
        return agent

    # -- scenarios -------------------------------------------------------------------------------------
    async def scenario_failed_transfer(self) -> None:
        await self.online_banking("transfer.failed", {
            "user_id": "lina_2020", "session_id": f"ob-{self._run}-{next(self._seq)}", "reason": "daily_limit_exceeded",
            "reason_text": "超过日累计限额", "amount": "80000.00", "currency": "CNY"})
        await asyncio.sleep(2)
        await self.call("13700002222", "李娜", "general", ("2", "1"))

    async def scenario_vip_complaint(self) -> None:
        session = f"ob-{self._run}-{next(self._seq)}"
        for _ in range(2):
            await self.online_banking("login.failed", {"user_id": "zhangwei88", "session_id": session,
                                                       "reason": "wrong_password", "reason_text": "密码错误"})
        await asyncio.sleep(1)
        await self.call("13912345678", "张伟", "vip", ("1", "3"))

    async def scenario_outflow(self) -> None:
        for amount in ("400000.00", "350000.00"):
            await self.online_banking("transfer.succeeded", {
                "user_id": "wangfang01", "session_id": f"ob-{self._run}-{next(self._seq)}", "amount": amount,
                "currency": "CNY", "payee_bank": "他行"})
        await self.call("13800001111", "王芳", "vip", ("9",))

    async def scenario_closure_email(self) -> None:
        await self.email("zhao.lei@example.com", "咨询：如何办理销户", reason="account_closure")
        await asyncio.sleep(1)
        await self.call("13500005555", "赵磊", "general", ("4",))

    async def scenario_family_phone(self) -> None:
        await self.call("02088886666", "", "general", ("1",))

    async def scenario_unknown(self) -> None:
        await self.call(UNKNOWN_CALLER, "", "general", ("0",))

    def scenarios(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.scenario_vip_complaint, self.scenario_failed_transfer, self.scenario_family_phone,
                self.scenario_outflow, self.scenario_unknown, self.scenario_closure_email]

    async def run(self, rounds: int | None = None) -> None:
        """Play the scenarios in turn, one every ``interval`` seconds (forever without ``rounds``)."""
        plays = self.scenarios()
        n = 0
        while rounds is None or n < rounds:
            try:
                await plays[n % len(plays)]()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("simulate.failed", error=type(exc).__name__)
            n += 1
            await asyncio.sleep(self.interval * self.rng.uniform(0.8, 1.2))
