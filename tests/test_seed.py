"""The deterministic demo-data seeder and the demo setup step."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import sys
from pathlib import Path
from typing import Any

from stdnum import luhn
from stdnum.cn import ric

from gateway import keys
from gateway.app import DEMO_CUSTOMERS, DEMO_EVENTS, create_app
from gateway.clock import SystemClock
from gateway.customers.service import CustomerService
from gateway.identity import IdentityHasher, mask, normalize
from gateway.seed import customers as seed_module
from gateway.seed.customers import REGIONS, _Generator, luhn_check_digit, seed_customers
from gateway.settings import Secret
from tests.conftest import make_settings

NOW = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
HASHER = IdentityHasher((Secret("seed-test-key"),))


class _Recording(_Generator):
    """The real generator, also keeping the raw normalised identifiers it hashed (for checking them)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.raw: list[tuple[str, str]] = []

    def _ident(self, out: list[tuple[str, bytes, str]], kind: str, normalized: str) -> None:
        self.raw.append((kind, normalized))
        super()._ident(out, kind, normalized)


def test_generated_identifiers_are_valid_and_already_normalised():
    gen = _Recording(3, HASHER, NOW)
    for i in range(3000):
        gen.customer(i)
    kinds = {k for k, _ in gen.raw}
    assert kinds == {"customer_no", "phone", "national_id", "card_no", "account_no", "email", "device_id",
                     "online_user_id"}
    for kind, value in gen.raw:
        assert normalize(kind, value) == value, (kind, mask(kind, value))
    cards = [v for k, v in gen.raw if k == "card_no"]
    assert all(c.startswith("62") for c in cards)
    ids = [v for k, v in gen.raw if k == "national_id"]
    assert all(ric.is_valid(v) for v in ids)


def test_resident_ids_are_unique_across_blocks():
    ids: list[str] = []
    for block in range(4):
        gen = _Recording(3, HASHER, NOW, block)
        for i in range(block * seed_module.BATCH, (block + 1) * seed_module.BATCH):
            gen.customer(i)
        ids += [v for k, v in gen.raw if k == "national_id"]
    assert len(ids) > 18_000
    assert len(set(ids)) == len(ids)


def test_region_codes_are_valid_for_every_birth_year():
    for region in REGIONS:
        for year in range(1950, 2006):
            body = f"{region}{year}0101002"
            assert ric.is_valid(body + ric.calc_check_digit(body + "0")), (region, year)


def test_fast_luhn_matches_stdnum():
    rng = random.Random(5)
    for _ in range(1000):
        body = str(rng.randrange(10 ** rng.randrange(6, 19)))
        assert luhn_check_digit(body) == luhn.calc_check_digit(body)


def test_same_seed_same_data_other_seed_other_data():
    def run(seed: int) -> list[Any]:
        gen = _Generator(seed, HASHER, NOW)
        return [gen.customer(i) for i in range(500)]

    assert run(11) == run(11)
    assert [c.profile for c in run(11)] != [c.profile for c in run(12)]


async def test_seed_into_the_database(db):
    created = await seed_customers(db, 2000, 4, HASHER, now=NOW)
    assert created == 2000
    assert await db.fetchval("SELECT count(*) FROM customers") == 2000
    segments = dict(await db.fetch("SELECT segment, count(*) FROM customers GROUP BY 1"))
    assert segments["mass"] > 1200 and segments["affluent"] > 150 and segments["wealth"] > 30
    assert {r[0] for r in await db.fetch("SELECT DISTINCT stage FROM credit_applications")} == {
        "accepted", "investigation", "approval", "disbursement"}
    assert {r[0] for r in await db.fetch("SELECT DISTINCT restriction FROM entitlements WHERE restriction IS NOT NULL")
            } == {"block", "freeze"}
    statuses = {r[0] for r in await db.fetch("SELECT DISTINCT status FROM cases WHERE kind = 'complaint'")}
    assert {"open", "closed"} <= statuses
    assert await db.fetchval("SELECT count(*) FROM cases WHERE status = 'open' AND due_at < $1", NOW) > 0
    assert await db.fetchval("SELECT count(*) FROM appointments WHERE kind = 'reception_day'") > 0
    assert await db.fetchval("SELECT count(*) FROM customers WHERE name ~ '公司$'") > 0

    # Families share a mobile number: resolving it is ambiguous between (at least) two customers.
    shared = await db.fetchval("SELECT digest FROM customer_identifiers WHERE kind = 'phone' "
                               "GROUP BY digest HAVING count(*) > 1 LIMIT 1")
    assert shared is not None
    from gateway.customers import store

    async with db.acquire() as conn:
        assert len(await store.find_candidates(conn, [shared])) >= 2

    # Re-running the same seed adds nothing.
    assert await seed_customers(db, 2000, 4, HASHER, now=NOW) == 0
    assert await db.fetchval("SELECT count(*) FROM customers") == 2000


async def test_worker_processes_make_the_same_data_as_inline_generation(db):
    count = seed_module.BATCH + 200  # two blocks
    assert await seed_customers(db, count, 6, HASHER, now=NOW, processes=2) == count
    stored = sorted(bytes(r[0]) for r in await db.fetch("SELECT digest FROM customer_identifiers"))
    inline = sorted({d for block in (0, 1) for c in seed_module.generate_block(6, HASHER, NOW, block, count)
                     for _, d, _ in c.identifiers})
    assert len(stored) >= len(inline) and set(stored) == set(inline)


async def test_seeded_customers_resolve_by_their_identifiers(db):
    gen = _Recording(8, HASHER, NOW)
    first = gen.customer(0)
    await seed_customers(db, 50, 8, HASHER, now=NOW)
    service = CustomerService(db, HASHER, SystemClock())
    national_id = next(v for k, v in gen.raw if k == "national_id")
    res = await service.resolve("national_id", national_id)
    assert res.outcome == "resolved"
    view = await service.load(res.customer_id)
    assert view is not None and view.profile.customer_no == first.customer_no


async def test_demo_setup_seeds_an_empty_database_once(aiohttp_client, database_url, redis_url, tmp_path, db):
    settings = make_settings(database_url, redis_url, tmp_path, demo=True)
    client = await aiohttp_client(create_app(settings))
    assert await db.fetchval("SELECT count(*) FROM customers") == DEMO_CUSTOMERS
    seeded = await db.fetchval("SELECT count(*) FROM events WHERE source_event_id LIKE 'seed-%'")
    assert seeded >= DEMO_EVENTS, "the demo customers come with contact histories"
    assert await db.fetchval("SELECT count(*) FROM interactions WHERE customer_id IS NOT NULL") > 0
    assert client.app[keys.CUSTOMERS] is not None
    await client.close()
    client = await aiohttp_client(create_app(settings))
    assert await db.fetchval("SELECT count(*) FROM customers") == DEMO_CUSTOMERS
    assert await db.fetchval("SELECT count(*) FROM events WHERE source_event_id LIKE 'seed-%'") == seeded


async def test_no_demo_data_without_the_setting(client, db):
    assert await db.fetchval("SELECT count(*) FROM customers") == 0


async def test_cli_seed(database_url):
    env = {**os.environ, "CG_DATABASE_URL": database_url, "CG_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "seed", "--customers", "120", "--events", "2000", "--seed", "5", env=env,
        cwd=Path(__file__).parent.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("seeded 120 customers (seed 5)")
    assert "seeded 20" in out.decode().splitlines()[1] and " events (seed 5)" in out.decode()
