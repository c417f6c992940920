"""The text of a managed key and its stored form.

A key looks like ``dk_<key id>_<secret>``: the id is 16 hex digits (not a secret; it
names the key in lists and URLs), the secret 32 random bytes in base64url. What is
stored is an HMAC-SHA256 of the whole key under ``DUNNING_KEY_PEPPER``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from dunning_runtime.settings import HASHED_KEY_PREFIX, is_hashed

KEY_PREFIX = "dk_"
#: Random bytes of a key's secret: 256 bits.
SECRET_BYTES = 32
#: Characters of the secret kept in the display prefix (24 of its 256 bits).
PREFIX_SECRET_CHARS = 4


def new_key() -> tuple[str, str]:
    """A new key's id and the whole key (``dk_<id>_<secret>``), to be shown once."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_id_of(key: str) -> str | None:
    """The id in a managed key's text, None when ``key`` is not shaped like one."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or len(key_id) != 16 or key_id.strip("0123456789abcdef"):
        return None
    return key_id


def digest_of(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 of the whole key under the pepper, in hex: what is stored."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def stored_form(pepper: bytes, key: str) -> str:
    """``hmac-sha256:<hex>``: how a bootstrap key may be given in the settings."""
    return HASHED_KEY_PREFIX + digest_of(pepper, key)


def hashed_digest(value: str) -> bytes | None:
    """The digest of a bootstrap key given in its stored form; None for a plain key (or a
    malformed stored form, which then matches nothing)."""
    if not is_hashed(value):
        return None
    text = value[len(HASHED_KEY_PREFIX) :]
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        return None
    return digest if len(digest) == hashlib.sha256().digest_size else None
