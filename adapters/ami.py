"""Asterisk Manager Interface (AMI): the frame protocol and the pure mapping of events to contact events.

Two pure pieces, no I/O, no clock, no logging (the TCP client is :mod:`adapters.ami_client`):

:class:`FrameParser`
    turns the byte stream after the banner into :class:`Frame` objects. AMI frames are
    ``Key: Value`` lines ending in CRLF (LF accepted), terminated by an empty line. Keys
    repeat (``ChanVariable``), so a frame keeps every pair in order; lookups are
    case-insensitive and return the first value. ``Response: Follows`` frames (the
    ``Command`` action of Asterisk ≤ 13) carry free-form output up to ``--END COMMAND--``,
    kept as the ``Output`` value. Bytes are decoded as UTF-8 (GB18030 when that fails, as
    Chinese PBXs may send caller names in GBK): never as ASCII, which would drop non-ASCII
    caller names. What cannot be read comes out as :class:`MalformedFrame` with its raw
    bytes and the reason, and the stream goes on.

:class:`CallTracker`
    the per-call correlation state. ``feed(frame, received_at)`` returns the canonical
    events the frame causes; ``reconcile(channels, queue_entries, at)`` compares the
    calls the tracker believes active with a ``CoreShowChannels`` / ``QueueStatus``
    snapshot taken after a reconnect and returns the events missed in between.

Mapping (``interaction_id`` = ``Linkedid``, never parsed as a number: it may carry a
system-name prefix):

==========================================  ==========================================================
``Newchannel`` of the call's first leg      ``call.offered`` (no queue), caller ID → ``phone``
``QueueCallerJoin``                         ``call.offered`` to the queue
``AgentCalled``                             ``call.ringing`` at the agent: the screen-pop trigger
``AgentRingNoAnswer``                       ``call.missed`` at the agent (RONA)
``AgentConnect``                            ``call.answered`` by the agent (queue wait in ``hold_seconds``)
``BridgeEnter`` (calls that never queued)   ``call.answered`` by the other leg
``AgentComplete`` / ``Hangup`` of leg one   ``call.ended`` with ``hold_seconds`` and ``talk_seconds``
``QueueCallerAbandon``                      ``call.abandoned``
``Hold`` / ``Unhold`` of the caller's leg     ``call.held`` / ``call.resumed``; ``call.ended`` adds ``on_hold_seconds``
``BlindTransfer`` (``Result: Success``)     ``call.transferred`` with ``transfer_to``; the next answer is a new one
``AttendedTransfer`` (``Result: Success``)  ``call.transferred``, and ``call.answered`` by the consulted party
``VarSet`` of a configured IVR variable     ``ivr.selection`` with the IVR path so far
``UserEvent`` named in ``ivr_user_events``  ``ivr.selection`` (``Choice``, ``Menu``, ``CustomerNo``, ``AuthLevel``)
IVR-verified customer number                ``ivr.selection`` with a ``customer_no`` identifier and ``auth_level``
==========================================  ==========================================================

``source_event_id`` is derived from the call, never from a counter of the stream or the
clock: ``<Linkedid>/offered``, ``<Linkedid>/queued/<queue>``, ``<Linkedid>/ringing/<agent
leg Uniqueid>``, ``<Linkedid>/answered/<agent leg Uniqueid>``, ``<Linkedid>/ended``,
``<Linkedid>/abandoned``, ``<Linkedid>/ivr/<n>`` (n-th choice of the call),
``<Linkedid>/ivr-verified``, ``<Linkedid>/held/<n>``, ``<Linkedid>/resumed/<n>``, ``<Linkedid>/transferred/<n>``. The events :meth:`CallTracker.reconcile` synthesises use the
same ids, so an event delivered before a disconnect and synthesised again after it is a
duplicate, never a second row. ``AgentComplete`` and the caller's ``Hangup`` both end a
call; whichever comes first wins, the other is the same ``<Linkedid>/ended``.

Timestamps: with ``timestampevents = yes`` in ``manager.conf`` every event carries
``Timestamp: <epoch seconds>``, which becomes ``occurred_at``; without it the transport's
receive time is used.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.events.model import ContactEvent, Identifier
from gateway.identity import InvalidIdentifier, normalize

ADAPTER = "ami"
END_COMMAND = b"--END COMMAND--"
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
# Caller IDs that identify nobody.
NO_CALLER_ID = frozenset({"", "<unknown>", "unknown", "anonymous", "<anonymous>", "restricted", "private",
                          "unavailable", "s"})
# Channel names end in a per-call sequence ("PJSIP/8001-0000003c"); the interface is what precedes it.
_CHANNEL_SEQ = re.compile(r"-[0-9a-fA-F]{8}(?:;\d)?$")


class AmiParseError(ValueError):
    """A frame that is well-formed on the wire but cannot be mapped (a required key is missing or wrong)."""


class Frame:
    """One AMI frame: every ``Key: Value`` pair in order, and the raw bytes it was read from.

    Immutable by convention (slots, no setters); lookups are case-insensitive and give the
    first value of a repeated key.
    """

    __slots__ = ("_exact", "_lower", "headers", "offset", "raw")

    def __init__(self, headers: tuple[tuple[str, str], ...], raw: bytes = b"", offset: int = 0) -> None:
        self.headers = headers
        self.raw = raw
        self.offset = offset
        # reversed: the first of a repeated key wins. Asterisk spells its keys consistently, so an exact
        # lookup almost always hits; the lower-cased map is built only when one misses.
        self._exact: dict[str, str] = dict(reversed(headers))
        self._lower: dict[str, str] | None = None

    def _ci(self) -> dict[str, str]:
        if self._lower is None:
            self._lower = {k.lower(): v for k, v in reversed(self.headers)}
        return self._lower

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and other.headers == self.headers and other.raw == self.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frame(headers={self.headers!r}, offset={self.offset})"

    @classmethod
    def of(cls, *pairs: tuple[str, str], **kw: str) -> Frame:
        """A frame from pairs (tests, actions): ``Frame.of(("Event", "Hangup"), Uniqueid="1.2")``."""
        return cls(tuple(pairs) + tuple(kw.items()))

    def get(self, key: str, default: str | None = None) -> str | None:
        v = self._exact.get(key)
        if v is not None:
            return v
        return self._ci().get(key.lower(), default)

    def getall(self, key: str) -> list[str]:
        k = key.lower()
        return [v for hk, v in self.headers if hk.lower() == k]

    def __contains__(self, key: str) -> bool:
        return key in self._exact or key.lower() in self._ci()

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def encode(self) -> bytes:
        """The frame on the wire: CRLF lines and the empty line that ends it (UTF-8)."""
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers).encode() + b"\r\n"


@dataclasses.dataclass(frozen=True, slots=True)
class MalformedFrame:
    """Bytes between two empty lines that are not a frame; kept raw for the quarantine."""

    raw: bytes
    error: str
    offset: int


def action(name: str, action_id: str, **fields: str) -> bytes:
    """An action frame on the wire, ``Action`` and ``ActionID`` first."""
    return Frame.of(("Action", name), ("ActionID", action_id), *fields.items()).encode()


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise ValueError("bytes are neither UTF-8 nor GB18030") from None


def parse_frame(raw: bytes, offset: int = 0) -> Frame | MalformedFrame:
    """Parse the bytes of one frame (without its terminating empty line)."""
    if b"\x00" in raw:  # PostgreSQL stores no U+0000 in text: such a frame could never be committed
        return MalformedFrame(raw, "NUL byte in frame", offset)
    try:
        text = _decode(raw)
    except ValueError as exc:
        return MalformedFrame(raw, str(exc), offset)
    lines = text.replace("\r\n", "\n").split("\n")
    headers: list[tuple[str, str]] = []
    if lines and lines[0].lower().startswith("response: follows"):
        return _parse_follows(lines, raw, offset)
    # Fast path: Asterisk writes every line as "Key: Value" (a space even before an empty value).
    pairs = [line.split(": ", 1) for line in lines if line]
    if all(len(p) == 2 and p[0] and " " not in p[0] for p in pairs):
        headers = [(k, v) for k, v in pairs]
    else:
        append = headers.append
        for n, line in enumerate(lines, 1):
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep or not key or " " in key or "\t" in key:
                return MalformedFrame(raw, f"line {n} is not 'Key: Value'", offset)
            append((key, value[1:] if value[:1] == " " else value))
    if not headers:
        return MalformedFrame(raw, "empty frame", offset)
    frame = Frame(tuple(headers), raw, offset)
    if frame.event is None and frame.response is None and frame.get("action") is None:
        return MalformedFrame(raw, "frame has no Event, Response or Action key", offset)
    return frame


def _parse_follows(lines: list[str], raw: bytes, offset: int) -> Frame:
    """``Response: Follows``: header lines, then free-form output up to ``--END COMMAND--``."""
    headers: list[tuple[str, str]] = []
    output: list[str] = []
    in_output = False
    for line in lines:
        if line.strip() == END_COMMAND.decode():
            break
        key, sep, value = line.partition(":")
        if not in_output and sep and key.lower() in ("response", "privilege", "actionid", "message"):
            headers.append((key, value.removeprefix(" ")))
            continue
        in_output = True
        output.append(line)
    headers.append(("Output", "\n".join(output).rstrip("\n")))
    return Frame(tuple(headers), raw, offset)


class FrameParser:
    """Incremental frame parser: ``feed(bytes)`` returns the frames completed so far.

    A frame longer than ``max_frame_bytes`` without an empty line is cut there and
    returned as :class:`MalformedFrame`, so a broken peer cannot exhaust memory.
    ``offset`` counts bytes consumed since the parser was created (one per connection).
    """

    def __init__(self, max_frame_bytes: int = 65536) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes
        self._crlf: bool | None = None  # line ends of this stream, decided on its first line
        self.offset = 0

    def feed(self, data: bytes) -> list[Frame | MalformedFrame]:
        self._buf += data
        out: list[Frame | MalformedFrame] = []
        buf = self._buf
        pos = 0
        if self._crlf is None and b"\n" in buf:
            nl = buf.index(b"\n")
            self._crlf = buf[nl - 1:nl] == b"\r"
        while True:
            found = self._frame_end(buf, pos, stop_after=None)
            if found is None:
                break
            end, after = found
            # A leading empty line (e.g. after "--END COMMAND--") is not a frame.
            if end == pos:
                pos = after
                continue
            chunk = bytes(buf[pos:end])
            if chunk[:17].lower() == b"response: follows" and END_COMMAND not in chunk:
                # Command output may contain empty lines; it ends at "--END COMMAND--".
                stop = buf.find(END_COMMAND, pos)
                found = self._frame_end(buf, pos, stop_after=stop) if stop >= 0 else None
                if found is None:
                    break
                end, after = found
                chunk = bytes(buf[pos:end])
            if len(chunk) > self._max:
                out.append(MalformedFrame(chunk[: self._max], f"frame longer than {self._max} bytes",
                                          self.offset + pos))
            else:
                out.append(parse_frame(chunk, self.offset + pos))
            pos = after
        if pos:
            del buf[:pos]
            self.offset += pos
        if len(buf) > self._max and _BLANK_LINE.search(buf) is None:
            out.append(MalformedFrame(bytes(buf[: self._max]), f"frame longer than {self._max} bytes",
                                      self.offset))
            self.offset += len(buf)
            buf.clear()
        return out

    def _frame_end(self, buf: bytearray, pos: int, stop_after: int | None) -> tuple[int, int] | None:
        """(end of the frame, start of the next) of the first empty line at or after ``pos``/``stop_after``."""
        start = pos if stop_after is None else stop_after
        if self._crlf and stop_after is None:
            # Real Asterisk writes CRLF: a plain find is far faster than the regex.
            i = buf.find(b"\r\n\r\n", start)
            return (i, i + 4) if i >= 0 else None
        m = _BLANK_LINE.search(buf, start)
        return (m.start(), m.end()) if m is not None else None

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)


# ----------------------------------------------------------------------------------------------------------
# Mapping events onto contact events.


@dataclasses.dataclass(frozen=True, slots=True)
class AmiMapping:
    """What the tracker needs from settings (``[ami]``): names, variables and the agent table."""

    source: str = "cti.asterisk"
    ivr_variables: tuple[str, ...] = ("IVR_CHOICE",)
    ivr_user_events: tuple[str, ...] = ("IVRSelection",)
    customer_no_variable: str = "IVR_CUSTOMER_NO"
    auth_level_variable: str = "IVR_AUTH_LEVEL"
    verified_auth_level: str = "ivr_pin"
    internal_number_pattern: str = r"^[0-9]{2,6}$"
    agents: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: Any) -> AmiMapping:
        return cls(
            source=s.source, ivr_variables=tuple(s.ivr_variables), ivr_user_events=tuple(s.ivr_user_events),
            customer_no_variable=s.customer_no_variable, auth_level_variable=s.auth_level_variable,
            verified_auth_level=s.verified_auth_level, internal_number_pattern=s.internal_number_pattern,
            agents=dict(s.agents),
        )


@dataclasses.dataclass(slots=True)
class CallState:
    """What the tracker knows of one call (one ``Linkedid``)."""

    linkedid: str
    started_at: dt.datetime
    external: bool = False             # a call from outside (not from an internal extension)
    caller: str | None = None          # the caller's phone number when it is a valid one (not withheld)
    caller_name: str | None = None
    dialed: str | None = None
    queue: str | None = None
    queued_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    agent_id: str | None = None
    agent_uniqueid: str | None = None
    queue_hold_seconds: int | None = None
    ivr_path: list[str] = dataclasses.field(default_factory=list)
    customer_no: str | None = None
    auth_level: str | None = None
    offered: bool = False
    legs: set[str] = dataclasses.field(default_factory=set)
    holds: int = 0                     # times the caller was put on hold
    transfers: int = 0
    talk_before: float = 0.0           # talk seconds with agents the call was transferred away from
    held_since: dt.datetime | None = None
    on_hold_seconds: float = 0.0


def _as_int(frame: Frame, key: str) -> int | None:
    v = frame.get(key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise AmiParseError(f"{frame.event}: {key} is not an integer") from None


def _require(frame: Frame, key: str) -> str:
    v = frame.get(key)
    if not v:
        raise AmiParseError(f"{frame.event}: missing {key}")
    return v


def interface_of(channel: str) -> str:
    """``PJSIP/8001-0000003c`` → ``PJSIP/8001``; ``Local/8001@agents-00000001;1`` → ``Local/8001@agents``."""
    return _CHANNEL_SEQ.sub("", channel)


class CallTracker:
    """The per-call correlation state of one AMI stream; pure (time comes in as arguments).

    Finished calls are forgotten; the last ``remember`` ended calls are kept so that a late
    ``AgentComplete`` after the caller's ``Hangup`` (or the reverse) emits nothing.
    """

    def __init__(self, mapping: AmiMapping | None = None, *, remember: int = 10000) -> None:
        self.m = mapping or AmiMapping()
        self.calls: dict[str, CallState] = {}
        self._leg_to_call: dict[str, str] = {}
        self._leg_channel: dict[str, str] = {}
        self._bridges: dict[str, list[str]] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember = remember
        self._internal = re.compile(self.m.internal_number_pattern) if self.m.internal_number_pattern else None
        self._ivr_vars = {v.lower() for v in self.m.ivr_variables}
        self._ivr_user_events = {v.lower() for v in self.m.ivr_user_events}
        self._agents_ci = {k.lower(): v for k, v in self.m.agents.items()}
        self._handlers = {
            "newchannel": self._newchannel,
            "queuecallerjoin": self._queue_join,
            "join": self._queue_join,  # Asterisk ≤ 11
            "agentcalled": self._agent_called,
            "agentconnect": self._agent_connect,
            "agentringnoanswer": self._ring_no_answer,
            "bridgeenter": self._bridge_enter,
            "bridgeleave": self._bridge_leave,
            "agentcomplete": self._agent_complete,
            "queuecallerabandon": self._abandon,
            "hangup": self._hangup,
            "varset": self._varset,
            "blindtransfer": self._blind_transfer,
            "attendedtransfer": self._attended_transfer,
            "hold": self._hold,
            "unhold": self._unhold,
            "userevent": self._user_event,
        }

    # -- public --------------------------------------------------------------------------------------------

    def feed(self, frame: Frame, received_at: dt.datetime) -> list[ContactEvent]:
        """The contact events one frame causes (often none). Raises :class:`AmiParseError`."""
        name = frame.event
        if name is None:
            return []
        handler = self._handlers.get(name.lower())
        if handler is None:
            return []
        return handler(frame, self._occurred_at(frame, received_at))

    def active(self) -> list[str]:
        """Linked ids of the calls believed in progress."""
        return list(self.calls)

    def reconcile(self, channels: Sequence[Frame], queue_entries: Sequence[Frame],
                  at: dt.datetime) -> list[ContactEvent]:
        """Events missed while disconnected, from a ``CoreShowChannels`` and ``QueueStatus`` snapshot.

        Calls the tracker believes active but absent from the snapshot ended meanwhile
        (``call.abandoned`` when they were queued and never answered, else ``call.ended``);
        calls in the snapshot it does not know are offered (and queued, and answered when
        their first leg is bridged with another). Events carry ``attributes.reconciled``.
        """
        by_call: dict[str, list[Frame]] = {}
        for ch in channels:
            uid = ch.get("Uniqueid")
            if not uid:
                continue
            by_call.setdefault(ch.get("Linkedid") or uid, []).append(ch)
        in_queue: dict[str, Frame] = {}
        for qe in queue_entries:
            if qe.event and qe.event.lower() == "queueentry":
                key = qe.get("Uniqueid") or qe.get("Channel") or ""
                in_queue[key] = qe
        # Legs and bridges whose Hangup/BridgeLeave was missed while disconnected are forgotten.
        alive = {ch.get("Uniqueid") for ch in channels}
        for uid in [u for u in self._leg_channel if u not in alive]:
            del self._leg_channel[uid]
        for uid in [u for u in self._leg_to_call if u not in alive and u not in self.calls]:
            del self._leg_to_call[uid]
        for bridge in list(self._bridges):
            self._bridges[bridge] = [u for u in self._bridges[bridge] if u in alive]
            if not self._bridges[bridge]:
                del self._bridges[bridge]
        out: list[ContactEvent] = []
        for lid in list(self.calls):
            if lid not in by_call:
                state = self.calls[lid]
                if state.queue and not self._ever_answered(state):
                    out += self._finish_abandoned(state, at, None, reconciled=True)
                else:
                    out += self._finish_ended(state, at, None, reconciled=True)
        for lid, legs in by_call.items():
            first = next((c for c in legs if c.get("Uniqueid") == lid), None)
            if first is None or lid in self._finished:
                continue
            for leg in legs:
                uid = leg.get("Uniqueid") or ""
                self._leg_to_call[uid] = lid
                if leg.get("Channel"):
                    self._leg_channel[uid] = leg.get("Channel") or ""
            state = self._call(lid, first, at)
            out += self._offer(state, first, at, reconciled=True)
            entry = in_queue.get(lid) or in_queue.get(first.get("Channel") or "")
            if entry is not None and state.queue is None:
                out += self._queued(state, entry.get("Queue") or "", at, entry, reconciled=True)
            bridge = first.get("BridgeId") or first.get("BridgedUniqueid") or ""
            if bridge and state.answered_at is None:
                agent_leg = next((c for c in legs if c.get("Uniqueid") != lid
                                  and (c.get("BridgeId") or "") == bridge), None)
                if agent_leg is not None:
                    uid = agent_leg.get("Uniqueid") or ""
                    agent = self.agent_id(None, None, agent_leg.get("Channel"))
                    out += self._answered(state, uid, agent, state.queue, at, {"reconciled": True})
        return out

    def agent_id(self, interface: str | None, member_name: str | None, channel: str | None) -> str | None:
        """The configured agent id of an interface, member name or channel; else the device's last part."""
        candidates = [c for c in (interface, member_name, interface_of(channel) if channel else None) if c]
        for c in candidates:
            hit = self._agents_ci.get(c.lower())
            if hit:
                return hit
        if not candidates:
            return None
        # Unmapped: "PJSIP/8001" -> "8001", "Local/8001@agents/n" -> "8001", "Agent/220" -> "220".
        first = candidates[0]
        tail = first.split("/", 1)[1] if "/" in first else first
        tail = tail.split("@", 1)[0].split("/", 1)[0]
        return tail[:64] or None

    # -- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def _occurred_at(frame: Frame, received_at: dt.datetime) -> dt.datetime:
        ts = frame.get("Timestamp")
        if ts is None or ts == "":
            return received_at
        try:
            return dt.datetime.fromtimestamp(float(ts), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise AmiParseError(f"{frame.event}: Timestamp is not epoch seconds") from None

    def classify(self, number: str | None) -> tuple[bool, str | None]:
        """(is the call from outside, the caller's phone when it can identify a customer).

        An internal extension (``internal_number_pattern``) is no customer call: nothing is
        emitted for it. A withheld (``anonymous``, ``<unknown>``, empty) or unusable number
        (one that is no valid phone number) is a customer call without a phone identifier:
        its events still reach the contact log, unidentified until the IVR identifies them.
        """
        n = (number or "").strip()
        if n and self._internal is not None and self._internal.match(n):
            return False, None
        if n.lower() in NO_CALLER_ID:
            return True, None
        try:
            normalize("phone", n)
        except InvalidIdentifier:
            return True, None
        return True, n

    def customer_number(self, number: str | None) -> str | None:
        """The caller's number when it can identify a customer (see :meth:`classify`)."""
        return self.classify(number)[1]

    def _ids(self, frame: Frame) -> tuple[str, str]:
        uid = _require(frame, "Uniqueid")
        lid = frame.get("Linkedid") or self._leg_to_call.get(uid) or uid
        return uid, lid

    def _call(self, lid: str, frame: Frame, at: dt.datetime) -> CallState:
        state = self.calls.get(lid)
        if state is None:
            state = CallState(linkedid=lid, started_at=at)
            state.external, state.caller = self.classify(frame.get("CallerIDNum"))
            name = frame.get("CallerIDName")
            state.caller_name = name if name and name.lower() not in NO_CALLER_ID else None
            self.calls[lid] = state
            state.legs.add(lid)
            self._leg_to_call[lid] = lid
        return state

    @staticmethod
    def _ever_answered(state: CallState) -> bool:
        """Answered now, or by an agent who transferred the call on (then it is no abandoned call)."""
        return state.answered_at is not None or state.transfers > 0

    @staticmethod
    def _customer_call(state: CallState) -> bool:
        return state.external or state.customer_no is not None

    def _identifiers(self, state: CallState) -> list[Identifier]:
        out = []
        if state.caller:
            out.append(Identifier(kind="phone", value=state.caller))
        if state.customer_no:
            out.append(Identifier(kind="customer_no", value=state.customer_no))
        return out

    def _event(self, state: CallState, type_: str, suffix: str, at: dt.datetime, *,
               agent_id: str | None = None, queue: str | None = None, outcome: str | None = None,
               reason: str | None = None, attributes: dict[str, Any] | None = None) -> ContactEvent:
        attrs: dict[str, Any] = {}
        if state.ivr_path:
            attrs["ivr_path"] = list(state.ivr_path)
        if state.auth_level:
            attrs["auth_level"] = state.auth_level
        if attributes:
            attrs.update(attributes)
        return ContactEvent(
            source=self.m.source,
            source_event_id=f"{state.linkedid}/{suffix}",
            channel="voice",
            type=type_,
            occurred_at=at,
            identifiers=self._identifiers(state),
            interaction_id=state.linkedid,
            agent_id=agent_id,
            queue=queue,
            direction="inbound",
            outcome=outcome,
            reason=reason,
            attributes=attrs,
        )

    def _forget(self, state: CallState) -> None:
        self.calls.pop(state.linkedid, None)
        for uid in state.legs:
            self._leg_to_call.pop(uid, None)
            self._leg_channel.pop(uid, None)
        self._finished[state.linkedid] = None
        while len(self._finished) > self._remember:
            self._finished.popitem(last=False)

    def _known_or_new(self, frame: Frame, at: dt.datetime) -> tuple[str, CallState | None]:
        """The call of this frame; a call first seen mid-way (restart) is created, a finished one is None."""
        uid, lid = self._ids(frame)
        if lid in self._finished:
            return uid, None
        state = self.calls.get(lid)
        if state is None:
            if uid != lid and frame.get("Linkedid") is None:
                return uid, None
            state = self._call(lid, frame, at)
        return uid, state

    # -- call lifecycle ------------------------------------------------------------------------------------

    def _offer(self, state: CallState, frame: Frame, at: dt.datetime, *, reconciled: bool = False
               ) -> list[ContactEvent]:
        if state.offered or not self._customer_call(state):
            return []
        state.offered = True
        exten = frame.get("Exten")
        state.dialed = exten if exten and exten != "s" else None
        attrs: dict[str, Any] = {}
        if state.caller_name:
            attrs["caller_name"] = state.caller_name
        if state.dialed:
            attrs["dialed"] = state.dialed
        if frame.get("Context"):
            attrs["context"] = frame.get("Context")
        if reconciled:
            attrs["reconciled"] = True
        return [self._event(state, "call.offered", "offered", at, attributes=attrs)]

    def _newchannel(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        uid, lid = self._ids(frame)
        self._leg_channel[uid] = frame.get("Channel") or ""
        if uid != lid:
            self._leg_to_call[uid] = lid
            state = self.calls.get(lid)
            if state is not None:
                state.legs.add(uid)
            return []
        if lid in self._finished or lid in self.calls:
            return []
        state = self._call(lid, frame, at)
        return self._offer(state, frame, at)

    def _queued(self, state: CallState, queue: str, at: dt.datetime, frame: Frame, *,
                reconciled: bool = False) -> list[ContactEvent]:
        if not queue:
            raise AmiParseError(f"{frame.event}: missing Queue")
        state.queue = queue
        state.queued_at = at
        if not self._customer_call(state):
            return []
        attrs: dict[str, Any] = {}
        pos = _as_int(frame, "Position")
        if pos is not None:
            attrs["position"] = pos
        if reconciled:
            attrs["reconciled"] = True
        events: list[ContactEvent] = []
        if not state.offered:
            events += self._offer(state, frame, at, reconciled=reconciled)
        events.append(self._event(state, "call.offered", f"queued/{queue}", at, queue=queue, attributes=attrs))
        return events

    def _queue_join(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None:
            return []
        return self._queued(state, frame.get("Queue") or "", at, frame)

    def _agent_called(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None or not self._customer_call(state):
            return []
        agent = self.agent_id(frame.get("Interface") or frame.get("AgentCalled"), frame.get("MemberName"),
                              frame.get("DestChannel"))
        leg = frame.get("DestUniqueid") or frame.get("Interface") or frame.get("AgentCalled") or ""
        if not leg:
            raise AmiParseError("AgentCalled: missing DestUniqueid and Interface")
        queue = frame.get("Queue") or state.queue
        attrs: dict[str, Any] = {}
        if state.caller_name:
            attrs["caller_name"] = state.caller_name
        if state.dialed:
            attrs["dialed"] = state.dialed
        return [self._event(state, "call.ringing", f"ringing/{leg}", at, agent_id=agent, queue=queue,
                            attributes=attrs)]

    def _ring_no_answer(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None or not self._customer_call(state):
            return []
        agent = self.agent_id(frame.get("Interface"), frame.get("MemberName"), frame.get("DestChannel"))
        leg = frame.get("DestUniqueid") or frame.get("Interface") or ""
        if not leg:
            raise AmiParseError("AgentRingNoAnswer: missing DestUniqueid and Interface")
        ring = _as_int(frame, "RingTime")
        return [self._event(state, "call.missed", f"missed/{leg}", at, agent_id=agent,
                            queue=frame.get("Queue") or state.queue,
                            attributes={"ring_seconds": ring} if ring is not None else {})]

    def _answered(self, state: CallState, leg: str, agent: str | None, queue: str | None, at: dt.datetime,
                  attrs: dict[str, Any]) -> list[ContactEvent]:
        if state.answered_at is not None:
            return []
        state.answered_at = at
        state.agent_id = agent
        state.agent_uniqueid = leg
        if not self._customer_call(state):
            return []
        return [self._event(state, "call.answered", f"answered/{leg}", at, agent_id=agent, queue=queue,
                            attributes=attrs)]

    def _agent_connect(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None:
            return []
        agent = self.agent_id(frame.get("Interface"), frame.get("MemberName"), frame.get("DestChannel"))
        leg = frame.get("DestUniqueid") or frame.get("Interface") or ""
        if not leg:
            raise AmiParseError("AgentConnect: missing DestUniqueid and Interface")
        attrs: dict[str, Any] = {}
        hold = _as_int(frame, "HoldTime")
        ring = _as_int(frame, "RingTime")
        if hold is not None:
            attrs["hold_seconds"] = hold
            state.queue_hold_seconds = hold
        if ring is not None:
            attrs["ring_seconds"] = ring
        state.queue = frame.get("Queue") or state.queue
        return self._answered(state, leg, agent, state.queue, at, attrs)

    def _bridge_enter(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        uid, lid = self._ids(frame)
        bridge = frame.get("BridgeUniqueid") or ""
        members = self._bridges.setdefault(bridge, [])
        if uid not in members:
            members.append(uid)
        state = self.calls.get(lid)
        if state is None or state.queue is not None or state.answered_at is not None or len(members) < 2:
            return []
        other = next((m for m in members if m != lid), None)
        if other is None:
            return []
        channel = frame.get("Channel") if uid == other else self._leg_channel.get(other)
        agent = self.agent_id(None, None, channel)
        return self._answered(state, other, agent, None, at, {})

    def _bridge_leave(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        bridge = frame.get("BridgeUniqueid") or ""
        members = self._bridges.get(bridge)
        if members is not None:
            uid = frame.get("Uniqueid")
            if uid in members:
                members.remove(uid)
            if not members:
                del self._bridges[bridge]
        return []

    def _finish_ended(self, state: CallState, at: dt.datetime, frame: Frame | None, *,
                      talk: int | None = None, hold: int | None = None, reason: str | None = None,
                      reconciled: bool = False) -> list[ContactEvent]:
        self._forget(state)
        if not self._customer_call(state):
            return []
        if talk is None:
            talk = max(0, round((at - state.answered_at).total_seconds())) if state.answered_at else 0
        talk += round(state.talk_before)
        if hold is None:
            hold = state.queue_hold_seconds
            if hold is None and state.queued_at is not None:
                end = state.answered_at or at
                hold = max(0, round((end - state.queued_at).total_seconds()))
        attrs: dict[str, Any] = {"talk_seconds": talk, "hold_seconds": hold or 0}
        if state.holds:
            if state.held_since is not None:  # hung up while on hold
                state.on_hold_seconds += max(0.0, (at - state.held_since).total_seconds())
            attrs["on_hold_seconds"] = round(state.on_hold_seconds)
            attrs["holds"] = state.holds
        if reason:
            attrs["ended_by"] = reason
        if frame is not None and frame.get("Cause-txt"):
            attrs["hangup_cause"] = frame.get("Cause-txt")
        if reconciled:
            attrs["reconciled"] = True
        outcome = "answered" if self._ever_answered(state) else "not_answered"
        return [self._event(state, "call.ended", "ended", at, agent_id=state.agent_id, queue=state.queue,
                            outcome=outcome, attributes=attrs)]

    def _finish_abandoned(self, state: CallState, at: dt.datetime, frame: Frame | None, *,
                          reconciled: bool = False) -> list[ContactEvent]:
        hold = _as_int(frame, "HoldTime") if frame is not None else None
        if hold is None and state.queued_at is not None:
            hold = max(0, round((at - state.queued_at).total_seconds()))
        attrs: dict[str, Any] = {"hold_seconds": hold or 0}
        if frame is not None:
            for key, name in (("Position", "position"), ("OriginalPosition", "original_position")):
                v = _as_int(frame, key)
                if v is not None:
                    attrs[name] = v
        self._forget(state)
        if not self._customer_call(state):
            return []
        if reconciled:
            attrs["reconciled"] = True
        queue = (frame.get("Queue") if frame is not None else None) or state.queue
        return [self._event(state, "call.abandoned", "abandoned", at, queue=queue, outcome="abandoned",
                            attributes=attrs)]

    def _agent_complete(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None:
            return []
        state.agent_id = self.agent_id(frame.get("Interface"), frame.get("MemberName"),
                                       frame.get("DestChannel")) or state.agent_id
        state.queue = frame.get("Queue") or state.queue
        if state.answered_at is None:
            talk = _as_int(frame, "TalkTime") or 0
            state.answered_at = at - dt.timedelta(seconds=talk)
        return self._finish_ended(state, at, frame, talk=_as_int(frame, "TalkTime"),
                                  hold=_as_int(frame, "HoldTime"), reason=frame.get("Reason"))

    def _abandon(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        _, state = self._known_or_new(frame, at)
        if state is None:
            return []
        return self._finish_abandoned(state, at, frame)

    def _hangup(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        uid, lid = self._ids(frame)
        self._leg_channel.pop(uid, None)
        if uid != lid:
            self._leg_to_call.pop(uid, None)
            state = self.calls.get(lid)
            if state is not None:
                state.legs.discard(uid)
            return []
        state = self.calls.get(lid)
        if state is None:
            return []
        if state.queue is not None and not self._ever_answered(state):
            return self._finish_abandoned(state, at, None)
        return self._finish_ended(state, at, frame)

    # -- transfer ----------------------------------------------------------------------------------------

    def _blind_transfer(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        """A completed blind transfer of the caller (the transferee) to ``Context``/``Extension``."""
        if (frame.get("Result") or "").lower() != "success":
            return []
        lid = frame.get("TransfereeLinkedid") or frame.get("TransfererLinkedid")
        if not lid:
            raise AmiParseError("BlindTransfer: missing TransfereeLinkedid")
        state = self.calls.get(lid)
        if state is None or not self._customer_call(state):
            return []
        agent = self.agent_id(None, None, frame.get("TransfererChannel")) or state.agent_id
        state.transfers += 1
        if state.answered_at is not None:  # the next agent's answer is a new answer; talk so far is kept
            state.talk_before += max(0.0, (at - state.answered_at).total_seconds())
            state.answered_at = None
            state.agent_uniqueid = None
        target = {k: v for k, v in (("extension", frame.get("Extension")), ("context", frame.get("Context"))) if v}
        return [self._event(state, "call.transferred", f"transferred/{state.transfers}", at, agent_id=agent,
                            queue=state.queue, attributes={"transfer_to": target, "kind": "blind"})]

    def _attended_transfer(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        """A completed attended (consultative) transfer: the caller now talks to the consulted party.

        The consulted party is the other member of the consultation bridge (``SecondBridgeUniqueid``,
        known from its ``BridgeEnter``); when it is known, its answer is emitted, as no ``AgentConnect``
        follows an attended transfer.
        """
        if (frame.get("Result") or "").lower() != "success":
            return []
        lid = frame.get("TransfereeLinkedid") or frame.get("OrigTransfererLinkedid")
        if not lid:
            raise AmiParseError("AttendedTransfer: missing TransfereeLinkedid and OrigTransfererLinkedid")
        state = self.calls.get(lid)
        if state is None or not self._customer_call(state):
            return []
        agent = self.agent_id(None, None, frame.get("OrigTransfererChannel")) or state.agent_id
        second = frame.get("SecondTransfererUniqueid")
        members = self._bridges.get(frame.get("SecondBridgeUniqueid") or "", [])
        target_leg = next((u for u in members if u != second), None)
        target = self.agent_id(None, None, self._leg_channel.get(target_leg)) if target_leg else None
        state.transfers += 1
        if state.answered_at is not None:
            state.talk_before += max(0.0, (at - state.answered_at).total_seconds())
            state.answered_at = None
            state.agent_uniqueid = None
        attrs: dict[str, Any] = {"kind": "attended", "transfer_to": {"agent_id": target} if target else {}}
        out = [self._event(state, "call.transferred", f"transferred/{state.transfers}", at, agent_id=agent,
                           queue=state.queue, attributes=attrs)]
        if target_leg is not None:
            out += self._answered(state, target_leg, target, state.queue, at, {"after_transfer": True})
        return out

    # -- hold --------------------------------------------------------------------------------------------

    def _hold(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        uid, lid = self._ids(frame)
        state = self.calls.get(lid)
        if state is None or uid != lid or state.held_since is not None or not self._customer_call(state):
            return []  # only the caller's leg on hold counts; a repeated Hold changes nothing
        state.holds += 1
        state.held_since = at
        return [self._event(state, "call.held", f"held/{state.holds}", at, agent_id=state.agent_id,
                            queue=state.queue)]

    def _unhold(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        uid, lid = self._ids(frame)
        state = self.calls.get(lid)
        if state is None or uid != lid or state.held_since is None:
            return []
        held = max(0.0, (at - state.held_since).total_seconds())
        state.on_hold_seconds += held
        state.held_since = None
        return [self._event(state, "call.resumed", f"resumed/{state.holds}", at, agent_id=state.agent_id,
                            queue=state.queue, attributes={"held_seconds": round(held)})]

    # -- IVR -----------------------------------------------------------------------------------------------

    def _ivr(self, state: CallState, at: dt.datetime, *, choice: str | None, menu: str | None,
             customer_no: str | None, auth_level: str | None, via: str) -> list[ContactEvent]:
        out: list[ContactEvent] = []
        if auth_level:
            state.auth_level = auth_level
        if choice:
            state.ivr_path.append(choice)
            attrs: dict[str, Any] = {"choice": choice, "via": via}
            if menu:
                attrs["menu"] = menu
            if self._customer_call(state):
                out.append(self._event(state, "ivr.selection", f"ivr/{len(state.ivr_path)}", at,
                                       attributes=attrs))
        if customer_no and customer_no != state.customer_no:
            state.customer_no = customer_no
            if not state.auth_level:
                state.auth_level = self.m.verified_auth_level
            out.append(self._event(state, "ivr.selection", "ivr-verified", at,
                                   attributes={"verified": True, "via": via}))
        return out

    def _varset(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        var = (frame.get("Variable") or "").lstrip("_").lower()
        if not var:
            return []
        is_ivr = var in self._ivr_vars
        is_cust = var == self.m.customer_no_variable.lower()
        is_auth = var == self.m.auth_level_variable.lower()
        if not (is_ivr or is_cust or is_auth):
            return []
        uid, state = self._known_or_new(frame, at)
        if state is None or uid != state.linkedid:
            return []  # inherited copies on the agent's leg repeat what the caller's leg already said
        value = (frame.get("Value") or "").strip()
        if not value:
            return []
        return self._ivr(state, at, choice=value if is_ivr else None, menu=None,
                         customer_no=value if is_cust else None, auth_level=value if is_auth else None,
                         via="VarSet")

    def _user_event(self, frame: Frame, at: dt.datetime) -> list[ContactEvent]:
        name = (frame.get("UserEvent") or "").lower()
        if name not in self._ivr_user_events:
            return []
        _, state = self._known_or_new(frame, at)
        if state is None:
            return []
        return self._ivr(state, at, choice=frame.get("Choice") or frame.get("Selection") or None,
                         menu=frame.get("Menu") or None, customer_no=frame.get("CustomerNo") or None,
                         auth_level=frame.get("AuthLevel") or None, via="UserEvent")


def parse(frames: Iterable[Frame], received_at: dt.datetime, mapping: AmiMapping | None = None
          ) -> list[ContactEvent]:
    """Map a whole transcript of frames with a fresh tracker (golden files, tests, tools)."""
    tracker = CallTracker(mapping)
    out: list[ContactEvent] = []
    for f in frames:
        out += tracker.feed(f, received_at)
    return out


def parse_transcript(data: bytes, received_at: dt.datetime, mapping: AmiMapping | None = None
                     ) -> tuple[list[ContactEvent], list[MalformedFrame]]:
    """Parse raw AMI bytes (after the banner) into events, and the frames that could not be read."""
    parser = FrameParser()
    items = parser.feed(data if data.endswith((b"\n\n", b"\r\n\r\n")) else data + b"\r\n\r\n")
    frames = [f for f in items if isinstance(f, Frame)]
    bad = [f for f in items if isinstance(f, MalformedFrame)]
    return parse(frames, received_at, mapping), bad
