"""The push: ringing calls become pops on the agents' open desktops, across gateway instances.

A ``call.ringing`` at agent X is popped by the gateway process that committed it — the one that took the
request, so exactly one — which builds the pop (resolve → summary → pop), delivers it to X's sockets it
holds itself, stores it as X's current pop and publishes it on ``cg:popch:X`` (one pipelined round trip),
then audits it. A retried ringing event is answered *duplicate* and never committed again, so it never
pops twice.

Each process also runs one :class:`PopHub` task holding one Redis pub/sub connection, subscribed to two
channels of each agent whose desktop socket this process holds (and to its own ``cg:hub:<instance>``,
which keeps the connection listening when it holds none):

- ``cg:popch:X``: a pop built elsewhere for agent X is sent on;
- ``cg:events:agent:X`` (published by ingest after commit): X's other call events (answered, ended, …)
  are forwarded as small ``call`` frames so the desktop can show the call's state.

A process is sent nothing about agents whose desktops are elsewhere: with a pattern subscription every
process received every agent event, and parsing them cost a sixth of the CPU of batch ingest. The first
socket of an agent subscribes (and waits for Redis to confirm) before its current pop is read; the last
one to close unsubscribes.

Two shortcuts keep the pop off the commit's critical path (see "Early ringing" in
:mod:`gateway.events.ingest`): the ingestor hands a ringing event to :meth:`PopHub.ringing` while it
commits, and the hub builds and pushes the pop at once; :meth:`PopHub.committed`, fed by the publisher
after each committed group, pops the ringing events that were not popped early (or whose early link
failed) and warms the summary cache of callers still in the IVR or the queue, so that the ringing finds
the summary built.

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

import msgspec
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway import redis_keys
from gateway.errors import GatewayError
from gateway.events.model import PublishedEvent
from gateway.screenpop.model import Pop
from gateway.screenpop.service import ScreenPopService, pop_frame
from gateway.tasks import cancel_and_wait, raise_if_cancelling

log = structlog.get_logger("gateway.screenpop.push")

POPS_AT_ONCE = 32
EARLY_MEMO = 10_000   # ringing events handed over early, remembered until their committed copies come by
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
# voice events before the ringing: the caller is in the IVR or the queue, the agent not chosen yet
PREFETCH_TYPES = frozenset({"call.offered", "ivr.selection"})
CALL_OVER_TYPES = frozenset({"call.ended", "call.abandoned"})
CALL_FRAME_TYPES = frozenset({"call.answered", "call.ended", "call.abandoned", "call.missed", "call.transferred",
                              "call.held", "call.resumed", "contact.wrapup"})
SUBSCRIBE_WAIT = 2.0   # seconds a new desktop waits for Redis to confirm its subscription
PENDING, DONE, FAILED = "pending", "done", "failed"   # states of an early pop
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_AGENT_PREFIX = redis_keys.agent_channel("").encode()
_POP_PREFIX = redis_keys.pop_channel("").encode()


def _channels(agent_id: str) -> tuple[str, str]:
    """What a process holding agent X's desktop subscribes to: X's call events and pops built elsewhere."""
    return redis_keys.agent_channel(agent_id), redis_keys.pop_channel(agent_id)


class PopHub:
    def __init__(self, redis: Redis, service: ScreenPopService) -> None:
        self._redis = redis
        self._service = service
        self.instance = uuid.uuid4().hex[:12]
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._pubsub: PubSub | None = None
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}   # channel -> subscribers waiting
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.pops_built = 0
        # (source, source_event_id) of ringing events handed over early -> PENDING, DONE, FAILED, or the
        # committed message that came while the early pop was still pending (popped if that one fails)
        self._early: collections.OrderedDict[tuple[str, str], str | PublishedEvent] = collections.OrderedDict()
        self.prefetching = True
        # pops built at once: a burst of ringing events queues here rather than for the stores' connections
        self._building = asyncio.Semaphore(POPS_AT_ONCE)
        # test and benchmark hook: called with (agent_id, frame) after a local delivery
        self.on_delivered: Callable[[str, bytes], Awaitable[None] | None] | None = None

    # -- sockets ---------------------------------------------------------------------------------------
    async def attach(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        """Hold the socket; the agent's first one subscribes to its channels and waits for Redis to
        confirm (bounded), so that whatever is published after this returns reaches the socket."""
        first = agent_id not in self._sockets
        self._sockets.setdefault(agent_id, set()).add(ws)
        if first:
            await self._subscribe(agent_id)

    def detach(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        held = self._sockets.get(agent_id)
        if held is not None:
            held.discard(ws)
            if not held:
                del self._sockets[agent_id]
                if self._pubsub is not None:
                    self._spawn(self._unsubscribe(agent_id))

    async def _subscribe(self, agent_id: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:  # not connected: run() subscribes every held agent when it connects
            return
        channels = _channels(agent_id)
        loop = asyncio.get_running_loop()
        waiting = [(ch.encode(), loop.create_future()) for ch in channels]
        for ch, fut in waiting:
            self._confirming.setdefault(ch, []).append(fut)
        try:
            await pubsub.subscribe(*channels)
            async with asyncio.timeout(SUBSCRIBE_WAIT):
                await asyncio.gather(*(fut for _ch, fut in waiting))
        except (RedisError, OSError, TimeoutError) as exc:
            raise_if_cancelling()
            log.warning("screenpop.subscribe_failed", agent_id=agent_id, error=type(exc).__name__)
        finally:
            for ch, fut in waiting:
                futs = self._confirming.get(ch, [])
                if fut in futs:
                    futs.remove(fut)
                if not futs:
                    self._confirming.pop(ch, None)

    async def _unsubscribe(self, agent_id: str) -> None:
        pubsub = self._pubsub
        if agent_id in self._sockets or pubsub is None:  # back meanwhile, or nothing to undo
            return
        try:
            await pubsub.unsubscribe(*_channels(agent_id))
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            log.info("screenpop.unsubscribe_failed", agent_id=agent_id, error=type(exc).__name__)

    def _confirmed(self, channel: bytes) -> None:
        for fut in self._confirming.pop(channel, []):
            if not fut.done():
                fut.set_result(None)

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
            pubsub = self._redis.pubsub()
            try:
                self._pubsub = pubsub  # from here on attach() subscribes by itself; the held ones now
                await pubsub.subscribe(redis_keys.hub_channel(self.instance),
                                       *(ch for agent_id in list(self._sockets) for ch in _channels(agent_id)))
                self.subscribed.set()
                backoff = BACKOFF_START
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == "message":
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "subscribe":
                        self._confirmed(message["channel"])
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self.subscribed.clear()
                log.warning("screenpop.subscriber_lost", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                self._pubsub = None
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
        agent_id = channel[len(_AGENT_PREFIX):].decode()
        if not self.holds(agent_id):
            return
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError:
            return
        kind = event.get("type")
        if kind in CALL_FRAME_TYPES:
            frame = _encoder.encode({"type": "call", "event": kind, "interaction_id": event.get("interaction_id"),
                                     "occurred_at": event.get("occurred_at")})
            self._spawn(self._deliver(agent_id, frame))

    def ringing(self, source: str, source_event_id: str, linked: Awaitable[PublishedEvent | None]) -> None:
        """A ringing event about to commit (the ingestor's ``on_ringing``): build its pop as soon as ``linked``
        has linked it, and push it. If linking or building fails, the committed copy pops instead."""
        key = (source, source_event_id)
        if key in self._early:  # a retry of a ringing event handed over already
            if asyncio.iscoroutine(linked):
                linked.close()
            return
        self._early[key] = PENDING
        if len(self._early) > EARLY_MEMO:
            self._early.popitem(last=False)
        self._spawn(self._on_early(key, linked))

    def committed(self, events: Sequence[PublishedEvent]) -> None:
        """Committed and published events (the publisher's ``on_published``): pop the ringing events not
        popped early, and warm the summaries of callers still queued. A call that ended in the same group
        (a CTI replaying its calls) is over: its ringing does not pop, as no agent can take it."""
        over = {e.interaction_id for e in events if e.type in CALL_OVER_TYPES}
        for e in events:
            kind = e.type
            if kind == "call.ringing" and e.agent_id and e.interaction_id not in over:
                key = (e.source, e.source_event_id)
                state = self._early.get(key)
                if state == PENDING:
                    self._early[key] = e           # the early pop decides: if it fails, this copy pops
                elif state != DONE:
                    self._early.pop(key, None)
                    self._spawn(self._on_ringing(e))
            elif (self.prefetching and kind in PREFETCH_TYPES and e.identification == "identified"
                  and e.customer_id):
                self._service.warm(e.customer_id)

    async def _deliver(self, agent_id: str, frame: bytes) -> None:
        await self.deliver(agent_id, frame)
        if self.on_delivered is not None:
            result = self.on_delivered(agent_id, frame)
            if result is not None:
                await result

    async def _on_early(self, key: tuple[str, str], linked: Awaitable[PublishedEvent | None]) -> None:
        pushed = False
        try:
            async with self._building:
                event = await linked
                if event is not None:
                    await self._push(event, await self._service.pop_for_ringing(event))
                    pushed = True
        except (RedisError, OSError, GatewayError) as exc:
            log.warning("screenpop.early_pop_failed", error=type(exc).__name__)
        except Exception:  # a bug must not end the hub; it goes to the log
            log.exception("screenpop.pop_crashed")
        state = self._early.get(key)
        if pushed:
            self._early[key] = DONE
        elif isinstance(state, PublishedEvent):  # committed meanwhile: pop that copy
            self._early.pop(key, None)
            await self._on_ringing(state)
        else:
            self._early[key] = FAILED

    async def _on_ringing(self, event: PublishedEvent) -> None:
        agent_id = str(event.agent_id)
        try:
            async with self._building:
                await self._push(event, await self._service.pop_for_ringing(event))
        except (RedisError, OSError, GatewayError) as exc:
            log.warning("screenpop.pop_failed", agent_id=agent_id, error=type(exc).__name__)
        except Exception:  # a bug must not end the hub; it goes to the log
            log.exception("screenpop.pop_crashed", agent_id=agent_id)

    async def _push(self, event: PublishedEvent, pop: Pop) -> None:
        """Deliver to the agent's sockets here, keep as the agent's current pop (and so reach the other
        instances), then audit."""
        agent_id = str(event.agent_id)
        frame = pop_frame(pop)
        self.pops_built += 1
        if self.holds(agent_id):
            await self._deliver(agent_id, frame)
        await self._service.store_current(agent_id, frame, self.instance)
        await self._service.audit_pop(pop, actor=f"source:{event.source}", role="source")
        log.info("screenpop.pushed", agent_id=agent_id, state=pop.state,
                 alerts=len(pop.summary.alerts) if pop.summary else 0)
