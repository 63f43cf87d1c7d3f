"""Bulk NDJSON import over HTTP and from the command line, streamed in chunks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway.customers import service as customer_service
from gateway.customers.service import ndjson_lines
from tests.helpers import assert_problem
from tests.test_customers_api import CORE, DOC, doc

NDJSON = {**CORE, "Content-Type": "application/x-ndjson"}


def line(d: dict[str, Any]) -> bytes:
    return msgspec.json.encode(d) + b"\n"


def small(n: int, **changes: Any) -> dict[str, Any]:
    """A small valid document for customer number n."""
    base = {"customer_no": f"K{n:07d}", "name": "王五", "customer_type": "personal", "segment": "mass",
            "tier": "standard", "identifiers": [{"kind": "phone", "value": f"139{n:08d}"}]}
    base.update(changes)
    return base


async def test_import_reports_bad_lines_and_loads_good_ones(client):
    body = b"".join([
        line(DOC),                                                                   # 1 ok
        b"{this is not json\n",                                                      # 2 bad JSON
        line(small(2)),                                                              # 3 ok
        line(small(3, identifiers=[{"kind": "national_id", "value": "36042619910102009X"}])),  # 4 bad checksum
        b"\n",                                                                       # 5 blank: skipped
        line(small(4, segment="platinum")),                                          # 6 unknown enum
        line({k: v for k, v in small(5).items() if k != "customer_no"}),             # 7 no customer_no
        line(doc(tier="gold")),                                                      # 8 ok: same customer, wins
    ])
    resp = await client.post("/v1/customers/import", data=body, headers=NDJSON)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["lines"] == 8
    assert report["loaded"] == 3
    assert report["rejected"] == 4
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (2, "body"), (4, "identifiers[0].value"), (6, "segment"), (7, "customer_no")]
    assert "36042619910102009X" not in json.dumps(report)
    got = await (await client.get("/v1/customers/C0000000001", headers=CORE)).json()
    assert got["tier"] == "gold"
    assert (await client.get("/v1/customers/K0000002", headers=CORE)).status == 200


async def test_import_in_several_chunks_with_a_database_refusal(client, db, monkeypatch):
    monkeypatch.setattr(customer_service, "IMPORT_CHUNK", 50)
    await db.execute("""
        CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.case_ref = 'REFUSE' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse_bad_cases BEFORE INSERT ON cases FOR EACH ROW EXECUTE FUNCTION refuse_bad();
    """)
    refused_case = {"case_ref": "REFUSE", "kind": "feedback", "category": "x", "status": "open",
                    "opened_at": "2026-11-25T09:00:00+08:00"}
    lines = [line(small(n, cases=[refused_case]) if n == 77 else small(n)) for n in range(1, 131)]

    async def body() -> Any:
        for i in range(0, len(lines), 7):  # odd-sized pieces: lines cross chunk boundaries
            yield b"".join(lines[i:i + 7])

    resp = await client.post("/v1/customers/import", data=body(), headers=NDJSON)
    report = await resp.json()
    assert (report["loaded"], report["rejected"]) == (129, 1), report
    assert report["errors"][0]["line"] == 77
    assert await db.fetchval("SELECT count(*) FROM customers") == 129


async def test_import_needs_ndjson_and_a_key(client):
    await assert_problem(await client.post("/v1/customers/import", data=line(DOC),
                                           headers={**CORE, "Content-Type": "application/json"}),
                         415, "unsupported-media-type")
    await assert_problem(await client.post("/v1/customers/import", data=line(DOC),
                                           headers={"Content-Type": "application/x-ndjson"}), 401, "unauthorized")


async def test_ndjson_lines_splits_across_chunks_and_bounds_line_length():
    async def chunks() -> Any:
        for piece in (b'{"a":', b'1}\n\n{"b"', b':2}\n', b"x" * 30, b"y" * 30, b"\n", b'{"c":3}'):
            yield piece

    got = [(n, v) async for n, v in ndjson_lines(chunks(), max_line=50)]
    assert got == [(1, b'{"a":1}'), (3, b'{"b":2}'), (4, None), (5, b'{"c":3}')]


async def test_cli_import(database_url, tmp_path):
    path = tmp_path / "customers.ndjson"
    path.write_bytes(line(DOC) + line(small(9)) + b'{"customer_no": "K1", "name": 5}\n')
    env = {**os.environ, "CG_DATABASE_URL": database_url, "CG_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "import", str(path), env=env, cwd=Path(__file__).parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 1, err.decode()  # one line was rejected
    report = json.loads(out)
    assert (report["loaded"], report["rejected"]) == (2, 1)
    assert report["errors"] == [{"line": 3, "field": "name", "message": "Expected `str`, got `int`"}]
    assert "11010519491231002X" not in (out + err).decode()


async def test_import_body_is_streamed_past_the_request_size_limit(aiohttp_client, database_url, redis_url, tmp_path):
    """max_body_bytes limits bodies read whole (PUT); the NDJSON import streams and is not bound by it."""
    from gateway.app import create_app
    from tests.conftest import make_settings

    client = await aiohttp_client(create_app(make_settings(database_url, redis_url, tmp_path, max_body_bytes=1024)))
    body = b"".join(line(small(n)) for n in range(1, 41))
    assert len(body) > 4 * 1024
    resp = await client.post("/v1/customers/import", data=body, headers=NDJSON)
    assert (await resp.json())["loaded"] == 40
    await assert_problem(await client.put("/v1/customers/C0000000001", json=DOC, headers=CORE), 413,
                         "payload-too-large")
