"""Alert rules as data (``config/alert_rules.toml``) and their evaluation.

A rule names one of the evaluators below (its ``kind``) and gives it parameters, a severity, a
category and texts. Evaluators are pure: facts and a time in, at most one :class:`Alert` out,
whose ``why`` is the rule's text formatted with the facts found (in every language). Loading
checks every rule and raises :class:`RulesError` naming the rule and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import string
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.screenpop.labels import LANGUAGES, label
from gateway.screenpop.model import Alert, SummaryFacts
from gateway.settings import SettingsError, read_toml_file

SEVERITIES = ("critical", "warning", "info")
CATEGORIES = ("priority", "repeat", "complaint", "churn", "reason")


class RulesError(SettingsError):
    """An alert rule is malformed; the message names the rule and the key."""


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRule:
    id: str
    kind: str
    severity: str
    category: str
    title: Mapping[str, str]
    why: Mapping[str, str]
    params: Mapping[str, Any]

    def window(self) -> dt.timedelta:
        """How far back this rule looks (what the store must read for it)."""
        if "within_days" in self.params:
            return dt.timedelta(days=self.params["within_days"])
        if "within_minutes" in self.params:
            return dt.timedelta(minutes=self.params["within_minutes"])
        return dt.timedelta(0)

    def event_types(self) -> tuple[str, ...]:
        return tuple(self.params.get("event_types", ()))


# kind -> {param: (type, default or REQUIRED)}; and the facts its texts may use
REQUIRED = object()
_PARAMS: dict[str, dict[str, tuple[type, Any]]] = {
    "profile": {"vip": (bool, False), "tiers": (list, []), "segments": (list, [])},
    "contact_count": {"within_days": (int, REQUIRED), "min_count": (int, REQUIRED), "channels": (list, [])},
    "case_overdue": {"case_kinds": (list, ["complaint"])},
    "case_count": {"case_kinds": (list, ["complaint"]), "event_types": (list, []), "within_days": (int, REQUIRED),
                   "min_count": (int, REQUIRED)},
    "event_sum": {"event_types": (list, REQUIRED), "amount_attribute": (str, "amount"),
                  "within_days": (int, REQUIRED), "min_total": (int, REQUIRED)},
    "event_match": {"event_types": (list, []), "reasons": (list, []), "keywords": (list, []),
                    "within_days": (int, REQUIRED)},
    "latest_event": {"event_types": (list, REQUIRED), "within_minutes": (int, REQUIRED)},
}
_FACTS: dict[str, set[str]] = {
    "profile": {"tier", "segment", "manager"},
    "contact_count": {"count", "days", "channels"},
    "case_overdue": {"count", "case_ref", "category", "hours"},
    "case_count": {"count", "days"},
    "event_sum": {"total", "count", "largest", "days"},
    "event_match": {"when", "channel", "what"},
    "latest_event": {"what", "reason", "minutes", "channel"},
}
_COMMON = {"id", "kind", "severity", "category", "title", "why"}


def _texts(rule_id: str, key: str, raw: Any, kind: str) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) != set(LANGUAGES) or not all(isinstance(v, str) for v in raw.values()):
        raise RulesError(f"rule {rule_id!r}: {key!r} needs a text for each of {', '.join(LANGUAGES)}")
    for lang, text in raw.items():
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and name not in _FACTS[kind]:
                raise RulesError(f"rule {rule_id!r}: {key}.{lang} uses {{{name}}}, which a {kind!r} rule does not "
                                 f"give (it gives {', '.join(sorted(_FACTS[kind]))})")
    return dict(raw)


def parse_rules(data: Mapping[str, Any]) -> tuple[AlertRule, ...]:
    """Check and build the rules of a parsed TOML document (``[[rule]]`` tables)."""
    raw_rules = data.get("rule", [])
    if set(data) - {"rule"} or not isinstance(raw_rules, list):
        raise RulesError("the alert rules file holds only [[rule]] tables")
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_rules):
        rule_id = raw.get("id")
        if not isinstance(rule_id, str) or not rule_id:
            raise RulesError(f"rule #{n + 1}: 'id' is required")
        if rule_id in seen:
            raise RulesError(f"rule {rule_id!r}: defined twice")
        seen.add(rule_id)
        kind = raw.get("kind")
        if kind not in _PARAMS:
            raise RulesError(f"rule {rule_id!r}: 'kind' must be one of {', '.join(_PARAMS)} (got {kind!r})")
        if raw.get("severity") not in SEVERITIES:
            raise RulesError(f"rule {rule_id!r}: 'severity' must be one of {', '.join(SEVERITIES)}")
        if raw.get("category") not in CATEGORIES:
            raise RulesError(f"rule {rule_id!r}: 'category' must be one of {', '.join(CATEGORIES)}")
        spec = _PARAMS[kind]
        unknown = set(raw) - _COMMON - set(spec)
        if unknown:
            raise RulesError(f"rule {rule_id!r}: unknown key {min(unknown)!r} for a {kind!r} rule")
        params: dict[str, Any] = {}
        for key, (typ, default) in spec.items():
            if key not in raw:
                if default is REQUIRED:
                    raise RulesError(f"rule {rule_id!r}: {key!r} is required for a {kind!r} rule")
                params[key] = tuple(default) if typ is list else default
                continue
            value = raw[key]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise RulesError(f"rule {rule_id!r}: {key!r} must be a {typ.__name__}")
            if isinstance(value, int) and value < 0:
                raise RulesError(f"rule {rule_id!r}: {key!r} must not be negative")
            params[key] = tuple(value) if isinstance(value, list) else value
        rules.append(AlertRule(rule_id, kind, raw["severity"], raw["category"],
                               _texts(rule_id, "title", raw.get("title"), kind),
                               _texts(rule_id, "why", raw.get("why"), kind), params))
    return tuple(rules)


def load_rules(path: Path) -> tuple[AlertRule, ...]:
    data = read_toml_file(path, "alert rules file", RulesError)
    return parse_rules(data)


def lookback(rules: tuple[AlertRule, ...]) -> dt.timedelta:
    return max((r.window() for r in rules), default=dt.timedelta(0))


# --- evaluation ---------------------------------------------------------------------------------

Facts = dict[str, dict[str, Any]]   # per language: the values a text is formatted with


def _money(value: decimal.Decimal) -> str:
    return f"{value:,.0f}"


def _amount(attrs: Mapping[str, Any], key: str) -> decimal.Decimal | None:
    raw = attrs.get(key)
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = decimal.Decimal(str(raw))
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() else None


def _same(values: dict[str, Any]) -> Facts:
    return {lang: dict(values) for lang in LANGUAGES}


def _eval_profile(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    p = f.customer.profile
    p_ = rule.params
    if not ((p_["vip"] and p.vip) or p.tier in p_["tiers"] or p.segment in p_["segments"]):
        return None
    return {lang: {"tier": label(p.tier, lang), "segment": label(p.segment, lang),
                   "manager": p.relationship_manager or "—"} for lang in LANGUAGES}


def _eval_contact_count(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    since = now - rule.window()
    channels = rule.params["channels"]
    found = [c for c in f.contacts if c.started_at >= since and str(c.interaction_id) != current
             and (not channels or c.channel in channels) and c.kind != "case"]
    if len(found) < rule.params["min_count"]:
        return None
    by_channel = Counter(c.channel for c in found)
    return {lang: {"count": len(found), "days": rule.params["within_days"],
                   "channels": ("、" if lang == "zh-CN" else ", ").join(
                       f"{label(ch, lang)} {n}" for ch, n in by_channel.most_common())} for lang in LANGUAGES}


def _eval_case_overdue(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    overdue = sorted((c for c in f.customer.cases if c.kind in rule.params["case_kinds"] and c.overdue(now)),
                     key=lambda c: c.due_at or now)
    if not overdue:
        return None
    worst = overdue[0]
    assert worst.due_at is not None
    hours = int((now - worst.due_at).total_seconds() // 3600)
    return _same({"count": len(overdue), "case_ref": worst.case_ref, "category": worst.category, "hours": hours})


def _eval_case_count(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    since = now - rule.window()
    refs = {c.case_ref for c in f.customer.cases if c.kind in rule.params["case_kinds"] and c.opened_at >= since}
    for e in f.events:
        if e.type in rule.params["event_types"] and e.occurred_at >= since:
            refs.add(str(e.attributes.get("case_ref") or e.id))
    if len(refs) < rule.params["min_count"]:
        return None
    return _same({"count": len(refs), "days": rule.params["within_days"]})


def _eval_event_sum(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    since = now - rule.window()
    amounts = [a for e in f.events if e.type in rule.params["event_types"] and e.occurred_at >= since
               for a in [_amount(e.attributes, rule.params["amount_attribute"])] if a is not None and a > 0]
    total = sum(amounts, decimal.Decimal(0))
    if not amounts or total < rule.params["min_total"]:
        return None
    return _same({"total": _money(total), "count": len(amounts), "largest": _money(max(amounts)),
                  "days": rule.params["within_days"]})


def _eval_event_match(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    since = now - rule.window()
    reasons = {r.casefold() for r in rule.params["reasons"]}
    keywords = [k.casefold() for k in rule.params["keywords"]]
    types = rule.params["event_types"]

    def hit(reason: str | None, subject: str | None) -> bool:
        if reason and reason.casefold() in reasons:
            return True
        text = (subject or "").casefold()
        return any(k in text for k in keywords)

    candidates: list[tuple[dt.datetime, str, str | None, str | None]] = [
        (e.occurred_at, e.channel, e.reason, e.subject) for e in f.events
        if e.occurred_at >= since and (not types or e.type in types) and hit(e.reason, e.subject)]
    candidates += [(c.started_at, c.channel, c.reason, c.subject) for c in f.contacts
                   if c.started_at >= since and hit(c.reason, c.subject)]
    if not candidates:
        return None
    at, channel, reason, subject = max(candidates, key=lambda t: t[0])
    return {lang: {"when": at.astimezone(_CN).strftime("%m-%d %H:%M"), "channel": label(channel, lang),
                   "what": subject or label(reason, lang)} for lang in LANGUAGES}


_CN = dt.timezone(dt.timedelta(hours=8))


def _eval_latest_event(rule: AlertRule, f: SummaryFacts, now: dt.datetime, current: str | None) -> Facts | None:
    since = now - rule.window()
    found = [e for e in f.events if e.type in rule.params["event_types"] and since <= e.occurred_at <= now]
    if not found:
        return None
    e = max(found, key=lambda e: e.occurred_at)
    minutes = max(int((now - e.occurred_at).total_seconds() // 60), 0)
    return {lang: {"what": label(e.type, lang), "reason": label(e.reason, lang) or "—", "minutes": minutes,
                   "channel": label(e.channel, lang)} for lang in LANGUAGES}


EVALUATORS: dict[str, Callable[[AlertRule, SummaryFacts, dt.datetime, str | None], Facts | None]] = {
    "profile": _eval_profile,
    "contact_count": _eval_contact_count,
    "case_overdue": _eval_case_overdue,
    "case_count": _eval_case_count,
    "event_sum": _eval_event_sum,
    "event_match": _eval_event_match,
    "latest_event": _eval_latest_event,
}
assert set(EVALUATORS) == set(_PARAMS)
_ORDER = {s: n for n, s in enumerate(SEVERITIES)}


def evaluate(rules: tuple[AlertRule, ...], facts: SummaryFacts, now: dt.datetime,
             current_interaction: str | None = None) -> tuple[Alert, ...]:
    """Every rule that fires, most severe first (then in file order), each saying why."""
    alerts = []
    for rule in rules:
        found = EVALUATORS[rule.kind](rule, facts, now, current_interaction)
        if found is None:
            continue
        alerts.append(Alert(rule.id, rule.severity, rule.category, dict(rule.title),
                            {lang: rule.why[lang].format_map(found[lang]) for lang in LANGUAGES},
                            found[LANGUAGES[-1]]))
    return tuple(sorted(alerts, key=lambda a: _ORDER[a.severity]))
