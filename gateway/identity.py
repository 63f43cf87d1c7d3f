"""Identifiers: normalisation, display masking and the keyed hash we match on (DESIGN.md §4, §8).

Policy:

- :func:`normalize` turns what a channel or the core-banking feed sends into the one canonical
  form that is hashed. Phones become E.164 (``phonenumbers``, default region CN; impossible or
  invalid numbers are refused); emails are trimmed and case-folded; resident identity numbers are
  validated with ``python-stdnum`` (``stdnum.cn.ric``: GB 11643 checksum, birth date, region) and a
  15-digit first-generation number is upgraded to 18 digits; card numbers must pass Luhn
  (``stdnum.luhn``); account numbers are digits; the other kinds are trimmed and non-empty. Anything
  else raises :class:`InvalidIdentifier`, whose message says what is wrong and never carries the
  value itself (it ends up in problem responses and logs).
- :func:`mask` renders an identifier for display (JR/T 0171-2020 spirit): national ID
  ``440***********123X``, card/account ``6217 **** **** 1234``, mobile ``138****5678``, email
  ``z***@example.com``. Every response, page and log line that shows an identifier shows this.
- :class:`IdentityHasher` is the keyed hash: HMAC-SHA256 over ``"{kind}:{normalized}"``. The
  newest key (first of ``settings.identity_hmac_keys``) hashes new values; matching tries the
  digests under every configured key, so keys rotate without a flag day (README "Key rotation").
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from gateway.settings import Secret

KINDS: tuple[str, ...] = (
    "phone", "email", "customer_no", "national_id", "card_no", "account_no", "device_id", "online_user_id",
)
MAX_LENGTH = 128

_SEPARATORS = re.compile(r"[\s\-]")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_CN_MOBILE_RE = re.compile(r"^\+861[3-9]\d{9}$")


class InvalidIdentifier(ValueError):
    """An identifier value is not valid for its kind. The message names the problem, never the value."""


def _upgrade_15(number: str) -> str:
    """A first-generation 15-digit resident ID as its 18-digit form (GB 11643-1999).

    The 15-digit numbers (issued 1984-1999) carry a two-digit birth year of the 1900s and no check
    digit: insert ``19`` before the year and append the ISO 7064 MOD 11-2 check digit, which
    ``stdnum.cn.ric.calc_check_digit`` computes (it ignores the last character it is given).
    """
    body = number[:6] + "19" + number[6:]
    return body + ric.calc_check_digit(body + "0")


@functools.lru_cache(maxsize=16384)
def _region_valid(region: str, year: int) -> bool:
    """Whether stdnum's region table knows this 6-digit code for this birth year (cached: the lookup is slow)."""
    body = f"{region}{year:04d}0101001"
    try:
        ric.get_birth_place(body + ric.calc_check_digit(body + "0"))
    except (ValidationError, KeyError, ValueError):
        # stdnum's table lookup can fail with KeyError for some codes: that, too, is "unknown region"
        return False
    return True


def _normalize_national_id(value: str) -> str:
    """Validate as ``stdnum.cn.ric.validate`` does (length, format, GB 11643 checksum, birth date, region).

    The same checks with stdnum's own functions, in this order, but with the region lookup cached per
    (region, birth year): it dominates the cost and a bulk import sees a few thousand regions.
    """
    number = _SEPARATORS.sub("", value).upper()
    if len(number) == 15:
        if not number.isdigit():
            raise InvalidIdentifier("a 15-digit resident identity number has digits only")
        number = _upgrade_15(number)
    if len(number) != 18:
        raise InvalidIdentifier("a resident identity number has 18 characters (or 15 digits)")
    if not number[:-1].isdigit() or not (number[-1].isdigit() or number[-1] == "X"):
        raise InvalidIdentifier("a resident identity number has 17 digits and a digit or X")
    if number[-1] != ric.calc_check_digit(number):
        raise InvalidIdentifier("resident identity number checksum does not match (GB 11643)")
    try:
        birth = ric.get_birth_date(number)
    except (ValidationError, ValueError):
        raise InvalidIdentifier("resident identity number has an impossible birth date") from None
    if not _region_valid(number[:6], birth.year):
        raise InvalidIdentifier("resident identity number has an unknown region code") from None
    return number


@functools.lru_cache(maxsize=1)
def _cn_mobile_pattern() -> re.Pattern[str]:
    """libphonenumber's own pattern of Chinese mobile numbers (from the phonenumbers metadata)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    mobile = metadata.mobile if metadata is not None else None
    if mobile is None or not mobile.national_number_pattern:
        return re.compile(r"(?!)")  # no metadata: never take the fast path
    return re.compile(mobile.national_number_pattern)


_CN_MOBILE_INPUT = re.compile(r"^(?:\+86|0086|86)?(1\d{10})$")


def _normalize_phone(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidIdentifier("empty phone number")
    # Fast path for the common case, a Chinese mobile: the same answer as parsing with phonenumbers
    # (its metadata's mobile pattern), without the general parser's cost.
    m = _CN_MOBILE_INPUT.match(_SEPARATORS.sub("", text))
    if m and _cn_mobile_pattern().fullmatch(m.group(1)):
        return "+86" + m.group(1)
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier("impossible phone number (wrong length for its country)")
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier("invalid phone number (no such number range)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalize_email(value: str) -> str:
    email = value.strip().casefold()
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise InvalidIdentifier("not an email address")
    return email


def _normalize_card(value: str) -> str:
    number = _SEPARATORS.sub("", value)
    if not number.isdigit():
        raise InvalidIdentifier("a card number has digits only")
    if not 12 <= len(number) <= 19:
        raise InvalidIdentifier("a card number has 12 to 19 digits")
    try:
        luhn.validate(number)
    except ValidationError:
        raise InvalidIdentifier("card number fails the Luhn check") from None
    return number


def _normalize_account(value: str) -> str:
    number = _SEPARATORS.sub("", value)
    if not number.isdigit():
        raise InvalidIdentifier("an account number has digits only")
    if not 6 <= len(number) <= 34:
        raise InvalidIdentifier("an account number has 6 to 34 digits")
    return number


def _normalize_opaque(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidIdentifier("empty identifier")
    if len(text) > MAX_LENGTH:
        raise InvalidIdentifier(f"longer than {MAX_LENGTH} characters")
    return text


def normalize(kind: str, value: str) -> str:
    """The canonical form of an identifier, the one that is hashed. Raises :class:`InvalidIdentifier`."""
    if not isinstance(value, str):
        raise InvalidIdentifier("an identifier value is a string")
    if len(value) > 4 * MAX_LENGTH:
        raise InvalidIdentifier("identifier value is too long")
    if kind == "phone":
        return _normalize_phone(value)
    if kind == "email":
        return _normalize_email(value)
    if kind == "national_id":
        return _normalize_national_id(value)
    if kind == "card_no":
        return _normalize_card(value)
    if kind == "account_no":
        return _normalize_account(value)
    if kind in ("customer_no", "device_id", "online_user_id"):
        return _normalize_opaque(value)
    raise InvalidIdentifier(f"unknown identifier kind (one of {', '.join(KINDS)})")


# --- masking -------------------------------------------------------------------------------------

# Two-character Chinese surnames (复姓): the whole surname stays visible, as on bank counters.
COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "申屠", "澹台", "公冶", "宗政", "濮阳",
    "太史", "仲孙", "钟离", "闻人", "赫连", "呼延", "万俟", "百里", "东郭", "拓跋", "第五", "左丘",
})


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def mask_name(name: str) -> str:
    """A partly masked person or company name: ``张*``, ``欧阳**``, ``J*** S****``.

    Chinese names keep the surname (one character, or two for a compound surname); names in Latin
    script keep the first letter of each word. Company names (longer than six characters) keep
    their first two and last two characters (``广州****公司``).
    """
    name = name.strip()
    if not name:
        return ""
    if _is_cjk(name[0]):
        if len(name) > 6:
            return name[:2] + "*" * 4 + name[-2:]
        keep = 2 if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else 1
        return name[:keep] + "*" * max(len(name) - keep, 1)
    return " ".join(w[0] + "*" * max(len(w) - 1, 1) for w in name.split())


def _mask_digits(number: str) -> str:
    """``6217 **** **** 1234``: first four and last four digits, the middle as groups of stars."""
    if len(number) <= 8:
        return "**** " + number[-4:] if len(number) > 4 else "*" * len(number)
    middle = len(number) - 8
    return " ".join([number[:4], *(["****"] * -(-middle // 4)), number[-4:]])


def _mask_phone(value: str) -> str:
    text = value.strip()
    if _CN_MOBILE_RE.match(text):  # already E.164 (the common case): no need to parse again
        return text[3:6] + "****" + text[-4:]
    try:
        e164 = _normalize_phone(text)
    except InvalidIdentifier:
        digits = re.sub(r"\D", "", text)
        return "****" + digits[-4:] if len(digits) > 4 else "*" * len(digits)
    if _CN_MOBILE_RE.match(e164):
        return e164[3:6] + "****" + e164[-4:]
    code = phonenumbers.parse(e164).country_code
    return f"+{code} ****{e164[-4:]}"


def _mask_email(value: str) -> str:
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return "***"
    return local[0] + "***@" + domain.casefold()


def _mask_opaque(value: str) -> str:
    text = value.strip()
    n = len(text)
    if n <= 4:
        return "*" * n
    if n <= 8:
        return text[0] + "*" * (n - 3) + text[-2:]
    return text[:3] + "****" + text[-4:]


def mask(kind: str, value: str) -> str:
    """The display form of an identifier (raw or normalised); never fails, never returns the raw value."""
    if kind == "national_id":
        number = _SEPARATORS.sub("", value).upper()
        if len(number) < 8:
            return "*" * len(number)
        return number[:3] + "*" * (len(number) - 7) + number[-4:]
    if kind in ("card_no", "account_no"):
        return _mask_digits(re.sub(r"\D", "", value))
    if kind == "phone":
        return _mask_phone(value)
    if kind == "email":
        return _mask_email(value)
    if kind == "name":
        return mask_name(value)
    return _mask_opaque(value)


# --- the keyed hash ------------------------------------------------------------------------------

_KEY_VERSION_LABEL = b"contact-gateway identity key version"


def key_version(key: Secret) -> int:
    """A stable, positive 15-bit fingerprint of a key (stored as ``customer_identifiers.key_version``).

    It does not depend on the key's position in the list, so it survives rotation: after a new key is
    put in front, rows whose ``key_version`` differs from the newest key's are the ones still to
    re-digest. Zero is never returned (it is the column default, meaning "unknown").
    """
    fp = int.from_bytes(hmac.digest(key.get().encode(), _KEY_VERSION_LABEL, "sha256")[:2], "big") & 0x7FFF
    return fp or 1


class IdentityHasher:
    """HMAC-SHA256 of ``"{kind}:{normalized}"`` under the configured keys, newest first."""

    __slots__ = ("_keys", "versions")

    def __init__(self, keys: Sequence[Secret]) -> None:
        if not keys:
            raise ValueError("IdentityHasher needs at least one key")
        self._keys = tuple(k.get().encode() for k in keys)
        self.versions: tuple[int, ...] = tuple(key_version(k) for k in keys)

    @classmethod
    def from_settings(cls, settings: object) -> IdentityHasher:
        return cls(settings.identity_hmac_keys)  # type: ignore[attr-defined]

    @property
    def key_version(self) -> int:
        """The fingerprint of the newest key, stored with every digest it makes."""
        return self.versions[0]

    def digest(self, kind: str, normalized: str) -> bytes:
        """The digest under the newest key (what new rows store)."""
        return hmac.digest(self._keys[0], f"{kind}:{normalized}".encode(), hashlib.sha256)

    def all_digests(self, kind: str, normalized: str) -> list[bytes]:
        """One digest per configured key, newest first (what matching looks for)."""
        msg = f"{kind}:{normalized}".encode()
        return [hmac.digest(k, msg, hashlib.sha256) for k in self._keys]

    def __repr__(self) -> str:
        return f"IdentityHasher(keys={len(self._keys)}, versions={self.versions})"
