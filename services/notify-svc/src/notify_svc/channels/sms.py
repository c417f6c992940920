"""SMS through an HTTP gateway (JSON POST), or ``.sms.json`` files when none is set."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from notify_svc.channels import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    http_failure,
    write_file,
)


class SmsGateway:
    """POSTs ``{"to", "text", "reference"}`` to the gateway with a Bearer token."""

    name = "sms"

    def __init__(self, client: httpx.AsyncClient, url: str, token: str, timeout_s: float) -> None:
        self.client = client
        self.url = url
        self.token = token
        self.timeout_s = timeout_s

    async def send(self, message: Outgoing) -> Receipt:
        """Hand the text to the gateway; its ``id`` (if any) is the provider's message id."""
        if not message.sms:
            raise PermanentFailure("the SMS text rendered empty")
        headers = {"Idempotency-Key": message.notification_id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"to": message.to, "text": message.sms, "reference": message.notification_id}
        try:
            response = await self.client.post(
                self.url, json=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"SMS gateway {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise http_failure(response.status_code, response.text)
        provider_id = None
        try:
            answer = response.json()
            if isinstance(answer, dict) and isinstance(answer.get("id"), str | int):
                provider_id = str(answer["id"])[:500]
        except ValueError:
            pass  # a gateway that answers 2xx without JSON still accepted the message
        return Receipt(provider_message_id=provider_id)


class SmsDirectory:
    """Writes each SMS as ``<data_dir>/outbox/sms/<tenant>/<message id>.sms.json``."""

    name = "sms"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: Outgoing) -> Receipt:
        """Write the SMS atomically."""
        name = message.message_id.strip("<>").split("@")[0] + ".sms.json"
        body = {"to": message.to, "text": message.sms, "reference": message.notification_id}
        data = json.dumps(body, ensure_ascii=False).encode()
        await write_file(self.folder / message.tenant / name, data)
        return Receipt()
