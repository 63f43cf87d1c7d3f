"""The supervisor console on a small fixed data set: figures checked by hand, filters, search, paging,
drill-down, XSS, export (correct and streamed), quality review, audit trail."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tracemalloc
import uuid
from html import unescape
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.app import create_app
from gateway.clock import FrozenClock
from tests import console_data as data
from tests.helpers import assert_problem
from tests.people import add_user, csrf_of, login, people_settings

RANGE = {"since": "2026-11-27T00:00", "until": "2026-11-28T00:00"}
HTML = {"Accept": "text/html"}


@pytest.fixture
def settings(database_url, redis_url, tmp_path):
    return people_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def console(aiohttp_client, settings, db):
    """An app on a frozen clock with the fixed data set and a supervisor logged in."""
    app = create_app(settings, clock=FrozenClock(data.NOW))
    client = await aiohttp_client(app)
    loaded = await data.load(client, db, settings)
    await add_user(app, "lead", "supervisor", display_name="王班长")
    assert (await login(client, "lead")).status == 303
    return app, client, loaded


async def page(client, path: str, **query: Any) -> str:
    q = urlencode(query, doseq=True)
    resp = await client.get(path + ("?" + q if q else ""), headers=HTML)
    text = await resp.text()
    assert resp.status == 200, text
    return text


def figure(html: str, name: str) -> str:
    m = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert m, f"no figure {name}"
    return m.group(1)


def log_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f-]{36})">', html)


async def test_dashboard_figures_match_the_hand_computed_ones(console):
    _, client, _ = console
    html = await page(client, "/console", **RANGE)
    assert figure(html, "total") == "6"
    assert figure(html, "offered") == "4"
    assert figure(html, "answer_rate") == "75.0%"
    assert figure(html, "service_level") == "50.0%"
    assert figure(html, "abandonment") == "25.0%"
    assert figure(html, "aht") == "5:40"
    assert figure(html, "repeat_rate") == "50.0%"
    assert figure(html, "fcr") == "50.0%"
    assert figure(html, "unidentified_rate") == "33.3%"
    assert "<svg" in html and "<title>" in html
    # per hour, local time: the volume table beside the chart
    volume = html[html.index('id="volume-table"'):]
    volume = volume[:volume.index("</table>")]
    rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td class=\"num\">\d+</td>)+)</tr>", volume)
    totals = {label: int(re.findall(r">(\d+)<", cells)[-1]) for label, cells in rows}
    assert totals == {"09:00": 1, "10:00": 1, "11:00": 1, "15:00": 1, "16:00": 1, "20:00": 1}
    # top reasons and complaints against SLA
    reasons = html[html.index('id="reasons-table"'):]
    assert re.search(r"card_activation</td><td class=\"num\">2<", reasons)
    assert re.search(r"lost_card</td><td class=\"num\">1<", reasons)
    complaints = html[html.index('id="complaints-table"'):html.index('id="reasons-table"')]
    cells = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(?:<span[^>]*>)?(\d+)",
                       complaints)
    assert [(b, int(w), int(x)) for b, w, x in cells] == [("&lt;1d", 1, 0), ("1-3d", 0, 0), ("3-7d", 0, 1),
                                                          ("&gt;=7d", 0, 0)]
    assert "&gt;=7d</td><td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">1</td>" in complaints


async def test_dashboard_service_level_threshold_is_configurable(aiohttp_client, database_url, redis_url, tmp_path,
                                                                 db):
    settings = people_settings(database_url, redis_url, tmp_path, console={"service_level_seconds": 30})
    app = create_app(settings, clock=FrozenClock(data.NOW))
    client = await aiohttp_client(app)
    await data.load(client, db, settings)
    await add_user(app, "lead", "supervisor")
    await login(client, "lead")
    html = await page(client, "/console", **RANGE)
    assert figure(html, "service_level") == "75.0%"       # C2 answered after 30 s now counts


async def test_dashboard_any_range_and_daily_buckets(console):
    _, client, _ = console
    html = await page(client, "/console", since="2026-11-01T00:00", until="2026-11-29T00:00")
    assert figure(html, "total") == "6"
    assert "2026-11-27" in html                                 # daily buckets for a long range
    html = await page(client, "/console", since="2026-11-28T00:00", until="2026-11-29T00:00")
    assert figure(html, "total") == "0" and figure(html, "answer_rate") == "–"
    resp = await client.get("/console?since=2026-11-28T00:00&until=2026-11-27T00:00", headers=HTML)
    assert resp.status == 422


async def test_contact_log_filters(console):
    _, client, loaded = console
    ids = {k: str(v) for k, v in loaded["ids"].items()}
    assert set(log_ids(await page(client, "/console/interactions", **RANGE))) == set(ids.values())
    cases = [
        ({"channel": "voice"}, {"C1", "C2", "C3", "C4"}),
        ({"channel": "email"}, {"E1"}),
        ({"kind": "call"}, {"C1", "C2", "C3", "C4"}),
        ({"kind": "session"}, {"O1"}),
        ({"queue": "vip"}, {"C2"}),
        ({"agent": "8001"}, {"C1", "C4"}),
        ({"customer": "C0000002"}, {"C4", "E1"}),
        ({"outcome": "resolved"}, {"C1", "C2", "C4"}),
        ({"identification": "unidentified"}, {"C3", "O1"}),
        ({"identification": "identified"}, {"C1", "C2", "C4", "E1"}),
        ({"since": "2026-11-27T10:00", "until": "2026-11-27T15:00"}, {"C2", "C3"}),
        ({"q": "转账失败"}, {"E1"}),                      # subject and email text, Chinese
        ({"q": "加急"}, {"C1"}),                          # a wrap-up note: two Chinese characters
        ({"q": "ONERROR"}, {"E1"}),                       # case-insensitive, email text
        ({"q": "已核实身份 加急"}, {"C1"}),                # every term must match
        ({"q": "已核实身份 不存在的词"}, set()),
        ({"q": "100%"}, set()),                           # LIKE wildcards are taken literally
        ({"channel": "voice", "agent": "8001", "q": "加急"}, {"C1"}),
    ]
    for query, expected in cases:
        got = set(log_ids(await page(client, "/console/interactions", **{**RANGE, **query})))
        assert got == {ids[n] for n in expected}, (query, got)


async def test_contact_log_sorting_and_keyset_pages(aiohttp_client, database_url, redis_url, tmp_path, db):
    settings = people_settings(database_url, redis_url, tmp_path, console={"page_size": 10})
    app = create_app(settings, clock=FrozenClock(data.NOW))
    client = await aiohttp_client(app)
    loaded = await data.load(client, db, settings)
    # 25 more calls, one a minute from 12:00, so that there are three pages
    events = [{"source": "cti.test", "source_event_id": f"P{n}/offered", "channel": "voice", "type": "call.offered",
               "occurred_at": data.at(12, n), "interaction_id": f"P{n}"} for n in range(25)]
    assert (await client.post("/v1/events", json=events, headers={"X-API-Key": "dev-cti-key"})).status == 200
    await add_user(app, "lead", "supervisor")
    await login(client, "lead")
    seen: list[str] = []
    path = "/console/interactions?" + urlencode(RANGE)
    for _ in range(5):
        resp = await client.get(path, headers=HTML)
        html = await resp.text()
        seen += log_ids(html)
        m = re.search(r'href="(/console/interactions\?[^"]+)" id="next-page"', html)
        if not m:
            break
        path = unescape(m.group(1))
    assert len(seen) == 31 and len(set(seen)) == 31
    started = dict(await db.fetch("SELECT id::text, started_at FROM interactions"))
    assert [started[i] for i in seen] == sorted((started[i] for i in seen), reverse=True)
    # sorting by handle time, longest first: C4 (600), C1 (300), C2 (120), then the rest
    html = await page(client, "/console/interactions", **RANGE, sort="-handle_seconds")
    ids = log_ids(html)
    c = {k: str(v) for k, v in loaded["ids"].items()}
    assert ids[:3] == [c["C4"], c["C1"], c["C2"]]
    resp = await client.get("/console/interactions?sort=name", headers={"Accept": "application/json"})
    await assert_problem(resp, 422, "validation-failed", field="sort")
    resp = await client.get("/console/interactions?after=bogus", headers={"Accept": "application/json"})
    await assert_problem(resp, 422, "validation-failed", field="after")


async def test_bad_filters_are_named(console):
    _, client, _ = console
    json_accept = {"Accept": "application/json"}
    for query, field in (("channel=fax", "channel"), ("identification=maybe", "identification"),
                         ("since=yesterday", "since"), ("customer=NOPE", "customer"), ("kind=x", "kind")):
        resp = await client.get(f"/console/interactions?{query}", headers=json_accept)
        await assert_problem(resp, 422, "validation-failed", field=field)
    resp = await client.get(f"/console/interactions/{uuid.uuid4()}", headers=json_accept)
    await assert_problem(resp, 404, "not-found")
    resp = await client.get("/console/interactions/not-a-uuid", headers=json_accept)
    await assert_problem(resp, 404, "not-found")


async def test_xss_payloads_in_subjects_notes_and_email_text_are_escaped(console):
    _, client, loaded = console
    ids = loaded["ids"]
    pages = [await page(client, "/console/interactions", **RANGE),
             await page(client, f"/console/interactions/{ids['E1']}"),
             await page(client, f"/console/interactions/{ids['C1']}")]
    joined = "".join(pages)
    for raw in ("<script>alert('subject')</script>", "<img src=x onerror=alert('body')>",
                "<b onmouseover=alert('note')>"):
        assert raw not in joined, raw
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; 转账失败" in pages[0]
    assert "&lt;img src=x onerror=alert(&#39;body&#39;)&gt;" in pages[1]
    assert "&lt;b onmouseover=alert(&#39;note&#39;)&gt;加急&lt;/b&gt;" in pages[2]


async def test_interaction_page_shows_every_event_masked_and_is_audited(console, db):
    _, client, loaded = console
    html = await page(client, f"/console/interactions/{loaded['ids']['C1']}")
    for t in ("call.offered", "call.ringing", "call.answered", "call.ended", "contact.wrapup"):
        assert t in html
    assert "139****0001" in html and "13912340001" not in html      # identifiers masked
    assert "张**" in html and "张三丰" not in html                    # names masked
    assert "C*****01" in html and "C0000001" not in html            # customer numbers masked
    log = await page(client, "/console/interactions", **RANGE)
    assert "C*****01" in log and "C0000001" not in log and "张三丰" not in log
    [row] = await db.fetch("SELECT * FROM audit_log WHERE action = 'interaction.view'")
    assert row["actor"] == "user:lead" and row["interaction_id"] == loaded["ids"]["C1"]
    assert row["customer_id"] == loaded["a"]


def parse_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM first"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


async def test_export_matches_the_filter_and_is_audited(console, db):
    _, client, loaded = console
    resp = await client.get("/console/interactions/export.csv?" + urlencode({**RANGE, "channel": "voice"}))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="contact-log-')
    rows = parse_csv(await resp.read())
    header, body = rows[0], rows[1:]
    assert header[:3] == ["interaction_id", "started_at", "channel"]
    c = {k: str(v) for k, v in loaded["ids"].items()}
    assert [r[0] for r in body] == [c["C4"], c["C3"], c["C2"], c["C1"]]    # newest first, as the page
    c1 = dict(zip(header, body[-1], strict=True))
    assert c1["started_at"] == "2026-11-27 09:00:00" and c1["customer_no"] == "C*****01"
    assert c1["customer_name"] == "张**" and c1["handle_seconds"] == "300" and c1["agent_id"] == "8001"
    [audit] = await db.fetch("SELECT * FROM audit_log WHERE action = 'export'")
    assert audit["actor"] == "user:lead" and audit["details"]["filter"]["channels"] == ["voice"]
    # everything: Chinese text intact, the formula cell neutralised
    rows = parse_csv(await (await client.get("/console/interactions/export.csv?" + urlencode(RANGE))).read())
    by_id = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_id[c["E1"]]["subject"] == data.XSS_SUBJECT
    assert by_id[c["O1"]]["subject"] == "'=1+1"
    assert len(by_id) == 6


async def test_export_streams_without_holding_the_rows(aiohttp_client, database_url, redis_url, tmp_path, db):
    """20,000 interactions stream out in chunks; memory does not grow with the rows (traced allocations)."""
    settings = people_settings(database_url, redis_url, tmp_path, console={"export_chunk_rows": 250})
    app = create_app(settings, clock=FrozenClock(data.NOW))
    client = await aiohttp_client(app)
    await add_user(app, "lead", "supervisor")
    await login(client, "lead")
    await db.execute("""
        INSERT INTO interactions (id, source, external_id, kind, channel, status, started_at, last_event_at, subject,
                                  agent_id, queue, event_count)
        SELECT gen_random_uuid(), 'bulk', 'B' || n, 'call', 'voice', 'ended',
               timestamptz '2026-11-26 00:00+08' + n * interval '1 second', now(),
               '批量导出测试 ' || repeat('数据', 20) || n, '8' || (n % 40), 'general', 3
        FROM generate_series(1, 20000) AS n""")

    async def export(until: str) -> tuple[int, int, int, int]:
        query = urlencode({"since": "2026-11-26T00:00", "until": until})
        tracemalloc.start()
        try:
            resp = await client.get(f"/console/interactions/export.csv?{query}")
            assert resp.status == 200
            size, chunks, lines = 0, 0, 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                chunks += 1
                lines += chunk.count(b"\n")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return size, chunks, lines, peak

    # a quarter of the rows (the first 5,000 seconds of the day), then all of them
    small = await export("2026-11-26T01:23:20")
    size, chunks, lines, peak = await export("2026-11-28T00:00")
    assert small[2] == 4_999 + 1                      # rows n = 1 .. 4,999 start before 01:23:20; the header
    assert lines == 20_000 + 1
    assert size > 4_000_000 and size > 3.5 * small[0]
    assert chunks > 20                                # it arrived in pieces, not as one body
    # memory does not grow with the rows: four times the rows, about the same peak
    assert peak < small[3] * 1.3 + 500_000, f"peak {peak} for {size} bytes, {small[3]} for {small[0]} bytes"
    assert peak < size


async def test_agents_cannot_reach_the_console_or_export(console):
    app, client, _ = console
    client.session.cookie_jar.clear()
    await add_user(app, "agent1", "agent", agent_id="8001")
    await login(client, "agent1")
    for path in ("/console", "/console/interactions", "/console/interactions/export.csv", "/console/audit",
                 "/console/qa"):
        resp = await client.get(path, headers={"Accept": "application/json"}, allow_redirects=False)
        await assert_problem(resp, 403, "forbidden")
    token = await csrf_of(client)
    resp = await client.post("/console/qa/samples", data={"csrf_token": token, "size": "1"},
                             headers={"Accept": "application/json"})
    await assert_problem(resp, 403, "forbidden")


async def test_quality_review_sample_score_and_results(console, db):
    _, client, loaded = console
    token = await csrf_of(client)
    resp = await client.post("/console/qa/samples", data={"csrf_token": token, **RANGE, "size": "10"},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    sample_path = resp.headers["Location"]
    html = await page(client, sample_path)
    reviews = re.findall(r'href="/console/qa/reviews/(\d+)"', html)
    assert len(reviews) == 5                      # every interaction of the day but the abandoned call
    drawn = {r["interaction_id"]: r["id"] for r in await db.fetch("SELECT id, interaction_id FROM qa_reviews")}
    ids = loaded["ids"]
    assert ids["C3"] not in drawn
    form_keys = re.findall(r'name="score_(\w+)"', await page(client, f"/console/qa/reviews/{drawn[ids['C1']]}"))
    assert form_keys == ["greeting", "verification", "accuracy", "attitude", "compliance", "wrapup"]
    full = {"greeting": 10, "verification": 20, "accuracy": 30, "attitude": 20, "compliance": 10, "wrapup": 10}
    half = {k: v // 2 for k, v in full.items()}
    eighty = {**full, "accuracy": 10}
    for name, scores, comment in (("C1", full, "很好"), ("C4", half, "<script>x</script>"), ("C2", eighty, "")):
        resp = await client.post(f"/console/qa/reviews/{drawn[ids[name]]}", allow_redirects=False, data={
            "csrf_token": token, "comment": comment, **{f"score_{k}": str(v) for k, v in scores.items()}})
        assert resp.status == 303, await resp.text()
    resp = await client.post(f"/console/qa/reviews/{drawn[ids['E1']]}", data={
        "csrf_token": token, **{f"score_{k}": "99" for k in full}}, headers={"Accept": "application/json"})
    await assert_problem(resp, 422, "validation-failed", field="score_greeting")
    rows = await db.fetch("SELECT interaction_id, score_percent, reviewer FROM qa_reviews WHERE status = 'scored'")
    assert {r["interaction_id"]: float(r["score_percent"]) for r in rows} == {ids["C1"]: 100.0, ids["C4"]: 50.0,
                                                                             ids["C2"]: 80.0}
    # results per agent on the dashboard (reviewed "now" = 2026-11-28 12:00)
    html = await page(client, "/console", since="2026-11-28T00:00", until="2026-11-29T00:00")
    table = html[html.index('id="qa-agent-table"'):]
    assert re.search(r"<td>8001</td><td class=\"num\">2</td><td class=\"num\">75.0%</td>", table)
    assert re.search(r"<td>8002</td><td class=\"num\">1</td><td class=\"num\">80.0%</td>", table)
    over_time = html[html.index('id="qa-time-table"'):]
    assert "2026-11-28</td><td class=\"num\">3</td><td class=\"num\">76.7%" in over_time
    assert "&lt;script&gt;x&lt;/script&gt;" in await page(client, sample_path)
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log WHERE action LIKE 'qa.%' ORDER BY id")]
    assert actions == ["qa.sample", "qa.score", "qa.score", "qa.score"]


async def test_audit_page_filters_and_the_table_stays_append_only(console, db):
    _, client, loaded = console
    await page(client, f"/console/interactions/{loaded['ids']['C4']}")
    await client.get("/console/interactions/export.csv?" + urlencode(RANGE))
    html = await page(client, "/console/audit")
    assert "interaction.view" in html and "export" in html and "login" in html
    html = await page(client, "/console/audit", action="export")
    assert html.count("<code>export</code>") == 1 and "<code>login</code>" not in html
    html = await page(client, "/console/audit", customer="C0000002")
    assert "<code>interaction.view</code>" in html and "李*" in html and "李四" not in html
    html = await page(client, "/console/audit", actor="lead", action="login")
    assert html.count("<code>login</code>") == 1
    html = await page(client, "/console/audit", actor="nobody")
    assert 'class="muted">无<' in html
    # the console offers no way to change the trail, and PostgreSQL refuses to
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        resp = await client.request(method, "/console/audit", headers={"X-CSRF-Token": await csrf_of(client)})
        assert resp.status == 405
    import asyncpg

    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await db.execute("DELETE FROM audit_log")
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await db.execute("TRUNCATE audit_log")


async def test_pages_speak_english_on_request(console):
    _, client, _ = console
    html = await page(client, "/console", **RANGE)
    assert "接通率" in html and 'lang="zh-CN"' in html
    resp = await client.get("/lang/en?next=/console", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console"
    html = await page(client, "/console", **RANGE)
    assert "Answer rate" in html and 'lang="en"' in html
    for path in ("/console/interactions", "/console/qa", "/console/audit"):
        await page(client, path)


async def test_text_search_without_trigram_index_still_works(console, db):
    """The embedded PostgreSQL has no pg_trgm; on one that has it, drop the index and search again."""
    _, client, loaded = console
    await db.execute("DROP INDEX IF EXISTS events_search_trgm_idx")
    html = await page(client, "/console/interactions", **RANGE, q="转账失败")
    assert log_ids(html) == [str(loaded["ids"]["E1"])]


@pytest.mark.parametrize("since", [dt.datetime(2026, 11, 27, tzinfo=dt.UTC)])
def test_search_pattern_escapes_like_wildcards(since):
    from gateway.console.model import LogFilter
    from gateway.console.store import contact_log_sql, like_pattern

    assert like_pattern("100%_\\") == "%100\\%\\_\\\\%"
    sql, args = contact_log_sql(LogFilter(since, since + dt.timedelta(days=1), text="a  b", queue="vip"), None, 10)
    assert args[-1] == 10 and "%a%" in args and "%b%" in args and "vip" in args
    assert "vip" not in sql and "%a%" not in sql
    assert "|| '') ILIKE" in sql                          # one-letter terms do not use the trigram index
    sql, _ = contact_log_sql(LogFilter(since, since + dt.timedelta(days=1), text="转账失败"), None, 10)
    assert "|| '') ILIKE" not in sql and "event_search_text(e.subject, e.attributes) ILIKE" in sql
