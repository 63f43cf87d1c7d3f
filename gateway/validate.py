"""Small field checks shared by the JSON adapters and views; each raises ValidationFailed naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.errors import ValidationFailed


def aware_time(text: str, field: str) -> dt.datetime:
    """An RFC 3339 timestamp that carries its offset (a naive time is refused: we cannot know its zone)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed.field(field, "not an RFC 3339 timestamp") from None
    if value.tzinfo is None:
        raise ValidationFailed.field(field, "timestamp without a time zone offset")
    return value


def short_text(value: Any, field: str, limit: int) -> str:
    """A non-blank string (or integer, as some senders post ids) of at most ``limit`` characters, trimmed."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationFailed.field(field, "expected a string")
    text = str(value).strip()
    if not text:
        raise ValidationFailed.field(field, "must not be blank")
    if len(text) > limit:
        raise ValidationFailed.field(field, f"longer than {limit} characters")
    return text
