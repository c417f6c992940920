"""notify-svc's own settings, on top of the settings every service shares."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from dunning_runtime.settings import ServiceSettings, tenant_pairs


class NotifySettings(ServiceSettings):
    """``ServiceSettings`` plus where each channel sends and how hard it retries."""

    smtp_url: str = Field(
        default="",
        description=(
            "notify-svc: smtp://[user:pass@]host[:port] (STARTTLS as smtp_starttls says) or "
            "smtps://... (TLS from the first byte); empty writes .eml files under "
            "<data_dir>/outbox/email instead."
        ),
    )
    smtp_starttls: Literal["auto", "required", "off"] = Field(
        default="auto",
        description=(
            "notify-svc: STARTTLS on smtp://: auto (when the server offers it), required "
            "(refuse to send in clear), off."
        ),
    )
    smtp_username: str = Field(default="", description="notify-svc: SMTP user (or in the URL).")
    smtp_password: SecretStr = Field(
        default=SecretStr(""), description="notify-svc: SMTP password (or in the URL). A secret."
    )
    smtp_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="notify-svc: timeout of one SMTP conversation."
    )
    smtp_validate_certs: bool = Field(
        default=True, description="notify-svc: verify the SMTP server's TLS certificate."
    )
    smtp_idle_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "notify-svc: an SMTP connection idle longer than this is closed rather than "
            "reused (servers drop idle clients; RFC 5321 lets them after 5 minutes)."
        ),
    )
    mail_from: str = Field(
        default="Accounts Receivable <receivables@dunning.invalid>",
        max_length=320,
        description="notify-svc: From of every email unless the tenant's profile names one.",
    )
    message_id_domain: str = Field(
        default="dunning.invalid",
        pattern=r"^[A-Za-z0-9.-]{1,200}$",
        description="notify-svc: the right-hand side of the stable Message-ID of every email.",
    )
    sms_url: str = Field(
        default="",
        description=(
            "notify-svc: the SMS gateway's endpoint (JSON POST); empty writes .sms.json files "
            "under <data_dir>/outbox/sms instead."
        ),
    )
    sms_token: SecretStr = Field(
        default=SecretStr(""), description="notify-svc: Bearer token for the SMS gateway."
    )
    outgoing_webhook_secrets: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description=(
            "notify-svc: HMAC-SHA256 keys of the Dunning-Signature header on the webhooks sent "
            "to each tenant's endpoint, comma-separated tenant:secret pairs; a tenant without "
            "one gets unsigned webhooks (development only). One key per tenant, so no tenant "
            "can forge a notice to another's endpoint. Secrets."
        ),
    )
    http_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="notify-svc: timeout of one SMS/webhook request."
    )
    delivery_retry_max_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description=(
            "notify-svc: how long temporary failures (SMTP 4xx, HTTP 5xx, timeouts, refused "
            "connections) are retried, with backoff and jitter, before the notice is failed."
        ),
    )
    delivery_backoff_s: float = Field(
        default=1.0, gt=0, le=60, description="notify-svc: first backoff between two attempts."
    )
    delivery_backoff_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="notify-svc: longest backoff between attempts."
    )
    delivery_concurrency: int = Field(
        default=8, ge=1, le=256, description="notify-svc: notices sent at once."
    )
    delivery_lease_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description=(
            "notify-svc: a notice being sent is leased to one instance for this long from the "
            "start of each attempt; a notice whose instance died is taken over when it "
            "expires. It covers the attempt and the wait before the next, so it must be more "
            "than max(smtp_timeout_s, http_timeout_s) + delivery_backoff_max_s."
        ),
    )

    @model_validator(mode="after")
    def _lease_covers_an_attempt(self) -> Self:
        # A lease that ran out while its attempt or backoff still ran would let a second
        # instance send the notice again: refuse it rather than stretch it silently.
        attempt = max(self.smtp_timeout_s, self.http_timeout_s) + self.delivery_backoff_max_s
        if self.delivery_lease_s <= attempt:
            raise ValueError(
                f"delivery_lease_s ({self.delivery_lease_s:g}) must be more than the longest "
                f"attempt and the wait after it: max(smtp_timeout_s, http_timeout_s) + "
                f"delivery_backoff_max_s = {attempt:g}"
            )
        return self

    @field_validator("outgoing_webhook_secrets", mode="before")
    @classmethod
    def _parse_webhook_secrets(cls, value: Any) -> Any:
        """``tenant:secret,...`` as ``{tenant: secret}``; a secret may hold ':' but not ','."""
        if not isinstance(value, str):
            return value
        secrets: dict[str, str] = {}
        for tenant, secret in tenant_pairs(value, "tenant:secret"):
            if tenant in secrets:
                raise ValueError(f"tenant {tenant!r} has two secrets; give it one")
            secrets[tenant] = secret
        return secrets

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str) -> str:
        if value and (
            urlsplit(value).scheme not in ("smtp", "smtps") or not urlsplit(value).hostname
        ):
            raise ValueError("must be smtp://[user:pass@]host[:port] or smtps://...")
        return value

    @field_validator("sms_url")
    @classmethod
    def _check_sms_url(cls, value: str) -> str:
        if value and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc
        ):
            raise ValueError("must be an http:// or https:// URL")
        return value
