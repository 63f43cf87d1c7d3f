"""A small fixed data set for the console, posted through the real ingest, with hand-computed figures.

Day under review: 2026-11-27 in Asia/Shanghai. Interactions (all inbound):

====  =======  ======================  ===========  =========================================  =========
name  channel  customer                offered      answered (after) / ended (handle)          reason
====  =======  ======================  ===========  =========================================  =========
C1    voice    A (phone)               09:00:00     09:00:10 (10 s) / 09:05:10 (300 s), 8001    card_activation
C2    voice    A (phone)               10:00:00     10:00:30 (30 s) / 10:02:30 (120 s), 8002    card_activation
C3    voice    unidentified            11:00:00     abandoned at 11:00:40
C4    voice    B (phone)               15:00:00     15:00:05 (5 s) / 15:10:05 (600 s), 8001     lost_card
E1    email    B (email)               16:00:00     subject and body carry XSS payloads
O1    mobile   unidentified            20:00:00     subject "=1+1" (a spreadsheet formula)
====  =======  ======================  ===========  =========================================  =========

C1 has a wrap-up note with markup in it. Hand-computed figures for the day:

- interactions 6; unidentified 2 (C3, O1) = 33.3%;
- calls offered 4, answered 3 = 75.0%, within 20 s 2 (C1, C4) = 50.0%, abandoned 1 = 25.0%;
- average handle time (300 + 120 + 600) / 3 = 340 s = 5:40;
- repeat contacts within 7 days on voice/email/branch/wechat: base C1, C2, C4, E1 = 4; repeated C1 (C2 after it)
  and C4 (E1 after it) = 2 = 50.0%, FCR 50.0%;
- top reasons: card_activation 2, lost_card 1;
- open complaints at 2026-11-28 12:00 (+08): K1 10 h old, due in 24 h (<1d, within SLA); K2 3 days old, 48 h SLA
  (3-7d, breached); K3 8 days old without SLA (>=7d, no SLA); a closed complaint and an open service request
  do not count.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.events.ingest import interaction_uuid
from tests.factories import CTI_KEY, insert_customer

CN = dt.timezone(dt.timedelta(hours=8))
DAY = dt.datetime(2026, 11, 27, tzinfo=CN)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=CN)
PHONE_A, PHONE_B, EMAIL_B = "13912340001", "13912340002", "b.customer@example.com"
XSS_SUBJECT = "<script>alert('subject')</script> 转账失败"
XSS_BODY = "您好，我的转账失败了 <img src=x onerror=alert('body')>"
XSS_NOTE = "客户要求<b onmouseover=alert('note')>加急</b>处理，已核实身份"
EMAIL_KEY = {"X-API-Key": "dev-email-key"}
MOBILE_KEY = {"X-API-Key": "dev-mobile-write-key"}


def at(h: int, m: int = 0, s: int = 0) -> str:
    return (DAY + dt.timedelta(hours=h, minutes=m, seconds=s)).isoformat()


def _ev(sid: str, type_: str, occurred: str, **fields: Any) -> dict[str, Any]:
    return {"source": fields.pop("source", "cti.test"), "source_event_id": sid, "channel": fields.pop("channel", "voice"),
            "type": type_, "occurred_at": occurred, **fields}


def _call(name: str, phone: str | None, offered: tuple[int, int, int], answered_after: int | None,
          handle: int | None, agent: str | None, reason: str | None, queue: str = "general") -> list[dict[str, Any]]:
    h, m, s = offered
    start = DAY + dt.timedelta(hours=h, minutes=m, seconds=s)
    ids = [{"kind": "phone", "value": phone}] if phone else []
    evs = [_ev(f"{name}/offered", "call.offered", start.isoformat(), interaction_id=name, queue=queue,
               direction="inbound", identifiers=ids)]
    if answered_after is None:
        evs.append(_ev(f"{name}/abandoned", "call.abandoned", (start + dt.timedelta(seconds=40)).isoformat(),
                       interaction_id=name))
        return evs
    answered = start + dt.timedelta(seconds=answered_after)
    assert handle is not None
    evs += [
        _ev(f"{name}/ringing", "call.ringing", (answered - dt.timedelta(seconds=2)).isoformat(), interaction_id=name,
            agent_id=agent),
        _ev(f"{name}/answered", "call.answered", answered.isoformat(), interaction_id=name, agent_id=agent),
        _ev(f"{name}/ended", "call.ended", (answered + dt.timedelta(seconds=handle)).isoformat(), interaction_id=name,
            agent_id=agent, outcome="resolved", reason=reason),
    ]
    return evs


async def load(client: Any, db: Any, settings: Any) -> dict[str, Any]:
    """Post the data set through the real ingest; returns the interaction ids and customer ids by name."""
    a = await insert_customer(db, settings, "C0000001", "张三丰", [("phone", PHONE_A)])
    b = await insert_customer(db, settings, "C0000002", "李四", [("phone", PHONE_B), ("email", EMAIL_B)])
    calls = (_call("C1", PHONE_A, (9, 0, 0), 10, 300, "8001", "card_activation")
             + _call("C2", PHONE_A, (10, 0, 0), 30, 120, "8002", "card_activation", queue="vip")
             + _call("C3", "13700000009", (11, 0, 0), None, None, None, None)
             + _call("C4", PHONE_B, (15, 0, 0), 5, 600, "8001", "lost_card"))
    c1 = interaction_uuid("cti.test", "C1")
    calls.append(_ev("C1/wrapup", "contact.wrapup", at(9, 6), interaction_id=f"cg:{c1}", agent_id="8001",
                     attributes={"note": XSS_NOTE}))
    resp = await client.post("/v1/events", json=calls, headers=CTI_KEY)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == len(calls)
    email = _ev("E1/1", "message.received", at(16), source="email.test", channel="email", interaction_id="E1",
                identifiers=[{"kind": "email", "value": EMAIL_B}], subject=XSS_SUBJECT,
                attributes={"body_text": XSS_BODY})
    resp = await client.post("/v1/events", json=email, headers=EMAIL_KEY)
    assert resp.status == 201, await resp.text()
    session = _ev("O1/1", "session.started", at(20), source="mobile-banking.test", channel="mobile_banking",
                  interaction_id="O1", identifiers=[{"kind": "device_id", "value": "dev-unknown-1"}],
                  subject="=1+1")
    resp = await client.post("/v1/events", json=session, headers=MOBILE_KEY)
    assert resp.status == 201, await resp.text()
    cases = [
        (a, "K1", "complaint", "open", NOW - dt.timedelta(hours=10), NOW + dt.timedelta(hours=14), None),
        (a, "K2", "complaint", "in_progress", NOW - dt.timedelta(days=3), None, 48),
        (b, "K3", "complaint", "open", NOW - dt.timedelta(days=8), None, None),
        (b, "K4", "complaint", "closed", NOW - dt.timedelta(days=2), None, 24),
        (b, "K5", "service_request", "open", NOW - dt.timedelta(days=1), None, 1),
    ]
    for cid, ref, kind, status, opened, due, sla in cases:
        await db.execute("INSERT INTO cases (customer_id, case_ref, kind, category, status, opened_at, due_at, sla_hours)"
                         " VALUES ($1, $2, $3, 'fees', $4, $5, $6, $7)", cid, ref, kind, status, opened, due, sla)
    ids = {r["external_id"]: r["id"] for r in await db.fetch("SELECT external_id, id FROM interactions")}
    return {"ids": ids, "a": a, "b": b}
