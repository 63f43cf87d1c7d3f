"""structlog configuration.

JSON lines when stdout is not a terminal (or ``log_format = "json"``), coloured
console output on a terminal. Context (request id, source, agent) is bound
through contextvars. Event names are constants (``"http.request"``), never
f-strings. A last processor scrubs anything that looks like a national ID,
card or account number or mobile number from every string value, so that a
mistake elsewhere cannot leak one into a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from gateway.settings import Settings

# 18-digit resident IDs (last may be X), 13-19 digit card/account numbers, CN mobiles.
_ID_RE = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
_PAN_RE = re.compile(r"(?<!\d)\d{9,15}(\d{4})(?!\d)")
_MOBILE_RE = re.compile(r"(?<!\d)(\+?86[ -]?)?(1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)")


def scrub(text: str) -> str:
    """Mask identifier-shaped digit runs in free text (a safety net, not the primary masking)."""
    text = _ID_RE.sub(lambda m: m.group(1)[:3] + "*" * 11 + m.group(2)[-4:], text)
    text = _PAN_RE.sub(lambda m: "*" * 4 + " " + m.group(1), text)
    return _MOBILE_RE.sub(lambda m: m.group(2) + "****" + m.group(3), text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def _scrub_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (_scrub_value(v) if k != "timestamp" else v) for k, v in event_dict.items()}


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Configure structlog and the standard library's logging once for this process."""
    stream = stream or sys.stdout
    level = getattr(logging, settings.log_level.upper())
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _scrub_processor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library: keep them quiet and on the same stream.
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").disabled = True
