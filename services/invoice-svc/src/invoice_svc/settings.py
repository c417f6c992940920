"""invoice-svc's own settings, on top of the settings every service shares."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from dunning_runtime.settings import ServiceSettings, tenant_pairs


class InvoiceSettings(ServiceSettings):
    """``ServiceSettings`` plus the grace days of overdue detection."""

    grace_days: int = Field(
        default=0,
        ge=0,
        le=365,
        description="invoice-svc: days after the due date before an invoice counts as overdue.",
    )
    tenant_grace_days: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="invoice-svc: per-tenant grace days, tenant:days pairs, e.g. acme:3,globex:5.",
    )

    @field_validator("tenant_grace_days", mode="before")
    @classmethod
    def _parse_grace_days(cls, value: Any) -> Any:
        """Parse ``acme:3,globex:5`` into ``{"acme": 3, "globex": 5}`` (0-365 each)."""
        if not isinstance(value, str):
            return value
        pairs = tenant_pairs(value, "tenant:days")
        for tenant, days in pairs:
            if not days.isdigit() or int(days) > 365:
                raise ValueError(f"{tenant}: days must be a whole number 0-365, got {days!r}")
        return {tenant: int(days) for tenant, days in pairs}

    def grace_days_for(self, tenant: str) -> int:
        """Grace days of ``tenant``: its own setting, else the default."""
        return self.tenant_grace_days.get(tenant, self.grace_days)
