"""AMI client against an AMI server speaking the real protocol over TCP.

The sink here is a recording double of our ``EventSink`` interface (it answers like
ingest: accepted, or duplicate for a ``(source, source_event_id)`` seen before);
``tests/test_ami_e2e.py`` runs the same client into the real ingest on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest

from adapters.ami import Frame
from adapters.ami_client import AmiClient
from gateway.errors import StoreUnavailable
from gateway.events.model import ContactEvent
from gateway.events.sink import IngestResult
from gateway.metrics import create_metrics
from gateway.settings import AmiSettings, load_settings
from tests.ami_fake_server import FakeAmiServer, frame_bytes
from tests.conftest import FIXTURES

AMI = FIXTURES / "ami"


class RecordingSink:
    """A test double of the ingest sink: records, dedupes on (source, source_event_id), can fail."""

    def __init__(self, fail_times: int = 0, delay: float = 0.0) -> None:
        self.events: list[ContactEvent] = []
        self.seen: set[tuple[str, str]] = set()
        self.batches: list[int] = []
        self.fail_times = fail_times
        self.delay = delay
        self.changed = asyncio.Condition()

    async def submit(self, events: Sequence[ContactEvent]) -> list[IngestResult]:
        if self.fail_times:
            self.fail_times -= 1
            raise StoreUnavailable("PostgreSQL is unavailable")
        if self.delay:
            await asyncio.sleep(self.delay)
        out = []
        for e in events:
            key = (e.source, e.source_event_id)
            if key in self.seen:
                out.append(IngestResult("duplicate", e.source_event_id, event_id="x"))
            else:
                self.seen.add(key)
                self.events.append(e)
                out.append(IngestResult("accepted", e.source_event_id, event_id="x"))
        self.batches.append(len(events))
        async with self.changed:
            self.changed.notify_all()
        return out

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.events) >= n), timeout)


class RecordingQuarantine:
    def __init__(self) -> None:
        self.items: list[tuple[bytes, str, str]] = []

    async def __call__(self, raw: bytes, error: str, ref: str) -> None:
        self.items.append((raw, error, ref))


def ami_settings(port: int, **over: Any) -> AmiSettings:
    values = {"host": "127.0.0.1", "port": port, "username": "gateway", "secret": "s3cret", "auth": "md5",
              "reconnect_initial": 0.02, "reconnect_max": 0.1, "connect_timeout": 2.0, "ping_interval": 0.0}
    values.update(over)
    return load_settings(env={}, ami=values).ami


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    s = FakeAmiServer()
    await s.start()
    yield s
    await s.close()


@contextlib.asynccontextmanager
async def running(client: AmiClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def golden(name: str) -> tuple[bytes, list[dict[str, Any]], dict[str, Any]]:
    mapping_file = AMI / f"{name}.mapping.json"
    mapping = json.loads(mapping_file.read_text()) if mapping_file.exists() else {}
    return ((AMI / f"{name}.txt").read_bytes(),
            json.loads((AMI / f"{name}.expected.json").read_text(encoding="utf-8")), mapping)


def without_time(events: list[Any]) -> list[Any]:
    """Golden events whose frames had no Timestamp take the receive time: compare everything else."""
    out = []
    for e in msgspec.to_builtins(events):
        e = dict(e)
        e.pop("occurred_at")
        out.append(e)
    return out


async def test_md5_login_never_sends_the_secret_and_reconciles(server):
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
    names = [a.get("Action") for a in server.actions]
    assert names[:4] == ["Challenge", "Login", "CoreShowChannels", "QueueStatus"]
    login = server.actions[1]
    assert login.get("AuthType") == "MD5" and login.get("Events") == "on" and login.get("Key")
    assert all("Secret" not in a for a in server.actions)
    assert client.stats.sessions == 1 and server.logins_ok == 1


async def test_plain_login(server):
    client = AmiClient(ami_settings(server.port, auth="plain"), RecordingSink(), quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.connected.wait(), 5)
    login = server.actions[0]
    assert login.get("Action") == "Login" and login.get("Secret") == "s3cret" and login.get("Events") == "on"


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_login_failure_is_retried_with_backoff_and_never_connects(server, auth):
    client = AmiClient(ami_settings(server.port, auth=auth, secret="wrong"), RecordingSink(),
                       quarantine=RecordingQuarantine())
    async with running(client):
        for _ in range(200):
            if server.logins_failed >= 2:
                break
            await asyncio.sleep(0.01)
    assert server.logins_failed >= 2 and server.logins_ok == 0
    assert client.stats.login_failures >= 2 and not client.connected.is_set()


async def test_login_failure_sample_from_panoramisk_is_a_login_error():
    """The real failed-login exchange (panoramisk fixture) replayed by a bare server."""
    sample = (FIXTURES / "samples" / "ami_panoramisk_login_failed.txt").read_bytes().replace(b"\n", b"\r\n")
    banner, _, rest = sample.partition(b"\r\n")
    reply = rest[rest.index(b"Response:"):]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner + b"\r\n")
        data = await reader.readuntil(b"\r\n\r\n")
        aid = Frame.of(*[tuple(line.split(": ", 1)) for line in data.decode().strip().split("\r\n")]).action_id
        writer.write(reply.replace(b"action/transaction_uid/1/1", (aid or "").encode()))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = AmiClient(ami_settings(port, auth="plain"), RecordingSink(), quarantine=RecordingQuarantine())
    async with running(client):
        for _ in range(200):
            if client.stats.login_failures:
                break
            await asyncio.sleep(0.01)
    srv.close()
    await srv.wait_closed()
    assert client.stats.login_failures >= 1


@pytest.mark.parametrize("name", ["queue_call_answered", "queue_call_abandoned", "ivr_identified_caller"])
async def test_calls_from_ring_to_hangup_over_tcp(server, name):
    data, expected, mapping = golden(name)
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port, **mapping), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(data)
        await sink.wait_for(len(expected))
    assert without_time(sink.events) == without_time(expected)
    if name != "queue_call_abandoned":  # these carry Timestamp headers
        assert msgspec.to_builtins(sink.events) == expected


def _frames(data: bytes) -> list[bytes]:
    return [f + b"\r\n\r\n" for f in data.split(b"\r\n\r\n") if f.strip()]


async def test_disconnect_mid_call_reconciles_without_loss_or_duplicates(server):
    data, expected, _ = golden("queue_call_answered")
    frames = _frames(data)
    assert len(frames) == 17
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        # Up to and including both AgentCalled frames: offered, 2 IVR choices, queued, 2 ringing.
        await server.send(b"".join(frames[:9]))
        await sink.wait_for(6)
        # Connection lost; meanwhile agent 8001 answers (its AgentConnect never reaches us).
        server.channels = [
            Frame.of(("Channel", "PJSIP/trunk-cmcc-00000027"), ("Uniqueid", "1722863811.39"),
                     ("Linkedid", "1722863811.39"), ("CallerIDNum", "13912345678"), ("ChannelStateDesc", "Up"),
                     ("Application", "Queue"), ("BridgeId", "5c8a2c43")),
            Frame.of(("Channel", "PJSIP/8001-00000028"), ("Uniqueid", "1722863820.40"),
                     ("Linkedid", "1722863811.39"), ("CallerIDNum", "8001"), ("ChannelStateDesc", "Up"),
                     ("BridgeId", "5c8a2c43")),
        ]
        client.reconciled.clear()
        await server.drop()
        await server.wait_logins(2)
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await sink.wait_for(7)
        # The call goes on after the reconnect: the agent leg's late frames, the end of the call.
        # A frame sent twice (as a replaying peer might) must not add anything.
        await server.send(frames[12] + b"".join(frames[13:]) + frames[16])
        await sink.wait_for(8)
        await asyncio.sleep(0.05)
    ids = [e.source_event_id for e in sink.events]
    assert sorted(ids) == sorted(e["source_event_id"] for e in expected)
    assert len(ids) == len(set(ids))
    answered = next(e for e in sink.events if e.type == "call.answered")
    assert answered.agent_id == "8001" and answered.attributes["reconciled"] is True
    ended = next(e for e in sink.events if e.type == "call.ended")
    assert ended.attributes["talk_seconds"] == 132
    assert client.stats.sessions == 2


async def test_call_that_ended_during_the_outage_is_ended_on_reconnect(server):
    data, _, mapping = golden("queue_call_abandoned")
    frames = _frames(data)
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port, **mapping), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(b"".join(frames[:3]))
        await sink.wait_for(3)
        client.reconciled.clear()
        await server.drop()  # the caller gives up while we are away: the snapshot is empty
        await server.wait_logins(2)
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await sink.wait_for(4)
    last = sink.events[-1]
    assert (last.type, last.source_event_id, last.attributes["reconciled"]) == (
        "call.abandoned", "1594058334.130/abandoned", True)


async def test_malformed_frames_are_quarantined_with_raw_bytes_and_the_stream_continues(server):
    data, expected, mapping = golden("queue_call_abandoned")
    frames = _frames(data)
    bad1 = b"Event: Hangup\r\nthis line has no colon\r\n\r\n"
    bad2 = b"Event: Newchannel\r\nCallerIDName: \xff\xfe\xff\r\nUniqueid: 1.1\r\n\r\n"
    bad3 = b"Event: QueueCallerJoin\r\nUniqueid: 7.7\r\nLinkedid: 7.7\r\nCallerIDNum: 13900000000\r\n\r\n"
    quarantine = RecordingQuarantine()
    metrics = create_metrics()
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port, **mapping), sink, quarantine=quarantine, metrics=metrics)
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(frames[0] + bad1 + frames[1] + bad2 + bad3 + b"".join(frames[2:]))
        await sink.wait_for(len(expected))
    assert [q[0] for q in quarantine.items] == [bad1[:-4], bad2[:-4], bad3[:-4]]
    assert "not 'Key: Value'" in quarantine.items[0][1]
    assert "neither UTF-8 nor GB18030" in quarantine.items[1][1]
    assert "missing Queue" in quarantine.items[2][1]
    assert len({q[2] for q in quarantine.items}) == 3  # distinct source_ref per frame
    assert metrics.quarantined.labels(adapter="ami")._value.get() == 3
    assert without_time(sink.events) == without_time(expected)


async def test_slow_producer_frames_split_across_reads(server):
    data, expected, _ = golden("queue_call_answered")
    sink = RecordingSink()
    client = AmiClient(ami_settings(server.port), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(data, chunk=97, pause=0.001)
        await sink.wait_for(len(expected))
    assert msgspec.to_builtins(sink.events) == expected


def _many_calls(n: int) -> tuple[bytes, int]:
    out = []
    for i in range(n):
        lid = f"1722900000.{i}"
        base = (("Uniqueid", lid), ("Linkedid", lid), ("CallerIDNum", f"1390000{i:04d}"),
                ("Timestamp", f"{1722900000 + i}.5"))
        leg = f"1722900000.{i}9"
        out += [
            frame_bytes(("Event", "Newchannel"), *base, ("Exten", "95588"), ("Context", "from-pstn")),
            frame_bytes(("Event", "QueueCallerJoin"), *base, ("Queue", "vip"), ("Position", "1")),
            frame_bytes(("Event", "AgentCalled"), *base, ("Queue", "vip"), ("Interface", "PJSIP/8001"),
                        ("DestUniqueid", leg)),
            frame_bytes(("Event", "AgentConnect"), *base, ("Queue", "vip"), ("Interface", "PJSIP/8001"),
                        ("DestUniqueid", leg), ("HoldTime", "3")),
            frame_bytes(("Event", "AgentComplete"), *base, ("Queue", "vip"), ("Interface", "PJSIP/8001"),
                        ("HoldTime", "3"), ("TalkTime", "40"), ("Reason", "agent")),
            frame_bytes(("Event", "Hangup"), *base),
        ]
    return b"".join(out), n * 5


async def test_fast_producer_is_paced_by_the_sink_and_loses_nothing(server):
    data, n_events = _many_calls(1500)
    sink = RecordingSink(delay=0.002)
    client = AmiClient(ami_settings(server.port, batch_max=200), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(data)
        await sink.wait_for(n_events, timeout=60)
    assert len(sink.events) == n_events == len(sink.seen)
    assert max(sink.batches) <= 200 + 5  # one frame may add a few events past the bound
    assert client.stats.frames >= 1500 * 6


async def test_store_unavailable_is_retried_with_the_same_events(server):
    data, expected, _ = golden("queue_call_answered")
    sink = RecordingSink(fail_times=2)
    client = AmiClient(ami_settings(server.port), sink, quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.connected.wait(), 5)
        await server.send(data)
        await sink.wait_for(len(expected))
    assert client.stats.submit_retries == 2
    assert msgspec.to_builtins(sink.events) == expected


async def test_silent_connection_is_probed_with_ping(server):
    client = AmiClient(ami_settings(server.port, ping_interval=0.05), RecordingSink(),
                       quarantine=RecordingQuarantine())
    async with running(client):
        for _ in range(200):
            if any(a.get("Action") == "Ping" for a in server.actions):
                break
            await asyncio.sleep(0.01)
    assert any(a.get("Action") == "Ping" for a in server.actions)
    assert client.stats.sessions == 1


async def test_peer_without_banner_is_a_protocol_error_and_retried():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request")  # no line end: not AMI
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = AmiClient(ami_settings(port), RecordingSink(), quarantine=RecordingQuarantine())
    async with running(client):
        for _ in range(200):
            if "banner" in client.stats.last_error:
                break
            await asyncio.sleep(0.01)
    srv.close()
    await srv.wait_closed()
    assert "banner" in client.stats.last_error and client.stats.sessions == 0


def test_backoff_grows_with_jitter_and_is_capped():
    s = ami_settings(5038, reconnect_initial=1.0, reconnect_max=8.0)
    client = AmiClient(s, RecordingSink(), quarantine=RecordingQuarantine(), rng=random.Random(7))
    for delay in (1.0, 2.0, 4.0, 8.0, 16.0, 64.0):
        waits = [client.backoff(delay) for _ in range(200)]
        cap = min(8.0, delay)
        assert all(cap / 2 <= w <= cap for w in waits)
        assert max(waits) - min(waits) > cap / 4  # jitter, not a fixed delay


async def test_app_runs_the_client_only_when_enabled(tmp_path):
    from gateway.app import create_app

    off = create_app(load_settings(env={}, data_dir=str(tmp_path)))
    on = create_app(load_settings(env={}, data_dir=str(tmp_path), ami={"enabled": True}))
    assert len(on.cleanup_ctx) == len(off.cleanup_ctx) + 1
    assert any(getattr(c, "__name__", "") == "ami_ctx" for c in on.cleanup_ctx)



async def test_real_asterisk_11_queue_status_reply_is_read_to_its_complete_event(server):
    """The panoramisk QueueStatus capture (no EventList header; ends with QueueStatusComplete)."""
    sample = (FIXTURES / "samples" / "ami_panoramisk_queue_status.txt").read_bytes().replace(b"\n", b"\r\n")
    server.queue_status_raw = sample.replace(b"action/transaction_uid/1/1", b"{action_id}")
    client = AmiClient(ami_settings(server.port), RecordingSink(), quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        _, items = await client.send_action("QueueStatus", is_list=True)
    assert [f.event for f in items] == ["QueueParams"] + ["QueueMember"] * 6
    assert items[1].get("Name") == "Agent/220" and items[1].get("StateInterface") == "SIP/iiiiiiiiiii"
    assert client.stats.quarantined == 0


async def test_login_ok_sample_from_panoramisk():
    """The real successful-login exchange (panoramisk fixture), FullyBooted event included."""
    sample = (FIXTURES / "samples" / "ami_panoramisk_login_ok.txt").read_bytes().replace(b"\n", b"\r\n")
    banner, _, rest = sample.partition(b"\r\n")
    reply = rest[rest.index(b"Response:"):]
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner + b"\r\n")
        parser_buf = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            parser_buf += data
            while b"\r\n\r\n" in parser_buf:
                frame, parser_buf = parser_buf.split(b"\r\n\r\n", 1)
                seen.append(frame)
                aid = next(line.split(b": ", 1)[1] for line in frame.split(b"\r\n") if line.startswith(b"ActionID"))
                if frame.startswith(b"Action: Login"):
                    writer.write(reply.replace(b"action/transaction_uid/1/1", aid))
                else:  # list actions: an empty list
                    writer.write(b"Response: Success\r\nActionID: " + aid + b"\r\nEventList: start\r\n\r\n"
                                 b"Event: ListComplete\r\nActionID: " + aid + b"\r\nEventList: Complete\r\n\r\n")
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = AmiClient(ami_settings(port, auth="plain"), RecordingSink(), quarantine=RecordingQuarantine())
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
    srv.close()
    await srv.wait_closed()
    assert client.stats.login_failures == 0 and client.stats.sessions == 1
    assert seen[0].startswith(b"Action: Login") and b"Events: on" in seen[0]


async def test_peer_that_stops_answering_ping_is_reconnected(server):
    server.answer_ping = False
    client = AmiClient(ami_settings(server.port, ping_interval=0.05, connect_timeout=0.2), RecordingSink(),
                       quarantine=RecordingQuarantine())
    async with running(client):
        await server.wait_logins(2, timeout=10)
    assert "Ping" in client.stats.last_error
    assert client.stats.sessions >= 2


@pytest.mark.parametrize(("values", "named"), [
    ({"auth": "digest"}, "ami.auth"),
    ({"port": 0}, "ami.port"),
    ({"reconnect_initial": 5.0, "reconnect_max": 1.0}, "ami.reconnect_max"),
    ({"internal_number_pattern": "([0-9"}, "ami.internal_number_pattern"),
    ({"agents": ["PJSIP/8001"]}, "ami.agents"),
    ({"ivr_variables": [1, 2]}, "ami.ivr_variables"),
    ({"colour": "red"}, "ami.colour"),
    ({"source": "cti asterisk"}, "ami.source"),
])
def test_bad_ami_settings_name_the_key(values, named):
    from gateway.settings import SettingsError

    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_settings(env={}, ami=values)


def test_ami_settings_from_environment():
    s = load_settings(env={"CG_AMI__AGENTS": "PJSIP/8001=li.wei, Agent/220=zhang.min",
                           "CG_AMI__IVR_VARIABLES": "IVR_CHOICE,IVR_MENU2", "CG_AMI__SECRET": "hunter2"}).ami
    assert dict(s.agents) == {"PJSIP/8001": "li.wei", "Agent/220": "zhang.min"}
    with pytest.raises(TypeError):
        s.agents["PJSIP/9999"] = "x"  # type: ignore[index]
    assert s.ivr_variables == ("IVR_CHOICE", "IVR_MENU2")
    assert "hunter2" not in repr(s)


class ExplodingSink(RecordingSink):
    """Fails on one event as a buggy ingest would (not an outage: retrying cannot help)."""

    async def submit(self, events: Sequence[ContactEvent]) -> list[IngestResult]:
        if any(e.interaction_id == "1594058334.130" for e in events):
            raise RuntimeError("boom")
        return await super().submit(events)


async def test_batch_ingest_cannot_take_is_quarantined_and_the_stream_goes_on(server):
    bad, _, mapping = golden("queue_call_abandoned")
    good, expected, _ = golden("queue_call_answered")
    quarantine = RecordingQuarantine()
    sink = ExplodingSink()
    client = AmiClient(ami_settings(server.port, **mapping), sink, quarantine=quarantine)
    async with running(client):
        await asyncio.wait_for(client.reconciled.wait(), 5)
        await server.send(bad)
        for _ in range(200):
            if quarantine.items:
                break
            await asyncio.sleep(0.01)
        await server.send(good)
        await sink.wait_for(len(expected))
    raw, error, _ = quarantine.items[0]
    assert "RuntimeError: boom" in error
    assert {e["source_event_id"] for e in json.loads(raw)} >= {"1594058334.130/offered"}
