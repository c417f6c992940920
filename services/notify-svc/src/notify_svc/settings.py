"""notify-svc's own settings, on top of the settings every service shares."""

from __future__ import annotations

from pydantic import Field

from dunning_runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    """``ServiceSettings`` plus where email goes."""

    smtp_url: str = Field(
        default="",
        description="notify-svc: smtp://user:pass@host:port; empty writes .eml files instead.",
    )
