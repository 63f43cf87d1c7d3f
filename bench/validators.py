"""Which validator on the ingest hot path? Decode + validate one canonical event, per library, same run.

Candidates: msgspec (Struct + Meta constraints, decoding straight into the typed model), pydantic v2
(``model_validate_json``), and JSON Schema validators on a decoded dict (``fastjsonschema`` compiled,
``jsonschema`` Draft 2020-12) — the last two against the very schema we publish.

    python bench/validators.py
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import timeit
from pathlib import Path
from typing import Annotated, Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.events.model import decode_event, json_schema  # noqa: E402

BODY = json.dumps({
    "source": "cti.zs-callcentre", "source_event_id": "1722863811.39/AgentCalled/8001", "channel": "voice",
    "type": "call.ringing", "occurred_at": "2026-11-28T09:41:07.120+08:00",
    "identifiers": [{"kind": "phone", "value": "+86 139 1234 5678"}], "interaction_id": "1722863811.39",
    "agent_id": "8001", "queue": "vip", "direction": "inbound",
    "attributes": {"ivr_path": ["1", "3"], "auth_level": "ivr_pin"},
}).encode()


def pydantic_model() -> Any:
    from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

    from gateway.events.types import EVENT_TYPES

    def known(t: str) -> str:
        if t not in EVENT_TYPES:
            raise ValueError("unknown event type")
        return t

    class Identifier(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        kind: Literal["phone", "email", "customer_no", "national_id", "card_no", "account_no", "device_id",
                      "online_user_id"]
        value: Annotated[str, Field(min_length=1, max_length=128)]

    class Event(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        source: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
        source_event_id: Annotated[str, Field(min_length=1, max_length=200)]
        channel: Literal["voice", "online_banking", "mobile_banking", "email", "branch", "sms", "wechat",
                         "corporate_banking"]
        type: Annotated[str, AfterValidator(known)]
        occurred_at: AwareDatetime
        identifiers: Annotated[list[Identifier], Field(max_length=16)] = []
        interaction_id: str | None = None
        agent_id: str | None = None
        queue: str | None = None
        direction: Literal["inbound", "outbound"] | None = None
        subject: Annotated[str, Field(max_length=500)] | None = None
        outcome: str | None = None
        reason: str | None = None
        attributes: dict[str, Any] = {}

    return Event


def per_call_us(fn: Any, number: int = 20000, repeat: int = 7) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    import fastjsonschema
    import jsonschema

    schema = json_schema()
    fast = fastjsonschema.compile(schema)
    slow = jsonschema.Draft202012Validator(schema)
    model = pydantic_model()
    assert decode_event(BODY).occurred_at.tzinfo is not None
    assert model.model_validate_json(BODY).occurred_at.tzinfo is not None

    def js_fast() -> None:
        obj = json.loads(BODY)
        fast(obj)
        dt.datetime.fromisoformat(obj["occurred_at"])  # JSON Schema's date-time format is not checked

    results = {
        "msgspec (decode into Struct)": per_call_us(lambda: decode_event(BODY)),
        "pydantic v2 (model_validate_json)": per_call_us(lambda: model.model_validate_json(BODY)),
        "json.loads + fastjsonschema": per_call_us(js_fast),
        "json.loads + jsonschema": per_call_us(lambda: slow.validate(json.loads(BODY)), number=2000),
    }
    base = results["msgspec (decode into Struct)"]
    print("| validator | µs per event (median of 7) | × msgspec |")
    print("|---|---|---|")
    for name, us in results.items():
        print(f"| {name} | {us:.2f} | {us / base:.1f}× |")


if __name__ == "__main__":
    main()
