"""The push: ringing calls become pops on the agents' open desktops, across gateway instances.

Each gateway process runs one :class:`PopHub` task holding one Redis pub/sub connection with two
pattern subscriptions:

- ``cg:events:agent:*`` (published by ingest after commit): a ``call.ringing`` at agent X is
  claimed by exactly one instance (``SET cg:popclaim:<event id> NX``), which builds the pop
  (resolve → summary → pop), delivers it to X's sockets it holds itself, stores it as X's
  current pop and publishes it on ``cg:popch:X`` — one pipelined round trip — then audits it.
  Other call events of X (answered, ended, …) are forwarded to X's local sockets as small
  ``call`` frames so the desktop can show the call's state.
- ``cg:popch:*``: a pop built elsewhere for an agent whose socket this instance holds is sent on.

Two shortcuts keep the pop off the commit's critical path (see "Early ringing" in
:mod:`gateway.events.ingest`): the ingestor hands a ringing event to :meth:`PopHub.ringing` while it
commits (the claim by the event's dedupe key makes the published copy a no-op), and
:meth:`PopHub.prefetch`, fed by the publisher after each committed group, warms the summary cache
of a caller who is still in the IVR or the queue, so that the ringing finds the summary built.

A desktop that (re)connects first registers its socket, then gets the current pop (so a pop
published meanwhile is at worst sent twice; the desktop ignores a pop id it already shows).
While Redis is down the hub retries with backoff; desktops then get their pop from PostgreSQL
when they reconnect or look it up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import redis_keys
from gateway.errors import GatewayError
from gateway.screenpop.model import Pop
from gateway.screenpop.service import ScreenPopService, pop_frame
from gateway.tasks import cancel_and_wait, raise_if_cancelling

log = structlog.get_logger("gateway.screenpop.push")

CLAIM_SECONDS = 300
POPS_AT_ONCE = 32
CLAIM_MEMO = 10_000   # claims this instance won, remembered so that their published copies cost nothing
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
# voice events before the ringing: the caller is in the IVR or the queue, the agent not chosen yet
PREFETCH_TYPES = frozenset({"call.offered", "ivr.selection"})
CALL_FRAME_TYPES = frozenset({"call.answered", "call.ended", "call.abandoned", "call.missed", "call.transferred",
                              "call.held", "call.resumed", "contact.wrapup"})
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_AGENT_PREFIX = redis_keys.agent_channel("").encode()
_POP_PREFIX = redis_keys.pop_channel("").encode()


class PopHub:
    def __init__(self, redis: Redis, service: ScreenPopService) -> None:
        self._redis = redis
        self._service = service
        self.instance = uuid.uuid4().hex[:12]
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.pops_built = 0
        self._claimed: collections.OrderedDict[str, None] = collections.OrderedDict()
        # pops built at once: a burst of ringing events queues here rather than for the stores' connections
        self._building = asyncio.Semaphore(POPS_AT_ONCE)
        # test and benchmark hook: called with (agent_id, frame) after a local delivery
        self.on_delivered: Callable[[str, bytes], Awaitable[None] | None] | None = None

    # -- sockets -------------------------------------------------------------------------------------
    def attach(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(agent_id, set()).add(ws)

    def detach(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        held = self._sockets.get(agent_id)
        if held is not None:
            held.discard(ws)
            if not held:
                del self._sockets[agent_id]

    def holds(self, agent_id: str) -> bool:
        return agent_id in self._sockets

    async def deliver(self, agent_id: str, frame: bytes) -> int:
        """Send a frame to the agent's sockets on this instance; return how many got it."""
        sockets = [ws for ws in self._sockets.get(agent_id, ()) if not ws.closed]
        if not sockets:
            return 0
        text = frame.decode()
        results = await asyncio.gather(*(ws.send_str(text) for ws in sockets), return_exceptions=True)
        sent = sum(1 for r in results if not isinstance(r, BaseException))
        return sent

    # -- the subscriber --------------------------------------------------------------------------------
    def start(self) -> None:
        self._main = asyncio.create_task(self.run(), name="pop-hub")

    async def stop(self) -> None:
        await cancel_and_wait(self._main, *self._tasks)
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                await ws.close(code=1001, message=b"gateway shutting down")

    async def run(self) -> None:
        backoff = BACKOFF_START
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(redis_keys.AGENT_EVENTS_PATTERN, redis_keys.POP_CHANNEL_PATTERN)
                self.subscribed.set()
                backoff = BACKOFF_START
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self.subscribed.clear()
                log.warning("screenpop.subscriber_lost", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        if channel.startswith(_POP_PREFIX):
            agent_id = channel[len(_POP_PREFIX):].decode()
            origin, _, frame = data.partition(b"\n")
            if origin.decode() != self.instance and self.holds(agent_id):
                self._spawn(self._deliver(agent_id, frame))
            return
        if not channel.startswith(_AGENT_PREFIX):
            return
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError:
            return
        kind = event.get("type")
        if kind == "call.ringing" and event.get("agent_id"):
            self._spawn(self._on_ringing(event))
        elif kind in CALL_FRAME_TYPES and self.holds(agent_id := channel[len(_AGENT_PREFIX):].decode()):
            frame = _encoder.encode({"type": "call", "event": kind, "interaction_id": event.get("interaction_id"),
                                     "occurred_at": event.get("occurred_at")})
            self._spawn(self._deliver(agent_id, frame))

    def ringing(self, source: str, source_event_id: str, linked: Awaitable[dict[str, Any] | None]) -> None:
        """A ringing event about to commit (the ingestor's ``on_ringing``): claim it while ``linked`` links it,
        build the pop at once and push it. The claim is nearly always won (the published copy comes after
        the commit); if linking fails, the claim is released so that the published copy pops instead."""
        self._spawn(self._on_early(redis_keys.pop_claim(source, source_event_id), linked))

    def prefetch(self, events: Sequence[dict[str, Any]]) -> None:
        """Committed events (the publisher's ``on_published``): warm the summary of callers still queued."""
        for e in events:
            if e.get("type") in PREFETCH_TYPES and e.get("identification") == "identified" and e.get("customer_id"):
                self._service.warm(int(e["customer_id"]))

    async def _deliver(self, agent_id: str, frame: bytes) -> None:
        await self.deliver(agent_id, frame)
        if self.on_delivered is not None:
            result = self.on_delivered(agent_id, frame)
            if result is not None:
                await result

    async def _claim(self, claim: str) -> bool:
        if not await self._redis.set(claim, self.instance, nx=True, ex=CLAIM_SECONDS):
            return False
        self._claimed[claim] = None
        if len(self._claimed) > CLAIM_MEMO:
            self._claimed.popitem(last=False)
        return True

    async def _on_early(self, claim: str, linked: Awaitable[dict[str, Any] | None]) -> None:
        async def build() -> tuple[dict[str, Any] | None, Pop | None]:
            event = await linked
            if event is None:
                return None, None
            try:
                return event, await self._service.pop_for_ringing(event)
            except (RedisError, OSError, GatewayError) as exc:
                log.warning("screenpop.early_pop_failed", error=type(exc).__name__)
                return event, None

        try:
            async with self._building:
                claimed, (event, pop) = await asyncio.gather(self._claim(claim), build())
                if claimed and pop is None:
                    self._claimed.pop(claim, None)
                    await self._redis.delete(claim)
                if claimed and event is not None and pop is not None:
                    await self._push(event, pop)
        except (RedisError, OSError, GatewayError) as exc:
            log.warning("screenpop.pop_failed", error=type(exc).__name__)
        except Exception:  # a bug must not end the subscriber; it goes to the log
            log.exception("screenpop.pop_crashed")

    async def _on_ringing(self, event: dict[str, Any]) -> None:
        agent_id = str(event["agent_id"])
        try:
            claim = redis_keys.pop_claim(str(event.get("source")), str(event.get("source_event_id", event["id"])))
            if claim in self._claimed:  # popped early here: the published copy needs no round trip
                return
            async with self._building:
                if await self._claim(claim):
                    await self._push(event, await self._service.pop_for_ringing(event))
        except (RedisError, OSError, GatewayError) as exc:
            log.warning("screenpop.pop_failed", agent_id=agent_id, error=type(exc).__name__)
        except Exception:  # a bug must not end the subscriber; it goes to the log
            log.exception("screenpop.pop_crashed", agent_id=agent_id)

    async def _push(self, event: dict[str, Any], pop: Pop) -> None:
        """Deliver to the agent's sockets here, keep as the agent's current pop (and so reach the other
        instances), then audit."""
        agent_id = str(event["agent_id"])
        frame = pop_frame(pop)
        self.pops_built += 1
        if self.holds(agent_id):
            await self._deliver(agent_id, frame)
        await self._service.store_current(agent_id, frame, self.instance)
        await self._service.audit_pop(pop, actor=f"source:{event.get('source', 'cti')}", role="source")
        log.info("screenpop.pushed", agent_id=agent_id, state=pop.state,
                 alerts=len(pop.summary.alerts) if pop.summary else 0)
