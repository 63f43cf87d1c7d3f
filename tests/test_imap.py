"""The IMAP poller against a real IMAP server — Debian's Dovecot — and the real ingest on PostgreSQL.

A private Dovecot is started once per session (installed with apt-get when
missing and we are root): its own ``dovecot.conf`` in a temporary directory,
listening on a free 127.0.0.1 port, any user name with the password ``secret``
(each test logs in as a fresh user, so it gets an empty maildir), plaintext
auth on localhost, no TLS. A second instance without IDLE in its capabilities
proves the polling path. Mails are put in with IMAP APPEND.

Tests wait on the poller's progress condition, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioimaplib import aioimaplib

from adapters.imap_poller import ImapPoller, parse_fetch, parse_search, quote_mailbox
from gateway import keys
from gateway.app import create_app
from gateway.errors import StoreUnavailable
from gateway.events.sink import IngestResult
from gateway.settings import ImapSettings, Secret
from tests.conftest import FIXTURES, make_settings

EMAIL = FIXTURES / "email"
SAMPLES = FIXTURES / "samples"
PASSWORD = "secret"
GOOD = sorted(p for p in EMAIL.glob("*.eml") if not p.name.startswith("malformed_")) + sorted(
    SAMPLES.glob("email_*.eml"))


# -- a private Dovecot -------------------------------------------------------------------------------

def ensure_dovecot() -> None:
    """Install Debian's dovecot-imapd when missing (needs root: CI runs as root)."""
    if shutil.which("dovecot") and shutil.which("doveadm"):
        return
    if os.geteuid() != 0:
        pytest.skip("dovecot-imapd is not installed and installing it needs root (see .ci/run)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "dovecot-imapd"], check=True, env=env, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    """One private Dovecot instance: start, stop, restart, doveadm."""

    def __init__(self, root: Path, *, capability: str = "", tls: bool = False) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.conf = root / "dovecot.conf"
        self.cert = root / "cert.pem"
        self.proc: subprocess.Popen[bytes] | None = None
        for d in ("run", "state", "mail"):
            (root / d).mkdir()
        os.chmod(root, 0o755)
        os.chown(root / "mail", 65534, 65534)  # mail processes run as nobody (Dovecot refuses uid 0)
        ssl_conf = "ssl = no"
        if tls:  # a self-signed certificate for 127.0.0.1; clients trust it through SSL_CERT_FILE
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-keyout", str(root / "key.pem"), "-out", str(self.cert), "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            ssl_conf = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{root / 'key.pem'}"
        self.conf.write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = cg-test-{root.name}
log_path = {root}/dovecot.log
{ssl_conf}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
{capability}
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
""")

    def start(self) -> None:
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.root / "dovecot.log").read_text(errors="replace") if (self.root / "dovecot.log").exists() else ""
        raise RuntimeError(f"dovecot did not start on port {self.port}: {log[-2000:]}")

    def _descendants(self) -> list[int]:
        """Process ids started by this instance's master (read from /proc, before it is stopped)."""
        assert self.proc is not None
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            children = [p for p, pp in parents.items() if pp == pid]
            found.extend(children)
            frontier.extend(children)
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            children = self._descendants()
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            # an imap process serving an idle client can outlive its master by seconds; a restart must
            # drop every connection, as a real service restart does
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def doveadm(self, *args: str) -> str:
        out = subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True, text=True, timeout=30,
                             check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture(scope="session")
def dovecot_bin() -> None:
    ensure_dovecot()


@contextlib.contextmanager
def running_dovecot(**kwargs: Any) -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="cg-dovecot-"))
    server = Dovecot(root, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot(dovecot_bin: None) -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_tls(dovecot_bin: None) -> Iterator[Dovecot]:
    with running_dovecot(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_no_idle(dovecot_bin: None) -> Iterator[Dovecot]:
    with running_dovecot(capability="imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UIDPLUS MOVE") as s:
        yield s


# -- a test-side IMAP client ------------------------------------------------------------------------

class Mailbox:
    """APPEND mails and read flags as a mail client would, through aioimaplib."""

    def __init__(self, server: Dovecot, user: str) -> None:
        self.server = server
        self.user = user

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aioimaplib.IMAP4]:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=self.server.port, timeout=10)
        await client.wait_hello_from_server()
        assert (await client.login(self.user, PASSWORD)).result == "OK"
        try:
            yield client
        finally:
            await client.logout()

    async def append(self, *raws: bytes, mailbox: str = "INBOX") -> None:
        async with self._session() as client:
            for raw in raws:
                resp = await client.append(raw, mailbox=quote_mailbox(mailbox))
                assert resp.result == "OK", resp

    async def messages(self, mailbox: str = "INBOX") -> dict[int, tuple[set[str], bytes]]:
        """uid -> (flags, raw) of every mail in the mailbox."""
        out: dict[int, tuple[set[str], bytes]] = {}
        async with self._session() as client:
            resp = await client.select(quote_mailbox(mailbox))
            assert resp.result == "OK", resp
            search = await client.uid_search("ALL", charset=None)
            uids = parse_search(search.lines)
            for uid in uids:
                resp = await client.uid("fetch", str(uid), "(UID FLAGS BODY.PEEK[])")
                _, raw, _ = parse_fetch(resp.lines)
                meta = b" ".join(x for x in resp.lines if isinstance(x, bytes))
                flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
                out[uid] = (set(flags.group(1).decode().split()) if flags else set(), raw or b"")
        return out


# -- the app (real ingest on PostgreSQL) and pollers --------------------------------------------------

def imap_settings(server: Dovecot, user: str, **overrides: Any) -> ImapSettings:
    values: dict[str, Any] = {
        "enabled": True, "host": "127.0.0.1", "port": server.port, "security": "none", "verify_tls": False,
        "user": user, "password": Secret(PASSWORD), "mailbox": "INBOX", "processed_action": "seen",
        "processed_folder": "Processed", "poll_interval": 60.0, "idle_seconds": 60.0,
        "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.5, "timeout": 5.0, "batch_size": 4,
        "source": "email",
    }
    values.update(overrides)
    return ImapSettings(**values)


@pytest.fixture
async def app(aiohttp_client, database_url, redis_url, tmp_path) -> Any:
    client = await aiohttp_client(create_app(make_settings(database_url, redis_url, tmp_path)))
    return client.app


@pytest.fixture
def user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


class Pollers:
    """Start pollers on the app's real sink and pool; cancel them at the end of the test."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, cfg: ImapSettings, sink: Any = None) -> ImapPoller:
        poller = ImapPoller(cfg, sink=sink or self.app[keys.INGEST], pool=self.app[keys.DB],
                            clock=self.app[keys.CLOCK])
        self.tasks.append(asyncio.create_task(poller.run()))
        return poller

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()


@pytest.fixture
async def pollers(app: Any) -> AsyncIterator[Pollers]:
    p = Pollers(app)
    yield p
    await p.stop()


def crlf(raw: bytes) -> bytes:
    """What an IMAP server hands back for a stored mail: CRLF line ends."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


# -- tests ---------------------------------------------------------------------------------------------

async def test_real_samples_become_events_threads_and_seen_mail(dovecot, app, pollers, user, db):
    box = Mailbox(dovecot, user)
    await box.append(*(p.read_bytes() for p in GOOD))
    poller = pollers.start(imap_settings(dovecot, user))
    await poller.wait_until(lambda: poller.submitted == len(GOOD), timeout=30)

    assert await db.fetchval("SELECT count(*) FROM events WHERE channel = 'email'") == len(GOOD)
    thread = await db.fetchrow("SELECT kind, event_count FROM interactions WHERE external_id = $1",
                               "20210604014702.2087584-1-zhangwei3@mail.example.cn")
    assert thread["kind"] == "thread" and thread["event_count"] == 3  # root, Outlook reply, Gmail reply
    subjects = {r["subject"] for r in await db.fetch("SELECT subject FROM events")}
    assert {"信用卡刷卡失敗", "回复: 回复: 转账问题", "账单疑问", "自动回复: 您的对账单",
            "答复: [PATCH net-next] tipc: Return the correct errno code"} <= subjects
    outcomes = {r["outcome"] for r in await db.fetch("SELECT outcome FROM events")}
    assert {"bounced", "auto_reply", "bulk", None} == outcomes

    messages = await box.messages()
    assert all("\\Seen" in flags for flags, _ in messages.values()), "marked only after commit, and all of them"
    cursor = await db.fetchrow("SELECT uidvalidity, last_uid FROM imap_cursor")
    assert cursor["last_uid"] == max(messages) and cursor["uidvalidity"] == poller.uidvalidity


async def test_idle_delivers_a_newly_appended_mail(dovecot, app, pollers, user, db):
    poller = pollers.start(imap_settings(dovecot, user, poll_interval=600.0))
    await poller.wait_until(lambda: poller.idle, timeout=15)
    started = time.monotonic()
    await Mailbox(dovecot, user).append((SAMPLES / "email_thread_1_root_usascii.eml").read_bytes())
    await poller.wait_until(lambda: poller.submitted == 1, timeout=15)
    assert time.monotonic() - started < 10, "pushed by IDLE, not found by a poll (poll_interval is 600 s)"
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_polling_when_the_server_has_no_idle(dovecot_no_idle, app, pollers, user, db):
    poller = pollers.start(imap_settings(dovecot_no_idle, user, poll_interval=0.2))
    await poller.wait_until(lambda: poller.sessions == 1, timeout=15)
    assert poller._has("MOVE") and not poller._has("IDLE")
    await Mailbox(dovecot_no_idle, user).append((EMAIL / "big5_qp_card_declined.eml").read_bytes())
    await poller.wait_until(lambda: poller.submitted == 1, timeout=15)
    assert not poller.idle
    assert await db.fetchval("SELECT subject FROM events") == "信用卡刷卡失敗"


async def test_reconnects_after_the_server_restarts(dovecot, app, pollers, user, db):
    box = Mailbox(dovecot, user)
    await box.append((SAMPLES / "email_thread_1_root_usascii.eml").read_bytes())
    poller = pollers.start(imap_settings(dovecot, user))
    await poller.wait_until(lambda: poller.submitted == 1 and poller.idle, timeout=15)
    await asyncio.get_running_loop().run_in_executor(None, dovecot.restart)
    await poller.wait_until(lambda: poller.sessions >= 2 and poller.idle, timeout=20)
    await box.append((SAMPLES / "email_thread_2_reply_gb2312_base64_outlook.eml").read_bytes())
    await poller.wait_until(lambda: poller.submitted == 2, timeout=15)
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert await db.fetchval("SELECT event_count FROM interactions") == 2


async def test_uidvalidity_change_rereads_without_duplicates(dovecot, app, pollers, user, db):
    box = Mailbox(dovecot, user)
    await box.append(*(p.read_bytes() for p in sorted(SAMPLES.glob("email_*.eml"))))
    cfg = imap_settings(dovecot, user)
    poller = pollers.start(cfg)
    await poller.wait_until(lambda: poller.submitted == 2, timeout=15)
    old_validity = poller.uidvalidity
    await pollers.stop()

    new_validity = old_validity + 1000
    dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new_validity), "INBOX")
    await box.append((EMAIL / "reply_on_wrote_utf8.eml").read_bytes())

    poller = pollers.start(cfg)
    await poller.wait_until(lambda: poller.submitted == 3, timeout=15)  # re-read all three
    assert poller.uidvalidity == new_validity
    assert await db.fetchval("SELECT count(*) FROM events") == 3, "the two re-read mails were duplicates"
    assert await db.fetchval("SELECT event_count FROM interactions") == 3
    cursor = await db.fetchrow("SELECT uidvalidity, last_uid FROM imap_cursor")
    assert cursor["uidvalidity"] == new_validity and cursor["last_uid"] == 3


async def test_malformed_mail_is_quarantined_with_its_raw_bytes_and_the_next_one_processed(
        dovecot, app, pollers, user, db):
    bad = (EMAIL / "malformed_unknown_charset.eml").read_bytes()
    good = (EMAIL / "gbk_8bit_reply_parent_missing.eml").read_bytes()
    box = Mailbox(dovecot, user)
    await box.append(bad, good)
    poller = pollers.start(imap_settings(dovecot, user))
    await poller.wait_until(lambda: poller.quarantined == 1 and poller.submitted == 1, timeout=15)

    row = await db.fetchrow("SELECT adapter, source, source_ref, error, raw FROM quarantine")
    assert row["adapter"] == "imap" and row["source"] == "email"
    assert row["raw"] == crlf(bad)
    assert "part:0 (text/plain)" in row["error"] and "x-klingon-tlh" in row["error"]
    assert row["source_ref"].endswith(f"/INBOX/{poller.uidvalidity}/1")
    assert await db.fetchval("SELECT subject FROM events") == "回复: 回复: 转账问题"
    flags = {uid: f for uid, (f, _) in (await box.messages()).items()}
    assert "\\Seen" not in flags[1], "a quarantined mail stays unread for a person to see"
    assert "\\Seen" in flags[2]


async def test_move_to_processed_folder(dovecot, app, pollers, user, db):
    box = Mailbox(dovecot, user)
    await box.append((EMAIL / "html_only_newsletter_utf8.eml").read_bytes(),
                     (EMAIL / "malformed_no_from.eml").read_bytes())
    poller = pollers.start(imap_settings(dovecot, user, processed_action="move", processed_folder="Done Mail"))
    await poller.wait_until(lambda: poller.submitted == 1 and poller.quarantined == 1, timeout=15)
    inbox = await box.messages()
    assert [raw for _, raw in inbox.values()] == [crlf((EMAIL / "malformed_no_from.eml").read_bytes())]
    done = await box.messages("Done Mail")
    assert len(done) == 1 and b"newsletter.202611.42@news.example.com" in next(iter(done.values()))[1]


async def test_nothing_marked_or_advanced_when_the_store_is_unavailable(dovecot, app, pollers, user, db):
    class FailingOnce:
        """Our sink interface, failing its first submit as the real one does when PostgreSQL is down."""

        def __init__(self, real: Any) -> None:
            self.real = real
            self.calls = 0

        async def submit(self, events: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise StoreUnavailable("PostgreSQL is unreachable", store="postgresql")
            return await self.real.submit(events)

    box = Mailbox(dovecot, user)
    await box.append((EMAIL / "split_encoded_word_attachment_utf8.eml").read_bytes())
    sink = FailingOnce(app[keys.INGEST])
    poller = pollers.start(imap_settings(dovecot, user), sink=sink)
    await poller.wait_until(lambda: poller.submitted == 1, timeout=15)
    assert sink.calls == 2 and poller.sessions == 2, "the failed session ended and a new one retried"
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_app_runs_the_poller_when_enabled(dovecot, aiohttp_client, database_url, redis_url, tmp_path, user,
                                                db):
    await Mailbox(dovecot, user).append((EMAIL / "auto_reply_exchange_oof_gb2312.eml").read_bytes())
    cfg = imap_settings(dovecot, user)
    settings = make_settings(database_url, redis_url, tmp_path)
    settings = settings.replace(imap=cfg)
    client = await aiohttp_client(create_app(settings))
    poller = client.app[keys.IMAP_POLLER]
    await poller.wait_until(lambda: poller.submitted == 1, timeout=15)
    assert await db.fetchval("SELECT outcome FROM events") == "auto_reply"
    await Mailbox(dovecot, user).append((EMAIL / "malformed_multipart_no_boundary.eml").read_bytes())
    await poller.wait_until(lambda: poller.quarantined == 1, timeout=15)
    metrics = await (await client.get("/metrics")).text()
    assert 'cg_quarantined_total{adapter="imap"} 1.0' in metrics


@pytest.mark.parametrize("security", ["ssl", "starttls"])
async def test_tls_implicit_and_starttls_with_a_verified_certificate(dovecot_tls, app, pollers, user, db,
                                                                     monkeypatch, security):
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_tls.cert))  # trust the test CA, verify as usual
    await Mailbox(dovecot_tls, user).append((EMAIL / "big5_qp_card_declined.eml").read_bytes())
    port = dovecot_tls.tls_port if security == "ssl" else dovecot_tls.port
    poller = pollers.start(imap_settings(dovecot_tls, user, security=security, port=port, verify_tls=True))
    await poller.wait_until(lambda: poller.submitted == 1, timeout=15)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_an_untrusted_certificate_is_refused_and_retried(dovecot_tls, app, pollers, user, db):
    await Mailbox(dovecot_tls, user).append((EMAIL / "big5_qp_card_declined.eml").read_bytes())
    poller = pollers.start(imap_settings(dovecot_tls, user, security="ssl", port=dovecot_tls.tls_port,
                                         verify_tls=True))
    await poller.wait_until(lambda: poller.last_error == "SSLCertVerificationError", timeout=15)
    assert poller.sessions == 0 and poller.submitted == 0
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_a_mail_the_ingest_rejects_is_quarantined_not_dropped(dovecot, app, pollers, user, db):
    class RejectingFirst:
        """Our sink interface: the first event of the first call comes back rejected, as the ingest does."""

        def __init__(self, real: Any) -> None:
            self.real = real
            self.rejected: str | None = None

        async def submit(self, events: Any) -> Any:
            if self.rejected is None:
                self.rejected = events[0].source_event_id
                rest = await self.real.submit(events[1:])
                return [IngestResult("rejected", events[0].source_event_id, field="identifiers[0].value",
                                     message="not an email address"), *rest]
            return await self.real.submit(events)

    raws = [(SAMPLES / "email_thread_1_root_usascii.eml").read_bytes(),
            (EMAIL / "reply_on_wrote_utf8.eml").read_bytes()]
    await Mailbox(dovecot, user).append(*raws)
    sink = RejectingFirst(app[keys.INGEST])
    poller = pollers.start(imap_settings(dovecot, user), sink=sink)
    await poller.wait_until(lambda: poller.quarantined == 1 and poller.submitted == 1, timeout=15)
    row = await db.fetchrow("SELECT error, raw FROM quarantine")
    assert row["error"] == "rejected by ingest: identifiers[0].value: not an email address"
    assert row["raw"] == crlf(raws[0])
    assert await db.fetchval("SELECT count(*) FROM events") == 1
