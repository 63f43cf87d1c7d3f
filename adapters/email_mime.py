"""Email adapter: raw RFC 822 / MIME bytes → one canonical ``message.received`` event.

Pure: no I/O, no clock, no logging. Both transports use it — the HTTP route
``POST /v1/channels/email/inbound`` (raw ``message/rfc822``) and the IMAP
poller — so a mail that arrives both ways yields the same event and
deduplicates on its Message-ID.

Policy, in the order :func:`parse` applies it:

- **Structure** with the standard library's ``email`` package and
  ``email.policy.default``. A multipart without a boundary, a missing start
  boundary or undecodable base64 is malformed: :class:`MalformedMail` names the
  part (``part:1.2``), and the HTTP route answers 422, the poller quarantines
  the raw bytes.
- **Charsets**: ``gb2312`` and ``gbk`` labels (and their aliases) are decoded as
  GB18030, their superset — real senders label GBK text ``gb2312`` and a strict
  GB2312 decoder turns it into replacement characters. Text is decoded
  strictly: an unknown charset or bytes invalid in the declared one are
  malformed (naming the part or header), never silently replaced.
- **Headers**: RFC 2047 encoded words are decoded with adjacent words of one
  charset joined *before* decoding, so a multibyte character split across two
  words (and mixed B/Q words) comes out whole. Raw 8-bit header bytes are read
  as UTF-8, else GB18030, else with replacement characters (headers only: a
  mangled Subject must not lose the mail).
- **Body**: the first inline ``text/plain`` part, else the first ``text/html``
  reduced to text (scripts and styles dropped, blocks become lines); a body
  without a declared charset is sniffed as ASCII, UTF-8, then GB18030. Quoted
  originals are cut at a clear marker (``-----Original Message-----``,
  ``-----邮件原件-----``, ``-----原始邮件-----``, ``On … wrote:``,
  ``在 … 写道：``, an Outlook ``From:``/``发件人:`` block after a rule), and
  the excerpt is bounded (:data:`BODY_TEXT_MAX` characters).
- **Attachments**: metadata only (filename, content type, decoded size), never
  content; at most :data:`MAX_ATTACHMENTS` listed.
- **Threading**: ``interaction_id`` is the thread root — the first References
  entry, else In-Reply-To, else the message's own Message-ID — so a reply whose
  parent never arrived, and a root arriving after its replies, share one
  interaction. A bounce without threading headers threads onto the message it
  returns (the Message-ID in its attached headers).
- **Identity**: the sender's address is the ``email`` identifier. A bounce
  identifies the failed recipient(s) (``Final-Recipient``, ``X-Failed-Recipients``)
  instead of the mailer daemon.
- **Automated mail**: bounces (``multipart/report; report-type=delivery-status``,
  ``MAILER-DAEMON``/``postmaster`` senders) get ``outcome="bounced"``;
  auto-replies (``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
  ``X-Autorespond``, ``Precedence: auto_reply``, out-of-office subjects such as
  ``自动回复``/``Automatic reply``) get ``outcome="auto_reply"``; bulk mail
  (``Precedence: bulk|junk`` with ``List-Unsubscribe``, or without a
  ``List-Id``, i.e. not a discussion list relaying a person's mail) gets
  ``outcome="bulk"``. ``attributes.automated`` carries the same marker.
- **Ids**: ``source_event_id`` is the Message-ID (without angle brackets), or
  ``sha256:<hex>`` of the raw bytes when it is missing or longer than the
  event allows.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import functools
import hashlib
import re
from email import errors as email_errors
from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, ClassVar

import msgspec

from gateway.errors import ValidationFailed
from gateway.events.model import MAX_ATTRIBUTES_BYTES, ContactEvent, Identifier
from gateway.identity import InvalidIdentifier, normalize

EVENT_TYPE = "message.received"
BODY_TEXT_MAX = 4000          # characters; CJK text is 3 bytes each in UTF-8 JSON, so ≤ 12 KB
MAX_ATTACHMENTS = 20
MAX_FILENAME = 200
MAX_ID = 200                  # ContactEvent.source_event_id / interaction_id limit
MAX_SUBJECT = 500

# Labels whose text is really GB18030 (its superset) in real mail. Python's own ``gb2312`` and ``gbk``
# codecs reject characters outside their tables that senders routinely emit under those labels.
_GB_LABELS = {"gb2312", "gbk", "gb_2312-80", "gb_2312", "csgb2312", "euc-cn", "euccn", "x-gbk", "cp936",
              "ms936", "windows-936", "chinese", "iso-ir-58", "csiso58gb231280", "x-euc-cn", "gb18030"}
# Labels Python does not know under that name, mapped to the codec that decodes them.
_LABEL_ALIASES = {"big5-hkscs": "big5hkscs", "x-big5": "big5", "cn-big5": "big5", "csbig5": "big5",
                  "unicode-1-1-utf-7": "utf-7", "ks_c_5601-1987": "cp949", "x-sjis": "shift_jis",
                  "ansi_x3.4-1968": "ascii", "us-ascii": "ascii", "x-unknown": "ascii", "default": "ascii"}

_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_BLANK_RUN = re.compile(r"\n{3,}")
_TRAILING_WS = re.compile(r"[ \t\u3000]+\n")

# Quote markers: the excerpt is cut at the first line matching one of these (a clear marker only).
_QUOTE_MARKERS = (
    re.compile(r"^-{2,}\s*(Original Message|Forwarded message|邮件原件|原始邮件|原邮件|转发的邮件)\s*-{2,}\s*$",
               re.IGNORECASE),
    re.compile(r"^在.{2,120}写道[：:]\s*$"),
    re.compile(r"^On\b.{4,200}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^_{20,}\s*$"),  # Outlook's rule above "From: … Sent: …"
)
_ON_LINE = re.compile(r"^On\b.{4,200}$", re.IGNORECASE)
_WROTE_LINE = re.compile(r"^.{0,120}\bwrote:\s*$", re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^(From|发件人|寄件者)\s*[:：]", re.IGNORECASE)

_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|自动回复|自動回覆|自动答复|自動回复|"
    r"autoreply|auto:|abwesenheit|réponse automatique|vacation reply)",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|returned mail|delivery failure|mail delivery failed|"
    r"failure notice|退信|系统退信|投递失败|无法投递)",
    re.IGNORECASE,
)


class _MemoisedDefaultPolicy(EmailPolicy):
    """``email.policy.default``, with parsed header values memoised.

    The modern policy re-parses a header on every read, and the feed parser alone reads a part's
    Content-Type a dozen times; the parsed value depends only on (name, value), so it is computed once.
    """

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value
        return _parse_header(name, "".join(_LINESEP.split(value)))


_LINESEP = re.compile(r"\n|\r")


@functools.lru_cache(maxsize=4096)
def _parse_header(name: str, value: str) -> Any:
    return policy.default.header_factory(name, value)


MIME_POLICY = _MemoisedDefaultPolicy()


class MalformedMail(ValidationFailed):
    """A mail that cannot be parsed faithfully. ``errors[0].field`` names the header or part."""


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content_type": self.content_type, "size": self.size}
        if self.filename:
            out["filename"] = self.filename
        return out


def _fail(field: str, message: str) -> MalformedMail:
    return MalformedMail([{"field": field, "message": message}])


def codec_for(label: str | None, field: str) -> str:
    """The Python codec name for a MIME charset label (GB labels → gb18030); raise naming ``field``."""
    name = (label or "ascii").strip().strip('"').lower()
    if name in _GB_LABELS:
        return "gb18030"
    name = _LABEL_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise _fail(field, f"unknown charset {label!r}") from None


def _decode_bytes(data: bytes, label: str | None, field: str) -> str:
    codec = codec_for(label, field)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _fail(field, f"bytes not valid in charset {label!r} at offset {exc.start}") from None


def _sniff(data: bytes, field: str) -> tuple[str, str]:
    """(codec, text) of an unlabelled body: ASCII, else UTF-8, else GB18030; malformed when none fits."""
    for codec in ("ascii", "utf-8", "gb18030"):
        try:
            return codec, data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise _fail(field, "no charset declared and the bytes are neither UTF-8 nor GB18030")


def _raw_8bit(text: str) -> str:
    """A header value with raw 8-bit bytes (surrogate-escaped by the parser): UTF-8, else GB18030."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    data = text.encode("ascii", "surrogateescape")
    for codec in ("utf-8", "gb18030"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace")


def decode_header_value(raw: str, field: str) -> str:
    """Decode an unstructured header: RFC 2047 words joined per charset before decoding, 8-bit tolerated."""
    unfolded = re.sub(r"\r?\n[ \t]", " ", raw).strip()
    if "=?" not in unfolded:
        return _raw_8bit(unfolded)
    try:
        chunks = decode_header(unfolded)
    except email_errors.HeaderParseError as exc:
        raise _fail(field, f"malformed encoded word: {exc}") from None
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(_raw_8bit(chunk))
        elif charset is None:
            out.append(_raw_8bit(chunk.decode("ascii", "surrogateescape")))
        else:
            out.append(_decode_bytes(chunk, charset, field))
    return "".join(out).strip()


def _raw_header(msg: Message, name: str) -> str | None:
    lname = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == lname:
            return _raw_8bit(str(value))  # raw 8-bit bytes arrive surrogate-escaped: make them text
    return None


def _header(msg: Message, name: str) -> str | None:
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    return decode_header_value(raw, f"header:{name}")


def _msgids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSGID_RE.findall(value)
    if found:
        return found
    # Some mailers omit the angle brackets; take whitespace-separated tokens that look like ids.
    return [tok for tok in value.split() if "@" in tok]


def _bounded_id(value: str) -> str:
    if len(value) <= MAX_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _address(msg: Message, name: str) -> tuple[str, str] | None:
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    # split the addresses before decoding: a decoded display name may hold commas or quotes
    unfolded = re.sub(r"\r?\n[ \t]", " ", raw).strip()
    for display, addr in getaddresses([unfolded]):
        addr = _raw_8bit(addr).strip()
        if addr and "@" in addr:
            return decode_header_value(display, f"header:{name}"), addr
    return None


def _usable_address(addr: str) -> bool:
    """An address the identity rules accept (so the event is not rejected for its identifier)."""
    if len(addr) > 128:
        return False
    try:
        normalize("email", addr)
    except InvalidIdentifier:
        return False
    return True


def _occurred_at(msg: Message, fallback: dt.datetime) -> tuple[dt.datetime, bool]:
    raw = _raw_header(msg, "Date")
    if raw:
        try:
            when = parsedate_to_datetime(re.sub(r"\s+", " ", raw.strip()))
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:  # "-0000": UTC, origin unknown (RFC 5322 §3.3)
                when = when.replace(tzinfo=dt.UTC)
            return when, True
    return fallback, False


class _TextExtractor(HTMLParser):
    """HTML → plain text: drop script/style/head, blocks and <br> become line breaks."""

    _BLOCK: ClassVar[frozenset[str]] = frozenset({
        "p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
        "blockquote", "section", "article", "header", "footer", "hr", "pre", "dt", "dd"})
    _SKIP: ClassVar[frozenset[str]] = frozenset({"script", "style", "head", "title", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Reduce HTML to readable text with the standard library's parser."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(lines).strip()


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_WS.sub("\n", text)
    return _BLANK_RUN.sub("\n\n", text).strip()


def trim_quoted(text: str) -> tuple[str, bool]:
    """Cut the text at the first clear quote marker; (text, whether anything was cut)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        hit = any(m.match(stripped) for m in _QUOTE_MARKERS)
        if not hit and _ON_LINE.match(stripped) and i + 1 < len(lines) and _WROTE_LINE.match(lines[i + 1].strip()):
            hit = True  # "On <date> <name>" wrapped before "wrote:"
        if hit and stripped.startswith("_"):
            # a rule alone is not a marker: it must introduce an Outlook header block
            following = next((ln.strip() for ln in lines[i + 1:] if ln.strip()), "")
            hit = bool(_OUTLOOK_FROM.match(following))
        if hit and i > 0:
            kept = "\n".join(lines[:i]).rstrip()
            if kept:
                return kept, True
    return text, False


def _part_path(index: tuple[int, ...]) -> str:
    return "part:" + (".".join(str(i) for i in index) if index else "0")


def _check_structure(part: Message, index: tuple[int, ...]) -> None:
    for defect in part.defects:
        if isinstance(defect, (email_errors.NoBoundaryInMultipartDefect,
                               email_errors.StartBoundaryNotFoundDefect,
                               email_errors.MultipartInvariantViolationDefect)):
            raise _fail(_part_path(index), f"malformed multipart: {type(defect).__name__}")


def _payload_bytes(part: Message, index: tuple[int, ...]) -> bytes:
    data = part.get_payload(decode=True)
    for defect in part.defects:
        if isinstance(defect, email_errors.InvalidBase64LengthDefect):
            raise _fail(_part_path(index), "base64 body cannot be decoded (invalid length)")
    if data is None:
        return b""
    assert isinstance(data, bytes)
    return data


def _walk(part: Message, index: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Message, str]]:
    """Leaf parts with their 1-based index path and content type; message/rfc822 attachments are leaves.

    The content type is read once per part: with ``policy.default`` every read re-parses the header.
    """
    _check_structure(part, index)
    ctype = part.get_content_type()
    if ctype.startswith("multipart/") and part.is_multipart():
        out: list[tuple[tuple[int, ...], Message, str]] = []
        payload = part.get_payload()
        assert isinstance(payload, list)
        for i, sub in enumerate(payload, start=1):
            out.extend(_walk(sub, index + (i,)))
        return out
    return [(index, part, ctype)]


def _filename(part: Message, index: tuple[int, ...]) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, email_errors.HeaderParseError):
        name = None
    if name is None:
        return None
    name = decode_header_value(str(name), f"{_part_path(index)}.filename") if "=?" in str(name) else str(name)
    name = _raw_8bit(name)
    return name[:MAX_FILENAME] or None


def _is_attachment(part: Message, ctype: str) -> bool:
    """An attachment: disposition says so, or a non-text part, or a text part with a file name."""
    if (part.get_content_disposition() or "").lower() == "attachment":
        return True
    if not ctype.startswith("text/"):
        return True
    return part.get_param("filename", header="content-disposition") is not None or part.get_param("name") is not None


@dataclasses.dataclass(slots=True)
class _Body:
    text: str = ""
    html_only: bool = False
    charset: str | None = None
    attachments: list[Attachment] = dataclasses.field(default_factory=list)
    attachments_total: int = 0


def _report_parts(msg: Message) -> tuple[Message | None, Message | None]:
    """The message/delivery-status part and the returned original's headers of a DSN, if any."""
    status: Message | None = None
    returned: Message | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status is None:
            status = part
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers") and returned is None:
            if ctype == "message/rfc822":
                inner = part.get_payload()
                if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                    returned = inner[0]
            else:
                raw = part.get_payload(decode=True)
                if isinstance(raw, bytes):
                    returned = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    return status, returned


def _extract_body(msg: Message) -> _Body:
    body = _Body()
    plain: tuple[tuple[int, ...], Message] | None = None
    html_part: tuple[tuple[int, ...], Message] | None = None
    for index, part, ctype in _walk(msg):
        if ctype in ("message/delivery-status", "text/rfc822-headers", "message/rfc822-headers"):
            continue
        if ctype == "message/rfc822" or _is_attachment(part, ctype):
            body.attachments_total += 1
            if len(body.attachments) < MAX_ATTACHMENTS:
                size = len(_payload_bytes(part, index)) if ctype != "message/rfc822" else len(part.as_bytes())
                body.attachments.append(Attachment(_filename(part, index), ctype, size))
            continue
        if ctype == "text/plain" and plain is None:
            plain = (index, part)
        elif ctype == "text/html" and html_part is None:
            html_part = (index, part)
    chosen = plain or html_part
    if chosen is not None:
        index, part = chosen
        label = part.get_content_charset()
        field = _part_path(index) + (" (text/plain)" if chosen is plain else " (text/html)")
        data = _payload_bytes(part, index)
        if label is None:
            # no declared charset: US-ASCII by the RFC, but real senders put UTF-8 or GBK there unlabelled
            body.charset, text = _sniff(data, field)
        else:
            text = _decode_bytes(data, label, field)
            body.charset = codec_for(label, field)
        if chosen is html_part:
            text = html_to_text(text)
            body.html_only = True
        body.text = _normalise(text)
    # a declared charset that is not text's own is still checked: an HTML alternative in an unknown
    # charset is as malformed as the plain one
    if plain is not None and html_part is not None:
        index, part = html_part
        codec_for(part.get_content_charset(), _part_path(index) + " (text/html)")
    return body


def _automation(msg: Message, sender: str | None, subject: str, is_report: bool) -> str | None:
    if is_report:
        return "bounced"
    if sender and _BOUNCE_SENDER.match(sender) and (_BOUNCE_SUBJECT.search(subject) or not subject):
        return "bounced"
    auto_submitted = (_raw_header(msg, "Auto-Submitted") or "").strip().lower()
    precedence = (_raw_header(msg, "Precedence") or "").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto_reply"
    if _raw_header(msg, "X-Autoreply") is not None or _raw_header(msg, "X-Autorespond") is not None:
        return "auto_reply"
    if precedence == "auto_reply" or _AUTO_SUBJECT.match(subject):
        return "auto_reply"
    relayed_by_a_list = _raw_header(msg, "List-Id") is not None and _raw_header(msg, "List-Unsubscribe") is None
    if precedence in ("bulk", "junk", "list") and not relayed_by_a_list:
        return "bulk"
    return None


def _dsn_fields(status: Message) -> tuple[list[str], dict[str, str]]:
    """Failed recipients and the first recipient's Action/Status/Diagnostic-Code of a delivery-status part."""
    groups = status.get_payload()
    recipients: list[str] = []
    info: dict[str, str] = {}
    if not isinstance(groups, list):
        return recipients, info
    for group in groups[1:] if len(groups) > 1 else groups:
        if not isinstance(group, Message):
            continue
        final = group.get("Final-Recipient") or group.get("Original-Recipient")
        if final:
            addr = str(final).split(";", 1)[-1].strip().strip("<>")
            if "@" in addr:
                recipients.append(addr)
        for key in ("Action", "Status", "Diagnostic-Code"):
            if key.lower() not in info and group.get(key):
                info[key.lower().replace("-", "_")] = re.sub(r"\s+", " ", str(group.get(key)))[:200]
    return recipients, info


def parse(raw: bytes, *, source: str, fallback_time: dt.datetime) -> ContactEvent:
    """Parse one raw mail into its canonical event.

    ``fallback_time`` (aware) is used when the mail has no valid ``Date`` — the
    caller passes the IMAP INTERNALDATE or the request's receive time.
    Raises :class:`MalformedMail` (a 422 ``ValidationFailed``) naming the
    header or part that cannot be parsed — also when the ``email`` package
    itself gives up on a pathological message.
    """
    try:
        return _parse(raw, source=source, fallback_time=fallback_time)
    except ValidationFailed:
        raise
    except (email_errors.MessageError, ValueError, LookupError, TypeError, IndexError, AttributeError,
            AssertionError, RecursionError) as exc:
        raise _fail("body", f"unparseable message ({type(exc).__name__})") from None


def _parse(raw: bytes, *, source: str, fallback_time: dt.datetime) -> ContactEvent:
    if not raw.strip():
        raise _fail("body", "empty message")
    msg = BytesParser(policy=MIME_POLICY).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    if not any(True for _ in msg.raw_items()):
        raise _fail("header", "no header fields: not an RFC 822 message")
    for defect in msg.defects:
        if isinstance(defect, email_errors.MissingHeaderBodySeparatorDefect) and len(msg.keys()) == 0:
            raise _fail("header", "no header fields: not an RFC 822 message")

    sender = _address(msg, "From")
    if sender is None:
        raise _fail("header:From", "missing, or carries no address")
    display, sender_addr = sender

    subject = (_header(msg, "Subject") or "")[:MAX_SUBJECT]
    message_ids = _msgids(_raw_header(msg, "Message-ID"))
    own_id = message_ids[0] if message_ids else None
    source_event_id = _bounded_id(own_id) if own_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    references = _msgids(_raw_header(msg, "References"))
    in_reply_to = _msgids(_raw_header(msg, "In-Reply-To"))

    body = _extract_body(msg)
    top_type = msg.get_content_type()
    report_type = msg.get_param("report-type")
    is_report = (top_type == "multipart/report" and isinstance(report_type, str)
                 and report_type.lower() == "delivery-status")
    automated = _automation(msg, sender_addr, subject, is_report)

    identifiers: list[Identifier] = []
    attributes: dict[str, Any] = {}
    if automated == "bounced":
        status_part, returned = _report_parts(msg)
        failed: list[str] = []
        if status_part is not None:
            failed, info = _dsn_fields(status_part)
            if info:
                attributes["bounce"] = info
        for raw_failed in (_raw_header(msg, "X-Failed-Recipients") or "").split(","):
            addr = raw_failed.strip()
            if "@" in addr and addr not in failed:
                failed.append(addr)
        identifiers = [Identifier(kind="email", value=a) for a in failed if _usable_address(a)][:8]
        if returned is not None and not references and not in_reply_to:
            returned_ids = _msgids(str(returned.get("Message-ID") or ""))
            if returned_ids:
                in_reply_to = returned_ids[:1]
                attributes["returned_message_id"] = returned_ids[0][:MAX_ID]
    elif _usable_address(sender_addr):
        identifiers = [Identifier(kind="email", value=sender_addr)]
    else:
        # e.g. root@localhost: a contact all the same, but no identifier the ingest could match or would accept
        attributes["sender_unusable"] = True

    root = references[0] if references else in_reply_to[0] if in_reply_to else own_id
    interaction_id = _bounded_id(root) if root else source_event_id

    occurred_at, dated = _occurred_at(msg, fallback_time)

    text, trimmed = trim_quoted(body.text)
    truncated = len(text) > BODY_TEXT_MAX
    text = text[:BODY_TEXT_MAX]

    if own_id:
        attributes["message_id"] = own_id[:MAX_ID]
    if in_reply_to:
        attributes["in_reply_to"] = in_reply_to[0][:MAX_ID]
    attributes["thread_root"] = interaction_id
    if display:
        attributes["from_name"] = display[:100]
    attributes["content_type"] = top_type
    if body.charset:
        attributes["charset"] = body.charset
    attributes["body_text"] = text
    if trimmed:
        attributes["quoted_trimmed"] = True
    if truncated:
        attributes["body_truncated"] = True
    if body.html_only:
        attributes["html_only"] = True
    if body.attachments:
        attributes["attachments"] = [a.as_dict() for a in body.attachments]
    if body.attachments_total > len(body.attachments):
        attributes["attachments_total"] = body.attachments_total
    if automated:
        attributes["automated"] = automated
    if not dated:
        attributes["date_missing"] = True
    _fit_attributes(attributes)

    return ContactEvent(
        source=source,
        source_event_id=source_event_id,
        channel="email",
        type=EVENT_TYPE,
        occurred_at=occurred_at,
        identifiers=identifiers,
        interaction_id=interaction_id,
        direction="inbound",
        subject=subject or None,
        outcome=automated,
        attributes=attributes,
    )


_encoder = msgspec.json.Encoder()


def _fit_attributes(attributes: dict[str, Any]) -> None:
    """Keep the encoded attributes under the event limit: shorten the excerpt, then the attachment list."""
    limit = MAX_ATTRIBUTES_BYTES - 256
    while len(_encoder.encode(attributes)) > limit:
        text: str = attributes.get("body_text", "")
        if len(text) > 200:
            attributes["body_text"] = text[: len(text) * 3 // 4]
            attributes["body_truncated"] = True
        elif attributes.get("attachments"):
            attributes["attachments"] = attributes["attachments"][:-1]
            attributes.setdefault("attachments_total", len(attributes["attachments"]) + 1)
        else:  # pragma: no cover - every other attribute is bounded far below the limit
            break
