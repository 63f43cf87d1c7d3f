"""Shutdown helpers: a loop that swallows its cancellation (as a library's own timeout can) still ends."""

from __future__ import annotations

import asyncio

from gateway.tasks import cancel_and_wait, raise_if_cancelling


async def test_cancel_and_wait_ends_a_task_that_swallowed_its_first_cancellation():
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:  # what a retry-on-error loop does when a library turns the cancel into an error
                    swallowed += 1
                    asyncio.current_task().uncancel()
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, interval=0.05), 5)
    assert task.cancelled() and swallowed == 1


async def test_raise_if_cancelling_turns_a_masked_cancellation_back():
    async def loop_that_retries() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                try:
                    raise ConnectionError("the library's version of being cancelled") from None
                except ConnectionError:
                    raise_if_cancelling()  # still cancelling: re-raised as CancelledError

    task = asyncio.create_task(loop_that_retries())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
