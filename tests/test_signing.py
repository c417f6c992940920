"""Webhook signatures (``dunning_runtime.signing``): HMAC-SHA256 over ``t.body``."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dunning_runtime.signing import SignatureError, digest, parse, sign, verify

SECRET = "whsec_0123456789abcdef"
T = 1_772_355_600


def test_sign_is_the_documented_hmac_over_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(SECRET.encode(), b"1772355600." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, body) == f"t={T},v1={expected}"
    assert digest(SECRET, T, body) == expected


@given(body=st.binary(max_size=2000), skew=st.integers(-300, 300))
def test_what_is_signed_verifies_within_the_tolerance(body: bytes, skew: int) -> None:
    assert verify(["other_secret_000000", SECRET], sign(SECRET, T, body), body, T + skew) == SECRET


@given(body=st.binary(min_size=1, max_size=200), flip=st.integers(0, 199))
def test_any_changed_byte_fails(body: bytes, flip: int) -> None:
    header = sign(SECRET, T, body)
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
    with pytest.raises(SignatureError, match="does not match"):
        verify([SECRET], header, changed, T)


@pytest.mark.parametrize(
    ("header", "now", "reason"),
    [
        (None, T, "missing"),
        ("", T, "missing"),
        ("garbage", T, "must be t=<unix>,v1=<hex>"),
        (f"v1={'0' * 64}", T, "no timestamp"),
        (f"t={T}", T, "no v1 signature"),
        (f"t=-5,v1={'0' * 64}", T, "Unix timestamp"),
        (f"t=\uff11\uff12,v1={'0' * 64}", T, "Unix timestamp"),
        (f"t={T},v1=é", T, "does not match"),
        ("SIGNED", T + 301, "timestamp"),
        ("SIGNED", T - 301, "timestamp"),
    ],
)
def test_refusals_say_why(header: str | None, now: int, reason: str) -> None:
    if header == "SIGNED":
        header = sign(SECRET, T, b"{}")
    with pytest.raises(SignatureError, match=reason):
        verify([SECRET], header, b"{}", now)


def test_several_signatures_in_one_header_during_a_rotation() -> None:
    body = b"{}"
    header = f"{sign('old_secret_0000000000', T, body)},v1={digest(SECRET, T, body)},v0=ignored"
    assert parse(header).signatures == (
        digest("old_secret_0000000000", T, body),
        digest(SECRET, T, body),
    )
    assert verify([SECRET], header, body, T) == SECRET
