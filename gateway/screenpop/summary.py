"""The summary: who / has / can / did / alerts, computed from facts at a given time (pure).

- **who**: masked identity, type, segment and tier, VIP, relationship manager and service group,
  language and channel preferences, consent flags (do-not-call, marketing opt-out).
- **has**: holdings grouped by product type, with totals per currency (bands where core banking
  gives a band instead of a balance).
- **can**: channel entitlements with limits; blocks and freezes (channel restrictions and frozen
  products) listed apart so they catch the eye.
- **did**: the last contacts, the latest per channel, open complaints and service requests with
  their SLA state, credit applications in progress with their stage, the next reception-day
  appointment, and digital failures in the last :data:`FAILURE_HOURS` hours.
- **alerts**: the rules of ``config/alert_rules.toml`` (see :mod:`gateway.screenpop.rules`).
"""

from __future__ import annotations

import datetime as dt
import decimal

from gateway.screenpop.model import (
    Can,
    CaseLine,
    Did,
    EventFact,
    Has,
    HoldingGroup,
    Summary,
    SummaryFacts,
    Total,
    Who,
)
from gateway.screenpop.rules import AlertRule, evaluate

LAST_CONTACTS = 8
FAILURE_HOURS = 24
DUE_SOON_HOURS = 24
FAILURE_TYPES: tuple[str, ...] = ("login.failed", "transfer.failed", "payment.failed", "card.frozen")


def _totals(pairs: list[tuple[str, decimal.Decimal]]) -> tuple[Total, ...]:
    sums: dict[str, decimal.Decimal] = {}
    for currency, amount in pairs:
        sums[currency] = sums.get(currency, decimal.Decimal(0)) + amount
    return tuple(Total(c, a) for c, a in sorted(sums.items()))


def _sla(case_now: dt.datetime, due: dt.datetime | None) -> tuple[str, float | None]:
    if due is None:
        return "no_sla", None
    hours = round((due - case_now).total_seconds() / 3600, 1)
    if hours < 0:
        return "overdue", hours
    return ("due_soon" if hours <= DUE_SOON_HOURS else "on_track"), hours


def build_summary(facts: SummaryFacts, rules: tuple[AlertRule, ...], now: dt.datetime,
                  current_interaction: str | None = None) -> Summary:
    view = facts.customer
    p = view.profile
    who = Who(p.id, p.customer_no, p.name_masked, p.customer_type, p.segment, p.tier, p.vip, p.risk_rating,
              p.aum_band, p.home_branch, p.relationship_manager, p.service_group, p.preferred_language,
              p.preferred_channel, p.do_not_call, p.marketing_opt_out, view.identifiers)

    live = [h for h in view.holdings if h.status != "closed"]
    groups = []
    for ptype in dict.fromkeys(h.product_type for h in live):
        items = tuple(h for h in live if h.product_type == ptype)
        groups.append(HoldingGroup(
            ptype, len(items), _totals([(h.currency, h.balance) for h in items if h.balance is not None]),
            tuple(dict.fromkeys(h.balance_band for h in items if h.balance is None and h.balance_band)), items))
    has = Has(tuple(groups), _totals([(h.currency, h.balance) for h in live if h.balance is not None]))

    can = Can(view.entitlements, tuple(e for e in view.entitlements if e.restriction or not e.enabled),
              tuple(h for h in view.holdings if h.status == "frozen"))

    # the contact the pop is about is not one of the customer's earlier contacts
    contacts = tuple(c for c in facts.contacts if str(c.interaction_id) != current_interaction)
    by_channel: dict[str, object] = {}
    for c in contacts:
        by_channel.setdefault(c.channel, c)
    open_cases = tuple(CaseLine(c, *_sla(now, c.due_at)) for c in view.cases if c.is_open())
    open_cases = tuple(sorted(open_cases, key=lambda cl: (cl.hours_left is None, cl.hours_left or 0.0)))
    reception = sorted((a for a in view.appointments
                        if a.kind == "reception_day" and a.status == "booked" and a.scheduled_at >= now),
                       key=lambda a: a.scheduled_at)
    since = now - dt.timedelta(hours=FAILURE_HOURS)
    failures: tuple[EventFact, ...] = tuple(e for e in facts.events
                                            if e.type in FAILURE_TYPES and since <= e.occurred_at <= now)
    did = Did(
        last_contacts=contacts[:LAST_CONTACTS],
        last_by_channel=tuple(by_channel.values()),  # type: ignore[arg-type]
        open_cases=open_cases,
        credit_in_progress=tuple(a for a in view.credit_applications if a.status == "in_progress"),
        next_reception=reception[0] if reception else None,
        digital_failures=failures,
    )
    return Summary(p.id, facts.version, now, who, has, can, did, evaluate(rules, facts, now, current_interaction))
