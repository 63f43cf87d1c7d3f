"""Stable event types and channels of the canonical contact event (DESIGN.md §3).

An event whose type is not listed here is rejected at ingest (``type``:
unknown event type). Adapters map native events onto these names; adding a
type is a reviewed change to this module, which the JSON Schema and the
README table are built from.
"""

from __future__ import annotations

CHANNELS: dict[str, str] = {
    "voice": "call centre telephony (CTI)",
    "online_banking": "internet banking (网银)",
    "mobile_banking": "mobile banking app (手机银行)",
    "email": "email",
    "branch": "branch / outlet (网点)",
    "sms": "SMS",
    "wechat": "WeChat official account / mini-program",
    "corporate_banking": "corporate online banking (企业网银)",
}

IDENTIFIER_KINDS: tuple[str, ...] = (
    "phone", "email", "customer_no", "national_id", "card_no", "account_no", "device_id", "online_user_id",
)

# type -> (interaction kind it belongs to, description)
EVENT_TYPES: dict[str, tuple[str, str]] = {
    # calls
    "call.offered": ("call", "a call entered a queue (排队)"),
    "call.ringing": ("call", "a call rings at an agent (振铃): the screen-pop trigger"),
    "call.answered": ("call", "an agent answered (接通)"),
    "call.held": ("call", "the caller was put on hold"),
    "call.resumed": ("call", "the caller was taken off hold"),
    "call.transferred": ("call", "the call was transferred (转接)"),
    "call.ended": ("call", "the call ended (挂机); attributes may carry talk and hold seconds"),
    "call.abandoned": ("call", "the caller hung up before an agent answered (放弃)"),
    "call.missed": ("call", "the agent did not answer the ringing call (RONA)"),
    "ivr.selection": ("call", "a choice in the IVR (按键); may carry an IVR-verified customer number"),
    "callback.requested": ("call", "the customer asked to be called back"),
    # any interaction
    "contact.wrapup": ("any", "an agent's wrap-up (小结): disposition and note"),
    "contact.note": ("any", "a note added to an interaction"),
    # digital sessions
    "session.started": ("session", "a digital session began"),
    "session.ended": ("session", "a digital session ended"),
    "login.succeeded": ("session", "a login succeeded"),
    "login.failed": ("session", "a login failed (登录失败)"),
    "password.reset": ("session", "a password was reset"),
    "device.bound": ("session", "a device was bound to the customer"),
    "transfer.initiated": ("session", "a transfer was started"),
    "transfer.succeeded": ("session", "a transfer succeeded"),
    "transfer.failed": ("session", "a transfer failed (转账失败), with its reason"),
    "payment.failed": ("session", "a bill payment or other transaction failed (交易失败)"),
    "card.frozen": ("session", "a card was frozen by the customer"),
    "card.unfrozen": ("session", "a card was unfrozen"),
    "profile.changed": ("session", "profile details changed"),
    "screen.viewed": ("session", "an app screen or web page was viewed"),
    "app.action": ("session", "another tracked action in the app"),
    "identity.linked": ("session", "an anonymous device or id was linked to a customer"),
    # messages
    "message.received": ("thread", "a message (email, secure message) from the customer"),
    "message.sent": ("thread", "a message to the customer, or a secure message the customer sent in-app"),
    # cases and feedback
    "complaint.opened": ("case", "a complaint was opened (投诉)"),
    "complaint.updated": ("case", "a complaint changed state"),
    "complaint.closed": ("case", "a complaint was closed"),
    "survey.answered": ("case", "a satisfaction survey was answered (满意度调查)"),
    "feedback.received": ("case", "voice-of-the-customer feedback (客户之声)"),
    # branch
    "visit.checked_in": ("visit", "the customer checked in at a branch"),
    "appointment.booked": ("visit", "a reception-day appointment was booked (客户接待日)"),
}

INTERACTION_KINDS = ("call", "session", "thread", "case", "visit")

# Types that decide a call's state, in lifecycle order (later states win when events arrive out of order).
CALL_STATE_ORDER = {
    "call.offered": ("offered", 1),
    "call.ringing": ("ringing", 2),
    "call.missed": ("ringing", 2),
    "call.answered": ("answered", 3),
    "call.held": ("answered", 3),
    "call.resumed": ("answered", 3),
    "call.transferred": ("answered", 3),
    "call.abandoned": ("abandoned", 4),
    "call.ended": ("ended", 4),
}
