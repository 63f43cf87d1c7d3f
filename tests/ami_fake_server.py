"""A small Asterisk Manager Interface server speaking the real protocol over TCP (tests and bench/ami.py).

It sends the banner, answers ``Challenge`` (MD5), ``Login`` (plain or MD5; a wrong secret
gets ``Response: Error`` / ``Authentication failed`` and the connection is closed, as
Asterisk does), ``Ping``, ``CoreShowChannels`` and ``QueueStatus`` (from :attr:`channels`
and :attr:`queue_entries`, as list responses with ``EventList``), and lets the test push
event bytes to the logged-in client, drop the connection, or stream a large blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from adapters.ami import Frame, FrameParser

BANNER = b"Asterisk Call Manager/7.0.3\r\n"


def frame_bytes(*pairs: tuple[str, str], **kw: str) -> bytes:
    return Frame.of(*pairs, **kw).encode()


class FakeAmiServer:
    def __init__(self, username: str = "gateway", secret: str = "s3cret", challenge: str = "145769581") -> None:
        self.username = username
        self.secret = secret
        self.challenge = challenge
        self.channels: list[Frame] = []
        self.queue_entries: list[Frame] = []
        self.queue_status_raw: bytes | None = None  # a recorded QueueStatus reply ("{action_id}" replaced)
        self.answer_ping = True
        self.actions: list[Frame] = []
        self.logins_ok = 0
        self.logins_failed = 0
        self.logged_in = asyncio.Event()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._login_count_waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_logins(self, n: int, timeout: float = 10.0) -> None:
        """Wait until the n-th successful login of this server."""
        if self.logins_ok >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._login_count_waiters.append((n, fut))
        await asyncio.wait_for(fut, timeout)

    async def send(self, data: bytes, *, chunk: int = 0, pause: float = 0.0) -> None:
        """Write bytes to the logged-in client, whole or in chunks with pauses (a slow producer)."""
        w = self._writer
        assert w is not None, "no client logged in"
        if chunk <= 0:
            w.write(data)
            await w.drain()
            return
        for i in range(0, len(data), chunk):
            w.write(data[i:i + chunk])
            await w.drain()
            if pause:
                await asyncio.sleep(pause)

    async def drop(self) -> None:
        """Close the client's connection (a network failure or an Asterisk restart)."""
        w, self._writer = self._writer, None
        self.logged_in.clear()
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(BANNER)
        parser = FrameParser()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for f in parser.feed(data):
                    if not isinstance(f, Frame):
                        continue
                    self.actions.append(f)
                    if not await self._answer(f, writer):
                        return
        except (ConnectionError, OSError):
            return
        finally:
            if self._writer is writer:
                self._writer = None
                self.logged_in.clear()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, f: Frame, w: asyncio.StreamWriter) -> bool:
        name = (f.get("Action") or "").lower()
        aid = ("ActionID", f.action_id or "")
        if name == "challenge":
            w.write(frame_bytes(("Response", "Success"), ("Challenge", self.challenge), aid))
        elif name == "login":
            if (f.get("AuthType") or "").lower() == "md5":
                ok = f.get("Key") == hashlib.md5((self.challenge + self.secret).encode()).hexdigest()
            else:
                ok = f.get("Secret") == self.secret
            ok = ok and f.get("Username") == self.username
            if not ok:
                self.logins_failed += 1
                w.write(frame_bytes(("Response", "Error"), aid, ("Message", "Authentication failed")))
                await w.drain()
                return False
            self.logins_ok += 1
            w.write(frame_bytes(("Response", "Success"), aid, ("Message", "Authentication accepted")))
            w.write(frame_bytes(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully Booted")))
            self._writer = w
            self.logged_in.set()
            for n, fut in list(self._login_count_waiters):
                if self.logins_ok >= n and not fut.done():
                    fut.set_result(None)
        elif name == "ping":
            if not self.answer_ping:
                return True
            w.write(frame_bytes(("Response", "Success"), aid, ("Ping", "Pong"), ("Timestamp", "1722863811.000000")))
        elif name == "coreshowchannels":
            w.write(frame_bytes(("Response", "Success"), aid, ("EventList", "start"),
                                ("Message", "Channels will follow")))
            for ch in self.channels:
                w.write(Frame((("Event", "CoreShowChannel"), aid, *ch.headers)).encode())
            w.write(frame_bytes(("Event", "CoreShowChannelsComplete"), aid, ("EventList", "Complete"),
                                ("ListItems", str(len(self.channels)))))
        elif name == "queuestatus" and self.queue_status_raw is not None:
            w.write(self.queue_status_raw.replace(b"{action_id}", (f.action_id or "").encode()))
        elif name == "queuestatus":
            w.write(frame_bytes(("Response", "Success"), aid, ("Message", "Queue status will follow")))
            for qe in self.queue_entries:
                w.write(Frame((("Event", "QueueEntry"), aid, *qe.headers)).encode())
            w.write(frame_bytes(("Event", "QueueStatusComplete"), aid))
        else:
            w.write(frame_bytes(("Response", "Error"), aid, ("Message", "Invalid/unknown command")))
        await w.drain()
        return True
