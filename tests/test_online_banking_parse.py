"""Golden tests of the pure online-banking parser: native webhook body in, canonical event out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from adapters import online_banking
from gateway.errors import BadRequest, ValidationFailed
from gateway.events.model import ContactEvent
from gateway.events.types import EVENT_TYPES
from tests.conftest import FIXTURES

DIR = FIXTURES / "online_banking"
GOOD = sorted(p for p in DIR.glob("*.json") if not p.name.startswith(("bad_", "expected_"))
              and not p.name.endswith(".expected.json"))
BAD_FIELDS = json.loads((DIR / "expected_bad_fields.json").read_text())


def check_golden(expected_path: Path, event: ContactEvent) -> None:
    got = json.loads(msgspec.json.encode(event))
    if os.environ.get("CG_REGENERATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert expected_path.exists(), f"{expected_path.name} missing: run with CG_REGENERATE_GOLDEN=1 and review it"
    assert got == json.loads(expected_path.read_text(encoding="utf-8")), expected_path.name


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    event = online_banking.parse(path.read_bytes(), source="online-banking", webhook_id=f"msg_{path.stem}")
    check_golden(path.with_suffix(".expected.json"), event)


def test_every_required_native_type_has_a_golden_sample() -> None:
    natives = {json.loads(p.read_text())["type"] for p in GOOD}
    required = {"login.succeeded", "login.failed", "password.reset", "device.bound", "transfer.initiated",
                "transfer.succeeded", "transfer.failed", "bill_payment.failed", "card.frozen", "card.unfrozen",
                "profile.changed", "secure_message.sent", "complaint.submitted"}
    assert required <= natives
    assert all(canonical in EVENT_TYPES for canonical, _o, _i in online_banking.NATIVE_TYPES.values())


@pytest.mark.parametrize("name", sorted(BAD_FIELDS))
def test_malformed_samples_name_the_field(name: str) -> None:
    with pytest.raises(BadRequest) as info:  # unreadable JSON: 400; a wrong field: ValidationFailed, 422
        online_banking.parse((DIR / name).read_bytes(), source="online-banking", webhook_id="msg_bad")
    errors = info.value.extensions["errors"]
    assert errors[0]["field"] == BAD_FIELDS[name], errors
    assert isinstance(info.value, ValidationFailed) == (name != "bad_not_json.json")


def test_webhook_id_is_the_source_event_id_and_identifiers_are_raw() -> None:
    event = online_banking.parse((DIR / "transfer_failed.json").read_bytes(), source="online-banking.pc",
                                 webhook_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert event.source_event_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert event.source == "online-banking.pc"
    assert event.type == "transfer.failed" and event.reason == "DAILY_LIMIT_EXCEEDED"
    assert {(i.kind, i.value) for i in event.identifiers} == {
        ("online_user_id", "zhangsan_88"), ("customer_no", "C0012345"), ("account_no", "6217001234567890122")}
    # the payee's account number is kept only masked; no identifier is repeated in the attributes
    assert event.attributes["payee_account"] == "****3445"
    assert "6217001234567890122" not in msgspec.json.encode(event.attributes).decode()
    assert event.occurred_at.utcoffset() is not None


def test_attributes_over_the_canonical_limit_are_refused() -> None:
    body = json.dumps({"type": "login.failed", "timestamp": "2026-11-28T10:00:00Z",
                       "data": {"user_id": "u1", "note": "x" * 20000}}).encode()
    with pytest.raises(ValidationFailed) as info:
        online_banking.parse(body, source="online-banking", webhook_id="m1")
    assert info.value.errors[0]["field"] == "data"
