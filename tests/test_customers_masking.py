"""No response body and no log line carries a raw national ID or card number (issue 3, item 4)."""

from __future__ import annotations

import io
import re

from gateway.logs import configure_logging
from tests.test_customers_api import CORE, DOC, doc, put
from tests.test_customers_import import NDJSON, line, small

# Every raw national ID and card number the flow below sends, valid or not.
RAW = ("11010519491231002X", "6217000000001236", "36042619910102009X", "6217000000001234",
       "44011320141005001X", "6225880000000007")


def _forms(raw: str) -> list[str]:
    """The raw value as sent, lower-cased, and spaced in groups of four (how a card may be written)."""
    spaced = " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))
    return [raw, raw.lower(), spaced]


async def test_no_raw_national_id_or_card_number_in_any_response_or_log_line(client, settings, db):
    logs = io.StringIO()
    configure_logging(settings.replace(log_level="debug", log_format="json"), stream=logs)
    bodies: list[str] = []

    async def keep(resp):
        bodies.append(await resp.text())
        return resp

    await keep(await put(client, DOC))
    await keep(await put(client, doc(identifiers=[{"kind": "national_id", "value": "36042619910102009X"}])))
    await keep(await put(client, doc(identifiers=[{"kind": "card_no", "value": "6217 0000 0000 1234"}])))
    await keep(await put(client, doc(holdings=[{"product_type": "credit_card", "status": "active",
                                                "number": "6225880000000007"}])))
    await keep(await client.get("/v1/customers/C0000000001", headers=CORE))
    for query in ("national_id=11010519491231002X", "card_no=6217000000001236", "national_id=36042619910102009X",
                  "card_no=6217000000001234", "national_id=44011320141005001X"):
        await keep(await client.get(f"/v1/customers/resolve?{query}", headers=CORE))
    import_body = (line(DOC) + line(small(1, identifiers=[{"kind": "national_id", "value": "44011320141005001X"},
                                                         {"kind": "card_no", "value": "6217000000001234"}]))
                   + b'{"customer_no": "X1", "name": "11010519491231002X", "oops": "6217000000001236"}\n')
    await keep(await client.post("/v1/customers/import", data=import_body, headers=NDJSON))
    # An unexpected failure (a database refusal) logs a traceback: it must not carry raw values either.
    await db.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by test'; END $$;
        CREATE TRIGGER refuse_holdings BEFORE INSERT ON holdings FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    await keep(await put(client, DOC))

    log_text = logs.getvalue()
    assert "http.request" in log_text and "customer.upserted" in log_text, "the logs were captured"
    assert "http.unhandled_error" in log_text
    assert len(bodies) == 12
    everything = "\n".join(bodies) + "\n" + log_text
    for raw in RAW:
        for form in _forms(raw):
            assert form not in everything, f"a raw identifier ({raw[:3]}…) leaked"
    # Belt and braces: no 18-character resident-ID-shaped or 16/19-digit run anywhere.
    assert not re.search(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])", everything)
    assert not re.search(r"(?<!\d)62\d{14}(\d{3})?(?!\d)", everything)
