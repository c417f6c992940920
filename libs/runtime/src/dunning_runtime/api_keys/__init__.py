"""Managed API keys: created, listed, rotated and revoked at runtime, stored hashed.

A key looks like ``dk_<key id>_<secret>``: the id is 16 hex digits (not a secret; it
names the key in lists and URLs), the secret 32 random bytes in base64url. It is shown
once, when it is created. Each service stores, per key, its id, tenant (or the admin
role), a display prefix, an HMAC-SHA256 of the whole key under ``DUNNING_KEY_PEPPER``,
and when it was created, expires and was revoked (``messaging_tables.api_keys``).

Why a keyed hash and not a slow one: the secrets are 256 random bits, so there is no
dictionary to try and a slow hash would add nothing but milliseconds to every request;
keyed under the pepper, which lives in the services' settings and never in a database or
on the bus, a stolen table (or a read of the api-keys topic) cannot even be checked
against a guess.

Every service knows every key although each has its own database: the service that takes
an admin call writes its own table and publishes ``ApiKeyRecorded`` through its outbox;
every service (itself included) merges it into its table (``apply_event``). Each process
keeps a ``KeyRing`` in memory, reloaded from its own table every ``REFRESH_INTERVAL_S``,
so verifying a key is a dict lookup and one HMAC, never a database round trip, and a
revoked key is refused by every replica within about a second of the event reaching its
service. Expiry and revocation are wall-clock instants, never the manual clock's.

The bootstrap keys of the settings (``DUNNING_API_KEYS``, ``DUNNING_ADMIN_KEY``) stay
valid besides the managed ones. Either may be given in its stored form,
``hmac-sha256:<hex>`` (``stored_form``, ``dunning keys hash``), so that the deployment's
configuration holds no usable key either.

The package, one module a job: ``format`` (a key's text and stored form),
``records`` (``KeyRecord``), ``ring`` (``KeyRing``, verifying), ``storage`` (the table,
reloading the ring), ``consumer`` (the api-keys topic), ``routes`` (``/v1/admin/keys``).
"""

from dunning_runtime.api_keys.consumer import apply_event, subscription
from dunning_runtime.api_keys.format import (
    KEY_PREFIX,
    PREFIX_SECRET_CHARS,
    SECRET_BYTES,
    digest_of,
    key_id_of,
    new_key,
    stored_form,
)
from dunning_runtime.api_keys.records import KeyRecord
from dunning_runtime.api_keys.ring import KeyRing
from dunning_runtime.api_keys.routes import (
    ADMIN_EVENT_TENANT,
    DEFAULT_OVERLAP,
    MAX_OVERLAP,
    IssuedKey,
    KeyId,
    KeyList,
    KeyView,
    NewKey,
    Rotation,
    TenantName,
    key_routes,
    keyring_of,
)
from dunning_runtime.api_keys.storage import (
    REFRESH_INTERVAL_S,
    all_records,
    find,
    keep_fresh,
    record,
    refresh,
)

__all__ = [
    "ADMIN_EVENT_TENANT",
    "DEFAULT_OVERLAP",
    "KEY_PREFIX",
    "MAX_OVERLAP",
    "PREFIX_SECRET_CHARS",
    "REFRESH_INTERVAL_S",
    "SECRET_BYTES",
    "IssuedKey",
    "KeyId",
    "KeyList",
    "KeyRecord",
    "KeyRing",
    "KeyView",
    "NewKey",
    "Rotation",
    "TenantName",
    "all_records",
    "apply_event",
    "digest_of",
    "find",
    "keep_fresh",
    "key_id_of",
    "key_routes",
    "keyring_of",
    "new_key",
    "record",
    "refresh",
    "stored_form",
    "subscription",
]
