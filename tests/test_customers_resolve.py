"""Identity resolution over HTTP and in-process, and the key-rotation procedure."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway import keys
from gateway.app import create_app
from gateway.clock import SystemClock
from gateway.customers import store
from gateway.customers.service import CustomerService
from gateway.identity import IdentityHasher
from gateway.settings import Secret
from tests.conftest import make_settings
from tests.helpers import assert_problem
from tests.test_customers_api import CORE, DOC, doc, put

SPOUSE = doc(customer_no="C0000000002", name="李四", identifiers=[
    {"kind": "phone", "value": "13912345678"},
    {"kind": "national_id", "value": "44011320141005001X"},
], holdings=[], cases=[], credit_applications=[], appointments=[], entitlements=[])


async def resolve(client: Any, query: str) -> Any:
    return await client.get(f"/v1/customers/resolve?{query}", headers=CORE)


async def test_resolved_ambiguous_and_unidentified(client):
    assert (await put(client, DOC)).status == 201
    body = await (await resolve(client, "national_id=11010519491231002X")).json()
    assert body["outcome"] == "resolved"
    assert body["identifier"] == {"kind": "national_id", "masked": "110***********002X"}
    assert body["customer_id"] == body["candidates"][0]["customer_id"]
    cand = body["candidates"][0]
    assert cand["name_masked"] == "张**" and cand["customer_no_masked"] == "C00****0001"
    assert cand["matched"] == [{"kind": "national_id", "masked": "110***********002X", "origin": "core"}]

    assert (await put(client, SPOUSE, customer_no="C0000000002")).status == 201
    resp = await resolve(client, "phone=%2B86%20139%201234%205678")
    body = await resp.json()
    assert body["outcome"] == "ambiguous"
    assert body["customer_id"] is None, "never a guess"
    assert sorted(c["name_masked"] for c in body["candidates"]) == ["张**", "李*"]

    body = await (await resolve(client, "phone=13800000000")).json()
    assert body == {"outcome": "unidentified", "identifier": {"kind": "phone", "masked": "138****0000"},
                    "customer_id": None, "candidates": []}


async def test_resolve_by_every_kind(client):
    assert (await put(client, DOC)).status == 201
    for query in ("card_no=6217%200000%200000%201236", "email=zhang.sanfeng%40example.com",
                  "customer_no=C0000000001", "device_id=a1b2c3d4-e5f6-4a5b-8c9d-0e1f2a3b4c5d",
                  "national_id=11010519491231002x"):
        body = await (await resolve(client, query)).json()
        assert body["outcome"] == "resolved", query


async def test_resolve_validation(client):
    await assert_problem(await resolve(client, "phone=123"), 422, "validation-failed", field="phone")
    await assert_problem(await resolve(client, "national_id=36042619910102009X"), 422, "validation-failed",
                         field="national_id")
    await assert_problem(await resolve(client, ""), 422, "validation-failed", field="query")
    await assert_problem(await resolve(client, "phone=13912345678&email=a%40b.cn"), 422, "validation-failed",
                         field="query")
    await assert_problem(await resolve(client, "passport=E1"), 422, "validation-failed", field="passport")
    await assert_problem(await client.get("/v1/customers/resolve?phone=13912345678"), 401, "unauthorized")


async def test_in_process_resolution_through_the_service(client):
    """What the ingest and the screen-pop call; latency is measured by bench/resolve.py, not here."""
    assert (await put(client, DOC)).status == 201
    service = client.app[keys.CUSTOMERS]
    res = await service.resolve("phone", "13912345678")
    assert res.outcome == "resolved" and res.customer_id is not None
    assert res.masked == "139****5678"
    assert [m.kind for m in res.candidates[0].matched] == ["phone"]
    view = await service.load(res.customer_id)
    assert view is not None and view.profile.customer_no == "C0000000001"


async def _app_with_keys(aiohttp_client: Any, database_url: str, redis_url: str, tmp_path: Path,
                         keys_: list[str]) -> Any:
    settings = make_settings(database_url, redis_url, tmp_path, identity_hmac_keys=keys_)
    return await aiohttp_client(create_app(settings))


async def test_key_rotation_all_keys_match_then_rehash_then_drop(aiohttp_client, database_url, redis_url,
                                                                  tmp_path, db):
    old = await _app_with_keys(aiohttp_client, database_url, redis_url, tmp_path, ["old-key"])
    assert (await put(old, DOC)).status == 201
    await old.close()

    # Step 1: a new key in front. Identifiers stored under the old key still match.
    both = await _app_with_keys(aiohttp_client, database_url, redis_url, tmp_path, ["new-key", "old-key"])
    body = await (await resolve(both, "national_id=11010519491231002X")).json()
    assert body["outcome"] == "resolved"
    hasher = both.app[keys.IDENTITY]
    old_version = IdentityHasher((Secret("old-key"),)).key_version
    assert {r["key_version"] for r in await db.fetch("SELECT key_version FROM customer_identifiers")} == {old_version}

    # A learned identifier under the old key (the ingest linked a device before the rotation).
    cid = body["customer_id"]
    await db.execute("INSERT INTO customer_identifiers (customer_id, kind, digest, masked, key_version, origin) "
                     "VALUES ($1, 'device_id', $2, 'dev****0001', $3, 'learned')", cid,
                     IdentityHasher((Secret("old-key"),)).digest("device_id", "dev-learned-0001"), old_version)

    # Step 2: `contact-gateway rehash FILE` with core banking's extract re-digests under the newest key.
    extract = tmp_path / "extract.ndjson"
    extract.write_bytes(msgspec.json.encode(DOC) + b"\n")
    env = {**os.environ, "CG_DATABASE_URL": database_url, "CG_IDENTITY_HMAC_KEYS": "new-key,old-key",
           "CG_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "rehash", str(extract), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "re-digested the identifiers of 1 customers" in out.decode()
    assert "1 identifiers still need an older key" in out.decode(), out.decode()
    counts = await store.key_version_counts(db)
    assert (hasher.key_version, "core", 6) in counts
    assert (old_version, "learned", 1) in counts

    # Step 3: learned identifiers under the old key cannot be re-derived (no raw value is kept): prune them.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "rehash", "--prune-stale", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "removed 1 identifiers" in out.decode() and "older keys may be dropped" in out.decode()
    await both.close()

    # Step 4: the old key is dropped; everything still resolves.
    new = await _app_with_keys(aiohttp_client, database_url, redis_url, tmp_path, ["new-key"])
    for query in ("national_id=11010519491231002X", "phone=13912345678", "card_no=6217000000001236"):
        assert (await (await resolve(new, query)).json())["outcome"] == "resolved", query


async def test_rehash_reports_unknown_customers(db):
    service = CustomerService(db, IdentityHasher((Secret("k"),)), SystemClock())

    async def chunks() -> Any:
        yield msgspec.json.encode(DOC) + b"\n{bad\n"

    report = await service.rehash(chunks())
    assert report.loaded == 0
    assert [(e["line"], e["field"]) for e in report.as_dict()["errors"]] == [(1, "customer_no"), (2, "body")]
