import datetime as dt
import json

import pytest
from standardwebhooks.webhooks import Webhook

from gateway.auth import authenticate, sign_webhook, source_may_post, verify_webhook
from gateway.errors import Forbidden, Unauthorized
from gateway.settings import Secret, load_settings
from tests.conftest import FIXTURES

VECTOR = json.loads((FIXTURES / "samples" / "standard_webhooks_test_vector.json").read_text())


def _now(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def test_spec_test_vector_signature():
    v = VECTOR
    h = v["headers"]
    sig = sign_webhook(v["secret"], h["webhook-id"], int(h["webhook-timestamp"]), v["body"].encode())
    assert sig == h["webhook-signature"]
    sent = _now(int(h["webhook-timestamp"]))
    assert verify_webhook([Secret(v["secret"])], h, v["body"].encode(), sent) == h["webhook-id"]
    with pytest.raises(Unauthorized):  # 2021: stale against a real clock
        verify_webhook([Secret(v["secret"])], h, v["body"].encode(), dt.datetime.now(dt.UTC))


def test_spec_example_with_v1a_signature_is_skipped_not_crashing():
    v = VECTOR
    h = dict(v["headers"])
    h["webhook-signature"] = "v1a,hnO3f9T8Ytu9Hw== " + h["webhook-signature"]
    sent = _now(int(h["webhook-timestamp"]))
    assert verify_webhook([Secret(v["secret"])], h, v["body"].encode(), sent) == h["webhook-id"]


def test_reference_signer_accepted_with_rotation():
    secret_old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    secret_new = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    body = b'{"hello":"world"}'
    ts = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
    hdr = Webhook(secret_new).sign("msg_1", ts, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(ts.timestamp())),
               "webhook-signature": "v1,bogus " + hdr}
    assert verify_webhook([Secret(secret_old), Secret(secret_new)], headers, body, ts) == "msg_1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"webhook-signature": "v1,AAAA"}, "webhook-signature"),
        ({"webhook-signature": "garbage-without-comma"}, "webhook-signature"),
        ({"webhook-timestamp": "yesterday"}, "webhook-timestamp"),
        ({"webhook-id": ""}, "webhook-id"),
    ],
)
def test_bad_signatures_name_the_header(change, field):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ts = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
    headers = {"webhook-id": "m", "webhook-timestamp": str(int(ts.timestamp())),
               "webhook-signature": Webhook(secret).sign("m", ts, "{}")}
    headers.update(change)
    with pytest.raises(Unauthorized) as info:
        verify_webhook([Secret(secret)], headers, b"{}", ts)
    assert info.value.extensions["errors"][0]["field"] == field


def test_stale_timestamp_rejected():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ts = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
    headers = {"webhook-id": "m", "webhook-timestamp": str(int(ts.timestamp())),
               "webhook-signature": Webhook(secret).sign("m", ts, "{}")}
    assert verify_webhook([Secret(secret)], headers, b"{}", ts + dt.timedelta(minutes=4, seconds=59))
    with pytest.raises(Unauthorized):
        verify_webhook([Secret(secret)], headers, b"{}", ts + dt.timedelta(minutes=5, seconds=1))
    with pytest.raises(Unauthorized):
        verify_webhook([Secret(secret)], headers, b"{}", ts - dt.timedelta(minutes=6))


def test_api_key_and_scope():
    sources = load_settings(env={}).sources
    now = dt.datetime.now(dt.UTC)
    src, _ = authenticate({"X-API-Key": "dev-cti-key"}, b"", sources, now)
    assert src.name == "cti"
    src, _ = authenticate({"Authorization": "Bearer dev-core-banking-key"}, b"", sources, now, scope="customers")
    assert src.name == "core-banking"
    with pytest.raises(Forbidden):
        authenticate({"X-API-Key": "dev-cti-key"}, b"", sources, now, scope="customers")
    with pytest.raises(Unauthorized):
        authenticate({"X-API-Key": "nope"}, b"", sources, now)
    with pytest.raises(Unauthorized):
        authenticate({}, b"", sources, now)


def test_source_namespace():
    sources = load_settings(env={}).sources
    assert source_may_post(sources["cti"], "cti.zs-callcentre", "voice") is None
    assert source_may_post(sources["cti"], "cti", "voice") is None
    assert source_may_post(sources["cti"], "online-banking", "voice")
    assert source_may_post(sources["cti"], "ctix", "voice")
