"""Webhooks: the notice as JSON, POSTed to the tenant's endpoint and signed.

The ``Dunning-Signature`` header is ``t=<unix seconds>,v1=<hex>``, the hex being
HMAC-SHA256 with the tenant's own secret over ``<t>.<body>``: the scheme payment-svc
verifies for incoming webhooks, from the one implementation both use
(``dunning_runtime.signing``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import httpx

from dunning_runtime import signing
from notify_svc.channels import Outgoing, Receipt, TemporaryFailure, http_failure


class WebhookChannel:
    """POSTs the notice's JSON to ``message.to`` (the tenant's endpoint)."""

    name = "webhook"

    def __init__(
        self, client: httpx.AsyncClient, secrets: Mapping[str, str], timeout_s: float
    ) -> None:
        self.client = client
        self.secrets = secrets  # tenant -> key: one tenant cannot sign for another
        self.timeout_s = timeout_s

    async def send(self, message: Outgoing) -> Receipt:
        """POST and sign; 2xx accepts, 408/429/5xx and transport errors are temporary."""
        body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.notification_id,
            "Dunning-Notification-Id": message.notification_id,
        }
        secret = self.secrets.get(message.tenant)
        if secret:
            # Signed at the moment of sending: the receiver checks the timestamp is recent.
            headers[signing.HEADER] = signing.sign(secret, int(time.time()), body)
        try:
            response = await self.client.post(
                message.to, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"webhook {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise http_failure(response.status_code, response.text)
        return Receipt(provider_message_id=response.headers.get("X-Request-Id"))
