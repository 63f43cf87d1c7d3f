"""The AMI transport: an asyncio TCP client of the Asterisk Manager Interface.

One long-lived task per gateway process (a cleanup context, only when ``[ami] enabled``):

1. connect, read the banner (``Asterisk Call Manager/<version>``);
2. log in — ``md5``: ``Challenge`` then ``Login`` with ``Key = md5(challenge + secret)``, so
   the secret never crosses the wire; ``plain``: ``Login`` with ``Secret`` — asking for
   events (``Events: on``);
3. reconcile: ``CoreShowChannels`` and ``QueueStatus`` give the calls in progress now;
   :meth:`adapters.ami.CallTracker.reconcile` turns the difference with what the tracker
   knew into the events missed while disconnected (AMI replays nothing). Their
   ``source_event_id`` equals the live path's, so nothing is stored twice;
4. read frames (256 KiB at a time), map them with the tracker and hand the events to the
   ingest sink, one ``submit`` per read (at most ``batch_max`` events), in order, through a
   small outbox: the next read is parsed while the previous batch commits, and when two
   batches wait nothing more is read, so a fast producer is slowed by TCP flow control, not
   by our memory. When PostgreSQL is down ``submit`` raises
   :class:`~gateway.errors.StoreUnavailable`; the same events are retried (safe: ingest
   dedupes) with backoff. A batch ingest fails on otherwise (a bug, not an outage) goes to the
   quarantine as JSON instead of blocking every later call;
5. frames that cannot be read or mapped go to the quarantine with their raw bytes and the
   error, ``cg_quarantined{adapter="ami"}`` counts them, and the stream continues;
6. on any connection error, reconnect after an exponential backoff with jitter
   (``reconnect_initial`` doubling up to ``reconnect_max``; a login that succeeded resets it).
   A silent connection is probed with ``Ping`` every ``ping_interval`` seconds.

Logs carry constant event names (``ami.connected``, ``ami.login_failed``,
``ami.frame_quarantined`` …) and never a frame, caller ID or secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
from aiohttp import web

from adapters.ami import (
    ADAPTER,
    AmiMapping,
    AmiParseError,
    CallTracker,
    Frame,
    FrameParser,
    MalformedFrame,
    action,
)
from gateway import keys
from gateway.clock import Clock, SystemClock
from gateway.errors import StoreUnavailable
from gateway.events.model import ContactEvent
from gateway.events.sink import EventSink
from gateway.settings import AmiSettings

log = structlog.get_logger("adapters.ami")

READ_SIZE = 262144

# (raw bytes, error, source_ref) -> stored; raises StoreUnavailable when the database is down.
QuarantineFn = Callable[[bytes, str, str], Awaitable[None]]


class AmiError(Exception):
    """Base of the AMI client's errors; every one of them ends the session and leads to a reconnect."""


class AmiProtocolError(AmiError):
    """The peer does not speak AMI (no banner) or answered out of protocol."""


class AmiLoginFailed(AmiError):
    """The manager refused the credentials (``Response: Error`` to ``Login``)."""


class AmiActionFailed(AmiError):
    """An action other than login was answered with ``Response: Error``."""


@dataclasses.dataclass
class AmiStats:
    """Counters of one client since it started (also what ``bench/ami.py`` prints)."""

    sessions: int = 0
    frames: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    submit_retries: int = 0
    login_failures: int = 0
    last_error: str = ""


@dataclasses.dataclass
class _Pending:
    is_list: bool
    done: asyncio.Future[tuple[Frame, list[Frame]]]
    response: Frame | None = None
    items: list[Frame] = dataclasses.field(default_factory=list)


class AmiClient:
    """Connects, logs in, reconciles and streams AMI events into ``sink`` until cancelled."""

    def __init__(
        self,
        settings: AmiSettings,
        sink: EventSink,
        *,
        quarantine: QuarantineFn,
        clock: Clock | None = None,
        metrics: Any = None,
        rng: random.Random | None = None,
        tracker: CallTracker | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.quarantine = quarantine
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.tracker = tracker or CallTracker(AmiMapping.from_settings(settings))
        self.stats = AmiStats()
        self.connected = asyncio.Event()
        self.reconciled = asyncio.Event()
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._last_rx = 0.0
        self._session_ref = ""
        # Parsed batches wait here for the one submitter: parsing the next read overlaps the commit of the
        # previous one, order is kept, and a full outbox stops the reader (TCP pushes back on Asterisk).
        self._outbox: asyncio.Queue[list[ContactEvent]] = asyncio.Queue(maxsize=2)

    # -- the outer loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run sessions forever, reconnecting with exponential backoff and jitter."""
        submitter = asyncio.create_task(self._submitter(), name="ami-submitter")
        try:
            await self._sessions()
        finally:
            submitter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await submitter

    async def drain(self) -> None:
        """Wait until every batch read so far has been handed to ingest (used at shutdown)."""
        await self._outbox.join()

    async def _submitter(self) -> None:
        while True:
            batch = await self._outbox.get()
            try:
                await self.submit(batch)
            finally:
                self._outbox.task_done()

    async def _sessions(self) -> None:
        delay = self.settings.reconnect_initial
        while True:
            logged_in = False
            try:
                logged_in = await self._session()
            except asyncio.CancelledError:
                raise
            except AmiLoginFailed as exc:
                self.stats.login_failures += 1
                self.stats.last_error = str(exc)
                log.warning("ami.login_failed", host=self.settings.host, port=self.settings.port,
                            user=self.settings.username)
            except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, AmiError) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("ami.disconnected", host=self.settings.host, port=self.settings.port,
                            error=type(exc).__name__, detail=str(exc)[:200])
            finally:
                self.connected.clear()
                self.reconciled.clear()
                self._fail_pending(AmiProtocolError("connection closed"))
            if logged_in:
                delay = self.settings.reconnect_initial
            wait = self.backoff(delay)
            log.info("ami.reconnect_wait", seconds=round(wait, 3))
            await asyncio.sleep(wait)
            delay = min(self.settings.reconnect_max, delay * 2)

    def backoff(self, delay: float) -> float:
        """Equal jitter: half the delay, plus up to the other half at random (no thundering herd)."""
        d = min(self.settings.reconnect_max, delay)
        return d / 2 + self.rng.uniform(0, d / 2)

    # -- one session ---------------------------------------------------------------------------------------

    async def _session(self) -> bool:
        s = self.settings
        reader, writer = await asyncio.wait_for(asyncio.open_connection(s.host, s.port), s.connect_timeout)
        self._writer = writer
        logged_in = False
        parser = FrameParser(s.max_frame_bytes)
        reader_task: asyncio.Task[None] | None = None
        helper_tasks: list[asyncio.Task[Any]] = []
        try:
            banner = await asyncio.wait_for(reader.readline(), s.connect_timeout)
            if b"/" not in banner or not banner.endswith(b"\n"):
                raise AmiProtocolError("no AMI banner")
            self.stats.sessions += 1
            self._session_ref = f"{s.host}:{s.port}/{self.clock.now().isoformat()}/{self.stats.sessions}"
            self._last_rx = self.clock.monotonic()
            reader_task = asyncio.create_task(self._read_loop(reader, parser))
            reader_task.add_done_callback(lambda _t: self._fail_pending(AmiProtocolError("connection closed")))
            await asyncio.wait_for(self._login(), s.connect_timeout)
            logged_in = True
            self.connected.set()
            log.info("ami.connected", host=s.host, port=s.port, banner=banner.decode("utf-8", "replace").strip())
            helper_tasks.append(asyncio.create_task(self._reconcile()))
            if s.ping_interval > 0:
                helper_tasks.append(asyncio.create_task(self._keepalive()))
            # The session lives as long as its reader; a failed helper ends it too.
            done, _ = await asyncio.wait([reader_task, *helper_tasks], return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                exc = finished.exception()
                if exc is not None:
                    raise exc
            if not reader_task.done():
                await reader_task
            return logged_in
        finally:
            for t in (reader_task, *helper_tasks):
                if t is None:
                    continue
                if not t.done():
                    t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t  # also retrieves the exception of a task that already failed
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._writer = None

    async def _read_loop(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        """Read, parse, map, submit; returns at EOF after handing over what was read."""
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise EOFError("connection closed by the manager")
            self._last_rx = self.clock.monotonic()
            events: list[ContactEvent] = []
            now = self.clock.now()
            for item in parser.feed(data):
                if isinstance(item, MalformedFrame):
                    await self._quarantine(item.raw, item.error, item.offset)
                    continue
                self.stats.frames += 1
                if item.response is not None or (item.action_id and item.action_id in self._pending):
                    self._dispatch_reply(item)
                    continue
                try:
                    events += self.tracker.feed(item, now)
                except AmiParseError as exc:
                    await self._quarantine(item.raw, str(exc), item.offset)
                    continue
                if len(events) >= self.settings.batch_max:
                    await self._outbox.put(events)
                    events = []
            if events:
                await self._outbox.put(events)

    # -- actions -------------------------------------------------------------------------------------------

    async def send_action(self, name: str, *, is_list: bool = False, **fields: str) -> tuple[Frame, list[Frame]]:
        """Send an action and wait for its response (and, for list actions, its events)."""
        if self._writer is None:
            raise AmiProtocolError("not connected")
        aid = f"cg-{next(self._ids)}"
        fut: asyncio.Future[tuple[Frame, list[Frame]]] = asyncio.get_running_loop().create_future()
        self._pending[aid] = _Pending(is_list=is_list, done=fut)
        try:
            self._writer.write(action(name, aid, **fields))
            await self._writer.drain()
            return await fut
        finally:
            self._pending.pop(aid, None)

    def _dispatch_reply(self, frame: Frame) -> None:
        p = self._pending.get(frame.action_id or "")
        if p is None or p.done.done():
            return
        if frame.response is not None:
            p.response = frame
            if frame.response.lower() == "error":
                p.done.set_exception(AmiActionFailed(frame.get("Message") or "error"))
            elif not p.is_list or (frame.get("EventList") or "").lower() == "complete":
                p.done.set_result((frame, p.items))
            return
        name = (frame.event or "").lower()
        if (frame.get("EventList") or "").lower() == "complete" or name.endswith("complete"):
            p.done.set_result((p.response or frame, p.items))
        else:
            p.items.append(frame)

    def _fail_pending(self, exc: Exception) -> None:
        for p in self._pending.values():
            if not p.done.done():
                p.done.set_exception(exc)
                p.done.exception()  # retrieved: nobody may be waiting any more

    async def _login(self) -> None:
        s = self.settings
        try:
            if s.auth == "md5":
                challenge, _ = await self.send_action("Challenge", AuthType="MD5")
                token = challenge.get("Challenge")
                if not token:
                    raise AmiProtocolError("Challenge response has no Challenge")
                key = hashlib.md5((token + s.secret.get()).encode()).hexdigest()
                await self.send_action("Login", AuthType="MD5", Username=s.username, Key=key, Events="on")
            else:
                await self.send_action("Login", Username=s.username, Secret=s.secret.get(), Events="on")
        except AmiActionFailed as exc:
            raise AmiLoginFailed(str(exc)) from None

    async def _reconcile(self) -> None:
        """Compare what Asterisk has in progress now with what the tracker knew; submit the difference."""
        timeout = max(self.settings.connect_timeout * 4, 10.0)
        _, channels = await asyncio.wait_for(self.send_action("CoreShowChannels", is_list=True), timeout)
        _, queue = await asyncio.wait_for(self.send_action("QueueStatus", is_list=True), timeout)
        events = self.tracker.reconcile(channels, queue, self.clock.now())
        if events:
            log.info("ami.reconciled", events=len(events), channels=len(channels))
            await self._outbox.put(events)  # in order with what was read before the disconnect
        self.reconciled.set()

    async def _keepalive(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.ping_interval)
            if self.clock.monotonic() - self._last_rx < s.ping_interval:
                continue
            try:
                await asyncio.wait_for(self.send_action("Ping"), s.connect_timeout)
            except TimeoutError:
                raise AmiProtocolError("no answer to Ping") from None

    # -- handing over --------------------------------------------------------------------------------------

    async def submit(self, events: Sequence[ContactEvent]) -> None:
        """Hand events to ingest, retrying while the store is unavailable (duplicates are safe)."""
        delay = self.settings.reconnect_initial
        while True:
            try:
                results = await self.sink.submit(events)
                break
            except StoreUnavailable:
                self.stats.submit_retries += 1
                log.warning("ami.submit_retry", events=len(events))
                await asyncio.sleep(self.backoff(delay))
                delay = min(self.settings.reconnect_max, delay * 2)
            except Exception as exc:  # noqa: BLE001 - a batch ingest cannot take must not stop the stream
                # Retrying would fail the same way and block every later call: keep the batch, go on.
                log.error("ami.submit_failed", events=len(events), error=type(exc).__name__)
                raw = msgspec.json.encode(list(events))
                await self._quarantine(raw, f"ingest failed: {type(exc).__name__}: {exc}"[:500],
                                       f"batch/{events[0].source_event_id}/{len(events)}" if events else "batch")
                return
        self.stats.events += len(events)
        for r in results:
            if r.status == "accepted":
                self.stats.accepted += 1
            elif r.status == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1
                log.warning("ami.event_rejected", source_event_id=r.source_event_id, field=r.field,
                            message=r.message)

    async def _quarantine(self, raw: bytes, error: str, offset: int | str) -> None:
        ref = f"{self._session_ref}/{offset}"
        delay = self.settings.reconnect_initial
        while True:
            try:
                await self.quarantine(raw, error, ref)
                break
            except StoreUnavailable:
                await asyncio.sleep(self.backoff(delay))
                delay = min(self.settings.reconnect_max, delay * 2)
        self.stats.quarantined += 1
        if self.metrics is not None:
            self.metrics.quarantined.labels(adapter=ADAPTER).inc()
        log.warning("ami.frame_quarantined", error=error, offset=offset, bytes=len(raw))


def db_quarantine(pool: Any, source: str) -> QuarantineFn:
    """A quarantine function storing into PostgreSQL's ``quarantine`` table (translating driver errors)."""
    import asyncpg

    from gateway.quarantine import quarantine

    async def store(raw: bytes, error: str, ref: str) -> None:
        try:
            await quarantine(pool, adapter=ADAPTER, source=source, source_ref=ref, error=error, raw=raw)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable("PostgreSQL is unavailable") from exc

    return store


def setup_ami(app: web.Application) -> None:
    """Run the AMI client as a cleanup context, only when ``[ami] enabled = true``."""
    settings = app[keys.SETTINGS]
    if not settings.ami.enabled:
        return

    async def ami_ctx(app: web.Application) -> AsyncIterator[None]:
        client = AmiClient(
            settings.ami,
            app[keys.INGEST],
            quarantine=db_quarantine(app[keys.DB], settings.ami.source),
            clock=app[keys.CLOCK],
            metrics=app[keys.METRICS],
        )
        app[keys.AMI] = client
        task = asyncio.create_task(client.run(), name="ami-client")
        yield
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.drain(), settings.shutdown_grace_seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(ami_ctx)
