"""The console in a real browser: Playwright driving Debian's Chromium (never a downloaded one).

Login, the dashboard, filtering the contact log (Chinese text search), drill-down into an interaction
whose note carries an XSS payload (no dialog may open), CSV export as a download, logout. Screenshots
go to the test's temporary directory.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.clock import FrozenClock
from tests import console_data as data
from tests.people import PASSWORD, add_user, people_settings

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt when missing (CI runs as root)."""
    path = shutil.which("chromium")
    if path is None:
        result = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True,
                                timeout=900, check=False)
        path = shutil.which("chromium")
        if path is None:
            pytest.fail(f"Chromium is missing and apt-get could not install it: {result.stderr[-500:]}")
    return path


@pytest.fixture
async def browser(chromium):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def test_login_filter_drill_down_export_logout(aiohttp_client, database_url, redis_url, tmp_path, db,
                                                    browser):
    settings = people_settings(database_url, redis_url, tmp_path)
    app = create_app(settings, clock=FrozenClock(data.NOW))
    client = await aiohttp_client(app)
    loaded = await data.load(client, db, settings)
    await add_user(app, "lead", "supervisor", display_name="王班长")
    base = str(client.make_url("")).rstrip("/")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    context = await browser.new_context(accept_downloads=True, locale="zh-CN")
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # anonymous: sent to the login form, then back to where we wanted to go
    await page.goto(base + "/console/interactions")
    assert "/login?next=" in page.url
    await page.fill("input[name=name]", "lead")
    await page.fill("input[name=password]", "wrong password!")
    await page.click("button[type=submit]")
    assert "用户名或密码错误" in await page.inner_text("main")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url("**/console/interactions")
    assert "王班长" in await page.inner_text("header")
    await page.screenshot(path=str(shots / "01-contact-log.png"), full_page=True)

    # the dashboard's figures
    await page.click("text=概览")
    await page.wait_for_url("**/console")
    assert await page.inner_text("[data-figure=answer_rate]") == "75.0%"
    assert await page.inner_text("[data-figure=aht]") == "5:40"
    assert await page.locator("svg").count() >= 3
    await page.screenshot(path=str(shots / "02-dashboard.png"), full_page=True)

    # filter the log: voice calls whose note mentions 加急
    await page.click("text=接触记录")
    await page.wait_for_url("**/console/interactions")
    assert await page.locator("#log tbody tr[data-id]").count() == 6
    await page.select_option("select[name=channel]", "voice")
    await page.fill("input[name=q]", "加急")
    await page.click("#log-filter button[type=submit]")
    await page.wait_for_load_state()
    rows = page.locator("#log tbody tr[data-id]")
    assert await rows.count() == 1
    assert await rows.first.get_attribute("data-id") == str(loaded["ids"]["C1"])
    await page.screenshot(path=str(shots / "03-filtered.png"), full_page=True)

    # drill down: every event, the note shown as text, no script run
    await rows.first.locator("a").click()
    await page.wait_for_url(f"**/console/interactions/{loaded['ids']['C1']}")
    events = await page.inner_text("#events")
    for t in ("call.offered", "call.answered", "call.ended", "contact.wrapup"):
        assert t in events
    assert "<b onmouseover=alert('note')>加急</b>" in events        # the payload as visible text
    await page.hover("#events pre")
    await page.screenshot(path=str(shots / "04-interaction.png"), full_page=True)

    # an email with payloads in its subject and text
    await page.goto(base + f"/console/interactions/{loaded['ids']['E1']}")
    assert data.XSS_SUBJECT in await page.inner_text("#interaction-summary")
    assert dialogs == []

    # export the voice calls of the day as CSV
    await page.goto(base + "/console/interactions?since=2026-11-27T00:00&until=2026-11-28T00:00&channel=voice")
    async with page.expect_download() as info:
        await page.click("#export-link")
    download = await info.value
    target = tmp_path / download.suggested_filename
    await download.save_as(str(target))
    raw = Path(target).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows_csv = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows_csv) == 1 + 4 and {r[2] for r in rows_csv[1:]} == {"voice"}

    # English, then log out
    await page.click("header a.lang")
    await page.wait_for_load_state()
    assert "Contact log" in await page.inner_text("header")
    await page.click("header button.link")
    await page.wait_for_url("**/login")
    await page.goto(base + "/console")
    assert "/login?next=" in page.url
    await page.screenshot(path=str(shots / "05-logged-out.png"))
    await context.close()
    assert sorted(p.name for p in shots.iterdir()) == ["01-contact-log.png", "02-dashboard.png", "03-filtered.png",
                                                       "04-interaction.png", "05-logged-out.png"]
    # the loaded calls also ring at agents, and every screen-pop is audited: look at the supervisor's own trail
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log WHERE action <> 'screenpop' "
                                                   "ORDER BY id")]
    assert actions[1:3] == ["login.failed", "login"] and "export" in actions and actions[-1] == "logout"
