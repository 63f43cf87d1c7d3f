"""Checks shared by everything that stores posted JSON (pure).

PostgreSQL cannot store U+0000 in ``text`` or ``jsonb``, so a NUL character anywhere in a
posted document would fail the commit. The adapters refuse it up front, naming the field.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import ValidationFailed


def _path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def nul_field(obj: Any, prefix: str = "") -> str | None:
    """The path of the first string (value or key) holding a NUL character, or None."""
    if isinstance(obj, str):
        return (prefix or "body") if "\x00" in obj else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if "\x00" in str(k):
                return _path(prefix, str(k).replace("\x00", "\\u0000"))
            found = nul_field(v, _path(prefix, str(k)))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = nul_field(v, _path(prefix, i))
            if found:
                return found
    return None


def reject_nul(obj: Any, prefix: str = "") -> None:
    """Raise :class:`ValidationFailed` naming the first field that holds a NUL character."""
    field = nul_field(obj, prefix)
    if field:
        raise ValidationFailed.field(field, "contains a NUL character")
