"""Screen-pop rules: the summary of a customer (cache → PostgreSQL), and the pop of a call or lookup.

A pop has one of three states (DESIGN.md §4, §6):

- ``identified``: one customer; the pop carries the summary;
- ``ambiguous``: several customers share the identifier; the pop carries every candidate (masked),
  never a guess; the agent's choice links the interaction (:func:`gateway.events.links.set_link`);
- ``unidentified``: no customer; the desktop shows a search box.

Every pop built here is audited (:meth:`ScreenPopService.audit_pop`) by the caller that shows it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import uuid

import asyncpg
import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import audit, redis_keys
from gateway.clock import Clock, new_id
from gateway.customers.service import CustomerService
from gateway.events import links
from gateway.events.model import PublishedEvent
from gateway.screenpop import store
from gateway.screenpop.cache import RedisBreaker, SummaryCache
from gateway.screenpop.model import CallInfo, CandidateLine, Pop, Summary, SummaryFacts
from gateway.screenpop.rules import AlertRule, lookback
from gateway.screenpop.summary import FAILURE_HOURS, FAILURE_TYPES, build_summary
from gateway.settings import Settings
from gateway.tasks import cancel_and_wait

log = structlog.get_logger("gateway.screenpop")
_encoder = msgspec.json.Encoder(decimal_format="string")
CURRENT_CALL_WINDOW = dt.timedelta(hours=2)
LOCAL_FACTS = 2000


def pop_json(pop: Pop) -> bytes:
    return _encoder.encode(pop)


def pop_frame(pop: Pop) -> bytes:
    """The WebSocket frame of a pop: ``{"type": "pop", "pop": {...}}``."""
    return b'{"type":"pop","pop":' + pop_json(pop) + b"}"


def _uuid(text: str | None) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text.removeprefix("cg:"))
    except ValueError:
        return None


class ScreenPopService:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, customers: CustomerService, rules: tuple[AlertRule, ...],
                 clock: Clock, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis
        self.customers = customers
        self.rules = rules
        self.clock = clock
        self.settings = settings
        self.breaker = RedisBreaker()
        self.audit_writer = audit.AuditWriter(pool)   # started and stopped with the app (setup_screenpop)
        self.cache = SummaryCache(redis, settings.screenpop.summary_cache_ttl_seconds, self.breaker)
        self._lookback = max(lookback(rules), dt.timedelta(hours=FAILURE_HOURS))
        self._event_types = sorted({t for r in rules for t in r.event_types()} | set(FAILURE_TYPES))
        self._reasons = sorted({x for r in rules for x in r.params.get("reasons", ())})
        self._warming: dict[int, asyncio.Task[SummaryFacts | None]] = {}
        # the facts last read in this process, by customer: used only while their version is current
        self._local: collections.OrderedDict[int, SummaryFacts] = collections.OrderedDict()

    # -- the summary ---------------------------------------------------------------------------------
    def warm(self, customer_id: int) -> None:
        """Fill the customer's cache entry in the background (a caller in the IVR or the queue)."""
        if customer_id in self._warming or self.breaker.open:
            return
        task = asyncio.create_task(self._facts(customer_id), name="summary-warm")
        self._warming[customer_id] = task
        task.add_done_callback(lambda t: self._warmed(customer_id, t))

    async def stop(self) -> None:
        """Cancel the warm-ups in flight (before the pools close)."""
        await cancel_and_wait(*self._warming.values())
        await self.audit_writer.stop()

    def _warmed(self, customer_id: int, task: asyncio.Task[SummaryFacts | None]) -> None:
        self._warming.pop(customer_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("screenpop.warm_failed", customer_id=customer_id, error=type(task.exception()).__name__)

    async def facts(self, customer_id: int, version: str | None = None) -> SummaryFacts | None:
        """The customer's facts: from this process's memo or the Redis cache when their version is current,
        else from PostgreSQL. ``version``, when the caller just read it (the early link of a ringing call
        does, in its one statement), saves reading it again.

        A warm-up of the same customer in flight is waited for first, so its read is not done twice."""
        warming = self._warming.get(customer_id)
        if warming is not None:
            await asyncio.wait([warming])  # its outcome does not matter here: only that it is over
        return await self._facts(customer_id, version)

    async def _facts(self, customer_id: int, version: str | None = None) -> SummaryFacts | None:
        local = self._local.get(customer_id)
        if version is not None and local is not None and local.version == version:
            self.cache.count(hit=True)
            return local
        if version is None:
            version, cached = await asyncio.gather(store.customer_version(self.pool, customer_id),
                                                   self.cache.get(customer_id))
            if version is None:
                return None
        else:
            cached = await self.cache.get(customer_id)
        for candidate in (local, cached):
            if candidate is not None and candidate.version == version:
                self.cache.count(hit=True)
                self._remember(candidate)
                return candidate
        self.cache.count(hit=False)
        facts = await store.read_facts(self.pool, customer_id, version, self.clock.now(), self._lookback,
                                       self._event_types, self._reasons)
        if facts is not None:
            self._remember(facts)
            await self.cache.put(facts)
        return facts

    def _remember(self, facts: SummaryFacts) -> None:
        cid = facts.customer.profile.id
        self._local[cid] = facts
        self._local.move_to_end(cid)
        if len(self._local) > LOCAL_FACTS:
            self._local.popitem(last=False)

    async def summary(self, customer_id: int, current_interaction: str | None = None,
                      version: str | None = None) -> Summary | None:
        facts = await self.facts(customer_id, version)
        if facts is None:
            return None
        return build_summary(facts, self.rules, self.clock.now(), current_interaction)

    # -- pops ----------------------------------------------------------------------------------------
    def url(self, interaction_id: str | None, agent_id: str | None) -> str:
        return self.settings.screenpop.pop_url_template.format(
            base_url=self.settings.base_url(), interaction_id=interaction_id or "", agent_id=agent_id or "")

    async def _pop(self, *, pop_id: str, state: str, customer_id: int | None, candidate_ids: tuple[int, ...],
                   agent_id: str | None, interaction_id: str | None, occurred_at: dt.datetime | None,
                   call: CallInfo | None, version: str | None = None) -> Pop:
        summary = None
        candidates: tuple[CandidateLine, ...] = ()
        if state == "identified" and customer_id is not None:
            summary = await self.summary(customer_id, interaction_id, version)
            if summary is None:
                state = "unidentified"
        elif state == "ambiguous":
            candidates = await store.candidates(self.pool, candidate_ids)
        else:
            state = "unidentified"
        return Pop(pop_id, state, agent_id, interaction_id, occurred_at, self.clock.now(),
                   self.url(interaction_id, agent_id), call, summary, candidates)

    async def pop_for_ringing(self, message: PublishedEvent) -> Pop:
        """The pop of a committed ``call.ringing`` event (see :meth:`gateway.events.ingest.Ingestor._message`)."""
        call = CallInfo(message.channel, message.queue, None, tuple(message.identifiers), {})
        return await self._pop(
            pop_id=message.id, state=message.identification or "unidentified",
            customer_id=message.customer_id, candidate_ids=tuple(message.candidates),
            agent_id=message.agent_id, interaction_id=message.interaction_id, occurred_at=message.occurred_at,
            call=call, version=message.customer_version)

    async def pop_for_interaction(self, interaction_id: str, agent_id: str | None = None) -> Pop | None:
        """The pop of an interaction as it stands now (reconnects, pop URLs, other vendors' desktops)."""
        iid = _uuid(interaction_id)
        if iid is None:
            return None
        brief = await store.interaction(self.pool, iid)
        if brief is None:
            return None
        ringing = await store.ringing_event(self.pool, iid, brief.started_at)
        call = CallInfo(brief.channel, brief.queue, brief.direction,
                        tuple(ringing.identifiers) if ringing else (), dict(ringing.attributes) if ringing else {})
        return await self._pop(
            pop_id=str(ringing.id) if ringing else str(iid), state=brief.identification,
            customer_id=brief.customer_id, candidate_ids=brief.candidates,
            agent_id=agent_id or brief.agent_id, interaction_id=str(iid),
            occurred_at=ringing.occurred_at if ringing else brief.started_at, call=call)

    async def pop_for_identifier(self, kind: str, value: str) -> Pop:
        """A pop from one identifier (raises ValidationFailed naming the kind when it is not valid)."""
        res = await self.customers.resolve(kind, value)
        state = {"resolved": "identified"}.get(res.outcome, res.outcome)
        call = CallInfo("voice", None, None, ({"kind": kind, "masked": res.masked},), {})
        return await self._pop(pop_id=str(new_id()), state=state, customer_id=res.customer_id,
                               candidate_ids=tuple(c.customer_id for c in res.candidates), agent_id=None,
                               interaction_id=None, occurred_at=None, call=call)

    async def choose(self, interaction_id: str, customer_id: int, *, actor: str, role: str, reason: str,
                     request_id: str | None = None) -> Pop | None:
        """An agent chose a candidate (or a search result): link the interaction, return its new pop."""
        iid = _uuid(interaction_id)
        if iid is None:
            return None
        await links.set_link(self.pool, iid, actor=actor, role=role, reason=reason, customer_id=customer_id,
                             request_id=request_id)
        return await self.pop_for_interaction(str(iid))

    # -- the agent's current pop ------------------------------------------------------------------------
    async def store_current(self, agent_id: str, frame: bytes, origin: str) -> None:
        """Keep the pop for a reconnecting desktop and publish it to every instance (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(redis_keys.current_pop(agent_id), frame, ex=self.settings.screenpop.current_pop_ttl_seconds)
        pipe.publish(redis_keys.pop_channel(agent_id), origin.encode() + b"\n" + frame)
        await pipe.execute()

    async def current_frame(self, agent_id: str) -> bytes | None:
        """The agent's current pop frame: from Redis, or (Redis down) rebuilt from the call ringing or
        answered at the agent in PostgreSQL."""
        if not self.breaker.open:
            try:
                raw = await self.redis.get(redis_keys.current_pop(agent_id))
                return raw if isinstance(raw, bytes) else None
            except (RedisError, OSError) as exc:
                self.breaker.failed(exc, "screenpop.current_pop_unavailable")
        iid = await store.agent_current_call(self.pool, agent_id, self.clock.now() - CURRENT_CALL_WINDOW)
        if iid is None:
            return None
        pop = await self.pop_for_interaction(str(iid), agent_id)
        return pop_frame(pop) if pop else None

    async def clear_current(self, agent_id: str, pop_interaction: str | None = None) -> None:
        """Forget the agent's current pop (after wrap-up); best effort."""
        try:
            await self.redis.delete(redis_keys.current_pop(agent_id))
            await self.redis.publish(redis_keys.pop_channel(agent_id),
                                     b"-\n" + _encoder.encode({"type": "pop.cleared",
                                                               "interaction_id": pop_interaction}))
        except (RedisError, OSError) as exc:
            self.breaker.failed(exc, "screenpop.current_pop_unavailable")

    async def audit_pop(self, pop: Pop, *, actor: str, role: str, reason: str | None = None,
                        request_id: str | None = None) -> None:
        await self.audit_writer.record(
            actor=actor, actor_role=role, action="screenpop",
            customer_id=pop.summary.customer_id if pop.summary else None,
            interaction_id=_uuid(pop.interaction_id), reason=reason, request_id=request_id,
            details={"pop_id": pop.pop_id, "state": pop.state, "agent_id": pop.agent_id,
                     "candidates": [c.customer_id for c in pop.candidates],
                     "alerts": [a.rule for a in pop.summary.alerts] if pop.summary else []})
