"""The console's rules: what a filter means, the CSV export, dashboard figures, sampling and scoring, audit.

Every export and every drill-down into an interaction is audited (``export``, ``interaction.view``);
so are QA samples and scores (``qa.sample``, ``qa.score``). Names are masked before they leave the
store; identifiers of events are stored masked already.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import zoneinfo
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg

from gateway import audit
from gateway.clock import Clock
from gateway.console import store
from gateway.console.model import AuditFilter, AuditRow, Dashboard, LogFilter, LogPage, LogRow, SortKey
from gateway.console.qa import QaForm
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.events import store as events_store
from gateway.settings import ConsoleSettings

CSV_BOM = "\ufeff"
CSV_COLUMNS = ("interaction_id", "started_at", "channel", "kind", "direction", "status", "identification",
               "customer_no", "customer_name", "agent_id", "queue", "answered_at", "ended_at", "handle_seconds",
               "outcome", "reason", "subject", "event_count")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TOP_REASONS = 10


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: a leading =, +, -, @ would start a formula, so it gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class ConsoleService:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings: ConsoleSettings, form: QaForm) -> None:
        self._pool = pool
        self._clock = clock
        self.settings = settings
        self.form = form
        self.tz = zoneinfo.ZoneInfo(settings.timezone)

    def local(self, at: dt.datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""

    async def customer_id(self, customer_no: str) -> int:
        cid = await store.customer_id_by_no(self._pool, customer_no)
        if cid is None:
            raise ValidationFailed.field("customer", f"no customer {customer_no!r}")
        return cid

    # -- contact log ---------------------------------------------------------------------------------------

    async def contact_log(self, f: LogFilter, after: SortKey | None) -> LogPage:
        return await store.contact_log_page(self._pool, f, after, self.settings.page_size)

    def _csv_row(self, r: LogRow) -> list[str]:
        values = (r.id, self.local(r.started_at), r.channel, r.kind, r.direction, r.status, r.identification,
                  r.customer_no_masked, r.customer_name_masked, r.agent_id, r.queue, self.local(r.answered_at),
                  self.local(r.ended_at), f"{r.handle_seconds:.0f}" if r.handle_seconds is not None else "",
                  r.outcome, r.reason, r.subject, r.event_count)
        return [csv_cell(v) for v in values]

    async def export_csv(self, f: LogFilter, *, actor: str, actor_role: str, request_id: str,
                         chunk: int = 2000) -> AsyncGenerator[bytes, None]:
        """The filter's rows as UTF-8 CSV with a BOM, in chunks, from a server-side cursor. Audited first."""
        await audit.record(self._pool, actor=actor, actor_role=actor_role, action="export",
                           customer_id=f.customer_id, reason="contact log CSV", request_id=request_id,
                           details={"filter": f.describe()})
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        buffer.write(CSV_BOM)
        writer.writerow(CSV_COLUMNS)
        async with self._pool.acquire() as conn:
            async for rows in store.export_rows(conn, f, chunk=chunk):
                writer.writerows(self._csv_row(r) for r in rows)
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode("utf-8")

    # -- one interaction -----------------------------------------------------------------------------------

    async def interaction(self, iid: uuid.UUID, *, actor: str, actor_role: str, request_id: str
                          ) -> dict[str, Any]:
        async with self._pool.acquire() as conn:
            interaction = await events_store.get_interaction(conn, iid)
            if interaction is None:
                raise NotFound("no such interaction")
            events = await events_store.list_interaction_events(conn, interaction, 1000)
            links = await events_store.list_link_history(conn, iid)
            ids = {c for c in (interaction.customer_id, *interaction.candidates, *(ln.customer_id for ln in links))
                   if c is not None}
            customers = await store.customer_briefs(conn, sorted(ids))
            reviews = await store.interaction_reviews(conn, iid)
            await audit.record(conn, actor=actor, actor_role=actor_role, action="interaction.view",
                               customer_id=interaction.customer_id, interaction_id=iid, reason="console",
                               request_id=request_id)
        return {"interaction": interaction, "events": sorted(events, key=lambda e: (e.occurred_at, e.id)),
                "links": links, "customers": customers, "reviews": reviews}

    # -- dashboard -----------------------------------------------------------------------------------------

    async def dashboard(self, since: dt.datetime, until: dt.datetime) -> Dashboard:
        bucket = "hour" if until - since <= dt.timedelta(days=3) else "day"
        qa_bucket = "day" if until - since <= dt.timedelta(days=31) else "week"
        s = self.settings
        tz = s.timezone
        async with self._pool.acquire() as conn:
            volume = await store.volume(conn, since, until, bucket, tz)
            totals = await store.channel_totals(conn, since, until)
            calls = await store.call_figures(conn, since, until, s.service_level_seconds)
            aht = await store.aht_by_channel(conn, since, until)
            repeated, base = await store.repeat_contacts(conn, since, until, s.repeat_channels(),
                                                         s.repeat_contact_days)
            complaints = await store.open_complaints(conn, self._clock.now())
            reasons = await store.top_reasons(conn, since, until, TOP_REASONS)
            qa_agents = await store.qa_by_agent(conn, since, until)
            qa_time = await store.qa_over_time(conn, since, until, qa_bucket, tz)
        return Dashboard(since, until, bucket, volume, totals, calls, s.service_level_seconds, aht, repeated, base,
                         s.repeat_contact_days, complaints, reasons, qa_agents, qa_time)

    # -- quality review ------------------------------------------------------------------------------------

    async def draw_sample(self, *, since: dt.datetime, until: dt.datetime, agent_id: str | None,
                          channel: str | None, queue: str | None, size: int, actor: str, actor_role: str,
                          request_id: str) -> tuple[int, int]:
        if not 1 <= size <= self.settings.qa_sample_max:
            raise ValidationFailed.field("size", f"from 1 to {self.settings.qa_sample_max}")
        criteria = {"since": since.isoformat(), "until": until.isoformat(), "agent_id": agent_id,
                    "channel": channel, "queue": queue}
        async with self._pool.acquire() as conn, conn.transaction():
            sample_id, drawn = await store.create_sample(conn, self._clock.now(), actor, criteria, since, until,
                                                         agent_id, channel, queue, size)
            await audit.record(conn, actor=actor, actor_role=actor_role, action="qa.sample",
                               request_id=request_id, details={"sample_id": sample_id, "drawn": drawn, **criteria})
        return sample_id, drawn

    async def samples(self) -> list[Any]:
        return await store.list_samples(self._pool, 50)

    async def sample(self, sample_id: int) -> tuple[Any, list[Any]]:
        sample = await store.get_sample(self._pool, sample_id)
        if sample is None:
            raise NotFound("no such sample")
        return sample, await store.sample_reviews(self._pool, sample_id)

    async def review(self, review_id: int) -> Any:
        review = await store.get_review(self._pool, review_id)
        if review is None:
            raise NotFound("no such review")
        return review

    async def score(self, review_id: int, given: dict[str, str], comment: str, *, actor: str, actor_role: str,
                    request_id: str) -> float:
        scores, percent = self.form.score(given)
        comment = comment.strip()
        if len(comment) > 2000:
            raise ValidationFailed.field("comment", "at most 2000 characters")
        async with self._pool.acquire() as conn, conn.transaction():
            review = await store.get_review(conn, review_id)
            if review is None:
                raise NotFound("no such review")
            if review.status == "scored" and review.reviewer != actor.removeprefix("user:"):
                raise Conflict("another supervisor has scored this interaction")
            await store.score_review(conn, review_id, self.form.id, self.form.version, scores, percent,
                                     comment or None, actor.removeprefix("user:"), self._clock.now())
            await audit.record(conn, actor=actor, actor_role=actor_role, action="qa.score",
                               interaction_id=review.interaction_id, request_id=request_id,
                               details={"review_id": review_id, "score_percent": percent})
        return percent

    # -- audit -----------------------------------------------------------------------------------------------

    async def audit_page(self, f: AuditFilter, before_id: int | None) -> tuple[list[AuditRow], int | None]:
        limit = self.settings.page_size
        rows = await store.audit_page(self._pool, f, before_id, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, rows[-1].id if more and rows else None

    async def audit_actions(self) -> list[str]:
        return await store.audit_actions(self._pool)
