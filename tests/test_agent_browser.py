"""The agent desktop in a real browser: Playwright driving Debian's Chromium (never a downloaded browser).

An agent logs in; a call rings at them through the AMI adapter (a fake Asterisk over TCP); the pop appears
with the right customer and alerts; the agent uses the keyboard and wraps up. A screenshot is saved under
the test's output directory (and to ``docs/agent-desktop.png`` with ``CG_UPDATE_SCREENSHOT=1``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import keys
from gateway.app import create_app
from gateway.settings import PROJECT_ROOT
from gateway.simulate.pbx import call_frames
from tests.ami_fake_server import FakeAmiServer
from tests.people import PASSWORD, add_user, people_settings
from tests.test_screenpop import PHONE, doc, ev, ingest, put_customer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt when missing (idempotent); with a CJK font for the screenshots."""
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, timeout=900)
        path = shutil.which("chromium")
    assert path, "chromium is not installed"
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    if not fonts.strip():   # the page reads the same without it; only the screenshot would show boxes
        subprocess.run(["apt-get", "install", "-y", "fonts-wqy-microhei"], capture_output=True, timeout=900,
                       check=False)
    return path


async def test_agent_logs_in_gets_a_pop_over_ami_and_wraps_up(aiohttp_client: Any, database_url: str,
                                                                redis_url: str, tmp_path: Path, db: Any,
                                                                chromium: str) -> None:
    from playwright.async_api import async_playwright, expect

    ami = FakeAmiServer()
    await ami.start()
    settings = people_settings(database_url, redis_url, tmp_path, ami={
        "enabled": True, "host": "127.0.0.1", "port": ami.port, "username": "gateway", "secret": "s3cret",
        "reconnect_initial": 0.05, "reconnect_max": 0.2, "ping_interval": 0.0})
    client = await aiohttp_client(create_app(settings))
    app = client.server.app
    await add_user(app, "agent1", "agent", agent_id="8001", display_name="王小明")
    await put_customer(client, "C0000000001", doc())
    await ingest(app, ev("transfer.failed", minutes_ago=7, channel="mobile_banking", source="mobile-banking",
                         interaction_id="s-1", identifiers=[{"kind": "phone", "value": PHONE}],
                         reason="daily_limit_exceeded"))
    await asyncio.wait_for(ami.logged_in.wait(), 10)
    base = str(client.make_url("")).rstrip("/")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
            await page.goto(base + "/agent")
            await page.fill("input[name=name]", "agent1")
            await page.fill("input[name=password]", PASSWORD)
            await page.press("input[name=password]", "Enter")
            await page.wait_for_url(base + "/agent")
            await expect(page.locator("#conn")).to_have_class("conn online", timeout=10_000)
            await expect(page.locator(".waiting")).to_be_visible()

            # a call rings at agent 8001 through the AMI adapter
            ring, _, _ = call_frames("1764401234.55", "13912345678", "张三丰", "8001", "vip", time.time(), ("1", "3"))
            await ami.send(ring)
            card = page.locator(".popcard.state-identified")
            await expect(card).to_be_visible(timeout=10_000)
            await expect(card.locator(".who .name")).to_contain_text("张**")
            await expect(card.locator(".who .name")).to_contain_text("C0000000001")
            await expect(card.locator(".callbar")).to_contain_text("139****5678")
            await expect(card.locator(".callbar")).to_contain_text("1 › 3")
            alerts = card.locator(".alert")
            await expect(alerts.first).to_have_attribute("data-rule", "complaint_past_sla")  # most severe first
            for rule, text in (("vip", "贵宾客户"), ("complaint_past_sla", "CS-2026-0001"),
                               ("likely_reason_digital_failure", "转账失败（超过日累计限额）")):
                await expect(card.locator(f".alert[data-rule={rule}]")).to_contain_text(text)
            await expect(page.locator(".timeline tbody tr").first).to_be_visible(timeout=10_000)
            await page.screenshot(path=str(tmp_path / "agent-desktop.png"), full_page=True)
            if os.environ.get("CG_UPDATE_SCREENSHOT"):
                await expect(page.locator("#pop.flash")).to_have_count(0, timeout=5_000)
                (PROJECT_ROOT / "docs").mkdir(exist_ok=True)
                await page.screenshot(path=str(PROJECT_ROOT / "docs" / "agent-desktop.png"), full_page=False)

            # the keyboard: "/" goes to the search box, Alt+W to the wrap-up
            await page.locator("body").click(position={"x": 5, "y": 5})
            await page.keyboard.press("/")
            assert await page.evaluate("document.activeElement.id") == "search-value"
            await page.keyboard.press("Escape")
            await page.keyboard.press("Alt+w")
            assert await page.evaluate("document.activeElement.id") == "wrapup-disposition"
            await page.select_option("#wrapup-disposition", "resolved_first_contact")
            await page.fill("textarea[name=note]", "已说明日累计限额，客户将改用柜面转账")
            await page.click(".wrapup button[type=submit]")
            await expect(page.locator(".done")).to_contain_text("小结已保存")
            await browser.close()
    finally:
        await ami.close()
    row = await db.fetchrow("SELECT e.outcome, e.subject, e.agent_id, i.external_id FROM events e "
                            "JOIN interactions i ON i.id = e.interaction_id WHERE e.type = 'contact.wrapup'")
    assert (row["outcome"], row["agent_id"], row["external_id"]) == ("resolved_first_contact", "8001",
                                                                     "1764401234.55")
    assert row["subject"] == "已说明日累计限额，客户将改用柜面转账"
    audited = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'screenpop'")
    assert audited >= 2   # pushed (by the CTI source) and shown on the desktop (by the agent)
    assert app[keys.POP_HUB].pops_built == 1
