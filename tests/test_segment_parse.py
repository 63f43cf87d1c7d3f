"""Golden tests of the pure Segment parser: Segment batches in, canonical events out."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import msgspec
import pytest

from adapters import segment
from gateway.errors import ValidationFailed
from gateway.events.model import ContactEvent
from gateway.settings import PROJECT_ROOT, SettingsError
from tests.conftest import FIXTURES

DIR = FIXTURES / "segment"
RECEIVED = dt.datetime(2026, 11, 28, 1, 32, 20, tzinfo=dt.UTC)
MAPPING = segment.load_mapping(PROJECT_ROOT / "config" / "segment_events.toml")


def check_golden(expected_path: Path, events: list[ContactEvent]) -> None:
    got = json.loads(msgspec.json.encode(events))
    if os.environ.get("CG_REGENERATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert expected_path.exists(), f"{expected_path.name} missing: run with CG_REGENERATE_GOLDEN=1 and review it"
    assert got == json.loads(expected_path.read_text(encoding="utf-8")), expected_path.name


def parse(obj: object) -> segment.BatchParse:
    return segment.parse_batch(obj, source="mobile-banking", received_at=RECEIVED, mapping=MAPPING)


@pytest.mark.parametrize("name", ["docs_batch_example", "mobile_session_batch"])
def test_golden(name: str) -> None:
    result = parse(json.loads((DIR / f"{name}.json").read_text()))
    assert result.rejections == []
    check_golden(DIR / f"{name}.expected.json", result.events)


def test_docs_sample_malformed_timestamps_are_normalised_and_kept_raw() -> None:
    events = parse(json.loads((DIR / "docs_batch_example.json").read_text())).events
    third = events[2]
    assert third.occurred_at == dt.datetime(2015, 2, 2, 0, 30, 8, 276000, tzinfo=dt.UTC)
    assert third.attributes["timestamp_raw"] == "2015-2-02T00:30:08.276Z"
    assert "timestamp_raw" not in events[0].attributes  # strict RFC 3339 needs no note
    # no message id in the docs sample: a stable id from the content, the same on every parse
    again = parse(json.loads((DIR / "docs_batch_example.json").read_text())).events
    assert [e.source_event_id for e in events] == [e.source_event_id for e in again]
    assert len({e.source_event_id for e in events}) == 4
    assert all(e.source_event_id.startswith("sha256:") for e in events)


def test_session_batch_semantics() -> None:
    events = parse(json.loads((DIR / "mobile_session_batch.json").read_text())).events
    by_id = {e.source_event_id: e for e in events}
    def ids(e: ContactEvent) -> set[tuple[str, str]]:
        return {(i.kind, i.value) for i in e.identifiers}

    anon = "a1b2c3d4-0000-4000-8000-00000000aa01"
    # anonymous screen and failed login carry the device ids only
    assert by_id["m-001"].type == "screen.viewed" and by_id["m-001"].subject == "Login"
    assert ids(by_id["m-001"]) == {("device_id", anon), ("device_id", "ios-vendor-5F3A")}
    assert by_id["m-002"].type == "login.failed" and by_id["m-002"].reason == "WRONG_PASSWORD"
    # identify links the device to the strong identifiers (userId and the configured trait), not to email/phone
    linked = by_id["m-003"]
    assert linked.type == "identity.linked"
    assert ids(linked) == {("online_user_id", "zhangsan_88"), ("customer_no", "C0012345"), ("device_id", anon)}
    assert "zs@example.com" not in msgspec.json.encode(linked).decode()
    # track name matched case- and separator-insensitively; reason from errorCode; account moved to identifiers
    tf = by_id["m-004"]
    assert tf.type == "transfer.failed" and tf.reason == "DAILY_LIMIT_EXCEEDED"
    assert ("account_no", "6217001234567890122") in ids(tf)
    assert "fromAccount" not in tf.attributes["properties"]
    # clock-skew correction: sent 5 s after it happened, by the device's clock
    assert tf.occurred_at == RECEIVED - dt.timedelta(seconds=5)
    assert by_id["m-005"].type == "app.action" and by_id["m-005"].subject == "Wealth Banner Tapped"
    assert by_id["m-006"].subject == "Support / Help Centre"
    assert by_id["m-007"].type == "identity.linked"
    assert ids(by_id["m-007"]) == {("online_user_id", "zhangsan_88"), ("device_id", "web-anon-77")}
    assert ("card_no", "6217001234567890122") in ids(by_id["m-008"])
    # context allowlist: no IP, advertising id or push token
    text = msgspec.json.encode(events).decode()
    for secret in ("203.0.113.9", "ad-should-not-be-kept", "push-token-x"):
        assert secret not in text
    # one app session: the SDK's sessionId, scoped to the (hashed) device; no raw device id in the key
    assert by_id["m-001"].interaction_id == by_id["m-003"].interaction_id
    assert by_id["m-001"].interaction_id.startswith("app-session:d") and "1764293400" in by_id["m-001"].interaction_id
    assert anon not in by_id["m-001"].interaction_id
    # without a sessionId: the device's day in +08:00 (01:33Z is 09:33 in Beijing)
    assert by_id["m-005"].interaction_id.endswith(":2026-11-28") and by_id["m-005"].interaction_id.startswith("app-day:u")


def test_day_sessions_follow_the_configured_offset() -> None:
    late = {"type": "screen", "name": "Home", "anonymousId": "a", "timestamp": "2026-11-28T17:30:00Z"}
    ev = segment.parse_call("screen", late, source="mobile-banking", received_at=RECEIVED, mapping=MAPPING)
    assert ev.interaction_id.endswith(":2026-11-29")      # 01:30 next day in +08:00
    utc = segment.mapping_from_dict({"session_day_offset": "+00:00"})
    ev = segment.parse_call("screen", late, source="mobile-banking", received_at=RECEIVED, mapping=utc)
    assert ev.interaction_id.endswith(":2026-11-28")
    with pytest.raises(SettingsError, match="session_day_offset"):
        segment.mapping_from_dict({"session_day_offset": "Asia/Shanghai"})


def test_bad_messages_are_rejected_one_by_one() -> None:
    result = parse(json.loads((DIR / "bad_messages_batch.json").read_text()))
    expected = [tuple(x) for x in json.loads((DIR / "expected_bad_messages.json").read_text())["b"]]
    assert [(r.index, r.field) for r in result.rejections] == expected
    assert [e.source_event_id for e in result.events] == ["b-8"]


def test_oversized_message_is_rejected_as_too_large() -> None:
    big = {"type": "track", "event": "x", "anonymousId": "a", "properties": {"blob": "y" * 40000}}
    result = parse({"batch": [big]})
    assert result.rejections[0].too_large and result.rejections[0].field == "batch[0]"


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"batch": {}}, "batch"),
    ({"batch": [{}] * (segment.MAX_BATCH_MESSAGES + 1)}, "batch"),
])
def test_malformed_batch_body(body: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse(body)
    assert info.value.errors[0]["field"] == field


def test_single_call_checks_its_type() -> None:
    ev = segment.parse_call("track", {"event": "Card Unfrozen", "userId": 42, "messageId": "s1"},
                            source="mobile-banking", received_at=RECEIVED, mapping=MAPPING)
    assert ev.type == "card.unfrozen" and ev.occurred_at == RECEIVED
    assert [(i.kind, i.value) for i in ev.identifiers] == [("online_user_id", "42")]
    with pytest.raises(ValidationFailed) as info:
        segment.parse_call("track", {"type": "identify", "userId": "u"}, source="mobile-banking",
                           received_at=RECEIVED, mapping=MAPPING)
    assert info.value.errors[0]["field"] == "type"


def test_anonymous_identify_is_a_profile_change_not_a_link() -> None:
    ev = segment.parse_call("identify", {"anonymousId": "a9", "traits": {"plan": "gold"}, "messageId": "i1"},
                            source="mobile-banking", received_at=RECEIVED, mapping=MAPPING)
    assert ev.type == "profile.changed"


def test_rudderstack_context_traits_give_the_customer_number() -> None:
    ev = segment.parse_call("identify", {"userId": "u7", "anonymousId": "a7", "messageId": "i2",
                                         "context": {"traits": {"customer_no": "C0099"}}},
                            source="mobile-banking", received_at=RECEIVED, mapping=MAPPING)
    assert ("customer_no", "C0099") in {(i.kind, i.value) for i in ev.identifiers}


@pytest.mark.parametrize(("text", "expected", "normalised"), [
    ("2026-11-28T01:02:03Z", dt.datetime(2026, 11, 28, 1, 2, 3, tzinfo=dt.UTC), False),
    ("2026-11-28T09:02:03.123456789+08:00", dt.datetime(2026, 11, 28, 1, 2, 3, 123456, tzinfo=dt.UTC), False),
    ("2026-11-28 09:02:03+0800", dt.datetime(2026, 11, 28, 1, 2, 3, tzinfo=dt.UTC), False),
    ("2015-2-02T00:30:08.276Z", dt.datetime(2015, 2, 2, 0, 30, 8, 276000, tzinfo=dt.UTC), True),
    ("2015-2-2T0:30:8Z", dt.datetime(2015, 2, 2, 0, 30, 8, tzinfo=dt.UTC), True),
    ("2026-11-28T01:02-05", dt.datetime(2026, 11, 28, 6, 2, tzinfo=dt.UTC), False),
])
def test_lenient_timestamps(text: str, expected: dt.datetime, normalised: bool) -> None:
    parsed = segment.parse_timestamp(text, "timestamp")
    assert parsed.value == expected and parsed.normalised is normalised


@pytest.mark.parametrize("text", [
    "2026-11-28T01:02:03",        # no offset: refuse rather than guess the zone
    "2015-2-30T00:30:08Z",         # no such day
    "15-02-02T00:30:08Z",          # two-digit year
    "2026-W48-6T01:02:03Z",        # week date
    "2026-11-28T25:00:00Z",
    "2026-11-28T01:00:00+24:00",
    "yesterday",
    1732750000,
])
def test_refused_timestamps(text: object) -> None:
    with pytest.raises(ValidationFailed):
        segment.parse_timestamp(text, "timestamp")


def test_mapping_rejects_unknown_types() -> None:
    with pytest.raises(SettingsError, match="Login Failed"):
        segment.mapping_from_dict({"track": {"Login Failed": "login.kaput"}})
    with pytest.raises(SettingsError, match="user_id_kind"):
        segment.mapping_from_dict({"user_id_kind": "email"})
    assert MAPPING.type_for("LOGIN-failed") == "login.failed"
    assert MAPPING.type_for("Something New") == "app.action"
