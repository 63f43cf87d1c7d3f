"""A small simulated Asterisk PBX: a real Asterisk Manager Interface (AMI) server over TCP.

The gateway's AMI client (:mod:`adapters.ami_client`) connects to it exactly as to Asterisk:
banner, ``Challenge`` / ``Login`` (MD5 or plain), ``Ping``, and the ``CoreShowChannels`` /
``QueueStatus`` reconciliation (answered with empty lists). :meth:`DemoPbx.play` writes a call's
frames (the fields and order of the Asterisk 16 AMI event documentation) to every logged-in
client. :func:`call_frames` builds a queue call: the caller's channel, IVR choices, joining the
queue, the agent's leg, ``AgentCalled`` (ringing), and later ``AgentConnect`` (answered) and
``AgentComplete`` with both hangups (ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets

import structlog

from adapters.ami import Frame, FrameParser

log = structlog.get_logger("gateway.simulate.pbx")

BANNER = b"Asterisk Call Manager/7.0.3\r\n"
AGENT_CALLED = b"Event: AgentCalled\r\n"


def _frame(*pairs: tuple[str, str]) -> bytes:
    return Frame.of(*pairs).encode()


class DemoPbx:
    def __init__(self, username: str, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.logged_in = asyncio.Event()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening, hang up on the clients and wait (briefly) for their handlers to end."""
        if self._server is not None:
            self._server.close()
        for w in list(self._clients):
            w.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def play(self, data: bytes) -> int:
        """Send event frames to every logged-in client; return how many got them."""
        sent = 0
        for w in list(self._clients):
            try:
                w.write(data)
                await w.drain()
                sent += 1
            except (ConnectionError, OSError):
                self._clients.discard(w)
        return sent

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        writer.write(BANNER)
        parser = FrameParser()
        challenge = secrets.token_hex(8)
        try:
            while data := await reader.read(65536):
                for f in parser.feed(data):
                    if isinstance(f, Frame) and not self._answer(f, writer, challenge):
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            if not self._clients:
                self.logged_in.clear()
            writer.close()

    def _answer(self, f: Frame, w: asyncio.StreamWriter, challenge: str) -> bool:
        name = (f.get("Action") or "").lower()
        aid = ("ActionID", f.action_id or "")
        if name == "challenge":
            w.write(_frame(("Response", "Success"), ("Challenge", challenge), aid))
        elif name == "login":
            if (f.get("AuthType") or "").lower() == "md5":
                ok = f.get("Key") == hashlib.md5((challenge + self.secret).encode()).hexdigest()
            else:
                ok = f.get("Secret") == self.secret
            if not ok or f.get("Username") != self.username:
                w.write(_frame(("Response", "Error"), aid, ("Message", "Authentication failed")))
                log.warning("pbx.login_failed")
                return False
            w.write(_frame(("Response", "Success"), aid, ("Message", "Authentication accepted")))
            w.write(_frame(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully Booted")))
            self._clients.add(w)
            self.logged_in.set()
        elif name == "ping":
            w.write(_frame(("Response", "Success"), aid, ("Ping", "Pong")))
        elif name == "coreshowchannels":
            w.write(_frame(("Response", "Success"), aid, ("EventList", "start"), ("Message", "Channels will follow")))
            w.write(_frame(("Event", "CoreShowChannelsComplete"), aid, ("EventList", "Complete"), ("ListItems", "0")))
        elif name == "queuestatus":
            w.write(_frame(("Response", "Success"), aid, ("Message", "Queue status will follow")))
            w.write(_frame(("Event", "QueueStatusComplete"), aid, ("EventList", "Complete"), ("ListItems", "0")))
        elif name == "logoff":
            w.write(_frame(("Response", "Goodbye"), aid))
            return False
        else:
            w.write(_frame(("Response", "Error"), aid, ("Message", "Invalid/unknown command")))
        return True


def _channel(channel: str, uid: str, linked: str, number: str, name: str, *, state: str = "6",
             context: str = "from-pstn", exten: str = "95588") -> list[tuple[str, str]]:
    return [("Channel", channel), ("ChannelState", state), ("ChannelStateDesc", "Up" if state == "6" else "Down"),
            ("CallerIDNum", number), ("CallerIDName", name or "<unknown>"), ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"), ("Language", "zh"), ("AccountCode", ""), ("Context", context),
            ("Exten", exten), ("Priority", "1"), ("Uniqueid", uid), ("Linkedid", linked)]


def call_frames(linked: str, caller: str, caller_name: str, agent: str, queue: str, at: float,
                ivr: tuple[str, ...] = (), customer_no: str | None = None) -> tuple[bytes, bytes, bytes]:
    """(ringing, answered, ended) AMI frame bytes of one queue call to ``agent`` starting at epoch ``at``.

    The ringing bytes end with the ``AgentCalled`` frame (:data:`AGENT_CALLED` marks where it starts).
    With ``customer_no`` the IVR verified the caller (``IVR_CUSTOMER_NO``, auth level ``ivr_pin``).
    """
    trunk = f"PJSIP/trunk-cmcc-{linked.replace('.', '')[-8:]}"
    leg_uid = f"{linked}1"
    leg = f"PJSIP/{agent}-{leg_uid.replace('.', '')[-8:]}"
    t = at

    def ts(offset: float) -> tuple[str, str]:
        return ("Timestamp", f"{t + offset:.6f}")

    caller_ch = _channel(trunk, linked, linked, caller, caller_name, state="0")
    ring = [_frame(("Event", "Newchannel"), ("Privilege", "call,all"), ts(0), *caller_ch)]
    for n, choice in enumerate(ivr):
        ring.append(_frame(("Event", "VarSet"), ("Privilege", "dialplan,all"), ts(1 + n),
                           *_channel(trunk, linked, linked, caller, caller_name, context="ivr-main"),
                           ("Variable", "IVR_CHOICE"), ("Value", choice)))
    if customer_no:
        for n, (var, value) in enumerate((("IVR_AUTH_LEVEL", "ivr_pin"), ("IVR_CUSTOMER_NO", customer_no))):
            ring.append(_frame(("Event", "VarSet"), ("Privilege", "dialplan,all"), ts(1.2 + len(ivr) + n / 10),
                               *_channel(trunk, linked, linked, caller, caller_name, context="ivr-main"),
                               ("Variable", var), ("Value", value)))
    q_at = 1.5 + len(ivr)
    ring.append(_frame(("Event", "QueueCallerJoin"), ("Privilege", "agent,all"), ts(q_at),
                       *_channel(trunk, linked, linked, caller, caller_name, context="queues"),
                       ("Queue", queue), ("Position", "1"), ("Count", "1")))
    ring.append(_frame(("Event", "Newchannel"), ("Privilege", "call,all"), ts(q_at + 0.01),
                       *_channel(leg, leg_uid, linked, agent, "", state="0", context="agents", exten="s")))
    dest = [("DestChannel", leg), ("DestUniqueid", leg_uid), ("DestLinkedid", linked)]
    ring.append(_frame(("Event", "AgentCalled"), ("Privilege", "agent,all"), ts(q_at + 0.02),
                       *_channel(trunk, linked, linked, caller, caller_name, context="queues"), *dest,
                       ("Queue", queue), ("Interface", f"PJSIP/{agent}"), ("MemberName", agent)))
    answer = _frame(("Event", "AgentConnect"), ("Privilege", "agent,all"), ts(q_at + 8),
                    *_channel(trunk, linked, linked, caller, caller_name, context="queues"), *dest,
                    ("Queue", queue), ("Interface", f"PJSIP/{agent}"), ("MemberName", agent), ("HoldTime", "8"),
                    ("RingTime", "8"))
    end_at = q_at + 38
    ended = b"".join([
        _frame(("Event", "AgentComplete"), ("Privilege", "agent,all"), ts(end_at),
               *_channel(trunk, linked, linked, caller, caller_name, context="queues"), *dest, ("Queue", queue),
               ("Interface", f"PJSIP/{agent}"), ("MemberName", agent), ("HoldTime", "8"), ("TalkTime", "30"),
               ("Reason", "caller")),
        _frame(("Event", "Hangup"), ("Privilege", "call,all"), ts(end_at + 0.01),
               *_channel(trunk, linked, linked, caller, caller_name, context="queues"), ("Cause", "16"),
               ("Cause-txt", "Normal Clearing")),
        _frame(("Event", "Hangup"), ("Privilege", "call,all"), ts(end_at + 0.02),
               *_channel(leg, leg_uid, linked, agent, "", context="agents", exten="s"), ("Cause", "16"),
               ("Cause-txt", "Normal Clearing")),
    ])
    return b"".join(ring), answer, ended
