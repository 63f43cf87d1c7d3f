"""The pure email parser on real and real-world-shaped mails: golden events, and the malformed ones.

Golden files: ``tests/fixtures/email/expected/<mail>.json`` is the canonical
event of ``<mail>.eml`` (fixtures under ``tests/fixtures/email/`` and the shared
samples ``tests/fixtures/samples/email_*.eml``). Regenerate them after a
reviewed change with ``CG_UPDATE_GOLDEN=1 pytest tests/test_email_mime.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import msgspec
import pytest

from adapters import email_mime
from adapters.email_mime import (
    BODY_TEXT_MAX,
    MalformedMail,
    decode_header_value,
    html_to_text,
    parse,
    trim_quoted,
)
from gateway.events.model import MAX_ATTRIBUTES_BYTES, check_event
from tests.conftest import FIXTURES

EMAIL = FIXTURES / "email"
EXPECTED = EMAIL / "expected"
FALLBACK = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)

GOOD = sorted(p for p in EMAIL.glob("*.eml") if not p.name.startswith("malformed_")) + sorted(
    (FIXTURES / "samples").glob("email_*.eml")
)
MALFORMED = {
    "malformed_unknown_charset.eml": ("part:0 (text/plain)", "unknown charset 'x-klingon-tlh'"),
    "malformed_multipart_no_boundary.eml": ("part:0", "NoBoundaryInMultipartDefect"),
    "malformed_no_from.eml": ("header:From", "missing"),
    "malformed_undecodable_gb2312_body.eml": ("part:0 (text/plain)", "not valid in charset 'gb2312'"),
}


def _event(path: Path) -> dict:
    return msgspec.to_builtins(parse(path.read_bytes(), source="email", fallback_time=FALLBACK))


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_golden_event(path: Path) -> None:
    got = _event(path)
    golden = EXPECTED / (path.stem + ".json")
    if os.environ.get("CG_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert golden.exists(), f"no golden file for {path.name}"
    assert got == json.loads(golden.read_text(encoding="utf-8"))
    # every event is a valid canonical event: known type, bounded attributes
    check_event(parse(path.read_bytes(), source="email", fallback_time=FALLBACK))


def test_every_fixture_has_a_golden_file_and_a_source_line() -> None:
    goldens = {p.stem for p in EXPECTED.glob("*.json")}
    assert goldens == {p.stem for p in GOOD}
    readme = (EMAIL / "README.md").read_text(encoding="utf-8")
    for path in EMAIL.glob("*.eml"):
        assert f"`{path.name}`" in readme, f"{path.name} has no source line in tests/fixtures/email/README.md"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_mail_names_the_header_or_part(name: str) -> None:
    field, message = MALFORMED[name]
    with pytest.raises(MalformedMail) as info:
        parse((EMAIL / name).read_bytes(), source="email", fallback_time=FALLBACK)
    assert info.value.errors[0]["field"] == field
    assert message in info.value.errors[0]["message"]
    assert info.value.status == 422


def test_thread_root_reply_and_late_root_share_one_interaction() -> None:
    root = _event(FIXTURES / "samples" / "email_thread_1_root_usascii.eml")
    reply = _event(FIXTURES / "samples" / "email_thread_2_reply_gb2312_base64_outlook.eml")
    third = _event(EMAIL / "reply_on_wrote_utf8.eml")
    assert root["interaction_id"] == reply["interaction_id"] == third["interaction_id"]
    assert root["interaction_id"] == root["source_event_id"] == "20210604014702.2087584-1-zhangwei3@mail.example.cn"
    # the reply's parent (second mail) is not the root: References' first entry wins
    assert third["attributes"]["in_reply_to"] != third["interaction_id"]


def test_reply_whose_parent_never_arrived_threads_on_references_root() -> None:
    event = _event(EMAIL / "gbk_8bit_reply_parent_missing.eml")
    assert event["interaction_id"] == "first-question-0001@example.cn"
    assert event["subject"] == "回复: 回复: 转账问题"  # raw 8-bit GBK header bytes


def test_gb2312_subject_mixing_b_and_q_words() -> None:
    reply = _event(FIXTURES / "samples" / "email_thread_2_reply_gb2312_base64_outlook.eml")
    assert reply["subject"] == "答复: [PATCH net-next] tipc: Return the correct errno code"
    assert reply["attributes"]["body_text"] == "Sorry, this patch is wrong, please ignore it, thanks :)"
    assert reply["attributes"]["quoted_trimmed"] is True


def test_gb2312_label_with_gbk_only_characters_decodes_as_gb18030() -> None:
    event = _event(EMAIL / "gb2312_label_gbk_chars_kopano.eml")
    assert event["subject"].startswith("讀取")  # 讀 is not in GB2312: a strict decoder makes it U+FFFD
    assert event["attributes"]["from_name"] == "梁祐晟"
    assert "\ufffd" not in event["subject"]


def test_multibyte_character_split_across_encoded_words() -> None:
    word = "账单".encode()
    header = ("=?UTF-8?B?" + base64.b64encode(word[:4]).decode() + "?=\r\n =?UTF-8?Q?"
              + "".join(f"={b:02X}" for b in word[4:]) + "?=")
    assert decode_header_value(header, "header:Subject") == "账单"
    gb = "转账".encode("gb2312")
    split = f"=?gb2312?B?{base64.b64encode(gb[:3]).decode()}?= =?gb2312?B?{base64.b64encode(gb[3:]).decode()}?="
    assert decode_header_value(split, "header:Subject") == "转账"


def test_unknown_charset_in_a_header_names_the_header() -> None:
    raw = b"From: a@example.org\r\nSubject: =?x-nope?B?YWJj?=\r\nMessage-ID: <h1@example.org>\r\n\r\nbody\r\n"
    with pytest.raises(MalformedMail) as info:
        parse(raw, source="email", fallback_time=FALLBACK)
    assert info.value.errors[0]["field"] == "header:Subject"


def test_attachments_are_metadata_only() -> None:
    event = _event(EMAIL / "split_encoded_word_attachment_utf8.eml")
    assert event["attributes"]["attachments"] == [
        {"content_type": "application/pdf", "size": 2064, "filename": "对账单.pdf"}
    ]
    assert "PDF" not in json.dumps(event)


def test_html_only_mail_reduced_to_text() -> None:
    event = _event(EMAIL / "html_only_newsletter_utf8.eml")
    text = event["attributes"]["body_text"]
    assert event["attributes"]["html_only"] is True
    assert "<" not in text and "var t" not in text and "p{color" not in text
    assert "大额存单利率 2.15%&起" in text
    assert html_to_text("<p>a&nbsp;b</p><br/>c &amp;lt;") == "a b\n\nc &lt;"


def test_automated_mail_is_marked() -> None:
    assert _event(EMAIL / "auto_reply_exchange_oof_gb2312.eml")["outcome"] == "auto_reply"
    assert _event(EMAIL / "html_only_newsletter_utf8.eml")["outcome"] == "bulk"
    # a discussion list relays a person's mail with Precedence: bulk and List-Id: not automated
    assert "outcome" not in _event(FIXTURES / "samples" / "email_thread_1_root_usascii.eml")
    dsn = _event(EMAIL / "bounce_sendmail_report_mikel_mail.eml")
    assert dsn["outcome"] == "bounced"
    assert dsn["identifiers"] == [{"kind": "email", "value": "edwin@zzzzzzz.com"}]  # the failed recipient
    assert dsn["attributes"]["bounce"]["status"] == "5.3.0"
    assert dsn["interaction_id"] == "200712232303.lBNN3jDq002941@mail12.rrrr.com.au"  # the returned mail
    plain = _event(EMAIL / "bounce_gmail_plain_flanker.eml")
    assert plain["outcome"] == "bounced"
    assert plain["identifiers"] == [{"kind": "email", "value": "awfawfawfawfawfaw@someserverhere.com"}]


def test_missing_message_id_hashes_the_raw_bytes_and_missing_date_uses_fallback() -> None:
    raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    event = parse(raw, source="email", fallback_time=FALLBACK)
    assert event.source_event_id.startswith("sha256:") and len(event.source_event_id) == 71
    assert event.source_event_id == parse(raw, source="email", fallback_time=FALLBACK).source_event_id
    assert event.interaction_id == event.source_event_id
    assert event.occurred_at == FALLBACK and event.attributes["date_missing"] is True


def test_excerpt_and_attributes_stay_bounded() -> None:
    body = ("很长的正文。" * 3000).encode("utf-8")
    parts = [b"From: a@example.org\r\nMessage-ID: <long@example.org>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n"]
    for i in range(40):
        parts.append(f"--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"{'x' * 300}{i}.png\"\r\n"
                     f"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n".encode())
    raw = b"".join(parts) + b"--XX--\r\n"
    event = parse(raw, source="email", fallback_time=FALLBACK)
    check_event(event)
    attrs = event.attributes
    assert len(attrs["body_text"]) <= BODY_TEXT_MAX and attrs["body_truncated"] is True
    assert len(msgspec.json.encode(attrs)) < MAX_ATTRIBUTES_BYTES
    assert attrs["attachments_total"] == 40 and len(attrs["attachments"]) <= email_mime.MAX_ATTACHMENTS
    assert all(len(a["filename"]) <= email_mime.MAX_FILENAME for a in attrs["attachments"])


def test_quote_markers() -> None:
    assert trim_quoted("Hi\n\n-----Original Message-----\nFrom: x") == ("Hi", True)
    assert trim_quoted("好的\n\n在 2026年11月28日 10:00，客服 写道：\n> 原文") == ("好的", True)
    assert trim_quoted("ok\n________________________________\n发件人: 客服\n") == ("ok", True)
    assert trim_quoted("a rule\n________________________________\nnot a header") == (
        "a rule\n________________________________\nnot a header", False)
    # a marker on the first line leaves the text alone rather than emptying it
    assert trim_quoted("-----Original Message-----\nonly quote") == ("-----Original Message-----\nonly quote", False)


def test_empty_and_non_mail_bodies_are_malformed() -> None:
    for raw in (b"", b"   \r\n", b"\x00\x01 not a mail at all"):
        with pytest.raises(MalformedMail):
            parse(raw, source="email", fallback_time=FALLBACK)


def test_a_sender_the_identity_rules_refuse_leaves_the_mail_unidentified() -> None:
    raw = (b"From: Cron Daemon <root@localhost>\r\nSubject: job output\r\nMessage-ID: <c1@localhost>\r\n"
           b"Date: Sat, 28 Nov 2026 12:00:00 +0800\r\n\r\nok\r\n")
    event = parse(raw, source="email", fallback_time=FALLBACK)
    assert event.identifiers == [] and event.attributes["sender_unusable"] is True


def test_unlabelled_8bit_body_is_sniffed_and_a_display_name_with_a_comma_stays_one_address() -> None:
    name = "=?UTF-8?B?" + base64.b64encode("王, 先生".encode()).decode() + "?="
    raw = (f"From: {name} <wang@example.cn>\r\nMessage-ID: <s1@example.cn>\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + "转账失败".encode("gbk") + b"\r\n"
    event = parse(raw, source="email", fallback_time=FALLBACK)
    assert event.identifiers[0].value == "wang@example.cn"
    assert event.attributes["from_name"] == "王, 先生"
    assert event.attributes["body_text"] == "转账失败" and event.attributes["charset"] == "gb18030"
