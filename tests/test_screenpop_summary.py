"""The summary for hand-built customers: every section, every alert rule and the reason each fired.

Pure: facts are built by hand and the summary is computed at a fixed time (the store and cache are
tested in test_screenpop_cache.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid

import pytest

from gateway.customers.model import (
    Appointment,
    Case,
    CreditApplication,
    CustomerProfile,
    CustomerView,
    Entitlement,
    Holding,
    MaskedIdentifier,
)
from gateway.screenpop.model import ContactFact, EventFact, SummaryFacts
from gateway.screenpop.rules import RulesError, load_rules, parse_rules
from gateway.screenpop.summary import build_summary
from gateway.settings import PROJECT_ROOT

CN = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=CN)
RULES = load_rules(PROJECT_ROOT / "config" / "alert_rules.toml")
D = decimal.Decimal


def profile(**kw: object) -> CustomerProfile:
    values: dict[str, object] = {
        "id": 7, "customer_no": "C0000000007", "name": "张三丰", "customer_type": "personal", "segment": "mass", "tier": "standard",
        "vip": False, "home_branch": "天河支行", "relationship_manager": "RM1024", "service_group": "vip",
        "preferred_language": "zh-CN", "preferred_channel": "voice", "do_not_call": False, "marketing_opt_out": True,
        "risk_rating": "C3", "aum_band": "1m-6m", "updated_at": NOW - dt.timedelta(days=1)}
    values.update(kw)
    return CustomerProfile(**values)  # type: ignore[arg-type]


def view(p: CustomerProfile | None = None, **lists: tuple[object, ...]) -> CustomerView:
    return CustomerView(p or profile(), (MaskedIdentifier("phone", "139****5678", "core"),),
                        lists.get("holdings", ()), lists.get("entitlements", ()), lists.get("cases", ()),
                        lists.get("credit", ()), lists.get("appointments", ()))  # type: ignore[arg-type]


def contact(days_ago: float, channel: str = "voice", *, kind: str = "call", subject: str | None = None,
            reason: str | None = None, outcome: str | None = "resolved") -> ContactFact:
    at = NOW - dt.timedelta(days=days_ago)
    return ContactFact(uuid.uuid4(), kind, channel, "ended", at, at + dt.timedelta(minutes=3), "inbound", "general",
                       "8001", subject, outcome, reason, "call.ended")


def ev(type_: str, minutes_ago: float, channel: str = "mobile_banking", *, reason: str | None = None,
       subject: str | None = None, **attributes: object) -> EventFact:
    return EventFact(uuid.uuid4(), uuid.uuid4(), type_, channel, NOW - dt.timedelta(minutes=minutes_ago), subject,
                     None, reason, dict(attributes))


def facts(v: CustomerView | None = None, contacts: tuple[ContactFact, ...] = (),
          events: tuple[EventFact, ...] = ()) -> SummaryFacts:
    return SummaryFacts("v1", NOW, v or view(), contacts, events)


def alerts(f: SummaryFacts, current: str | None = None) -> dict[str, object]:
    return {a.rule: a for a in build_summary(f, RULES, NOW, current).alerts}


def test_quiet_customer_has_no_alert():
    assert alerts(facts()) == {}


def test_who_has_can_did_sections():
    holdings = (
        Holding("savings_account", "活期储蓄", "6217 **** **** 1236", D("128450.30"), None, "CNY", "active", None),
        Holding("savings_account", "外币储蓄", None, D("1000.00"), None, "USD", "active", None),
        Holding("time_deposit", "三年定期", None, D("300000.00"), None, "CNY", "active", None),
        Holding("wealth_product", "稳健理财", None, None, "1m-6m", "CNY", "active", None),
        Holding("debit_card", "借记卡", "6217 **** **** 9999", None, None, "CNY", "frozen", None),
        Holding("credit_card", "旧卡", None, None, None, "CNY", "closed", None),
    )
    entitlements = (
        Entitlement("mobile_banking", True, D("500000"), D("100000"), "CNY", None, None, None),
        Entitlement("online_banking", False, None, None, "CNY", "block", "多次密码错误锁定", NOW - dt.timedelta(days=8)),
    )
    cases = (
        Case("CS-1", "complaint", "转账延迟", "open", "voice", None, NOW - dt.timedelta(days=1),
             NOW + dt.timedelta(hours=6), None, 48),
        Case("CS-2", "service_request", "挂失补卡", "in_progress", None, None, NOW - dt.timedelta(days=2),
             NOW + dt.timedelta(days=3), None, 120),
        Case("CS-3", "feedback", "表扬", "open", None, None, NOW - dt.timedelta(days=2), None, None, None),
        Case("CS-0", "complaint", "旧投诉", "closed", None, None, NOW - dt.timedelta(days=200), None,
             NOW - dt.timedelta(days=190), 48),
    )
    credit = (
        CreditApplication("LA-1", "个人消费贷", D("200000"), "CNY", "approval", "in_progress",
                          NOW - dt.timedelta(days=20), NOW - dt.timedelta(days=18), NOW - dt.timedelta(days=5), None),
        CreditApplication("LA-0", "房贷", D("900000"), "CNY", "disbursement", "disbursed",
                          NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=398), NOW - dt.timedelta(days=390),
                          NOW - dt.timedelta(days=380)),
    )
    appointments = (
        Appointment("AP-0", "reception_day", NOW - dt.timedelta(days=3), "booked", "天河支行", "RM1024", "过去的"),
        Appointment("AP-2", "reception_day", NOW + dt.timedelta(days=9), "booked", "天河支行", "RM1024", "晚的"),
        Appointment("AP-1", "reception_day", NOW + dt.timedelta(days=7), "booked", "天河支行", "RM1024", "理财咨询"),
        Appointment("AP-3", "branch_visit", NOW + dt.timedelta(days=1), "booked", "天河支行", None, None),
    )
    contacts = (contact(0.5, "email"), contact(2, "voice"), contact(3, "mobile_banking", kind="session"),
                contact(40, "voice"))
    events = (ev("transfer.failed", 30, reason="daily_limit_exceeded"), ev("login.failed", 60 * 30))
    s = build_summary(facts(view(holdings=holdings, entitlements=entitlements, cases=cases, credit=credit,
                                 appointments=appointments), contacts, events), RULES, NOW)
    # who: masked, with consent flags and the people who serve the customer
    assert (s.who.name_masked, s.who.customer_no, s.who.relationship_manager) == ("张**", "C0000000007", "RM1024")
    assert s.who.marketing_opt_out and not s.who.do_not_call and s.who.identifiers[0].masked == "139****5678"
    # has: closed products left out, totals per product type and currency, bands where no balance
    groups = {g.product_type: g for g in s.has.groups}
    assert set(groups) == {"savings_account", "time_deposit", "wealth_product", "debit_card"}
    assert [(t.currency, t.amount) for t in groups["savings_account"].totals] == [("CNY", D("128450.30")),
                                                                                ("USD", D("1000.00"))]
    assert groups["savings_account"].count == 2 and groups["wealth_product"].bands == ("1m-6m",)
    assert [(t.currency, t.amount) for t in s.has.totals] == [("CNY", D("428450.30")), ("USD", D("1000.00"))]
    # can: limits, and restrictions (the blocked channel, the frozen card) apart
    assert s.can.entitlements[0].daily_limit == D("500000")
    assert [e.channel for e in s.can.restrictions] == ["online_banking"]
    assert [h.masked_number for h in s.can.frozen_holdings] == ["6217 **** **** 9999"]
    # did: contacts newest first, latest per channel, open cases by SLA urgency, credit in progress, next reception
    assert [c.channel for c in s.did.last_contacts] == ["email", "voice", "mobile_banking", "voice"]
    assert [c.channel for c in s.did.last_by_channel] == ["email", "voice", "mobile_banking"]
    assert [(c.case.case_ref, c.sla_state) for c in s.did.open_cases] == [
        ("CS-1", "due_soon"), ("CS-2", "on_track"), ("CS-3", "no_sla")]
    assert s.did.open_cases[0].hours_left == 6.0
    assert [a.application_ref for a in s.did.credit_in_progress] == ["LA-1"]
    assert s.did.next_reception is not None and s.did.next_reception.appointment_ref == "AP-1"
    # digital failures of the last 24 hours only
    assert [e.type for e in s.did.digital_failures] == ["transfer.failed"]


def test_vip_and_private_banking_priority():
    found = alerts(facts(view(profile(vip=True, tier="platinum"))))
    assert set(found) == {"vip"}
    assert found["vip"].why == {"zh-CN": "贵宾标识；白金卡；客户经理 RM1024", "en": "VIP flag; platinum; relationship manager RM1024"}
    found = alerts(facts(view(profile(segment="private_banking", tier="diamond", vip=True))))
    assert list(found) == ["priority_private_banking", "vip"]  # most severe first
    assert found["priority_private_banking"].severity == "critical"
    assert found["priority_private_banking"].why["zh-CN"] == "私人银行客户，钻石卡；客户经理 RM1024"


def test_repeat_contact_counts_contacts_in_the_window_but_not_this_call():
    this_call = contact(0, "voice")
    f = facts(contacts=(this_call, contact(1, "voice"), contact(6.5, "email"), contact(8, "voice")))
    found = alerts(f, current=str(this_call.interaction_id))
    assert found["repeat_contact"].why == {"zh-CN": "近 7 天已联系 2 次（电话 1、邮件 1）",
                                           "en": "2 contacts in the last 7 days (phone 1, email 1)"}
    assert found["repeat_contact"].category == "repeat"
    # one earlier contact is not a repeat
    assert "repeat_contact" not in alerts(facts(contacts=(this_call, contact(1))), current=str(this_call.interaction_id))


def test_complaint_past_sla_names_the_case_and_how_late():
    cases = (Case("CS-9", "complaint", "转账延迟", "open", "voice", None, NOW - dt.timedelta(days=3),
                  NOW - dt.timedelta(hours=26), None, 48),
             Case("CS-8", "service_request", "挂失", "open", None, None, NOW - dt.timedelta(days=3),
                  NOW - dt.timedelta(hours=50), None, 24))
    found = alerts(facts(view(cases=cases)))
    assert found["complaint_past_sla"].why["zh-CN"] == "投诉单 CS-9（转账延迟）已超时 26 小时；共 1 件超时"
    assert found["complaint_past_sla"].why["en"] == "complaint CS-9 (转账延迟) is 26 h past due; 1 overdue in all"
    # the same complaint not yet due does not fire
    on_time = (dataclasses.replace(cases[0], due_at=NOW + dt.timedelta(hours=1)),)
    assert "complaint_past_sla" not in alerts(facts(view(cases=on_time)))


def test_churn_repeated_complaints_from_cases_and_complaint_events():
    cases = (Case("CS-1", "complaint", "费用", "closed", None, None, NOW - dt.timedelta(days=40), None,
                  NOW - dt.timedelta(days=35), 48),)
    found = alerts(facts(view(cases=cases), events=(ev("complaint.opened", 60 * 24 * 3, "voice", case_ref="CS-2"),)))
    assert found["churn_repeated_complaints"].why["en"] == "2 complaints in the last 90 days"
    # the same case seen in core banking and as an event counts once
    once = alerts(facts(view(cases=cases), events=(ev("complaint.opened", 60, "voice", case_ref="CS-1"),)))
    assert "churn_repeated_complaints" not in once


def test_churn_large_outflow_sums_transfers_in_the_window():
    events = (ev("transfer.succeeded", 60 * 24 * 2, amount="300000.00"), ev("transfer.succeeded", 60 * 5, amount=250000),
              ev("transfer.succeeded", 60 * 24 * 40, amount=9000000), ev("transfer.succeeded", 10, amount="x"))
    found = alerts(facts(events=events))
    assert found["churn_large_outflow"].why == {
        "zh-CN": "近 30 天转出 2 笔共 ¥550,000，最大一笔 ¥300,000",
        "en": "2 transfers out totalling ¥550,000 in 30 days, the largest ¥300,000"}
    assert "churn_large_outflow" not in alerts(facts(events=events[1:]))


def test_churn_account_closure_enquiry_by_reason_or_keyword():
    by_subject = alerts(facts(contacts=(contact(3, "email", kind="thread", subject="请问如何销户"),)))
    assert by_subject["churn_closure_enquiry"].why["zh-CN"] == "11-25 10:00 经邮件咨询：请问如何销户"
    by_reason = alerts(facts(events=(ev("message.received", 60, "email", reason="account_closure"),)))
    assert by_reason["churn_closure_enquiry"].why["en"] == "asked on email on 11-28 09:00: account-closure enquiry"
    old = alerts(facts(contacts=(contact(45, "email", subject="销户"),)))
    assert "churn_closure_enquiry" not in old


def test_likely_reason_is_the_latest_digital_failure_in_the_window():
    events = (ev("login.failed", 90, "online_banking", reason="wrong_password"),
              ev("transfer.failed", 12, reason="daily_limit_exceeded"),
              ev("transfer.failed", 60 * 5, reason="insufficient_funds"))
    found = alerts(facts(events=events))
    assert found["likely_reason_digital_failure"].why == {
        "zh-CN": "12 分钟前手机银行转账失败（超过日累计限额）",
        "en": "transfer failed on mobile banking 12 min ago (daily limit exceeded)"}
    assert found["likely_reason_digital_failure"].facts["minutes"] == 12
    assert "likely_reason_digital_failure" not in alerts(facts(events=events[2:]))


def test_rules_file_errors_name_the_rule_and_key():
    good = {"id": "r", "kind": "contact_count", "within_days": 7, "min_count": 2, "severity": "info",
            "category": "repeat", "title": {"zh-CN": "t", "en": "t"}, "why": {"zh-CN": "{count}", "en": "{count}"}}
    assert parse_rules({"rule": [good]})[0].params["channels"] == ()
    cases = [
        ({"kind": "nope"}, "'kind' must be one of"),
        ({"within_days": "7"}, "'within_days' must be a int"),
        ({"min_count": None}, "'min_count' must be a int"),
        ({"severity": "high"}, "'severity'"),
        ({"why": {"zh-CN": "{amount}", "en": "x"}}, "uses {amount}"),
        ({"title": {"zh-CN": "only one"}}, "needs a text for each of zh-CN, en"),
        ({"extra": 1}, "unknown key 'extra'"),
    ]
    for change, message in cases:
        with pytest.raises(RulesError, match=message):
            parse_rules({"rule": [{**good, **change}]})
    with pytest.raises(RulesError, match="defined twice"):
        parse_rules({"rule": [good, good]})
    missing = dict(good)
    del missing["within_days"]
    with pytest.raises(RulesError, match="'within_days' is required"):
        parse_rules({"rule": [missing]})
