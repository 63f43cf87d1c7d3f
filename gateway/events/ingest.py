"""Ingest: validate → resolve identity → group-commit → acknowledge → publish (DESIGN.md §4–§5).

:class:`Ingestor` is the :class:`gateway.events.sink.EventSink` of the app.
``submit(events)`` prepares the events in-process (identifier normalisation,
keyed hashes, masked forms, ids, the interaction each belongs to), then queues
them for a committer. Committers take everything queued — the submissions of
many concurrent requests — and write it in **one transaction** (group commit);
each submitter's future is resolved only after that transaction committed, so
a 2xx is never sent for an event that is not durable. While one transaction
is running the next group is forming, so batching adapts to load without a
fixed delay; ``commit_window_ms`` only caps how long a lone event may wait for
company.

Inside the transaction:

1. dedupe keys are inserted (``ON CONFLICT DO NOTHING``): PostgreSQL decides
   what is new; a retried event answers *duplicate* with the original's id;
2. identifiers are resolved against ``customer_identifiers`` by digest;
3. events are inserted (one statement for the whole group);
4. interactions are upserted, merging state so that out-of-order and repeated
   events converge (later lifecycle states win, a link only moves to a
   stronger one);
5. an ``identity.linked`` event that resolves to one customer teaches the
   gateway its device ids, and earlier interactions carrying them are linked.

The usual group — no retried event, no ``identity.linked`` — takes a shorter way with the same result:
its identifiers are resolved, then keys, events and interactions are written by **one statement**, its
own transaction (``store.COMMIT_FRESH``). Its key insert has no ``ON CONFLICT``, so an event stored
already fails the whole statement, which wrote nothing, and the group is committed as above.

After commit the events are offered to the :class:`Publisher` (Redis), which
never blocks ingest.

**Early ringing.** A ``call.ringing`` at an agent is what a screen-pop waits for, and a durable
commit costs milliseconds. When ``on_ringing`` is set (by the screen-pop hub) and no other event of
the same interaction is in flight in this process, the ringing event is handed to ``on_ringing`` with
a coroutine that links it at once — its identifiers resolved and the interaction's stored link read
(with the customers' versions, for the summary cache), in one statement, with the same rules as the
transaction — *while* its group commits. Everything committed before the ringing event arrived is
visible to that read, so the pop misses nothing that preceded it; the hub remembers the event by its
dedupe key, so the committed copy does not pop twice. If the early link fails, the committed copy pops
as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import msgspec
import structlog

from gateway.clock import Clock, new_id_text
from gateway.db.pool import UNAVAILABLE_ERRORS
from gateway.errors import StoreUnavailable
from gateway.events import store
from gateway.events.model import ContactEvent, PublishedEvent, encode
from gateway.events.partitions import PartitionManager, month_of
from gateway.events.publish import Publisher
from gateway.events.sink import IngestResult
from gateway.events.types import CALL_STATE_ORDER, EVENT_TYPES
from gateway.identity import IdentityHasher, InvalidIdentifier, mask, normalize
from gateway.jsoncheck import nul_field
from gateway.metrics import Metrics

log = structlog.get_logger("gateway.ingest")

INTERACTION_NAMESPACE = uuid.UUID("6f1c2b7e-3d4a-5b8c-9e0f-1a2b3c4d5e6f")
INTERNAL_INTERACTION_PREFIX = "cg:"
IDENTIFY_CACHE = 100_000

STRONG_KINDS = frozenset({"customer_no", "national_id", "card_no", "account_no", "online_user_id"})
# link_strength: 0 unidentified, 1 ambiguous, 2 identified by a weak identifier, 3 by a strong one, 9 by hand
STRENGTH_AMBIGUOUS, STRENGTH_WEAK, STRENGTH_STRONG, STRENGTH_MANUAL = 1, 2, 3, 9

_CHANNEL_KIND = {"voice": "call", "email": "thread", "branch": "visit"}
_ENDING_TYPES = frozenset({"call.ended", "call.abandoned", "session.ended", "complaint.closed"})
_STATUS = {
    "session.started": ("active", 1), "session.ended": ("ended", 4),
    "message.received": ("open", 1), "message.sent": ("replied", 2),
    "complaint.opened": ("open", 1), "complaint.updated": ("open", 1), "complaint.closed": ("closed", 4),
    "survey.answered": ("recorded", 4), "feedback.received": ("recorded", 4),
    "appointment.booked": ("booked", 1), "visit.checked_in": ("visited", 3),
}


def interaction_uuid(source: str, external_id: str) -> uuid.UUID:
    """The interaction's id: computable in-process from the channel's own key."""
    if external_id.startswith(INTERNAL_INTERACTION_PREFIX):
        with contextlib.suppress(ValueError):
            return uuid.UUID(external_id[len(INTERNAL_INTERACTION_PREFIX):])
    return uuid.uuid5(INTERACTION_NAMESPACE, f"{source}\x1f{external_id}")


_NAMESPACE_BYTES = INTERACTION_NAMESPACE.bytes


@functools.lru_cache(maxsize=IDENTIFY_CACHE)  # a call's events, and a thread's messages, share them
def interaction_id_text(source: str, external_id: str) -> str:
    """:func:`interaction_uuid` in its canonical text, made without a UUID object: ingest keys interactions
    by this text, and ``uuid5`` and ``str`` took 4 µs per new call."""
    if external_id.startswith(INTERNAL_INTERACTION_PREFIX):
        return str(interaction_uuid(source, external_id))
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{source}\x1f{external_id}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50        # version 5
    h[8] = (h[8] & 0x3F) | 0x80        # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def interaction_kind(event: ContactEvent) -> str:
    kind = EVENT_TYPES[event.type][0]
    if kind == "any":
        return _CHANNEL_KIND.get(event.channel, "session")
    return kind


def state_of(event: ContactEvent) -> tuple[str, int]:
    if event.type in CALL_STATE_ORDER:
        return CALL_STATE_ORDER[event.type]
    return _STATUS.get(event.type, ("active" if interaction_kind(event) == "session" else "open", 0))


class _Identified(msgspec.Struct, frozen=True, gc=False):
    """One identifier's contribution to a prepared event: ``shown`` its masked form ``{kind, masked}``,
    ``lookup`` (kind, digests under every key, masked), ``digest`` the newest key's; and the three lists
    of an event that carries only this identifier (the usual case), made once. Shared by the events that
    carry the identifier, so never changed."""

    shown: dict[str, str]
    lookup: tuple[str, list[bytes], str]
    digest: bytes
    only_shown: list[dict[str, str]]
    only_lookup: list[tuple[str, list[bytes], str]]
    only_digest: list[bytes]


class Prepared(msgspec.Struct, gc=False):
    """An event ready for the transaction: everything that needs no database computed in-process.

    Like the other structs made per event (:class:`ContactEvent`, :class:`PublishedEvent`,
    :class:`IngestResult`) it is not tracked by the cyclic garbage collector (it never takes part in a
    reference cycle): under batch load the collector's passes over thousands of in-flight events took
    about 7% of the CPU, in pauses of up to 80 ms."""

    event: ContactEvent
    key: tuple[str, str]
    event_id: str                                     # UUIDv7, canonical text
    received_at: dt.datetime
    interaction_id: str                               # canonical text of the interaction's UUID
    external_interaction_id: str
    kind: str
    # (shared with other events when the event has one identifier: never changed)
    identifiers: list[dict[str, str]]                 # [{kind, masked}]
    lookups: list[tuple[str, list[bytes], str]]       # (kind, digests under every key, masked)
    digests: list[bytes]                              # newest-key digests, kept on the interaction
    customer_id: int | None = None
    identification: str = "unidentified"
    candidates: tuple[int, ...] = ()
    strength: int = 0
    linked_by: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Committed:
    results: dict[tuple[str, str], IngestResult]
    first: dict[tuple[str, str], Prepared]   # which submission of a key was written (the others are duplicates)


_NOTHING_COMMITTED = _Committed({}, {})   # a submission whose events were all rejected (never changed)


@dataclasses.dataclass(slots=True)
class _Job:
    items: list[Prepared]
    future: asyncio.Future[_Committed]


class Ingestor:
    """The app's event sink: group commit with acknowledgement after commit."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        hasher: IdentityHasher,
        clock: Clock,
        metrics: Metrics,
        publisher: Publisher | None,
        partitions: PartitionManager,
        *,
        workers: int = 2,
        max_batch: int = 2000,
        window_ms: float = 1.0,
    ) -> None:
        self._pool = pool
        self._hasher = hasher
        self._clock = clock
        self._metrics = metrics
        self._publisher = publisher
        self._partitions = partitions
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers = workers
        self._max_batch = max_batch
        self._window = window_ms / 1000
        self._tasks: list[asyncio.Task[None]] = []
        # interaction id -> events of it submitted and not yet committed (see "Early ringing" above)
        self._inflight: dict[str, int] = {}
        # (source, source_event_id, the linked message to come): see "Early ringing" above
        self.on_ringing: Callable[[str, str, Awaitable[PublishedEvent | None]], None] | None = None
        # Normalising a phone number with phonenumbers costs ~60 µs; a call's events repeat the caller's
        # number and callers call again, so the (kind, raw value) → (masked, digests) work is memoised.
        self._identify = functools.lru_cache(maxsize=IDENTIFY_CACHE)(self._identify_uncached)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._committer(), name=f"committer-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        while not self._queue.empty():  # let queued jobs commit before the pool closes
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # -- preparation (no I/O) ----------------------------------------------------------------------
    def _identify_uncached(self, kind: str, value: str) -> _Identified | str:
        """What an identifier contributes to a prepared event (see :class:`_Identified`), or the reason the
        value is invalid. Memoised: the objects are shared by the events that carry the identifier."""
        try:
            normalized = normalize(kind, value)
        except InvalidIdentifier as exc:
            return str(exc)
        masked = mask(kind, normalized)
        digests = self._hasher.all_digests(kind, normalized)
        shown = {"kind": kind, "masked": masked}
        lookup = (kind, digests, masked)
        return _Identified(shown, lookup, digests[0], [shown], [lookup], [digests[0]])

    def prepare(self, event: ContactEvent, received_at: dt.datetime, nul_free: bool = False
                ) -> Prepared | IngestResult:
        # PostgreSQL stores no U+0000 in text or jsonb: refuse, naming the field
        if not nul_free and b"\\u0000" in encode(event):
            field = nul_field(msgspec.to_builtins(event))
            if field:
                return IngestResult("rejected", event.source_event_id, field=field,
                                    message="contains a NUL character")
        if len(event.identifiers) == 1:   # the usual event: its identifier's lists are shared, not made
            ident = event.identifiers[0]
            found = self._identify(ident.kind, ident.value)
            if isinstance(found, str):
                return IngestResult("rejected", event.source_event_id, field="identifiers[0].value", message=found)
            identifiers, lookups, digests = found.only_shown, found.only_lookup, found.only_digest
        else:
            identifiers, lookups, digests = [], [], []
            for i, ident in enumerate(event.identifiers):
                found = self._identify(ident.kind, ident.value)
                if isinstance(found, str):
                    return IngestResult("rejected", event.source_event_id, field=f"identifiers[{i}].value",
                                        message=found)
                identifiers.append(found.shown)
                lookups.append(found.lookup)
                digests.append(found.digest)
        external = event.interaction_id or f"event:{event.source_event_id}"
        return Prepared(
            event=event,
            key=(event.source, event.source_event_id),
            event_id=new_id_text(),
            received_at=received_at,
            interaction_id=interaction_id_text(event.source, external),
            external_interaction_id=external,
            kind=interaction_kind(event),
            identifiers=identifiers,
            lookups=lookups,
            digests=digests,
        )

    # -- the sink ---------------------------------------------------------------------------------------
    async def submit(self, events: Sequence[ContactEvent], *, nul_free: bool = False) -> list[IngestResult]:
        """Store the events; return one result per event after the commit (see the module docstring).
        ``nul_free``: the caller has seen that no string of the events holds U+0000 (which PostgreSQL
        cannot store), e.g. in the JSON they were decoded from."""
        received_at = self._clock.now()
        prepared: list[Prepared | IngestResult] = [self.prepare(e, received_at, nul_free) for e in events]
        items = [p for p in prepared if isinstance(p, Prepared)]
        committed = _NOTHING_COMMITTED
        if items:
            # events in flight per interaction: only early ringing asks (without on_ringing, nothing to keep)
            inflight = self._inflight if self.on_ringing is not None else None
            if inflight is not None:
                for p in items:
                    inflight[p.interaction_id] = inflight.get(p.interaction_id, 0) + 1
            try:
                if inflight is not None:
                    self._ring_early(items)
                months = {month_of(p.event.occurred_at) for p in items}
                if not self._partitions.covers(months):
                    await self._create_partitions(months)
                fut: asyncio.Future[_Committed] = asyncio.get_running_loop().create_future()
                self._queue.put_nowait(_Job(items, fut))  # unbounded: never waits
                committed = await fut
            finally:
                if inflight is not None:
                    for p in items:
                        left = inflight[p.interaction_id] - 1
                        if left:
                            inflight[p.interaction_id] = left
                        else:
                            del inflight[p.interaction_id]
        out: list[IngestResult] = []
        counts: dict[tuple[str, str], int] = {}
        seen: dict[tuple[str, str], IngestResult] = {}
        for p in prepared:
            if isinstance(p, IngestResult):
                out.append(p)
                counts["-", "rejected"] = counts.get(("-", "rejected"), 0) + 1
                continue
            result = committed.results[p.key]
            if p.key in seen or (result.status == "accepted" and committed.first[p.key] is not p):
                # the same event twice in one group (a concurrent retry, or twice in one request):
                # only the first was written; the others answer as its duplicates
                result = IngestResult("duplicate", p.event.source_event_id, result.event_id, result.interaction_id,
                                      result.customer_id)
            seen[p.key] = result
            out.append(result)
            key = (p.event.channel, result.status)
            counts[key] = counts.get(key, 0) + 1
        for (channel, outcome), n in counts.items():
            self._metrics.count_event(channel, outcome, n)
        return out

    # -- early ringing (see the module docstring) ---------------------------------------------------------
    def _ring_early(self, items: Sequence[Prepared]) -> None:
        for p in items:
            if p.event.type == "call.ringing" and p.event.agent_id and self._inflight.get(p.interaction_id) == 1:
                assert self.on_ringing is not None
                self.on_ringing(p.event.source, p.event.source_event_id, self._early_link(msgspec.structs.replace(p)))

    async def _early_link(self, p: Prepared) -> PublishedEvent | None:
        """The ringing event's message as it will be published, linked now (None: it could not be)."""
        try:
            async with self._pool.acquire() as conn:
                early = await store.early_link(conn, p.interaction_id, [d for _k, ds, _m in p.lookups for d in ds])
        except Exception as exc:  # the published copy after the commit pops instead
            log.warning("ingest.early_ringing_failed", error=type(exc).__name__)
            return None
        _link_from(early.matches, [p])
        if early.stored is not None and early.stored[3] >= p.strength:  # the upsert's rule: only stronger wins
            p.customer_id, p.identification, p.candidates, p.strength = early.stored
        message = self._message(p, p.customer_id, p.identification)
        if p.customer_id is not None and p.customer_id in early.versions:
            message.customer_version = early.versions[p.customer_id]
        return message

    async def _create_partitions(self, months: set[dt.date]) -> None:
        try:
            await self._partitions.ensure(months)
        except UNAVAILABLE_ERRORS as exc:
            raise StoreUnavailable("PostgreSQL is unreachable", store="postgresql") from exc

    # -- group commit -----------------------------------------------------------------------------------
    async def _take_group(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        size = len(jobs[0].items)
        while size < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if self._window <= 0 or len(jobs) > 1:
                    break
                await asyncio.sleep(self._window)
                if self._queue.empty():
                    break
                continue
            jobs.append(job)
            size += len(job.items)
        return jobs

    async def _committer(self) -> None:
        while True:
            jobs = await self._take_group()
            try:
                results = await self._commit([p for j in jobs for p in j.items])
            except UNAVAILABLE_ERRORS as exc:
                err = StoreUnavailable("PostgreSQL is unreachable", store="postgresql")
                err.__cause__ = exc
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(err)
                continue
            except Exception as exc:  # a bug or a constraint we did not foresee: fail these requests, go on
                log.exception("ingest.commit_failed", events=sum(len(j.items) for j in jobs))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(results)

    async def _commit(self, items: list[Prepared]) -> _Committed:
        # First occurrence of each key only; later copies in the same group are answered from it.
        unique: dict[tuple[str, str], Prepared] = {}
        for p in items:
            unique.setdefault(p.key, p)
        ordered = sorted(unique.values(), key=lambda p: p.key)
        if not any(p.event.type == "identity.linked" for p in ordered):
            try:
                async with self._pool.acquire() as conn:
                    return self._committed(unique, ordered, {}, await self._commit_fresh(conn, ordered))
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != store.FRESH_KEY_CONSTRAINT:
                    raise
                for p in ordered:  # a duplicate among them: nothing was stored; the careful way below
                    p.customer_id, p.identification, p.candidates, p.strength, p.linked_by = (
                        None, "unidentified", (), 0, None)
        async with self._pool.acquire() as conn, conn.transaction():
            new_keys = await store.insert_keys(conn, [
                (p.key[0], p.key[1], p.event_id, p.event.occurred_at, p.interaction_id) for p in ordered
            ])
            fresh = [p for p in ordered if p.key in new_keys]
            old = await store.select_keys(conn, [p.key for p in ordered if p.key not in new_keys])
            if fresh:
                await self._resolve(conn, fresh)
                await store.insert_events(conn, self._event_rows(fresh))
                await store.upsert_interactions(conn, self._interaction_rows(fresh))
                await self._learn(conn, fresh)
                links = await store.interaction_links(conn, sorted({p.interaction_id for p in fresh}))
            else:
                links = {}
        return self._committed(unique, fresh, old, links)

    async def _commit_fresh(self, conn: asyncpg.Connection, items: list[Prepared]
                            ) -> dict[str, tuple[int | None, str]]:
        """The usual group — no duplicates, nothing to learn — in two round trips: resolve its identifiers,
        then store everything in one statement (its own transaction). Resolving just before rather than
        inside the transaction sees the same: at READ COMMITTED every statement reads what is committed
        when it starts."""
        await self._resolve(conn, items)
        return await store.commit_fresh(conn, self._event_rows(items), self._interaction_rows(items))

    def _committed(self, unique: dict[tuple[str, str], Prepared], fresh: list[Prepared],
                   old: dict[tuple[str, str], tuple[uuid.UUID, uuid.UUID]],
                   links: dict[str, tuple[int | None, str]]) -> _Committed:
        """The results of a committed group; its new events offered to the publisher."""
        results: dict[tuple[str, str], IngestResult] = {}
        messages = []
        for p in fresh:
            # the interaction's link after this commit: a later event may have identified an earlier one
            customer_id, identification = links.get(p.interaction_id, (p.customer_id, p.identification))
            message = self._message(p, customer_id, identification)
            results[p.key] = IngestResult("accepted", p.event.source_event_id, p.event_id, p.interaction_id,
                                          customer_id)
            messages.append(message)
        for key, (event_id, interaction_id) in old.items():
            results[key] = IngestResult("duplicate", key[1], str(event_id), str(interaction_id))
        if self._publisher is not None:
            self._publisher.offer(messages)
        return _Committed(results, unique)

    # -- identity -----------------------------------------------------------------------------------------
    async def _resolve(self, conn: asyncpg.Connection, items: Sequence[Prepared]) -> None:
        wanted = [d for p in items for (_k, ds, _m) in p.lookups for d in ds]
        _link_from(await store.resolve_digests(conn, wanted), items)

    async def _learn(self, conn: asyncpg.Connection, items: Sequence[Prepared]) -> None:
        """identity.linked resolved strongly to one customer: learn its device ids, relink the past."""
        for p in items:
            if p.event.type != "identity.linked" or p.strength != STRENGTH_STRONG or p.customer_id is None:
                continue
            learned = [(kind, ds[0], masked) for kind, ds, masked in p.lookups if kind == "device_id"]
            if not learned:
                continue
            version = self._hasher.key_version
            await store.learn_identifiers(conn, [(p.customer_id, k, d, m, version) for k, d, m in learned])
            relinked = await store.relink_by_digests(conn, p.customer_id, [d for _k, d, _m in learned],
                                                     STRENGTH_WEAK, "auto:device_id")
            await store.add_link_history(conn, relinked, "auto", p.customer_id, f"source:{p.event.source}",
                                         "device linked by identity.linked")

    # -- rows -----------------------------------------------------------------------------------------------
    @staticmethod
    def _event_rows(items: Sequence[Prepared]) -> list[tuple[Any, ...]]:
        return [(p.event_id, p.event.occurred_at, p.received_at, p.event.source, p.event.source_event_id,
                 p.event.channel, p.event.type, p.interaction_id, p.external_interaction_id, p.customer_id,
                 p.identification, p.identifiers, p.event.agent_id, p.event.queue, p.event.direction,
                 p.event.subject, p.event.outcome, p.event.reason, p.event.attributes) for p in items]

    @staticmethod
    def _interaction_rows(items: Sequence[Prepared]) -> list[tuple[Any, ...]]:
        """One row per interaction: its events merged in one pass, in time order (see UPSERT_INTERACTION)."""
        by_id: dict[str, list[Prepared]] = {}
        for p in items:
            group = by_id.get(p.interaction_id)
            if group is None:
                by_id[p.interaction_id] = [p]
            else:
                group.append(p)
        rows = []
        for iid in sorted(by_id):
            group = by_id[iid]
            if len(group) > 1:
                group.sort(key=_occurred_at)
            first = group[0]
            best = first                                   # the strongest link; the first of equals
            status, rank = state_of(first.event)           # the furthest state; the first of equals
            answered = ended = talk = hold = None
            agent = outcome = reason = queue = direction = subject = None   # latest / earliest given
            digests: set[bytes] = set()
            for p in group:
                e = p.event
                if p.strength > best.strength:
                    best = p
                state = state_of(e)
                if state[1] > rank:
                    status, rank = state
                at, kind = e.occurred_at, e.type
                if kind == "call.answered" and (answered is None or at < answered):
                    answered = at
                if kind in _ENDING_TYPES and (ended is None or at > ended):
                    ended = at
                if kind == "call.ended":
                    talk = _num(e.attributes.get("talk_seconds"), talk)
                    hold = _num(e.attributes.get("hold_seconds"), hold)
                if e.agent_id is not None:
                    agent = e.agent_id
                if e.outcome is not None:
                    outcome = e.outcome
                if e.reason is not None:
                    reason = e.reason
                if queue is None:
                    queue = e.queue
                if direction is None:
                    direction = e.direction
                if subject is None:
                    subject = e.subject
                digests.update(p.digests)
            last = group[-1].event
            rows.append((
                iid, first.event.source, first.external_interaction_id, first.kind, first.event.channel,
                best.customer_id, best.identification, store.array_literal(best.candidates),
                best.strength, best.linked_by, store.array_literal(sorted(digests)),
                status, rank, first.event.occurred_at, answered, ended, last.occurred_at, talk, hold, agent,
                queue, direction, subject, outcome, reason, len(group), last.type,
            ))
        return rows

    @staticmethod
    def _message(p: Prepared, customer_id: int | None, identification: str) -> PublishedEvent:
        e = p.event
        return PublishedEvent(p.event_id, e.type, e.channel, e.source, e.source_event_id, e.occurred_at,
                              p.interaction_id, customer_id, identification, p.candidates, e.agent_id,
                              e.queue, p.identifiers)


def _link_from(matches: dict[bytes, set[int]], items: Sequence[Prepared]) -> None:
    """Set each item's link from the customers owning its identifiers' digests (DESIGN.md §4): strong
    identifiers before weak ones, their intersection (else their union); one customer is identified,
    several are ambiguous (all candidates, never a guess)."""
    for p in items:
        strong: list[set[int]] = []
        weak: list[set[int]] = []
        kinds_by_set: list[tuple[str, set[int]]] = []
        for kind, ds, _masked in p.lookups:
            found: set[int] = set()
            for d in ds:
                found |= matches.get(d, set())
            if found:
                (strong if kind in STRONG_KINDS else weak).append(found)
                kinds_by_set.append((kind, found))
        groups = strong or weak
        if not groups:
            continue
        base = set.intersection(*groups)
        if not base:
            base = set.union(*groups)
        if len(base) == 1:
            (customer_id,) = base
            p.customer_id = customer_id
            p.identification = "identified"
            p.strength = STRENGTH_STRONG if strong else STRENGTH_WEAK
            kind = next(k for k, s in kinds_by_set if customer_id in s and (k in STRONG_KINDS) == bool(strong))
            p.linked_by = f"auto:{kind}"
        else:
            p.identification = "ambiguous"
            p.candidates = tuple(sorted(base))
            p.strength = STRENGTH_AMBIGUOUS


def _occurred_at(p: Prepared) -> dt.datetime:
    return p.event.occurred_at


def _num(value: Any, default: float | None) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return default
