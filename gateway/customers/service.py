"""Customer rules: prepare documents (normalise, hash, mask), upsert, import NDJSON, resolve identifiers.

- A document's identifiers are normalised (:func:`gateway.identity.normalize`), hashed under the
  newest key and masked; the raw values are dropped here and never reach the store or a log. The
  customer number is always one of the identifiers, so a channel can resolve by it. Holding numbers
  are validated (Luhn for cards) and kept masked only.
- An upsert replaces the complete document in one transaction.
- An import streams NDJSON: lines are decoded and validated one by one, good ones are written in
  chunks of :data:`IMPORT_CHUNK` documents (one transaction and one COPY per table each), bad ones
  reported by line number and field. Memory is bounded by the chunk size and the error cap, not by
  the file.
- Resolution matches the digests of an identifier under every configured key (key rotation) and
  answers resolved / ambiguous (all candidates) / unidentified — never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, BinaryIO

import asyncpg
import structlog

from gateway.clock import Clock
from gateway.customers import store
from gateway.customers.model import CustomerDocument, CustomerView, Outcome, Resolution, decode_document
from gateway.customers.store import PreparedCustomer
from gateway.db.pool import translate_errors
from gateway.errors import NotFound, ValidationFailed
from gateway.identity import IdentityHasher, InvalidIdentifier, mask, normalize

log = structlog.get_logger("gateway.customers")

IMPORT_CHUNK = 500
MAX_LINE_BYTES = 1024 * 1024
MAX_REPORTED_ERRORS = 1000
_CARD_PRODUCTS = frozenset({"debit_card", "credit_card"})


def prepare(doc: CustomerDocument, customer_no: str, hasher: IdentityHasher) -> PreparedCustomer:
    """Turn a validated document into storable rows; raise ValidationFailed naming a bad identifier."""
    seen: set[bytes] = set()
    identifiers: list[tuple[str, bytes, str]] = []

    def add(kind: str, value: str, field: str) -> None:
        try:
            normalized = normalize(kind, value)
        except InvalidIdentifier as exc:
            raise ValidationFailed.field(field, str(exc)) from None
        digest = hasher.digest(kind, normalized)
        if digest not in seen:
            seen.add(digest)
            identifiers.append((kind, digest, mask(kind, normalized)))

    add("customer_no", customer_no, "customer_no")
    for i, ident in enumerate(doc.identifiers):
        add(ident.kind, ident.value, f"identifiers[{i}].value")
    holdings = []
    for i, h in enumerate(doc.holdings):
        masked_number = None
        if h.number is not None:
            kind = "card_no" if h.product_type in _CARD_PRODUCTS else "account_no"
            try:
                masked_number = mask(kind, normalize(kind, h.number))
            except InvalidIdentifier as exc:
                raise ValidationFailed.field(f"holdings[{i}].number", str(exc)) from None
        holdings.append((h.product_type, h.product_name, masked_number, h.balance, h.balance_band, h.currency,
                         h.status, h.opened_on))
    return PreparedCustomer(
        customer_no=customer_no,
        profile=(customer_no, doc.name, doc.customer_type, doc.segment, doc.tier, doc.vip, doc.home_branch,
                 doc.relationship_manager, doc.service_group, doc.preferred_language, doc.preferred_channel,
                 doc.do_not_call, doc.marketing_opt_out, doc.risk_rating, doc.aum_band),
        identifiers=tuple(identifiers),
        holdings=tuple(holdings),
        entitlements=tuple(
            (e.channel, e.enabled, e.daily_limit, e.per_transaction_limit, e.currency, e.restriction,
             e.restriction_reason, e.restricted_at) for e in doc.entitlements),
        cases=tuple(
            (c.case_ref, c.kind, c.category, c.status, c.channel, c.summary, c.opened_at, c.due_at, c.closed_at,
             c.sla_hours) for c in doc.cases),
        credit_applications=tuple(
            (a.application_ref, a.product, a.amount, a.currency, a.stage, a.status, a.accepted_at,
             a.investigation_at, a.approval_at, a.disbursement_at) for a in doc.credit_applications),
        appointments=tuple(
            (a.appointment_ref, a.kind, a.scheduled_at, a.branch, a.host, a.purpose, a.status)
            for a in doc.appointments),
    )


# --- import report and NDJSON lines --------------------------------------------------------------


@dataclasses.dataclass
class ImportReport:
    """The outcome of an import: counts, and the first :data:`MAX_REPORTED_ERRORS` bad lines."""

    lines: int = 0
    loaded: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def reject(self, line: int, field: str, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "field": field, "message": message})

    def as_dict(self) -> dict[str, Any]:
        errors = sorted(self.errors, key=lambda e: e["line"])
        return {"lines": self.lines, "loaded": self.loaded, "rejected": self.rejected, "errors": errors,
                "errors_truncated": self.rejected > len(self.errors)}


async def ndjson_lines(
    chunks: AsyncIterable[bytes], max_line: int = MAX_LINE_BYTES
) -> AsyncIterator[tuple[int, bytes | None]]:
    """Split a byte stream into numbered lines; blank lines are skipped, an over-long line yields None.

    Only one line (at most ``max_line`` bytes) and one chunk are held at a time.
    """
    buf = bytearray()
    lineno = 0
    too_long = False
    async for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not too_long:
                    buf += chunk[start:]
                    if len(buf) > max_line:
                        too_long = True
                        buf.clear()
                break
            lineno += 1
            if too_long:
                too_long = False
                yield lineno, None
            else:
                buf += chunk[start:nl]
                if len(buf) > max_line:
                    yield lineno, None
                elif buf.strip():
                    yield lineno, bytes(buf)
            buf.clear()
            start = nl + 1
    if too_long or buf.strip():
        lineno += 1
        yield lineno, (None if too_long else bytes(buf))


class CustomerService:
    """The customer read model's rules over one PostgreSQL pool and the identity hasher."""

    def __init__(self, pool: asyncpg.Pool, hasher: IdentityHasher, clock: Clock) -> None:
        self.pool = pool
        self.hasher = hasher
        self.clock = clock

    async def upsert(self, customer_no: str, body: bytes) -> tuple[CustomerView, bool]:
        """Replace one complete document atomically; return it as stored and whether it is new."""
        doc = decode_document(body)
        if doc.customer_no is not None and doc.customer_no != customer_no:
            raise ValidationFailed.field("customer_no", "does not match the customer number in the path")
        prepared = prepare(doc, customer_no, self.hasher)
        with translate_errors():
            async with self.pool.acquire() as conn, conn.transaction():
                written = await store.write_documents(conn, [prepared], self.hasher.key_version, self.clock.now())
        view = await store.load_customer(self.pool, written.ids[customer_no])
        assert view is not None
        created = customer_no in written.inserted
        log.info("customer.upserted", customer_id=view.profile.id, created=created)
        return view, created

    async def get(self, customer_no: str) -> CustomerView:
        view = await store.load_customer_by_no(self.pool, customer_no)
        if view is None:
            raise NotFound("no customer with this customer number")
        return view

    async def load(self, customer_id: int) -> CustomerView | None:
        """A customer's full document by id (for the screen-pop), or None."""
        return await store.load_customer(self.pool, customer_id)

    async def resolve(self, kind: str, value: str) -> Resolution:
        """Resolve one identifier; raise ValidationFailed (field = the kind) when it is not valid."""
        try:
            normalized = normalize(kind, value)
        except InvalidIdentifier as exc:
            raise ValidationFailed.field(kind, str(exc)) from None
        with translate_errors():
            async with self.pool.acquire() as conn:
                candidates = await store.find_candidates(conn, self.hasher.all_digests(kind, normalized))
        outcome: Outcome = (
            "unidentified" if not candidates else "resolved" if len(candidates) == 1 else "ambiguous")
        return Resolution(outcome, kind, mask(kind, normalized), tuple(candidates))

    async def import_ndjson(self, chunks: AsyncIterable[bytes]) -> ImportReport:
        """Load NDJSON documents (one per line, each with its ``customer_no``); report the bad lines.

        Pipelined: while PostgreSQL stores one chunk, the next is parsed and prepared. Chunks are
        written one after the other on one connection, so a later line for a customer wins.
        """
        report = ImportReport()
        batch: list[tuple[int, PreparedCustomer]] = []
        in_batch: set[str] = set()
        writing: asyncio.Task[None] | None = None
        with translate_errors():
            async with self.pool.acquire() as conn:

                async def hand_over() -> None:
                    nonlocal writing, batch
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self._flush(conn, batch, report)) if batch else None
                    batch = []
                    in_batch.clear()

                try:
                    async for lineno, line in ndjson_lines(chunks):
                        report.lines = lineno
                        if lineno % 20 == 0:
                            await asyncio.sleep(0)  # let the write of the previous chunk progress
                        prepared = self._prepare_line(report, lineno, line)
                        if prepared is None:
                            continue
                        if prepared.customer_no in in_batch:
                            await hand_over()  # a later line for the same customer wins
                        batch.append((lineno, prepared))
                        in_batch.add(prepared.customer_no)
                        if len(batch) >= IMPORT_CHUNK:
                            await hand_over()
                    await hand_over()
                    if writing is not None:
                        await writing
                finally:
                    if writing is not None and not writing.done():
                        writing.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await writing
        log.info("customers.imported", lines=report.lines, loaded=report.loaded, rejected=report.rejected)
        return report

    def _prepare_line(self, report: ImportReport, lineno: int, line: bytes | None) -> PreparedCustomer | None:
        if line is None:
            report.reject(lineno, "body", f"line longer than {MAX_LINE_BYTES} bytes")
            return None
        try:
            doc = decode_document(line)
            if doc.customer_no is None:
                raise ValidationFailed.field("customer_no", "required")
            return prepare(doc, doc.customer_no, self.hasher)
        except ValidationFailed as exc:
            first = exc.errors[0]
            report.reject(lineno, first["field"], first["message"])
            return None

    async def _flush(self, conn: asyncpg.Connection, batch: list[tuple[int, PreparedCustomer]],
                     report: ImportReport) -> None:
        if not batch:
            return
        docs = [p for _, p in batch]
        try:
            async with conn.transaction():
                await store.write_documents(conn, docs, self.hasher.key_version, self.clock.now())
            report.loaded += len(docs)
        except asyncpg.PostgresError:
            # A row the database refuses (a rule we do not check in Python): retry one by one, so the
            # good documents of the chunk still load and the bad one is reported by its line.
            for lineno, doc in batch:
                try:
                    async with conn.transaction():
                        await store.write_documents(conn, [doc], self.hasher.key_version, self.clock.now())
                    report.loaded += 1
                except asyncpg.PostgresError as exc:
                    report.reject(lineno, "body", f"refused by the database ({type(exc).__name__})")

    async def rehash(self, chunks: AsyncIterable[bytes]) -> ImportReport:
        """Re-digest the core identifiers of known customers under the newest key from an NDJSON extract.

        Only identifier rows change (profiles and lists are left alone); customers not in the
        database are reported. This is the key-rotation step: the gateway keeps no raw identifier, so
        the raw values come from core banking's extract.
        """
        report = ImportReport()
        batch: list[tuple[int, PreparedCustomer]] = []

        async def flush(conn: asyncpg.Connection) -> None:
            if not batch:
                return
            async with conn.transaction():
                ids = await store.ids_by_customer_no(conn, [p.customer_no for _, p in batch])
                owned = [(ids[p.customer_no], p) for _, p in batch if p.customer_no in ids]
                await store.replace_identifiers(conn, owned, self.hasher.key_version)
            for lineno, p in batch:
                if p.customer_no in ids:
                    report.loaded += 1
                else:
                    report.reject(lineno, "customer_no", "no such customer")
            batch.clear()

        with translate_errors():
            async with self.pool.acquire() as conn:
                async for lineno, line in ndjson_lines(chunks):
                    report.lines = lineno
                    prepared = self._prepare_line(report, lineno, line)
                    if prepared is None:
                        continue
                    if any(p.customer_no == prepared.customer_no for _, p in batch):
                        await flush(conn)
                    batch.append((lineno, prepared))
                    if len(batch) >= IMPORT_CHUNK:
                        await flush(conn)
                await flush(conn)
        return report


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")  # closed by file_chunks


async def file_chunks(path: str, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A local file as an async stream of chunks (the CLI's import and rehash); reads off the event loop."""
    loop = asyncio.get_running_loop()
    fh = await loop.run_in_executor(None, _open_binary, path)
    try:
        while chunk := await loop.run_in_executor(None, fh.read, size):
            yield chunk
    finally:
        fh.close()


__all__: Sequence[str] = ("CustomerService", "ImportReport", "file_chunks", "ndjson_lines", "prepare")
