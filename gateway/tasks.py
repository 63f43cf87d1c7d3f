"""Small asyncio helpers shared by the long-running loops (publisher, pop hub, audit writer)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger("gateway.tasks")


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another error.

    redis-py, cancelled in the middle of a command, may drop the connection and raise a connection
    error instead of ``CancelledError``; a loop that retries on connection errors would then swallow
    its own cancellation and never stop. Call this first in such an ``except``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(*tasks: asyncio.Task[object] | None, attempts: int = 20, interval: float = 0.25) -> None:
    """Cancel the tasks and wait for them to end, cancelling again any that swallowed the cancellation
    (see :func:`raise_if_cancelling`: a cancellation can also be lost inside a library's own timeout).
    Shutdown must not hang on one such loop; after ``attempts`` tries the rest are logged and left."""
    pending = {t for t in tasks if t is not None and not t.done()}
    for _ in range(attempts):
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=interval)
    for t in tasks:
        if t is not None and t.done() and not t.cancelled():
            with contextlib.suppress(BaseException):
                t.exception()  # retrieved: a failure at shutdown is not "never retrieved"
    if pending:
        log.warning("tasks.not_cancelled", tasks=sorted(t.get_name() for t in pending))
