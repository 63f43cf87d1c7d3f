"""Realistic multi-channel contact histories for the seeded customers, written with COPY.

``seed_events(pool, count, seed, now=…)`` adds about ``count`` events over the
last 180 days, spread over the customers already in the database (run
``seed --customers`` first; about one contact in eight is left unidentified,
as in real traffic):

- calls: queue, IVR path (sometimes IVR-verified), ringing at an agent,
  answered and ended with talk and hold time, or abandoned in the queue;
- online and mobile banking sessions: logins, failed logins, transfers that
  succeed or fail with a reason, bill payments that fail, card freezes;
- email threads of one to three messages with Chinese subjects;
- complaints opened and later closed, satisfaction surveys.

The same seed gives the same data. Interactions are written consistently with
their events (the same rows the ingest path would maintain); event ids are
UUIDv7 built from each event's own time. Rows go in with binary COPY in
chunks, so ten million events take minutes, not hours, and memory stays flat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from gateway.events.ingest import interaction_uuid
from gateway.events.partitions import PartitionManager, add_months, month_of

DAYS = 180
CHUNK_EVENTS = 50_000
AGENTS = tuple(f"80{n:02d}" for n in range(1, 41))
QUEUES = (("general", 0.55), ("vip", 0.12), ("credit_card", 0.18), ("loans", 0.08), ("complaints", 0.07))
TRANSFER_FAILURES = ("insufficient_funds", "daily_limit_exceeded", "payee_account_invalid", "risk_control_hold",
                     "otp_timeout")
LOGIN_FAILURES = ("wrong_password", "device_not_bound", "account_locked", "otp_wrong")
CALL_REASONS = ("balance_enquiry", "card_activation", "lost_card", "transfer_problem", "loan_enquiry",
                "credit_limit", "complaint", "account_closure_enquiry", "wealth_product", "password_reset")
EMAIL_SUBJECTS = ("关于信用卡账单的疑问", "转账失败，请协助处理", "申请提高信用卡额度", "咨询理财产品到期安排",
                  "网银登录被锁定", "Re: 贷款申请进度", "投诉：网点服务态度", "Statement request")
COMPLAINT_CATEGORIES = ("service_attitude", "fees", "card_dispute", "digital_banking", "wait_time")

EVENT_COLUMNS = ("id", "occurred_at", "received_at", "source", "source_event_id", "channel", "type",
                 "interaction_id", "external_interaction_id", "customer_id", "identification", "identifiers",
                 "agent_id", "queue", "direction", "subject", "outcome", "reason", "attributes")
KEY_COLUMNS = ("source", "source_event_id", "event_id", "occurred_at", "interaction_id")
INTERACTION_COLUMNS = ("id", "source", "external_id", "kind", "channel", "customer_id", "identification",
                       "candidates", "link_strength", "linked_by", "identifier_digests", "status", "state_rank",
                       "started_at", "answered_at", "ended_at", "last_event_at", "talk_seconds", "hold_seconds",
                       "agent_id", "queue", "direction", "subject", "outcome", "reason", "event_count", "last_type")

_CUSTOMER_IDENTIFIERS = """
SELECT customer_id, kind, masked, digest FROM customer_identifiers
WHERE kind IN ('phone', 'email', 'online_user_id', 'device_id') AND origin = 'core'
"""


def uuid7_at(at: dt.datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 for a given time, its random bits from ``rng`` (deterministic)."""
    ms = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return uuid.UUID(int=value)


class _Gen:
    """Generates one interaction at a time, with its events, as COPY-ready tuples."""

    def __init__(self, rng: random.Random, now: dt.datetime,
                 ids: dict[int, dict[str, list[tuple[str, bytes]]]]) -> None:
        self.rng = rng
        self.now = now
        self.ids = ids
        self.customers = list(ids)
        self.n = 0
        self.events = 0

    def _ident(self, cid: int | None, kind: str) -> tuple[list[dict[str, str]], list[bytes]]:
        if cid is None:
            return [], []
        found = self.ids[cid].get(kind)
        if not found:
            return [], []
        masked, digest = found[0]
        return [{"kind": kind, "masked": masked}], [digest]

    def interaction(self) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        self.n += 1
        cid = r.choice(self.customers) if self.customers and r.random() > 0.12 else None
        start = self.now - dt.timedelta(seconds=r.uniform(60, DAYS * 86400))
        kind = r.choices(("call", "online", "mobile", "email", "complaint", "survey"),
                         (0.40, 0.22, 0.22, 0.07, 0.04, 0.05))[0]
        return getattr(self, "_" + kind)(cid, start)

    # -- each kind of contact -------------------------------------------------------------------------------
    def _call(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        source, ext = "cti.seed", f"seed-call-{self.n}"
        queue = r.choices([q for q, _ in QUEUES], [w for _, w in QUEUES])[0]
        agent = r.choice(AGENTS)
        idents, digests = self._ident(cid, "phone")
        ivr_path = [str(r.randint(1, 5)) for _ in range(r.randint(1, 3))]
        verified = cid is not None and r.random() < 0.35
        evs = [self._ev(t, source, ext, "voice", "call.offered", idents, queue=queue, direction="inbound")]
        t += dt.timedelta(seconds=r.uniform(5, 40))
        evs.append(self._ev(t, source, ext, "voice", "ivr.selection", [], attributes={
            "ivr_path": ivr_path, "auth_level": "ivr_pin" if verified else "none"}))
        abandoned = r.random() < 0.09
        answered = ended = None
        talk = hold = None
        reason = r.choice(CALL_REASONS)
        if abandoned:
            t += dt.timedelta(seconds=r.uniform(10, 180))
            evs.append(self._ev(t, source, ext, "voice", "call.abandoned", []))
            status, rank, outcome, agent_id = "abandoned", 4, None, None
            ended = t
        else:
            t += dt.timedelta(seconds=r.expovariate(1 / 25))
            evs.append(self._ev(t, source, ext, "voice", "call.ringing", [], agent_id=agent, queue=queue))
            t += dt.timedelta(seconds=r.uniform(2, 12))
            answered = t
            evs.append(self._ev(t, source, ext, "voice", "call.answered", [], agent_id=agent))
            talk = round(r.lognormvariate(5.2, 0.6), 1)
            hold = round(r.choice((0, 0, 0, r.uniform(10, 90))), 1)
            t += dt.timedelta(seconds=talk + hold)
            outcome = r.choices(("resolved", "follow_up", "transferred", "escalated"), (0.7, 0.15, 0.1, 0.05))[0]
            evs.append(self._ev(t, source, ext, "voice", "call.ended", [], agent_id=agent, outcome=outcome,
                                attributes={"talk_seconds": talk, "hold_seconds": hold}))
            t += dt.timedelta(seconds=r.uniform(5, 60))
            evs.append(self._ev(t, "desktop", f"cg:{interaction_uuid(source, ext)}", "voice", "contact.wrapup", [],
                                agent_id=agent, outcome=outcome, reason=reason,
                                attributes={"note": "已核实身份，按流程处理"}))
            status, rank, agent_id, ended = "ended", 4, agent, evs[-2][1]
        return self._interaction(source, ext, "call", "voice", cid, verified, digests, status, rank, evs,
                                 answered=answered, ended=ended, talk=talk, hold=hold, agent_id=agent_id,
                                 queue=queue, direction="inbound", outcome=outcome if not abandoned else None,
                                 reason=reason)

    def _digital(self, cid: int | None, t: dt.datetime, channel: str, source: str, ident_kind: str
                 ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        ext = f"seed-{channel}-{self.n}"
        idents, digests = self._ident(cid, ident_kind)
        evs = []
        outcome = None
        if r.random() < 0.25:
            for _ in range(r.randint(1, 3)):
                evs.append(self._ev(t, source, ext, channel, "login.failed", idents,
                                    reason=r.choice(LOGIN_FAILURES)))
                t += dt.timedelta(seconds=r.uniform(5, 60))
        evs.append(self._ev(t, source, ext, channel, "login.succeeded", idents))
        for _ in range(r.randint(0, 3)):
            t += dt.timedelta(seconds=r.uniform(10, 300))
            action = r.choices(("transfer", "payment", "freeze", "view"), (0.45, 0.15, 0.05, 0.35))[0]
            if action == "transfer":
                amount = round(r.lognormvariate(8, 1.5), 2)
                if r.random() < 0.2:
                    outcome = "failed"
                    evs.append(self._ev(t, source, ext, channel, "transfer.failed", idents,
                                        reason=r.choice(TRANSFER_FAILURES), outcome="failed",
                                        attributes={"amount": amount, "currency": "CNY"}))
                else:
                    evs.append(self._ev(t, source, ext, channel, "transfer.succeeded", idents,
                                        attributes={"amount": amount, "currency": "CNY"}))
            elif action == "payment":
                evs.append(self._ev(t, source, ext, channel, "payment.failed", idents, reason="biller_unavailable",
                                    outcome="failed"))
            elif action == "freeze":
                evs.append(self._ev(t, source, ext, channel, "card.frozen", idents))
            else:
                evs.append(self._ev(t, source, ext, channel, "screen.viewed", idents,
                                    attributes={"screen": r.choice(("账户总览", "理财", "信用卡", "转账"))}))
        return self._interaction(source, ext, "session", channel, cid, True, digests, "active", 0, evs,
                                 outcome=outcome)

    def _online(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        return self._digital(cid, t, "online_banking", "online-banking", "online_user_id")

    def _mobile(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        return self._digital(cid, t, "mobile_banking", "mobile-banking", "device_id")

    def _email(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        source, ext = "email", f"<seed-{self.n}@mail.example.com>"
        idents, digests = self._ident(cid, "email")
        subject = r.choice(EMAIL_SUBJECTS)
        evs = [self._ev(t, source, ext, "email", "message.received", idents, subject=subject,
                        attributes={"body_text": "您好，" + subject + "，请尽快回复。谢谢！"})]
        status, rank = "open", 1
        for _ in range(r.randint(0, 2)):
            t += dt.timedelta(hours=r.uniform(1, 30))
            evs.append(self._ev(t, source, ext, "email", "message.sent", [], subject="答复: " + subject))
            status, rank = "replied", 2
        return self._interaction(source, ext, "thread", "email", cid, False, digests, status, rank, evs,
                                 subject=subject)

    def _complaint(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        source, ext = "crm.cases", f"seed-case-{self.n}"
        category = r.choice(COMPLAINT_CATEGORIES)
        evs = [self._ev(t, source, ext, "branch", "complaint.opened", [], reason=category,
                        subject="客户投诉：" + category)]
        status, rank, ended = "open", 1, None
        if r.random() < 0.7:
            t += dt.timedelta(days=r.uniform(0.5, 20))
            evs.append(self._ev(t, source, ext, "branch", "complaint.closed", [], outcome="resolved"))
            status, rank, ended = "closed", 4, t
        return self._interaction(source, ext, "case", "branch", cid, True, [], status, rank, evs, ended=ended,
                                 reason=category, subject="客户投诉：" + category)

    def _survey(self, cid: int | None, t: dt.datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        r = self.rng
        source, ext = "survey", f"seed-survey-{self.n}"
        score = r.choices((1, 2, 3, 4, 5), (0.05, 0.05, 0.15, 0.35, 0.4))[0]
        evs = [self._ev(t, source, ext, "sms", "survey.answered", [], outcome=str(score),
                        attributes={"csat": score})]
        return self._interaction(source, ext, "case", "sms", cid, True, [], "recorded", 4, evs, ended=t)

    # -- rows ------------------------------------------------------------------------------------------------
    def _ev(self, t: dt.datetime, source: str, ext: str, channel: str, type_: str, idents: list[dict[str, str]],
            *, agent_id: str | None = None, queue: str | None = None, direction: str | None = None,
            subject: str | None = None, outcome: str | None = None, reason: str | None = None,
            attributes: dict[str, Any] | None = None) -> tuple[Any, ...]:
        eid = uuid7_at(t, self.rng)
        iid = interaction_uuid(source, ext)
        self.events += 1
        return (eid, t, t + dt.timedelta(milliseconds=self.rng.uniform(5, 800)), source, f"seed-{self.events}",
                channel, type_, iid, ext, None, "unidentified", idents, agent_id, queue, direction, subject, outcome,
                reason, attributes or {})

    def _interaction(self, source: str, ext: str, kind: str, channel: str, cid: int | None, strong: bool,
                     digests: list[bytes], status: str, rank: int, evs: list[tuple[Any, ...]], *,
                     answered: dt.datetime | None = None, ended: dt.datetime | None = None,
                     talk: float | None = None, hold: float | None = None, agent_id: str | None = None,
                     queue: str | None = None, direction: str | None = None, subject: str | None = None,
                     outcome: str | None = None, reason: str | None = None
                     ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        identified = cid is not None
        # events carry the resolution as at ingest: the first event of an identified contact has it
        evs = [e[:9] + ((cid, "identified") if identified else (None, "unidentified")) + e[11:] for e in evs]
        iid = interaction_uuid(source, ext)
        row = (iid, source, ext, kind, channel, cid, "identified" if identified else "unidentified", [],
               (3 if strong else 2) if identified else 0, f"auto:{'customer_no' if strong else 'phone'}"
               if identified else None, digests, status, rank, evs[0][1], answered, ended, evs[-1][1], talk, hold,
               agent_id, queue, direction, subject, outcome, reason, len(evs), evs[-1][6])
        return row, evs


async def seed_events(
    pool: asyncpg.Pool,
    count: int,
    seed: int,
    *,
    now: dt.datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write about ``count`` events (whole interactions) for the customers in the database. Returns events written."""
    now = now or dt.datetime.now(dt.UTC)
    rng = random.Random(seed)
    ids: dict[int, dict[str, list[tuple[str, bytes]]]] = {}
    async with pool.acquire() as conn:
        async for r in _cursor(conn, _CUSTOMER_IDENTIFIERS):
            ids.setdefault(r["customer_id"], {}).setdefault(r["kind"], []).append((r["masked"], bytes(r["digest"])))
    partitions = PartitionManager(pool, _FixedClock(now))
    first = month_of(now - dt.timedelta(days=DAYS + 1))
    months = []
    m = first
    while m <= month_of(now + dt.timedelta(days=40)):
        months.append(m)
        m = add_months(m, 1)
    await partitions.ensure(months)

    gen = _Gen(rng, now, ids)

    def make_chunk(size: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        interactions, events = [], []
        while len(events) < size:
            row, evs = gen.interaction()
            interactions.append(row)
            events.extend(evs)
        keys = [(e[3], e[4], e[0], e[1], e[7]) for e in events]
        return interactions, events, keys

    # Double buffering: the next chunk is generated in a thread while PostgreSQL ingests this one.
    written = 0
    chunk = await asyncio.to_thread(make_chunk, min(CHUNK_EVENTS, count))
    while chunk is not None:
        interactions, events, keys = chunk
        written += len(events)
        remaining = count - written
        pending = asyncio.create_task(asyncio.to_thread(make_chunk, min(CHUNK_EVENTS, remaining))) \
            if remaining > 0 else None
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("interactions", records=interactions, columns=INTERACTION_COLUMNS)
            await conn.copy_records_to_table("events", records=events, columns=EVENT_COLUMNS)
            await conn.copy_records_to_table("event_keys", records=keys, columns=KEY_COLUMNS)
        if progress:
            progress(written)
        chunk = await pending if pending else None
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE interactions")
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE event_keys")
    return written


async def _cursor(conn: asyncpg.Connection, sql: str) -> Any:
    async with conn.transaction():
        async for r in conn.cursor(sql, prefetch=10_000):
            yield r


class _FixedClock:
    def __init__(self, at: dt.datetime) -> None:
        self._at = at

    def now(self) -> dt.datetime:
        return self._at

    def monotonic(self) -> float:  # pragma: no cover - not used by the partition manager
        return 0.0
