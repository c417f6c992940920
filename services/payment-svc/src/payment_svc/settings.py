"""payment-svc's own settings, on top of the settings every service shares."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from dunning_runtime.settings import ServiceSettings, tenant_pairs

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PaymentSettings(ServiceSettings):
    """``ServiceSettings`` plus the processors' webhook secrets."""

    webhook_secrets: Annotated[dict[str, dict[str, tuple[SecretStr, ...]]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "payment-svc: webhook signing secrets, comma-separated tenant:provider:secret "
            "triples, e.g. acme:stripe:whsec_new,acme:stripe:whsec_old,globex:adyen:s3. "
            "Several for one tenant and provider are all accepted (rotation without "
            "downtime); the secret that verifies a webhook names its tenant. Secrets."
        ),
    )
    webhook_tolerance_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="payment-svc: how far a webhook's signed timestamp may be from the clock.",
    )

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _parse_secrets(cls, value: Any) -> Any:
        """Parse ``tenant:provider:secret,...`` into ``{provider: {tenant: (secret, ...)}}``;
        a secret may contain ':' but not ','; one secret for two tenants is refused (it
        could not tell them apart)."""
        if not isinstance(value, str):
            return value
        parsed: dict[str, dict[str, list[str]]] = {}
        owners: dict[tuple[str, str], str] = {}
        for tenant, rest in tenant_pairs(value, "tenant:provider:secret"):
            provider, _, secret = rest.partition(":")
            provider, secret = provider.strip(), secret.strip()
            if not provider or not secret:
                # Named by its tenant, never quoted: the rest is a secret.
                raise ValueError(
                    f"expected tenant:provider:secret; the one for {tenant!r} lacks a "
                    "provider or a secret"
                )
            if not _TENANT.match(tenant):
                raise ValueError(f"tenant {tenant!r} is not a valid tenant name")
            if not _NAME.match(provider):
                raise ValueError(
                    f"provider {provider!r} must be 1-50 lowercase letters, digits, - or _"
                )
            if len(secret) < 16:
                raise ValueError(
                    f"the secret for {tenant}:{provider} is shorter than 16 characters"
                )
            owner = owners.setdefault((provider, secret), tenant)
            if owner != tenant:
                raise ValueError(f"one {provider} secret is given for {owner} and {tenant}")
            parsed.setdefault(provider, {}).setdefault(tenant, []).append(secret)
        return {
            provider: {
                tenant: tuple(SecretStr(s) for s in secrets) for tenant, secrets in by.items()
            }
            for provider, by in parsed.items()
        }

    def webhook_providers(self) -> frozenset[str]:
        """The providers some tenant has a secret for."""
        return frozenset(self.webhook_secrets)

    def secrets_for(self, provider: str) -> list[tuple[str, str]]:
        """``(tenant, secret)`` for every secret of ``provider``."""
        return [
            (tenant, secret.get_secret_value())
            for tenant, secrets in self.webhook_secrets.get(provider, {}).items()
            for secret in secrets
        ]
