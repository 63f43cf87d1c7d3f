"""AMI: the frame parser and the pure mapping, on golden files and malformed samples."""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest

from adapters.ami import (
    AmiMapping,
    AmiParseError,
    CallTracker,
    Frame,
    FrameParser,
    MalformedFrame,
    interface_of,
    parse_frame,
    parse_transcript,
)
from gateway.events.model import event_from_obj
from tests.conftest import FIXTURES

AMI = FIXTURES / "ami"
RECEIVED = dt.datetime(2026, 11, 28, 1, 41, 7, tzinfo=dt.UTC)
GOLDEN = sorted(p.stem for p in AMI.glob("*.txt"))


def _mapping(name: str) -> AmiMapping:
    path = AMI / f"{name}.mapping.json"
    return AmiMapping(**json.loads(path.read_text())) if path.exists() else AmiMapping()


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_transcripts(name):
    events, bad = parse_transcript((AMI / f"{name}.txt").read_bytes(), RECEIVED, _mapping(name))
    assert bad == []
    expected = json.loads((AMI / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert msgspec.to_builtins(events) == expected
    for e in expected:  # every event passes the canonical model's validation
        event_from_obj(e)


def test_golden_files_cover_the_issue_cases():
    assert {"goami2_two_party_call", "queue_call_answered", "queue_call_abandoned",
            "ivr_identified_caller"} <= set(GOLDEN)
    types = set()
    for name in GOLDEN:
        types |= {e["type"] for e in json.loads((AMI / f"{name}.expected.json").read_text(encoding="utf-8"))}
    assert {"call.offered", "call.ringing", "call.answered", "call.ended", "call.abandoned",
            "ivr.selection"} <= types


def test_screen_pop_trigger_carries_phone_customer_and_interaction():
    events, _ = parse_transcript((AMI / "ivr_identified_caller.txt").read_bytes(), RECEIVED,
                                 _mapping("ivr_identified_caller"))
    ringing = [e for e in events if e.type == "call.ringing"]
    assert len(ringing) == 1
    r = ringing[0]
    assert r.interaction_id == "pbx1-1722863900.51"  # system-name prefix kept, never parsed as a number
    assert {(i.kind, i.value) for i in r.identifiers} == {("phone", "+8613800138000"),
                                                         ("customer_no", "6200001234")}
    assert r.agent_id == "zhang.min" and r.queue == "loans"
    assert r.attributes["auth_level"] == "voiceprint" and r.attributes["ivr_path"] == ["2"]


MALFORMED = json.loads((AMI / "malformed" / "cases.json").read_text())


@pytest.mark.parametrize(("name", "message"), sorted(MALFORMED.items()))
def test_malformed_samples_fail_with_a_clear_error(name, message):
    raw = (AMI / "malformed" / name).read_bytes()
    item = parse_frame(raw)
    if isinstance(item, MalformedFrame):
        assert message in item.error
        assert item.raw == raw
        return
    with pytest.raises(AmiParseError, match=message):
        CallTracker().feed(item, RECEIVED)


def test_every_byte_split_gives_the_same_frames():
    data = (AMI / "queue_call_answered.txt").read_bytes()
    whole = FrameParser().feed(data)
    assert len(whole) == 17 and all(isinstance(f, Frame) for f in whole)
    for step in (1, 2, 3, 7, 64, 1000):
        p = FrameParser()
        got = []
        for i in range(0, len(data), step):
            got += p.feed(data[i:i + step])
        assert [f.headers for f in got] == [f.headers for f in whole], step  # type: ignore[union-attr]
        assert p.pending == 0


def test_lf_only_and_crlf_frames_read_alike():
    crlf = b"Event: Hangup\r\nUniqueid: 1.1\r\nCause-txt: Normal Clearing\r\n\r\n"
    lf = crlf.replace(b"\r\n", b"\n")
    a, b = FrameParser().feed(crlf), FrameParser().feed(lf)
    assert a[0].headers == b[0].headers == (("Event", "Hangup"), ("Uniqueid", "1.1"),  # type: ignore[union-attr]
                                            ("Cause-txt", "Normal Clearing"))


def test_repeated_keys_empty_values_and_case_insensitive_lookup():
    f = parse_frame(b"Event: Newchannel\r\nAccountCode: \r\nChanVariable: realm=\r\nChanVariable: SIPDOMAIN=x\r\n"
                    b"Value: a: b")
    assert isinstance(f, Frame)
    assert f.getall("chanvariable") == ["realm=", "SIPDOMAIN=x"]
    assert f.get("ACCOUNTCODE") == "" and f.get("value") == "a: b"


def test_response_follows_keeps_the_command_output():
    data = (b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n"
            b"Channel              Location\r\n\r\nPJSIP/8001-0000: up\r\n--END COMMAND--\r\n\r\n"
            b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
    frames = FrameParser().feed(data)
    assert len(frames) == 2
    follows = frames[0]
    assert isinstance(follows, Frame) and follows.action_id == "7"
    assert follows.get("Output") == "Channel              Location\n\nPJSIP/8001-0000: up"
    assert frames[1].event == "FullyBooted"  # type: ignore[union-attr]


def test_non_ascii_caller_names_utf8_and_gbk_arrive_intact():
    utf8 = parse_frame("Event: Newchannel\r\nCallerIDName: 张三\r\nUniqueid: 1.1".encode())
    gbk = parse_frame("Event: Newchannel\r\nCallerIDName: 李四\r\nUniqueid: 1.1".encode("gbk"))
    assert utf8.get("CallerIDName") == "张三"  # type: ignore[union-attr]
    assert gbk.get("CallerIDName") == "李四"  # type: ignore[union-attr]


def test_oversized_frame_is_malformed_and_the_stream_continues():
    p = FrameParser(max_frame_bytes=1024)
    items = p.feed(b"Event: X\r\nJunk: " + b"a" * 5000)
    assert len(items) == 1 and isinstance(items[0], MalformedFrame) and "longer than 1024" in items[0].error
    items = p.feed(b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1.1\r\n\r\n")
    assert [type(i).__name__ for i in items][-1] == "Frame" and items[-1].event == "Hangup"  # type: ignore[union-attr]


@pytest.mark.parametrize("number", ["", "<unknown>", "anonymous", "Anonymous", "<anonymous>", "12345678901234"])
def test_withheld_or_unusable_caller_id_is_a_call_without_phone(number):
    t = CallTracker()
    events = t.feed(Frame.of(("Event", "Newchannel"), Uniqueid="1.1", Linkedid="1.1", CallerIDNum=number,
                             Exten="95588"), RECEIVED)
    assert [(e.type, e.identifiers) for e in events] == [("call.offered", [])]


@pytest.mark.parametrize("number", ["8001", "206"])
def test_calls_from_internal_extensions_are_not_customer_calls(number):
    t = CallTracker()
    for name in ("Newchannel", "QueueCallerJoin", "AgentCalled", "Hangup"):
        assert t.feed(Frame.of(("Event", name), Uniqueid="1.1", Linkedid="1.1", CallerIDNum=number,
                               Queue="q", Interface="PJSIP/8002", DestUniqueid="1.2"), RECEIVED) == []


def test_agent_ids_from_config_then_device():
    t = CallTracker(AmiMapping(agents={"PJSIP/8001": "li.wei", "Agent/220": "zhang.min"}))
    assert t.agent_id("PJSIP/8001", "Li Wei", None) == "li.wei"
    assert t.agent_id("pjsip/8001", None, None) == "li.wei"
    assert t.agent_id("Local/220@agents/n", "Agent/220", None) == "zhang.min"
    assert t.agent_id(None, None, "PJSIP/8001-0000002a") == "li.wei"
    assert t.agent_id("Local/1001@from-queue/n", None, None) == "1001"
    assert t.agent_id("SIP/9001", None, None) == "9001"
    assert interface_of("Local/8001@agents-00000007;1") == "Local/8001@agents"


def _call(lid: str, *frames: dict[str, str]) -> list[Frame]:
    return [Frame.of(*f.items()) for f in frames]


def test_hangup_before_agentcomplete_and_after_give_one_ended():
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    frames = [
        {"Event": "QueueCallerJoin", **base, "Queue": "q", "Timestamp": "100"},
        {"Event": "AgentConnect", **base, "Queue": "q", "Interface": "PJSIP/8001", "DestUniqueid": "9.2",
         "HoldTime": "5", "Timestamp": "105"},
    ]
    end_a = {"Event": "AgentComplete", **base, "Queue": "q", "Interface": "PJSIP/8001", "HoldTime": "5",
             "TalkTime": "60", "Reason": "agent", "Timestamp": "165"}
    end_b = {"Event": "Hangup", **base, "Timestamp": "165"}
    for order in ((end_a, end_b), (end_b, end_a)):
        t = CallTracker()
        out = []
        for f in [*frames, *order]:
            out += t.feed(Frame.of(*f.items()), RECEIVED)
        ended = [e for e in out if e.type == "call.ended"]
        assert len(ended) == 1 and ended[0].source_event_id == "9.1/ended"
        assert ended[0].attributes["talk_seconds"] == 60 and ended[0].attributes["hold_seconds"] == 5
        assert t.active() == []


def test_queued_caller_hanging_up_without_abandon_event_is_abandoned():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    t.feed(Frame.of(("Event", "QueueCallerJoin"), *base.items(), ("Queue", "q"), ("Timestamp", "100")), RECEIVED)
    out = t.feed(Frame.of(("Event", "Hangup"), *base.items(), ("Timestamp", "130")), RECEIVED)
    assert [(e.type, e.attributes["hold_seconds"]) for e in out] == [("call.abandoned", 30)]


def test_reconcile_ends_vanished_calls_and_adopts_new_ones_with_the_live_ids():
    t = CallTracker()
    at = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)
    # Known before the outage: call A queued, call B answered.
    for f in (
        {"Event": "Newchannel", "Uniqueid": "A", "Linkedid": "A", "CallerIDNum": "13900000001", "Exten": "95588"},
        {"Event": "QueueCallerJoin", "Uniqueid": "A", "Linkedid": "A", "Queue": "vip"},
        {"Event": "Newchannel", "Uniqueid": "B", "Linkedid": "B", "CallerIDNum": "13900000002", "Exten": "95588"},
        {"Event": "QueueCallerJoin", "Uniqueid": "B", "Linkedid": "B", "Queue": "vip"},
        {"Event": "AgentConnect", "Uniqueid": "B", "Linkedid": "B", "Queue": "vip", "Interface": "PJSIP/8001",
         "DestUniqueid": "B2"},
    ):
        t.feed(Frame.of(*f.items()), RECEIVED)
    # After the outage: A is bridged with agent leg A2, B is gone, C is new and waiting in queue "loans".
    channels = [
        Frame.of(("Event", "CoreShowChannel"), ("Channel", "PJSIP/trunk-00000001"), ("Uniqueid", "A"),
                 ("Linkedid", "A"), ("CallerIDNum", "13900000001"), ("BridgeId", "br-1")),
        Frame.of(("Event", "CoreShowChannel"), ("Channel", "PJSIP/8002-00000002"), ("Uniqueid", "A2"),
                 ("Linkedid", "A"), ("CallerIDNum", "8002"), ("BridgeId", "br-1")),
        Frame.of(("Event", "CoreShowChannel"), ("Channel", "PJSIP/trunk-00000003"), ("Uniqueid", "C"),
                 ("Linkedid", "C"), ("CallerIDNum", "13900000003"), ("Exten", "95588"), ("BridgeId", "")),
    ]
    queue = [Frame.of(("Event", "QueueEntry"), ("Queue", "loans"), ("Position", "1"),
                      ("Channel", "PJSIP/trunk-00000003"), ("Uniqueid", "C"), ("CallerIDNum", "13900000003"))]
    out = t.reconcile(channels, queue, at)
    got = sorted((e.source_event_id, e.type, e.agent_id) for e in out)
    assert got == [
        ("A/answered/A2", "call.answered", "8002"),
        ("B/ended", "call.ended", "8001"),
        ("C/offered", "call.offered", None),
        ("C/queued/loans", "call.offered", None),
    ]
    assert all(e.attributes.get("reconciled") is True for e in out)
    # A second snapshot that changed nothing synthesises nothing.
    assert t.reconcile(channels, queue, at) == []


def test_ring_no_answer_is_a_missed_call_at_that_agent():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    t.feed(Frame.of(("Event", "QueueCallerJoin"), *base.items(), ("Queue", "q")), RECEIVED)
    (e,) = t.feed(Frame.of(("Event", "AgentRingNoAnswer"), *base.items(), ("Queue", "q"),
                           ("Interface", "PJSIP/8003"), ("DestUniqueid", "9.5"), ("RingTime", "15")), RECEIVED)
    assert (e.type, e.source_event_id, e.agent_id, e.attributes["ring_seconds"]) == (
        "call.missed", "9.1/missed/9.5", "8003", 15)


def test_reconcile_forgets_legs_and_bridges_missed_while_away():
    t = CallTracker()
    for f in (
        {"Event": "Newchannel", "Uniqueid": "D", "Linkedid": "D", "CallerIDNum": "13900000004"},
        {"Event": "Newchannel", "Uniqueid": "D2", "Linkedid": "D", "CallerIDNum": "8001", "Channel": "PJSIP/8001-1"},
        {"Event": "BridgeEnter", "Uniqueid": "D2", "Linkedid": "D", "BridgeUniqueid": "b"},
    ):
        t.feed(Frame.of(*f.items()), RECEIVED)
    out = t.reconcile([], [], RECEIVED)
    assert [e.type for e in out] == ["call.ended"]
    assert t.active() == [] and not t._bridges and not t._leg_channel and not t._leg_to_call


def test_hold_and_resume_of_the_caller_and_time_on_hold_at_the_end():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    out = []
    for event, ts in (("QueueCallerJoin", 100), ("AgentConnect", 105), ("Hold", 120), ("Hold", 121),
                      ("Unhold", 150), ("Hold", 160), ("Unhold", 165), ("Hangup", 200)):
        out += t.feed(Frame.of(("Event", event), *base.items(), ("Queue", "q"), ("Interface", "PJSIP/8001"),
                               ("DestUniqueid", "9.2"), ("Timestamp", str(ts))), RECEIVED)
    # the agent's leg on hold (music for the agent) is not the caller's hold
    out += t.feed(Frame.of(("Event", "Hold"), ("Uniqueid", "9.2"), ("Linkedid", "9.1")), RECEIVED)
    kinds = [(e.type, e.source_event_id) for e in out if e.type in ("call.held", "call.resumed")]
    assert kinds == [("call.held", "9.1/held/1"), ("call.resumed", "9.1/resumed/1"),
                     ("call.held", "9.1/held/2"), ("call.resumed", "9.1/resumed/2")]
    ended = out[-1]
    assert ended.type == "call.ended"
    assert (ended.attributes["on_hold_seconds"], ended.attributes["holds"]) == (35, 2)
    assert ended.attributes["talk_seconds"] == 95


def test_blind_transfer_to_another_queue_and_the_second_answer():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    out = []
    frames = [
        ("QueueCallerJoin", 100, {"Queue": "vip"}),
        ("AgentConnect", 105, {"Queue": "vip", "Interface": "PJSIP/8001", "DestUniqueid": "9.2"}),
        ("BlindTransfer", 165, {"Result": "Success", "TransfererChannel": "PJSIP/8001-0000000a",
                                "TransfereeLinkedid": "9.1", "TransfererLinkedid": "9.1",
                                "Context": "queues", "Extension": "loans"}),
        ("QueueCallerJoin", 166, {"Queue": "loans"}),
        ("AgentCalled", 167, {"Queue": "loans", "Interface": "PJSIP/8042", "DestUniqueid": "9.7"}),
        ("AgentConnect", 170, {"Queue": "loans", "Interface": "PJSIP/8042", "DestUniqueid": "9.7"}),
        ("AgentComplete", 200, {"Queue": "loans", "Interface": "PJSIP/8042", "TalkTime": "30", "HoldTime": "4"}),
    ]
    for event, ts, extra in frames:
        fields = {**base, **extra} if event != "BlindTransfer" else extra
        out += t.feed(Frame.of(("Event", event), *fields.items(), ("Timestamp", str(ts))), RECEIVED)
    got = [(e.type, e.source_event_id, e.agent_id) for e in out]
    assert ("call.transferred", "9.1/transferred/1", "8001") in got
    assert ("call.answered", "9.1/answered/9.7", "8042") in got and ("call.ringing", "9.1/ringing/9.7", "8042") in got
    transferred = next(e for e in out if e.type == "call.transferred")
    assert transferred.attributes["transfer_to"] == {"extension": "loans", "context": "queues"}
    ended = out[-1]
    assert (ended.type, ended.agent_id, ended.queue) == ("call.ended", "8042", "loans")
    assert ended.attributes["talk_seconds"] == 60 + 30  # 60 s with 8001 before the transfer, 30 s with 8042
    failed = t.feed(Frame.of(("Event", "BlindTransfer"), ("Result", "Fail"), ("TransfereeLinkedid", "9.1")),
                    RECEIVED)
    assert failed == []


def test_attended_transfer_answers_with_the_consulted_agent():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    frames = [
        {"Event": "QueueCallerJoin", **base, "Queue": "vip", "Timestamp": "100"},
        {"Event": "AgentConnect", **base, "Queue": "vip", "Interface": "PJSIP/8001", "DestUniqueid": "9.2",
         "Timestamp": "105"},
        # agent 8001 consults 8042 on a second channel (its own linked id), both enter the consult bridge
        {"Event": "Newchannel", "Uniqueid": "9.3", "Linkedid": "9.3", "CallerIDNum": "8001",
         "Channel": "PJSIP/8001-0000000b"},
        {"Event": "Newchannel", "Uniqueid": "9.4", "Linkedid": "9.3", "CallerIDNum": "8042",
         "Channel": "PJSIP/8042-0000000c"},
        {"Event": "BridgeEnter", "Uniqueid": "9.3", "Linkedid": "9.3", "BridgeUniqueid": "consult"},
        {"Event": "BridgeEnter", "Uniqueid": "9.4", "Linkedid": "9.3", "BridgeUniqueid": "consult"},
        {"Event": "AttendedTransfer", "Result": "Success", "OrigTransfererChannel": "PJSIP/8001-0000000a",
         "OrigTransfererLinkedid": "9.1", "SecondTransfererUniqueid": "9.3", "SecondBridgeUniqueid": "consult",
         "TransfereeLinkedid": "9.1", "DestType": "Bridge", "Timestamp": "140"},
        {"Event": "Hangup", **base, "Timestamp": "200"},
    ]
    out = []
    for f in frames:
        out += t.feed(Frame.of(*f.items()), RECEIVED)
    got = [(e.type, e.source_event_id, e.agent_id) for e in out if e.interaction_id == "9.1"]
    assert got[-3:] == [("call.transferred", "9.1/transferred/1", "8001"),
                        ("call.answered", "9.1/answered/9.4", "8042"),
                        ("call.ended", "9.1/ended", "8042")]
    assert out[-1].attributes["talk_seconds"] == 35 + 60


def test_caller_hanging_up_after_a_transfer_before_the_next_answer_is_ended_not_abandoned():
    t = CallTracker()
    base = {"Uniqueid": "9.1", "Linkedid": "9.1", "CallerIDNum": "13900000000"}
    out = []
    for f in (
        {"Event": "QueueCallerJoin", **base, "Queue": "vip", "Timestamp": "100"},
        {"Event": "AgentConnect", **base, "Queue": "vip", "Interface": "PJSIP/8001", "DestUniqueid": "9.2",
         "Timestamp": "105"},
        {"Event": "BlindTransfer", "Result": "Success", "TransfereeLinkedid": "9.1", "Extension": "loans",
         "TransfererChannel": "PJSIP/8001-0000000a", "Timestamp": "125"},
        {"Event": "Hangup", **base, "Timestamp": "140"},
    ):
        out += t.feed(Frame.of(*f.items()), RECEIVED)
    assert (out[-1].type, out[-1].outcome, out[-1].attributes["talk_seconds"]) == ("call.ended", "answered", 20)
