"""Customer API: upsert, read, validation, atomicity, auth (views/customers.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gateway import keys
from gateway.customers import store
from gateway.customers.model import CustomerView, Holding
from tests.conftest import FIXTURES
from tests.helpers import assert_problem

CORE = {"X-API-Key": "dev-core-banking-key"}
DOC: dict[str, Any] = json.loads((FIXTURES / "customers" / "zhang_san.json").read_text(encoding="utf-8"))
RAW_ID = "11010519491231002X"
RAW_CARD = "6217000000001236"


def doc(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d.update(changes)
    return d


async def put(client: Any, body: Any, customer_no: str = "C0000000001", headers: dict[str, str] = CORE) -> Any:
    return await client.put(f"/v1/customers/{customer_no}", json=body, headers=headers)


async def test_put_creates_then_get_shows_the_masked_document(client):
    resp = await put(client, DOC)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    resp = await client.get("/v1/customers/C0000000001", headers=CORE)
    assert resp.status == 200
    body = await resp.json()
    assert body == created
    assert body["customer_no"] == "C0000000001"
    assert body["name_masked"] == "张**"
    assert "name" not in body
    masked = {(i["kind"], i["masked"]) for i in body["identifiers"]}
    assert ("national_id", "110***********002X") in masked
    assert ("card_no", "6217 **** **** 1236") in masked
    assert ("phone", "139****5678") in masked
    assert ("email", "z***@example.com") in masked
    assert ("customer_no", "C00****0001") in masked, "the customer number is always an identifier"
    assert body["holdings"][0]["masked_number"] == "6217 **** **** 1236"
    assert body["holdings"][1]["balance"] == "128450.30"
    assert body["entitlements"][1]["restriction"] == "block"
    assert [c["case_ref"] for c in body["cases"]] == ["CS-2026-0001", "CS-2026-0002"]
    assert body["credit_applications"][0]["stage"] == "approval"
    assert body["appointments"][0]["kind"] == "reception_day"
    text = json.dumps(body, ensure_ascii=False)
    assert RAW_ID not in text and RAW_CARD not in text and "13912345678" not in text


async def test_put_again_replaces_lists_and_profile(client):
    assert (await put(client, DOC)).status == 201
    smaller = doc(tier="gold", holdings=DOC["holdings"][:1], cases=[], identifiers=DOC["identifiers"][:1])
    resp = await put(client, smaller)
    assert resp.status == 200
    body = await resp.json()
    assert body["tier"] == "gold"
    assert len(body["holdings"]) == 1 and body["cases"] == []
    assert sorted(i["kind"] for i in body["identifiers"]) == ["customer_no", "phone"]
    assert len(body["credit_applications"]) == 1, "lists present in the document are stored again"


async def test_get_unknown_customer_is_404(client):
    await assert_problem(await client.get("/v1/customers/C404", headers=CORE), 404, "not-found")


async def test_bad_customer_no_in_path(client):
    await assert_problem(await put(client, DOC, customer_no="bad%20no"), 422, "validation-failed",
                         field="customer_no")
    await assert_problem(await put(client, doc(customer_no="import"), customer_no="import"), 422,
                         "validation-failed", field="customer_no")


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_requests_without_a_key_get_401(client, method):
    resp = await client.request(method, "/v1/customers/C0000000001", json=DOC)
    await assert_problem(resp, 401, "unauthorized")
    resp = await client.request(method, "/v1/customers/C0000000001", json=DOC, headers={"X-API-Key": "wrong"})
    await assert_problem(resp, 401, "unauthorized")


async def test_source_without_customers_scope_gets_403(client):
    await assert_problem(await put(client, DOC, headers={"X-API-Key": "dev-cti-key"}), 403, "forbidden")
    resp = await client.get("/v1/customers/resolve?phone=13912345678", headers={"Authorization": "Bearer dev-cti-key"})
    await assert_problem(resp, 403, "forbidden")


@pytest.mark.parametrize("change, field", [
    ({"identifiers": [{"kind": "national_id", "value": "36042619910102009X"}]}, "identifiers[0].value"),
    ({"identifiers": [{"kind": "phone", "value": "1391234"}]}, "identifiers[0].value"),
    ({"identifiers": [{"kind": "card_no", "value": "6217000000001234"}]}, "identifiers[0].value"),
    ({"identifiers": [{"kind": "passport", "value": "E1"}]}, "identifiers[0].kind"),
    ({"holdings": [{"product_type": "debit_card", "status": "active", "number": "6217000000001234"}]},
     "holdings[0].number"),
    ({"segment": "gold"}, "segment"),
    ({"vip": "yes"}, "vip"),
    ({"name": "张" * 201}, "name"),
    ({"name": 42}, "name"),
    ({"customer_no": "C999"}, "customer_no"),
    ({"unknown_field": 1}, "unknown_field"),
    ({"holdings": [{"product_type": "savings_account", "status": "active", "balance": "1.234"}]},
     "holdings[0].balance"),
    ({"cases": [{"case_ref": "A", "kind": "complaint", "category": "x", "status": "open",
                 "opened_at": "2026-11-25T09:00:00"}]}, "cases[0].opened_at"),
    ({"credit_applications": [{"application_ref": "L", "product": "p", "amount": "1", "stage": "approval",
                               "status": "in_progress", "accepted_at": "2026-11-01T10:00:00+08:00"}]},
     "credit_applications[0].investigation_at"),
    ({"credit_applications": [{"application_ref": "L", "product": "p", "amount": "-5", "stage": "accepted",
                               "status": "in_progress", "accepted_at": "2026-11-01T10:00:00+08:00"}]},
     "credit_applications[0].amount"),
])
async def test_validation_names_the_field_and_never_echoes_raw_values(client, change, field):
    resp = await put(client, doc(**change))
    body = await assert_problem(resp, 422, "validation-failed", field=field)
    text = json.dumps(body, ensure_ascii=False)
    for raw in ("36042619910102009X", "6217000000001234", "1391234"):
        assert raw not in text
    await assert_problem(await client.get("/v1/customers/C0000000001", headers=CORE), 404, "not-found")


async def test_invalid_json_body(client):
    resp = await client.put("/v1/customers/C1", data=b"{not json", headers=CORE)
    await assert_problem(resp, 422, "validation-failed", field="body")


async def test_failed_upsert_leaves_the_old_document_intact(client, db):
    assert (await put(client, DOC)).status == 201
    before = await (await client.get("/v1/customers/C0000000001", headers=CORE)).json()
    # A real database refusal in the middle of the write (after profile, identifiers and holdings).
    await db.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by test'; END $$;
        CREATE TRIGGER refuse_appointments BEFORE INSERT ON appointments FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    changed = doc(tier="standard", holdings=[], identifiers=[{"kind": "phone", "value": "13800000000"}])
    resp = await put(client, changed)
    await assert_problem(resp, 500, "internal-error")
    after = await (await client.get("/v1/customers/C0000000001", headers=CORE)).json()
    assert after == before


async def test_learned_identifiers_survive_a_put(client, db):
    assert (await put(client, DOC)).status == 201
    app = client.app
    hasher = app[keys.IDENTITY]
    cid = await db.fetchval("SELECT id FROM customers WHERE customer_no = 'C0000000001'")
    await db.execute("INSERT INTO customer_identifiers (customer_id, kind, digest, masked, key_version, origin) "
                     "VALUES ($1, 'device_id', $2, 'dev****0001', $3, 'learned')",
                     cid, hasher.digest("device_id", "learned-device-0001"), hasher.key_version)
    assert (await put(client, doc(tier="gold"))).status == 200
    origins = await db.fetch("SELECT kind, origin FROM customer_identifiers WHERE customer_id = $1 "
                             "AND origin = 'learned'", cid)
    assert [(r["kind"], r["origin"]) for r in origins] == [("device_id", "learned")]


async def test_load_customer_returns_frozen_value_objects(client, db):
    assert (await put(client, DOC)).status == 201
    cid = await db.fetchval("SELECT id FROM customers WHERE customer_no = 'C0000000001'")
    view = await store.load_customer(db, cid)
    assert isinstance(view, CustomerView)
    assert view.profile.name == "张三丰" and view.profile.name_masked == "张**"
    assert isinstance(view.holdings[0], Holding)
    with pytest.raises(AttributeError):
        view.profile.tier = "x"  # type: ignore[misc]
    assert view.cases[0].is_open() and not view.cases[1].is_open()
    assert all(i.masked and i.kind for i in view.identifiers)
    assert await store.load_customer(db, cid + 1000) is None
    assert await client.app[keys.CUSTOMERS].load(cid) == view


async def test_customer_routes_are_in_the_openapi_document(client):
    spec = await (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert {"put", "get"} <= set(paths["/v1/customers/{customer_no}"])
    assert "get" in paths["/v1/customers/resolve"] and "post" in paths["/v1/customers/import"]
    assert "CustomerDocument" in spec["components"]["schemas"]


async def test_nul_character_is_422_naming_the_field_not_a_500(client):
    """Found by schemathesis: PostgreSQL stores no U+0000 in text, so the document is refused up front."""
    resp = await put(client, doc(name="张\u0000三"))
    await assert_problem(resp, 422, "validation-failed", field="name")
    await assert_problem(await client.get("/v1/customers/C0000000001", headers=CORE), 404, "not-found")
