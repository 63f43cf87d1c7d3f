"""The customer document: what core banking sends (validated with msgspec) and what the gateway shows.

A *document* is one customer, complete: profile, identifiers, holdings, entitlements, cases, credit
applications and appointments. ``PUT /v1/customers/{customer_no}`` and each NDJSON line of an import
carry one. Decoding checks types, lengths and enums in one pass; :func:`check_document` adds the
rules msgspec cannot express (identifier validity, credit stage timestamps, unique references,
amount ranges). Every error is a :class:`gateway.errors.ValidationFailed` naming the field with a
JSON path (``identifiers[1].value``, ``credit_applications[0].approval_at``).

Read side: rows become the frozen value objects below (``CustomerView`` and its parts); they carry
masked identifiers only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.errors import ValidationFailed
from gateway.identity import mask_name
from gateway.jsoncheck import reject_nul

IdentifierKind = Literal[
    "phone", "email", "customer_no", "national_id", "card_no", "account_no", "device_id", "online_user_id"
]
CustomerType = Literal["personal", "corporate"]
Segment = Literal["private_banking", "wealth", "affluent", "mass", "sme", "corporate"]
Tier = Literal["diamond", "platinum", "gold", "silver", "standard"]
RiskRating = Literal["C1", "C2", "C3", "C4", "C5"]
ContactChannel = Literal[
    "voice", "online_banking", "mobile_banking", "email", "branch", "sms", "wechat", "corporate_banking"
]
ProductType = Literal[
    "current_account", "savings_account", "time_deposit", "debit_card", "credit_card", "personal_loan",
    "mortgage", "corporate_loan", "wealth_product", "fund", "insurance", "precious_metal",
]
HoldingStatus = Literal["active", "dormant", "frozen", "closed"]
EntitlementChannel = Literal[
    "online_banking", "mobile_banking", "corporate_banking", "phone_banking", "wechat", "atm", "counter", "quick_pay"
]
Restriction = Literal["block", "freeze"]
CaseKind = Literal["complaint", "service_request", "feedback"]
CaseStatus = Literal["open", "in_progress", "resolved", "closed"]
CreditStage = Literal["accepted", "investigation", "approval", "disbursement"]
CreditStatus = Literal["in_progress", "approved", "rejected", "withdrawn", "disbursed"]
AppointmentKind = Literal["reception_day", "branch_visit", "advisor_call"]
AppointmentStatus = Literal["booked", "attended", "cancelled", "no_show"]

CREDIT_STAGES: tuple[str, ...] = ("accepted", "investigation", "approval", "disbursement")

CUSTOMER_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CustomerNo = Annotated[str, Meta(pattern=CUSTOMER_NO_PATTERN)]
Ref = Annotated[str, Meta(min_length=1, max_length=64)]
Short = Annotated[str, Meta(min_length=1, max_length=64)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Text = Annotated[str, Meta(max_length=500)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Digits = Annotated[str, Meta(pattern=r"^[0-9 -]{6,40}$")]
Aware = Annotated[dt.datetime, Meta(tz=True)]

MAX_AMOUNT = decimal.Decimal("1e18")


class IdentifierIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: IdentifierKind
    value: Annotated[str, Meta(min_length=1, max_length=128)]


class HoldingIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A product the customer holds. ``number`` (raw card/account number) is stored masked only."""

    product_type: ProductType
    status: HoldingStatus
    product_name: Name | None = None
    number: Digits | None = None
    balance: decimal.Decimal | None = None
    balance_band: Short | None = None
    currency: Currency = "CNY"
    opened_on: dt.date | None = None


class EntitlementIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channel: EntitlementChannel
    enabled: bool
    daily_limit: decimal.Decimal | None = None
    per_transaction_limit: decimal.Decimal | None = None
    currency: Currency = "CNY"
    restriction: Restriction | None = None
    restriction_reason: Text | None = None
    restricted_at: Aware | None = None


class CaseIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    case_ref: Ref
    kind: CaseKind
    category: Short
    status: CaseStatus
    opened_at: Aware
    channel: Short | None = None
    summary: Text | None = None
    due_at: Aware | None = None
    closed_at: Aware | None = None
    sla_hours: Annotated[int, Meta(ge=1, le=100_000)] | None = None


class CreditApplicationIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    application_ref: Ref
    product: Short
    amount: decimal.Decimal
    stage: CreditStage
    status: CreditStatus
    accepted_at: Aware
    currency: Currency = "CNY"
    investigation_at: Aware | None = None
    approval_at: Aware | None = None
    disbursement_at: Aware | None = None


class AppointmentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    appointment_ref: Ref
    kind: AppointmentKind
    scheduled_at: Aware
    status: AppointmentStatus
    branch: Short | None = None
    host: Short | None = None
    purpose: Text | None = None


class CustomerDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One complete customer as core banking sends it."""

    name: Name
    customer_type: CustomerType
    segment: Segment
    tier: Tier
    customer_no: CustomerNo | None = None
    vip: bool = False
    home_branch: Short | None = None
    relationship_manager: Short | None = None
    service_group: Short | None = None
    preferred_language: Annotated[str, Meta(pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "zh-CN"
    preferred_channel: ContactChannel | None = None
    do_not_call: bool = False
    marketing_opt_out: bool = False
    risk_rating: RiskRating | None = None
    aum_band: Short | None = None
    identifiers: Annotated[list[IdentifierIn], Meta(max_length=32)] = []
    holdings: Annotated[list[HoldingIn], Meta(max_length=200)] = []
    entitlements: Annotated[list[EntitlementIn], Meta(max_length=32)] = []
    cases: Annotated[list[CaseIn], Meta(max_length=500)] = []
    credit_applications: Annotated[list[CreditApplicationIn], Meta(max_length=100)] = []
    appointments: Annotated[list[AppointmentIn], Meta(max_length=200)] = []


_document_decoder = msgspec.json.Decoder(CustomerDocument)
_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _field_and_message(message: str) -> tuple[str, str]:
    """Split msgspec's ``"Expected `str`, got `int` - at `$.holdings[0].status`"`` into (field, message)."""
    m = _PATH_RE.search(message)
    path = m.group("path").lstrip(".") if m else ""
    text = message[: m.start()] if m else message
    for prefix, short in (("Object contains unknown field", "unknown field"),
                          ("Object missing required field", "required")):
        if text.startswith(prefix):
            name = text.split("`")[1] if "`" in text else ""
            path = f"{path}.{name}".lstrip(".")
            text = short
    return path or "body", text


def decode_document(body: bytes | str) -> CustomerDocument:
    """Decode and type-check one document; raise ValidationFailed naming the field."""
    try:
        doc = _document_decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, message = _field_and_message(str(exc))
        raise ValidationFailed.field(field, message) from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed.field("body", f"invalid JSON: {exc}") from None
    raw = body.encode() if isinstance(body, str) else body
    if b"\\u0000" in raw:  # PostgreSQL stores no U+0000: refuse, naming the field
        reject_nul(msgspec.to_builtins(doc))
    check_document(doc)
    return doc


def _check_amount(field: str, value: decimal.Decimal | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if not value.is_finite() or abs(value) >= MAX_AMOUNT:
        raise ValidationFailed.field(field, "out of range")
    if positive and value <= 0:
        raise ValidationFailed.field(field, "must be greater than 0")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValidationFailed.field(field, "at most 2 decimal places")


def _unique(items: list[str], path: str, name: str) -> None:
    seen: set[str] = set()
    for i, ref in enumerate(items):
        if ref in seen:
            raise ValidationFailed.field(f"{path}[{i}].{name}", "duplicate reference in this document")
        seen.add(ref)


def check_document(doc: CustomerDocument) -> None:
    """Rules beyond types: amounts, stage timestamps, unique references, restrictions."""
    for i, h in enumerate(doc.holdings):
        _check_amount(f"holdings[{i}].balance", h.balance)
    for i, e in enumerate(doc.entitlements):
        _check_amount(f"entitlements[{i}].daily_limit", e.daily_limit)
        _check_amount(f"entitlements[{i}].per_transaction_limit", e.per_transaction_limit)
        if e.restriction is None and (e.restriction_reason or e.restricted_at):
            raise ValidationFailed.field(f"entitlements[{i}].restriction", "required with a reason or date")
    for i, c in enumerate(doc.cases):
        if c.due_at and c.due_at < c.opened_at:
            raise ValidationFailed.field(f"cases[{i}].due_at", "before opened_at")
        if c.closed_at and c.closed_at < c.opened_at:
            raise ValidationFailed.field(f"cases[{i}].closed_at", "before opened_at")
    _unique([c.case_ref for c in doc.cases], "cases", "case_ref")
    for i, a in enumerate(doc.credit_applications):
        _check_amount(f"credit_applications[{i}].amount", a.amount, positive=True)
        stamps = (a.accepted_at, a.investigation_at, a.approval_at, a.disbursement_at)
        reached = CREDIT_STAGES.index(a.stage)
        previous = a.accepted_at
        for n, (stage, at) in enumerate(zip(CREDIT_STAGES, stamps, strict=True)):
            if n <= reached and at is None:
                raise ValidationFailed.field(f"credit_applications[{i}].{stage}_at",
                                             f"required at stage {a.stage!r}")
            if n > reached and at is not None:
                raise ValidationFailed.field(f"credit_applications[{i}].{stage}_at",
                                             f"not allowed before stage {stage!r}")
            if at is not None:
                if at < previous:
                    raise ValidationFailed.field(f"credit_applications[{i}].{stage}_at",
                                                 "earlier than the previous stage")
                previous = at
    _unique([a.application_ref for a in doc.credit_applications], "credit_applications", "application_ref")
    _unique([a.appointment_ref for a in doc.appointments], "appointments", "appointment_ref")


# --- read side: frozen value objects -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MaskedIdentifier:
    kind: str
    masked: str
    origin: str


@dataclasses.dataclass(frozen=True, slots=True)
class Holding:
    product_type: str
    product_name: str | None
    masked_number: str | None
    balance: decimal.Decimal | None
    balance_band: str | None
    currency: str
    status: str
    opened_on: dt.date | None


@dataclasses.dataclass(frozen=True, slots=True)
class Entitlement:
    channel: str
    enabled: bool
    daily_limit: decimal.Decimal | None
    per_transaction_limit: decimal.Decimal | None
    currency: str
    restriction: str | None
    restriction_reason: str | None
    restricted_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    case_ref: str
    kind: str
    category: str
    status: str
    channel: str | None
    summary: str | None
    opened_at: dt.datetime
    due_at: dt.datetime | None
    closed_at: dt.datetime | None
    sla_hours: int | None

    def is_open(self) -> bool:
        return self.status in ("open", "in_progress")

    def overdue(self, now: dt.datetime) -> bool:
        """Open and past its due time (the SLA breached)."""
        return self.is_open() and self.due_at is not None and self.due_at < now


@dataclasses.dataclass(frozen=True, slots=True)
class CreditApplication:
    application_ref: str
    product: str
    amount: decimal.Decimal
    currency: str
    stage: str
    status: str
    accepted_at: dt.datetime
    investigation_at: dt.datetime | None
    approval_at: dt.datetime | None
    disbursement_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Appointment:
    appointment_ref: str
    kind: str
    scheduled_at: dt.datetime
    status: str
    branch: str | None
    host: str | None
    purpose: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerProfile:
    id: int
    customer_no: str
    name: str
    customer_type: str
    segment: str
    tier: str
    vip: bool
    home_branch: str | None
    relationship_manager: str | None
    service_group: str | None
    preferred_language: str
    preferred_channel: str | None
    do_not_call: bool
    marketing_opt_out: bool
    risk_rating: str | None
    aum_band: str | None
    updated_at: dt.datetime

    @property
    def name_masked(self) -> str:
        return mask_name(self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer's full document as stored: identifiers masked, lists in a stable order."""

    profile: CustomerProfile
    identifiers: tuple[MaskedIdentifier, ...]
    holdings: tuple[Holding, ...]
    entitlements: tuple[Entitlement, ...]
    cases: tuple[Case, ...]
    credit_applications: tuple[CreditApplication, ...]
    appointments: tuple[Appointment, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A customer an identifier matched: enough to choose, nothing raw."""

    customer_id: int
    customer_no_masked: str
    name_masked: str
    customer_type: str
    segment: str
    tier: str
    vip: bool
    matched: tuple[MaskedIdentifier, ...]


Outcome = Literal["resolved", "ambiguous", "unidentified"]


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving one identifier (DESIGN.md §4): never a guess between candidates."""

    outcome: Outcome
    kind: str
    masked: str
    candidates: tuple[Candidate, ...]

    @property
    def customer_id(self) -> int | None:
        return self.candidates[0].customer_id if self.outcome == "resolved" else None
