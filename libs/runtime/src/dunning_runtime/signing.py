"""Signed webhooks: HMAC-SHA256 over ``<timestamp>.<body>``, in the header

    Dunning-Signature: t=<unix seconds>,v1=<hex digest>[,v1=<hex digest>...]

the scheme Stripe uses. payment-svc verifies processors' notices with it;
notify-svc can sign its outgoing webhooks with the same ``sign``. Several ``v1``
values may be sent (one per secret while a secret is rotated); one match is
enough. Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "Dunning-Signature"
SCHEME = "v1"
#: How far a signature's timestamp may be from the verifier's clock, either way.
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature that does not verify; the message says why (safe to show the sender)."""


@dataclass(frozen=True)
class SignatureHeader:
    """A parsed ``Dunning-Signature`` header."""

    timestamp: int
    signatures: tuple[str, ...]


def digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Dunning-Signature`` header value for ``body`` sent at ``timestamp`` (Unix s)."""
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def parse(header: str) -> SignatureHeader:
    """``t=...,v1=...`` as a ``SignatureHeader``; ``SignatureError`` if it is not one.

    Unknown schemes (``v0=...``) are ignored, as Stripe's verifiers do.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"{HEADER} must be t=<unix>,v1=<hex>")
        if key == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise SignatureError(f"{HEADER}: t must be a Unix timestamp in seconds")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError(f"{HEADER} has no timestamp (t=)")
    if not signatures:
        raise SignatureError(f"{HEADER} has no {SCHEME} signature")
    return SignatureHeader(timestamp, tuple(signatures))


def verify(
    secrets: Iterable[str],
    header: str | None,
    body: bytes,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Check ``header`` for ``body`` against each of ``secrets`` at ``now`` (Unix seconds).

    Returns the secret that signed it; raises ``SignatureError`` when the header is
    missing or malformed, its timestamp is more than ``tolerance_s`` away from ``now``,
    or no secret's digest matches any ``v1`` value. Every secret is compared with
    every value, so timing does not tell which secret or value came close.
    """
    if not header:
        raise SignatureError(f"the {HEADER} header is missing")
    parsed = parse(header)
    if abs(now - parsed.timestamp) > tolerance_s:
        raise SignatureError(
            f"the signature's timestamp is more than {tolerance_s} s from the server's clock"
        )
    matched: str | None = None
    for secret in secrets:
        expected = digest(secret, parsed.timestamp, body).encode()
        for candidate in parsed.signatures:
            if hmac.compare_digest(expected, candidate.encode("utf-8", "replace")):
                matched = secret
    if matched is None:
        raise SignatureError("the signature does not match the body")
    return matched
