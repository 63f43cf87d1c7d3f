"""Identifier normalisation, masking and the keyed hash (gateway/identity.py)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from gateway.identity import IdentityHasher, InvalidIdentifier, key_version, mask, mask_name, normalize
from gateway.settings import Secret
from tests.conftest import FIXTURES

VECTORS = json.loads((FIXTURES / "samples" / "cn_resident_id_gb11643_test_vectors.json").read_text())


@pytest.mark.parametrize("raw, expected", [
    ("13912345678", "+8613912345678"),
    ("+86 139 1234 5678", "+8613912345678"),
    ("0086-139-1234-5678", "+8613912345678"),
    ("010 6552 9988", "+861065529988"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_phone_to_e164_with_default_region_cn(raw, expected):
    assert normalize("phone", raw) == expected


@pytest.mark.parametrize("raw", ["12345", "139123456789", "not a phone", "", "+86 100 0000 0000"])
def test_impossible_or_invalid_phones_raise(raw):
    with pytest.raises(InvalidIdentifier) as exc:
        normalize("phone", raw)
    digits = "".join(c for c in raw if c.isdigit())
    assert not digits or digits not in str(exc.value)


def test_email_is_trimmed_and_casefolded():
    assert normalize("email", "  Zhang.San@Example.COM ") == "zhang.san@example.com"
    for bad in ["no-at-sign", "a@b", "two@@example.com", "sp ace@example.com", "@example.com"]:
        with pytest.raises(InvalidIdentifier):
            normalize("email", bad)


@pytest.mark.parametrize("number", VECTORS["valid"])
def test_valid_resident_ids(number):
    assert normalize("national_id", number) == number
    assert normalize("national_id", number.lower()) == number


@pytest.mark.parametrize("number, why", sorted(VECTORS["invalid"].items()))
def test_invalid_resident_ids_raise_without_the_value(number, why):
    with pytest.raises(InvalidIdentifier) as exc:
        normalize("national_id", number)
    assert number not in str(exc.value)


def test_prefecture_level_region_code_is_invalid_not_a_crash():
    number = "440108" + "19900615123"  # unknown county: stdnum raises KeyError, not ValidationError
    number += __import__("stdnum.cn.ric", fromlist=["x"]).calc_check_digit(number + "0")
    with pytest.raises(InvalidIdentifier):
        normalize("national_id", number)


def test_resident_id_checksum_message():
    with pytest.raises(InvalidIdentifier, match="checksum"):
        normalize("national_id", "36042619910102009X")


def test_fifteen_digit_resident_id_is_upgraded_to_eighteen():
    # 110105491231002 is the first-generation form of 11010519491231002X (GB 11643 example).
    assert normalize("national_id", "110105491231002") == "11010519491231002X"
    with pytest.raises(InvalidIdentifier):
        normalize("national_id", "11010549123100A")


def test_card_numbers_are_luhn_checked_and_digits_only():
    assert normalize("card_no", "6217 0000 0000 1236") == "6217000000001236"
    assert normalize("card_no", "6217 0000 0000 0000 004") == "6217000000000000004"
    assert normalize("card_no", "4111-1111-1111-1111") == "4111111111111111"
    with pytest.raises(InvalidIdentifier, match="Luhn"):
        normalize("card_no", "4111111111111112")
    with pytest.raises(InvalidIdentifier, match="digits"):
        normalize("card_no", "4111x11111111111")


def test_account_and_opaque_kinds():
    assert normalize("account_no", " 4400 1234 5678 ") == "440012345678"
    with pytest.raises(InvalidIdentifier):
        normalize("account_no", "12ab")
    for kind in ("customer_no", "device_id", "online_user_id"):
        assert normalize(kind, "  abc-123 ") == "abc-123"
        with pytest.raises(InvalidIdentifier):
            normalize(kind, "   ")
        with pytest.raises(InvalidIdentifier):
            normalize(kind, "x" * 129)


def test_unknown_kind_raises():
    with pytest.raises(InvalidIdentifier, match="unknown identifier kind"):
        normalize("passport", "E12345678")


def test_masks_match_the_design():
    assert mask("national_id", "44011320141005001X") == "440***********001X"
    assert mask("card_no", "6217000000001234") == "6217 **** **** 1234"
    assert mask("card_no", "6217000000000001234") == "6217 **** **** **** 1234"
    assert mask("account_no", "6217000000001234") == "6217 **** **** 1234"
    assert mask("phone", "+8613812345678") == "138****5678"
    assert mask("phone", "13812345678") == "138****5678"
    assert mask("phone", "+442079460958") == "+44 ****0958"
    assert mask("email", "zhang.san@example.com") == "z***@example.com"
    assert mask("customer_no", "C0000123456") == "C00****3456"
    assert mask("device_id", "ab12") == "****"


def test_masked_forms_never_contain_the_raw_value():
    raw = {
        "national_id": "44011320141005001X", "card_no": "6217000000001236", "phone": "+8613812345678",
        "email": "zhang.san@example.com", "account_no": "440012345678", "device_id": "device-7f3a9c11",
        "online_user_id": "zhangsan88", "customer_no": "C0000123456",
    }
    for kind, value in raw.items():
        assert value not in mask(kind, value)
        assert value not in mask(kind, normalize(kind, value))


def test_mask_name():
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张**"
    assert mask_name("欧阳娜娜") == "欧阳**"
    assert mask_name("欧阳") == "欧*"
    assert mask_name("John Smith") == "J*** S****"
    assert mask_name("广州市天河区信达贸易有限公司") == "广州****公司"
    assert mask("name", "李四") == "李*"


def test_hasher_digest_is_hmac_sha256_of_kind_and_value_under_the_newest_key():
    hasher = IdentityHasher((Secret("new"), Secret("old")))
    expected = hmac.new(b"new", b"phone:+8613812345678", hashlib.sha256).digest()
    assert hasher.digest("phone", "+8613812345678") == expected
    both = hasher.all_digests("phone", "+8613812345678")
    assert both == [expected, hmac.new(b"old", b"phone:+8613812345678", hashlib.sha256).digest()]
    assert hasher.digest("email", "+8613812345678") != expected, "the kind is part of the hashed text"


def test_key_version_is_a_stable_fingerprint():
    a, b = Secret("key-a"), Secret("key-b")
    assert key_version(a) == key_version(Secret("key-a"))
    assert key_version(a) != key_version(b)
    assert 0 < key_version(a) < 2**15
    rotated = IdentityHasher((b, a))
    assert rotated.versions == (key_version(b), key_version(a))
    assert rotated.key_version == key_version(b)
    assert "key-a" not in repr(rotated)


def test_hasher_needs_a_key():
    with pytest.raises(ValueError):
        IdentityHasher(())


def _reference_phone(raw: str) -> str | None:
    import phonenumbers

    try:
        n = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not (phonenumbers.is_possible_number(n) and phonenumbers.is_valid_number(n)):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def test_mobile_fast_path_agrees_with_phonenumbers():
    import random

    rng = random.Random(7)
    for _ in range(3000):
        digits = "1" + f"{rng.randrange(10**10):010d}"
        for raw in (digits, "+86" + digits, f"{digits[:3]} {digits[3:7]} {digits[7:]}", "0086-" + digits):
            expected = _reference_phone(raw)
            try:
                got: str | None = normalize("phone", raw)
            except InvalidIdentifier:
                got = None
            assert got == expected, raw


def test_resident_id_validation_agrees_with_stdnum():
    import random

    from stdnum.cn import ric
    from stdnum.exceptions import ValidationError

    rng = random.Random(9)
    regions = ["110101", "440106", "440108", "310115", "999999", "520201", "330122", "440300"]
    for _ in range(3000):
        body = f"{rng.choice(regions)}{rng.randrange(1900, 2030)}{rng.randrange(0, 14):02d}{rng.randrange(0, 33):02d}"
        body += f"{rng.randrange(1000):03d}"
        check = ric.calc_check_digit(body + "0") if rng.random() < 0.8 else rng.choice("0123456789X")
        number = body + check
        try:
            ric.validate(number)
            expected = True
        except (ValidationError, KeyError, ValueError):  # stdnum's failures, KeyError from its region table too
            expected = False
        try:
            normalize("national_id", number)
            got = True
        except InvalidIdentifier:
            got = False
        assert got == expected, number
