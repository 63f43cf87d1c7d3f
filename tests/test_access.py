"""Access control: deny by default, route by route; logins, sessions, CSRF, throttling, audit of it all."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from gateway import keys
from gateway.app import create_app
from gateway.clock import FrozenClock
from gateway.settings import PROJECT_ROOT
from gateway.views.access import SESSION_COOKIE
from tests.helpers import assert_problem
from tests.people import PASSWORD, add_user, csrf_of, login, people_settings

ROLES = ("agent", "supervisor", "admin")
DESKTOP_KEY = {"X-API-Key": "dev-desktop-key"}            # source with scopes read, link
CORE_KEY = {"X-API-Key": "dev-core-banking-key"}           # source with scopes customers, events, read
SAMPLE_PARAMS = {"customer_no": "C0000001", "interaction_id": str(uuid.UUID(int=7)), "lang": "en",
                 "filename": "app.css", "agent_id": "8001", "review_id": "1", "sample_id": "1", "customer_id": "1"}


@pytest.fixture
def settings(database_url, redis_url, tmp_path):
    return people_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def app_client(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
    return app, client


async def _audit(db, action: str) -> list[Any]:
    return await db.fetch("SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action)


def _concrete(path: str) -> str:
    for name, value in SAMPLE_PARAMS.items():
        path = path.replace("{" + name + "}", value)
    if path.endswith("/static"):
        path += "/app.css"
    assert "{" not in path, f"add a sample value for {path} to SAMPLE_PARAMS"
    return path


def _routes(app) -> list[tuple[str, str, str]]:
    out = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        out.append((route.method, resource.canonical, _concrete(resource.canonical)))
    return sorted(set(out))


def test_every_registered_route_declares_an_access_policy(settings):
    app = create_app(settings)
    from gateway.views.access import Access

    table = app[keys.API].access
    missing = []
    for method, canonical, _ in _routes(app):
        policy = table.get((method, canonical)) or table.get(("*", canonical))
        if not isinstance(policy, Access):
            missing.append(f"{method} {canonical}")
    assert not missing, f"routes without an access policy: {missing}"


async def test_route_without_a_policy_is_refused_to_everybody(aiohttp_client, settings, db):
    from aiohttp import web

    async def secret(request):
        return web.json_response({"leaked": True})

    def add_secret(app):
        app.router.add_route("GET", "/v1/undeclared", secret)
        app.router.add_route("GET", "/undeclared-page", secret)

    app = create_app(settings, extra_setup=[add_secret])
    client = await aiohttp_client(app)
    await add_user(app, "sup", "supervisor")
    for headers in ({}, CORE_KEY):
        await assert_problem(await client.get("/v1/undeclared", headers=headers), 403, "forbidden")
    assert (await login(client, "sup")).status == 303
    await assert_problem(await client.get("/v1/undeclared"), 403, "forbidden")
    await assert_problem(await client.get("/undeclared-page"), 403, "forbidden")


async def test_source_route_whose_handler_forgets_to_authenticate_is_refused(aiohttp_client, settings):
    from aiohttp import web

    from gateway.views.access import declare, sources

    async def forgetful(request):
        return web.json_response({"leaked": True})

    async def refusing(request):
        return web.json_response({"code": 401, "message": "bad write key"}, status=401)

    def add(app):
        app.router.add_route("GET", "/v1/forgetful", forgetful)
        app.router.add_route("GET", "/v1/refusing", refusing)
        declare(app, "GET", "/v1/forgetful", sources("read"))
        declare(app, "GET", "/v1/refusing", sources("read"))

    client = await aiohttp_client(create_app(settings, extra_setup=[add]))
    await assert_problem(await client.get("/v1/forgetful", headers=CORE_KEY), 403, "forbidden")
    resp = await client.get("/v1/refusing")
    assert resp.status == 401 and (await resp.json())["message"] == "bad write key"   # its own refusal stands


def _allowed(status: int, location: str) -> bool:
    """Past the door: neither 401, nor a redirect to log in, nor a 403 problem (a public form's own 403 page,
    e.g. the login form without its token, is the route speaking, not the door)."""
    return status not in (401, 403) and not location.startswith("/login?next=")


async def _call(client, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    kwargs: dict[str, Any] = {"headers": {"Accept": "application/json", **headers}, "allow_redirects": False}
    if method in ("POST", "PUT"):
        kwargs["json"] = {}
    resp = await client.request(method, path, **kwargs)
    await resp.read()
    status = resp.status
    if status == 403 and not resp.headers.get("Content-Type", "").startswith("application/problem+json"):
        status = 200 - 1     # a page's own refusal (login form CSRF): the route ran
    return status, resp.headers.get("Location", "")


async def test_role_checks_route_by_route(app_client, db):
    """Every registered route, every kind of caller: exactly who the policy names gets past the door."""
    app, client = app_client
    for role in ROLES:   # the agent is agent 8001, whose stream (a sample path) they may watch
        await add_user(app, role + "1", role, agent_id="8001" if role == "agent" else None)
    routes = _routes(app)
    assert len(routes) >= 15
    checked = 0
    for method, canonical, path in routes:
        if method == "HEAD":
            continue
        policy = app[keys.API].access.get((method, canonical)) or app[keys.API].access[("*", canonical)]
        # anonymous
        client.session.cookie_jar.clear()
        status, location = await _call(client, method, path, {})
        assert _allowed(status, location) == policy.public, (method, path, status, location)
        if not policy.public:
            assert status == 401 or (status == 303 and location.startswith("/login?next=")), (method, path, status)
        # sources: never pages; only routes open to a scope they hold
        for key, scopes in ((DESKTOP_KEY, {"read", "link"}), (CORE_KEY, {"customers", "events", "read"})):
            status, location = await _call(client, method, path, key)
            if policy.public:
                assert _allowed(status, location), (method, path, key, status)
            elif not policy.scopes & scopes:
                assert not _allowed(status, location), (method, path, key, status)
            else:   # admitted by scope; the route may still bind itself to some sources or signatures
                assert status != 403, (method, path, key, status)
        # each role, logged in, with the CSRF token on unsafe methods
        for role in ROLES:
            client.session.cookie_jar.clear()
            assert (await login(client, role + "1")).status == 303
            headers = {"X-CSRF-Token": await csrf_of(client)} if method not in ("GET", "HEAD") else {}
            status, location = await _call(client, method, path, headers)
            expect = policy.public or role in policy.roles
            assert _allowed(status, location) == expect, (method, path, role, status, location)
            if not expect:
                assert status == 403, (method, path, role, status)
            checked += 1
    assert checked >= 3 * 15


async def test_pages_redirect_anonymous_browsers_to_login_and_api_answers_401(app_client):
    _, client = app_client
    resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/logout"
    await assert_problem(await client.get(f"/v1/interactions/{uuid.uuid4()}"), 401, "unauthorized")


async def test_home_redirects_by_role(app_client):
    app, client = app_client
    resp = await client.get("/", allow_redirects=False)
    assert resp.headers["Location"] == "/login"
    for role, home in (("agent", "/agent"), ("supervisor", "/console"), ("admin", "/console")):
        client.session.cookie_jar.clear()
        await add_user(app, f"home-{role}", role)
        resp = await login(client, f"home-{role}")
        assert resp.status == 303 and resp.headers["Location"] == home
        resp = await client.get("/", allow_redirects=False)
        assert resp.headers["Location"] == home


async def test_login_sets_a_safe_cookie_and_audits(app_client, db):
    app, client = app_client
    await add_user(app, "zhang", "supervisor", display_name="张班长")
    resp = await login(client, "zhang", next_path="/console/audit")
    assert resp.status == 303 and resp.headers["Location"] == "/console/audit"
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie                     # plain-http development: public_url is not https
    page = await client.get("/logout", headers={"Accept": "text/html"})
    assert "张班长" in await page.text()
    [row] = await _audit(db, "login")
    assert row["actor"] == "user:zhang" and row["actor_role"] == "supervisor"
    resp = await client.post("/logout", data={"csrf_token": await csrf_of(client)}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    [row] = await _audit(db, "logout")
    assert row["actor"] == "user:zhang"
    resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303                          # the session is gone


async def test_cookie_is_secure_behind_https(aiohttp_client, database_url, redis_url, tmp_path):
    app = create_app(people_settings(database_url, redis_url, tmp_path, public_url="https://cc.example.cn",
                                     sessions={"cookie_samesite": "Strict"}))
    client = await aiohttp_client(app)
    await add_user(app, "li", "supervisor")
    form = await client.get("/login")
    login_cookie = form.headers["Set-Cookie"]
    assert "Secure" in login_cookie and "SameSite=Strict" in login_cookie and "Path=/login" in login_cookie
    token = login_cookie.split(";")[0].split("=", 1)[1]
    # the client's jar does not send Secure cookies over plain http: send it as a browser on https would
    resp = await client.post("/login", data={"name": "li", "password": PASSWORD, "csrf_token": token},
                             headers={"Cookie": f"cg_login_csrf={token}"}, allow_redirects=False)
    assert resp.status == 303
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "Secure" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie


async def test_failed_logins_are_audited_and_throttled(app_client, db):
    app, client = app_client
    await add_user(app, "wang", "agent")
    for _ in range(5):
        resp = await login(client, "wang", "wrong password!")
        assert resp.status == 401
        assert "用户名或密码错误" in await resp.text()
    rows = await _audit(db, "login.failed")
    assert len(rows) == 5 and rows[0]["actor"] == "user:wang" and rows[0]["reason"] == "bad credentials"
    resp = await login(client, "wang")                      # right password, but throttled now
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "登录失败次数过多" in await resp.text()
    assert (await _audit(db, "login.failed"))[-1]["reason"] == "throttled"
    # another user from the same address is not throttled yet (the per-address limit is higher)
    await add_user(app, "zhao", "agent")
    assert (await login(client, "zhao")).status == 303


async def test_throttle_per_address(aiohttp_client, database_url, redis_url, tmp_path):
    app = create_app(people_settings(database_url, redis_url, tmp_path,
                                     sessions={"login_max_failures_per_ip": 3}))
    client = await aiohttp_client(app)
    await add_user(app, "qian", "agent")
    for i in range(3):
        assert (await login(client, f"nobody{i}", "whatever at all")).status == 401
    assert (await login(client, "qian")).status == 429


async def test_unknown_and_disabled_users_cannot_log_in(app_client):
    app, client = app_client
    assert (await login(client, "ghost")).status == 401
    await add_user(app, "sun", "agent")
    await app[keys.USERS].set_disabled("sun", True, actor="test")
    assert (await login(client, "sun")).status == 401


async def test_login_form_needs_its_csrf_token(app_client):
    app, client = app_client
    await add_user(app, "zhou", "supervisor")
    resp = await client.post("/login", data={"name": "zhou", "password": PASSWORD, "csrf_token": "forged"},
                             allow_redirects=False)
    assert resp.status == 403
    assert SESSION_COOKIE not in {c.key for c in client.session.cookie_jar}


async def test_login_does_not_redirect_off_site(app_client):
    app, client = app_client
    await add_user(app, "wu", "supervisor")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client.session.cookie_jar.clear()
        resp = await login(client, "wu", next_path=evil)
        assert resp.headers["Location"] == "/console", evil


async def test_login_page_escapes_what_it_echoes(app_client):
    _, client = app_client
    resp = await login(client, "<script>alert(1)</script>", "wrong password!")
    text = await resp.text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text


async def test_csrf_is_checked_on_every_unsafe_request_of_a_session(app_client, db):
    app, client = app_client
    await add_user(app, "zheng", "supervisor")
    await login(client, "zheng")
    token = await csrf_of(client)
    resp = await client.post("/logout", data={}, allow_redirects=False)
    await assert_problem(resp, 403, "forbidden", field="csrf_token")
    resp = await client.post("/logout", data={"csrf_token": "x" + token}, allow_redirects=False)
    await assert_problem(resp, 403, "forbidden", field="csrf_token")
    iid = uuid.uuid4()
    resp = await client.post(f"/v1/interactions/{iid}/unlink", json={"reason": "wrong caller"})
    await assert_problem(resp, 403, "forbidden", field="csrf_token")
    resp = await client.post(f"/v1/interactions/{iid}/unlink", json={"reason": "wrong caller"},
                             headers={"X-CSRF-Token": token})
    await assert_problem(resp, 404, "not-found")        # past the door: there is no such interaction
    resp = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303


async def test_user_link_is_audited_as_the_user(app_client, db, settings):
    from tests.factories import CTI_KEY, event, insert_customer

    app, client = app_client
    await insert_customer(db, settings, "C0000001", "张三")
    r = await client.post("/v1/events", json=event("call.offered", sid="L-1/offered", interaction_id="L-1"),
                          headers=CTI_KEY)
    assert r.status == 201, await r.text()
    iid = (await r.json())["interaction_id"]
    await add_user(app, "agent7", "agent", agent_id="8007")
    await login(client, "agent7")
    token = await csrf_of(client)
    resp = await client.post(f"/v1/interactions/{iid}/link", json={"customer_no": "C0000001", "reason": "verified"},
                             headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["linked_by"] == "user:agent7"
    [row] = await _audit(db, "link")
    assert row["actor"] == "user:agent7" and row["actor_role"] == "agent" and row["reason"] == "verified"
    resp = await client.get(f"/v1/interactions/{iid}")
    assert resp.status == 200 and (await resp.json())["customer_no"] == "C0000001"
    resp = await client.get("/v1/customers/C0000001?reason=caller+asked")
    assert resp.status == 200
    [row] = await _audit(db, "customer.view")
    assert row["actor"] == "user:agent7" and row["reason"] == "caller asked" and row["customer_id"] is not None


async def test_sessions_expire_when_idle_and_absolutely(aiohttp_client, database_url, redis_url, tmp_path):
    clock = FrozenClock(dt.datetime.now(dt.UTC))
    app = create_app(people_settings(database_url, redis_url, tmp_path,
                                     sessions={"idle_timeout_seconds": 600, "absolute_timeout_seconds": 3600}),
                     clock=clock)
    client = await aiohttp_client(app)
    await add_user(app, "feng", "supervisor")

    async def alive() -> bool:
        resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
        return resp.status == 200

    await login(client, "feng")
    clock.advance(599)
    assert await alive()                       # used just before the idle limit: still alive, and refreshed
    clock.advance(599)
    assert await alive()
    clock.advance(601)
    assert not await alive()                   # idle too long
    await login(client, "feng")
    for _ in range(6):
        clock.advance(590)
        assert await alive()                   # busy, 3540 s after login
    clock.advance(590)
    assert not await alive()                   # past the absolute limit however busy


async def test_disabling_a_user_ends_their_sessions_at_once(app_client, db, redis_client):
    app, client = app_client
    await add_user(app, "chen", "supervisor")
    await login(client, "chen")
    assert await redis_client.keys("cg:session:*")
    await app[keys.USERS].set_disabled("chen", True, actor="user:admin1")
    assert not await redis_client.keys("cg:session:*")
    resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303
    await assert_problem(await client.get(f"/v1/interactions/{uuid.uuid4()}"), 401, "unauthorized")
    [row] = await _audit(db, "user.disable")
    assert row["actor"] == "user:admin1" and row["details"] == {"user": "chen"}


async def test_session_refused_when_user_disabled_behind_redis_back(app_client, db):
    """The CLI may not reach Redis: the per-request user check still ends the session."""
    app, client = app_client
    await add_user(app, "chu", "agent")
    await login(client, "chu")
    await db.execute("UPDATE users SET disabled = true WHERE name = 'chu'")
    resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303


async def test_password_reset_ends_sessions(app_client, db):
    app, client = app_client
    await add_user(app, "wei", "agent")
    await login(client, "wei")
    await db.execute("UPDATE users SET password_changed_at = now() + interval '1 second' WHERE name = 'wei'")
    resp = await client.get("/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303
    await app[keys.USERS].reset_password("wei", "a brand new password", actor="test")
    assert (await login(client, "wei")).status == 401
    assert (await login(client, "wei", "a brand new password")).status == 303


async def test_user_validation(app_client):
    from gateway.errors import Conflict, ValidationFailed

    app, _ = app_client
    users = app[keys.USERS]
    with pytest.raises(ValidationFailed) as err:
        await users.add("Bad Name", "x", "agent", "8001", PASSWORD, actor="t")
    assert err.value.errors[0]["field"] == "name"
    with pytest.raises(ValidationFailed) as err:
        await users.add("a1", "x", "agent", None, PASSWORD, actor="t")
    assert err.value.errors[0]["field"] == "agent_id"
    with pytest.raises(ValidationFailed) as err:
        await users.add("a1", "x", "root", None, PASSWORD, actor="t")
    assert err.value.errors[0]["field"] == "role"
    with pytest.raises(ValidationFailed) as err:
        await users.add("a1", "x", "agent", "8001", "short", actor="t")
    assert err.value.errors[0]["field"] == "password"
    await users.add("a1", "x", "agent", "8001", PASSWORD, actor="t")
    with pytest.raises(Conflict):
        await users.add("a1", "x", "supervisor", None, PASSWORD, actor="t")
    with pytest.raises(Conflict):
        await users.add("a2", "x", "agent", "8001", PASSWORD, actor="t")


def test_cli_user_add_disable_reset_list(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CG_")}
    env.update(CG_DATABASE_URL=database_url, CG_DATA_DIR=str(tmp_path), CG_SESSIONS__PASSWORD_MEMORY_KIB="1024",
               CG_SESSIONS__PASSWORD_TIME_COST="1", CG_LOG_FORMAT="json")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "user", *args], input=stdin, env=env,
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)

    r = run("add", "li.si", "--role", "agent", "--agent-id", "8123", "--display-name", "李四",
            "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert "added agent li.si (agent id 8123)" in r.stdout
    r = run("add", "li.si", "--role", "agent", "--agent-id", "8124", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 1 and "already taken" in r.stderr
    r = run("add", "nobody", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 1 and "agent_id" in r.stderr
    assert run("disable", "li.si").returncode == 0
    r = run("list")
    assert "li.si" in r.stdout and "disabled" in r.stdout and "李四" in r.stdout
    assert run("enable", "li.si").returncode == 0
    assert run("reset", "li.si", "--password-stdin", stdin="another long password\n").returncode == 0
    assert run("disable", "ghost").returncode == 1

    import asyncio

    import asyncpg

    async def audit_actions() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
        finally:
            await conn.close()

    assert asyncio.run(audit_actions()) == ["user.add", "user.disable", "user.enable", "user.reset"]

