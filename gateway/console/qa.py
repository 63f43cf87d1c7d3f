"""The quality-review scoring form (``config/qa_form.toml``): loading, validating, scoring.

A form has an ``id``, a ``version``, a ``title`` in zh-CN and English, and ``items``, each with a
``key``, a ``label`` in both languages and ``max`` points. A score gives each item 0..max points; the
result is the points given over the points possible, in percent. A malformed form stops start-up
with :class:`FormError` naming the item and key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ValidationFailed
from gateway.settings import read_toml_file

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class FormError(ValueError):
    """The QA form file is malformed; the message names the place."""


@dataclasses.dataclass(frozen=True, slots=True)
class FormItem:
    key: str
    label: Mapping[str, str]
    max: int


@dataclasses.dataclass(frozen=True, slots=True)
class QaForm:
    id: str
    version: int
    title: Mapping[str, str]
    items: tuple[FormItem, ...]

    @property
    def max_total(self) -> int:
        return sum(i.max for i in self.items)

    def score(self, given: Mapping[str, str]) -> tuple[dict[str, int], float]:
        """Points per item from form fields ``score_<key>``, and the percentage. Raises ValidationFailed."""
        scores: dict[str, int] = {}
        for item in self.items:
            field = f"score_{item.key}"
            text = (given.get(field) or "").strip()
            try:
                points = int(text)
            except ValueError:
                raise ValidationFailed.field(field, f"a whole number from 0 to {item.max}") from None
            if not 0 <= points <= item.max:
                raise ValidationFailed.field(field, f"a whole number from 0 to {item.max}")
            scores[item.key] = points
        return scores, round(100 * sum(scores.values()) / self.max_total, 2)


def _label(where: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw[k] for k in ("zh-CN", "en")):
        raise FormError(f"{where}: needs zh-CN and en texts")
    return {"zh-CN": raw["zh-CN"], "en": raw["en"]}


def parse_form(raw: Mapping[str, Any], where: str = "qa form") -> QaForm:
    form_id, version = raw.get("id"), raw.get("version")
    if not isinstance(form_id, str) or not form_id:
        raise FormError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FormError(f"{where}: 'version' must be a positive integer")
    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise FormError(f"{where}: needs at least one [[items]]")
    items, seen = [], set()
    for n, item in enumerate(items_raw, 1):
        at = f"{where}: item {n}"
        if not isinstance(item, dict):
            raise FormError(f"{at}: expected a table")
        key, top = item.get("key"), item.get("max")
        if not isinstance(key, str) or not _KEY_RE.match(key) or key in seen:
            raise FormError(f"{at}: 'key' must be a unique lower-case name")
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
            raise FormError(f"{at}: 'max' must be an integer from 1 to 100")
        seen.add(key)
        items.append(FormItem(key, _label(at + " label", item.get("label")), top))
    return QaForm(form_id, version, _label(where + " title", raw.get("title")), tuple(items))


def load_form(path: Path) -> QaForm:
    raw = read_toml_file(path, "QA form", FormError)
    return parse_form(raw, f"QA form {path.name}")
