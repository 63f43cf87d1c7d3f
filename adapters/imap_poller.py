"""The IMAP transport of the email adapter: pull mail, hand events to the sink, then mark the mail.

One :class:`ImapPoller` per configured mailbox (``[imap]``) runs as a
cleanup-context task of the app when ``imap.enabled`` is true. A session:

1. connect (``ssl``, ``starttls`` or plain), log in, re-read CAPABILITY, SELECT
   the mailbox and note its UIDVALIDITY;
2. **sync**: UIDs above the cursor (``imap_cursor`` in PostgreSQL, keyed by
   account + mailbox) are fetched in batches with ``BODY.PEEK[]`` (reading does
   not set ``\\Seen``); each mail is parsed by :func:`adapters.email_mime.parse`;
   parsed events go to ``sink.submit`` in one call; a mail that cannot be parsed
   — or that the ingest rejects — goes to the quarantine with its raw bytes and
   stays unmarked in the mailbox for a person to see. Only **after** ``submit``
   returned (committed) is the batch marked (``\\Seen``, or moved to
   ``processed_folder``) and the cursor advanced. A crash in between re-reads
   the batch next time; the events deduplicate on their Message-ID, so nothing
   is stored twice;
3. wait for news: IDLE where the server offers it (renewed every
   ``idle_seconds``), else sleep ``poll_interval``; then sync again.

When UIDVALIDITY differs from the cursor's, the mailbox was rebuilt and its UIDs
mean other mails: the poller re-reads it from UID 1 (duplicates are answered as
duplicates by the ingest, never stored twice) and replaces the cursor.

Any failure — connection lost, server restarted, a command timing out,
PostgreSQL unavailable (``StoreUnavailable`` from ``submit``) — ends the session;
the poller reconnects after a delay doubling from ``reconnect_min_seconds`` to
``reconnect_max_seconds`` (with jitter), reset by a session that logged in.
Log lines carry counts and UIDs, never addresses, subjects or bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web
from aioimaplib import aioimaplib

from adapters import email_mime
from adapters.imap_cursor import Cursor, ImapCursorStore
from gateway import keys
from gateway.clock import Clock
from gateway.errors import GatewayError, ValidationFailed
from gateway.events.model import ContactEvent
from gateway.events.sink import EventSink
from gateway.metrics import Metrics
from gateway.quarantine import quarantine
from gateway.settings import ImapSettings

log = structlog.get_logger("adapters.imap")

ADAPTER = "imap"
_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
_UID_RE = re.compile(rb"UID (\d+)")
_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')

T = TypeVar("T")


class ImapError(Exception):
    """The server refused a command (NO/BAD), or the connection was lost; the session restarts."""


def quote_mailbox(name: str) -> str:
    """An IMAP quoted string for an (ASCII) mailbox name."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(resp: Any, what: str) -> Any:
    if resp.result != "OK":
        text = b" ".join(line for line in resp.lines if isinstance(line, bytes))[:200]
        raise ImapError(f"{what} failed: {resp.result} {text.decode('ascii', 'replace')}")
    return resp


def parse_internaldate(value: bytes | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.decode("ascii"), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def parse_fetch(lines: list[Any]) -> tuple[int | None, bytes | None, dt.datetime | None]:
    """(uid, raw message, internaldate) from one UID FETCH response's lines."""
    raw: bytes | None = None
    meta = b""
    for line in lines:
        if isinstance(line, bytearray):
            raw = bytes(line) if raw is None else raw
        elif isinstance(line, bytes):
            meta += b" " + line
    uid = _UID_RE.search(meta)
    date = _INTERNALDATE_RE.search(meta)
    return (int(uid.group(1)) if uid else None, raw, parse_internaldate(date.group(1) if date else None))


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs of a (UID) SEARCH response; the last line is the completion text."""
    uids: list[int] = []
    for line in lines[:-1]:
        if isinstance(line, bytes):
            tokens = line.split()
            if tokens and tokens[0].upper() == b"SEARCH":
                tokens = tokens[1:]
            if tokens and all(t.isdigit() for t in tokens):
                uids.extend(int(t) for t in tokens)
    return uids


class ImapPoller:
    """Pulls one mailbox into the sink. ``run()`` loops until cancelled; ``stats`` tells what it did."""

    def __init__(self, cfg: ImapSettings, *, sink: EventSink, pool: asyncpg.Pool, clock: Clock,
                 metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.sink = sink
        self.pool = pool
        self.clock = clock
        self.account = f"{cfg.user}@{cfg.host}:{cfg.port}"
        self.cursors = ImapCursorStore(pool)
        self.sessions = 0             # sessions that logged in and selected the mailbox
        self.submitted = 0            # mails whose event was committed (accepted or duplicate)
        self.quarantined = 0
        self.idle = False             # the current session waits with IDLE
        self.uidvalidity: int | None = None
        self.last_error: str | None = None
        self._changed = asyncio.Condition()
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()

    # -- progress, for operators and tests -------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (without polling) until ``predicate()`` holds; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        delay = self.cfg.reconnect_min_seconds
        while True:
            logged_in = self.sessions
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ImapError, aioimaplib.AioImapException, GatewayError,
                    asyncpg.PostgresError, ConnectionError) as exc:
                self.last_error = type(exc).__name__
                log.warning("imap.session_ended", error=type(exc).__name__, detail=str(exc)[:200],
                            mailbox=self.cfg.mailbox)
            except Exception as exc:  # a bug must not stop the poller for good: log it and reconnect
                self.last_error = type(exc).__name__
                log.exception("imap.session_failed", error=type(exc).__name__, mailbox=self.cfg.mailbox)
            finally:
                await self._close()
                self.idle = False
                await self._notify()
            if self.sessions > logged_in:
                delay = self.cfg.reconnect_min_seconds
            await asyncio.sleep(delay * (1 + random.random() * 0.2))
            delay = min(delay * 2, self.cfg.reconnect_max_seconds)

    async def _session(self) -> None:
        await self._connect()
        uidvalidity = await self._select()
        self.sessions += 1
        self.last_error = None
        log.info("imap.session_started", mailbox=self.cfg.mailbox, idle=self._has("IDLE"))
        await self._notify()
        while True:
            # sync until a pass finds nothing new: a mail that arrived during a pass was announced in a
            # response we already read, so the server would not announce it again at IDLE
            while await self.sync(uidvalidity):
                pass
            await self._wait_for_news()

    # -- connection ------------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.cfg.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost.set()
        client = self._client
        if client is not None:
            # wake a pending IDLE wait: the server will not push anything any more
            client.protocol.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)

    async def _call(self, aw: Awaitable[T]) -> T:
        """Run one command; fail fast when the connection drops instead of waiting for the timeout."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=self.cfg.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self._lost.is_set():
            raise ConnectionError("IMAP connection lost")
        raise TimeoutError("IMAP command timed out")

    def _has(self, capability: str) -> bool:
        return self._client is not None and self._client.has_capability(capability)

    async def _connect(self) -> None:
        self._lost = asyncio.Event()
        ctx = self._ssl_context() if self.cfg.security == "ssl" else None
        client = aioimaplib.IMAP4(host=self.cfg.host, port=self.cfg.port, timeout=self.cfg.timeout,
                                  conn_lost_cb=self._on_lost, ssl_context=ctx)
        self._client = client
        await self._call(client.wait_hello_from_server())
        if self.cfg.security == "starttls":
            await self._starttls(client)
        _ok(await self._call(client.login(self.cfg.user, self.cfg.password.get())), "LOGIN")
        # capabilities grow after login (IDLE, MOVE, UIDPLUS are often announced only then)
        await self._call(client.protocol.capability())

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        if not client.has_capability("STARTTLS"):
            raise ImapError("server does not offer STARTTLS")
        proto = client.protocol
        cmd = aioimaplib.Command("STARTTLS", proto.new_tag(), loop=proto.loop)
        _ok(await self._call(proto.execute(cmd)), "STARTTLS")
        loop = asyncio.get_running_loop()
        transport = await self._call(loop.start_tls(proto.transport, proto, self._ssl_context(),
                                                    server_hostname=self.cfg.host))
        proto.transport = transport
        await self._call(proto.capability())

    async def _select(self) -> int:
        assert self._client is not None
        if self.cfg.processed_action == "move":
            # create the target once; NO when it exists already is fine
            await self._call(self._client.create(quote_mailbox(self.cfg.processed_folder)))
        resp = _ok(await self._call(self._client.select(quote_mailbox(self.cfg.mailbox))), "SELECT")
        for line in resp.lines:
            if isinstance(line, bytes) and (m := _UIDVALIDITY_RE.search(line)):
                self.uidvalidity = int(m.group(1))
                return self.uidvalidity
        raise ImapError("SELECT did not report UIDVALIDITY")

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if not self._lost.is_set():
            with contextlib.suppress(Exception):
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), 2.0)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()

    # -- waiting ---------------------------------------------------------------------------------
    async def _wait_for_news(self) -> None:
        client = self._client
        assert client is not None
        if not self._has("IDLE"):
            self.idle = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.cfg.poll_interval)
            if self._lost.is_set():
                raise ConnectionError("IMAP connection lost")
            return
        idle_task = await self._call(client.idle_start(timeout=self.cfg.idle_seconds))
        self.idle = True
        await self._notify()
        try:
            await client.wait_server_push(timeout=self.cfg.idle_seconds + self.cfg.timeout)
        except TimeoutError:
            pass
        finally:
            self.idle = False
        if self._lost.is_set():
            idle_task.cancel()
            raise ConnectionError("IMAP connection lost")
        client.idle_done()
        await self._call(idle_task)

    # -- one pass --------------------------------------------------------------------------------
    async def sync(self, uidvalidity: int) -> int:
        """Process every mail above the cursor, batch by batch; each batch commits before it is marked.

        Returns how many mails it found.
        """
        assert self._client is not None
        cursor = await self.cursors.get(self.account, self.cfg.mailbox)
        if cursor is None or cursor.uidvalidity != uidvalidity:
            if cursor is not None:
                log.warning("imap.uidvalidity_changed", old=cursor.uidvalidity, new=uidvalidity)
            cursor = Cursor(uidvalidity, 0)
            await self.cursors.save(self.account, self.cfg.mailbox, cursor)
        resp = _ok(await self._call(self._client.uid_search(f"UID {cursor.last_uid + 1}:*", charset=None)),
                   "UID SEARCH")
        uids = parse_search(resp.lines)
        # "n:*" always matches the highest UID, even when it is below n
        uids = sorted(u for u in set(uids) if u > cursor.last_uid)
        for start in range(0, len(uids), self.cfg.batch_size):
            await self._process_batch(uidvalidity, uids[start:start + self.cfg.batch_size])
        return len(uids)

    async def _fetch(self, uid: int) -> tuple[bytes, dt.datetime | None] | None:
        assert self._client is not None
        resp = _ok(await self._call(self._client.uid("fetch", str(uid), "(UID INTERNALDATE BODY.PEEK[])")),
                   "UID FETCH")
        got_uid, raw, internaldate = parse_fetch(resp.lines)
        if raw is None or (got_uid is not None and got_uid != uid):
            return None  # expunged meanwhile
        return raw, internaldate

    async def _process_batch(self, uidvalidity: int, uids: list[int]) -> None:
        events: list[ContactEvent] = []
        event_uids: list[int] = []
        raws: dict[int, bytes] = {}
        for uid in uids:
            fetched = await self._fetch(uid)
            if fetched is None:
                continue
            raw, internaldate = fetched
            raws[uid] = raw
            try:
                event = email_mime.parse(raw, source=self.cfg.source,
                                         fallback_time=internaldate or self.clock.now())
            except ValidationFailed as exc:
                await self._quarantine(uidvalidity, uid, f"{exc.errors[0]['field']}: {exc.errors[0]['message']}",
                                       raw)
                continue
            events.append(event)
            event_uids.append(uid)
        processed: list[int] = []
        if events:
            results = await self.sink.submit(events)  # StoreUnavailable ends the session: nothing marked
            for uid, result in zip(event_uids, results, strict=True):
                if result.status == "rejected":
                    await self._quarantine(uidvalidity, uid, f"rejected by ingest: {result.field}: {result.message}",
                                           raws[uid])
                else:
                    processed.append(uid)
        if processed:
            await self._mark(processed)
        self.submitted += len(processed)
        await self.cursors.save(self.account, self.cfg.mailbox, Cursor(uidvalidity, max(uids)))
        log.info("imap.batch_committed", mails=len(uids), submitted=len(processed), last_uid=max(uids))
        await self._notify()

    async def _quarantine(self, uidvalidity: int, uid: int, error: str, raw: bytes) -> None:
        ref = f"{self.account}/{self.cfg.mailbox}/{uidvalidity}/{uid}"
        await quarantine(self.pool, adapter=ADAPTER, source=self.cfg.source, source_ref=ref, error=error, raw=raw)
        self.quarantined += 1
        if self.metrics is not None:
            self.metrics.quarantined.labels(adapter=ADAPTER).inc()
        log.warning("imap.mail_quarantined", uid=uid, uidvalidity=uidvalidity)

    async def _mark(self, uids: list[int]) -> None:
        assert self._client is not None
        uid_set = ",".join(str(u) for u in uids)
        if self.cfg.processed_action == "seen":
            _ok(await self._call(self._client.uid("store", uid_set, "+FLAGS.SILENT", "(\\Seen)")), "UID STORE")
            return
        folder = quote_mailbox(self.cfg.processed_folder)
        if self._has("MOVE"):
            _ok(await self._call(self._client.uid("move", uid_set, folder)), "UID MOVE")
            return
        _ok(await self._call(self._client.uid("copy", uid_set, folder)), "UID COPY")
        _ok(await self._call(self._client.uid("store", uid_set, "+FLAGS.SILENT", "(\\Deleted)")), "UID STORE")
        if self._has("UIDPLUS"):
            _ok(await self._call(self._client.uid("expunge", uid_set)), "UID EXPUNGE")
        else:
            _ok(await self._call(self._client.expunge()), "EXPUNGE")


def setup_imap(app: web.Application) -> None:
    """Run the poller as a cleanup context when ``[imap] enabled = true`` (after the ingest is up)."""
    cfg = app[keys.SETTINGS].imap
    if not cfg.enabled:
        return

    async def imap_ctx(app: web.Application) -> AsyncIterator[None]:
        poller = ImapPoller(cfg, sink=app[keys.INGEST], pool=app[keys.DB], clock=app[keys.CLOCK],
                            metrics=app[keys.METRICS])
        app[keys.IMAP_POLLER] = poller
        task = asyncio.create_task(poller.run(), name="imap-poller")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(imap_ctx)
