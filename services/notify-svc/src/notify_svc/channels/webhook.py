"""Webhooks: the notice as JSON, POSTed to the tenant's endpoint and signed.

The ``Dunning-Signature`` header is ``t=<unix seconds>,v1=<hex>``, the hex being
HMAC-SHA256 with the shared secret over ``<t>.<body>``: the scheme payment-svc
verifies for incoming webhooks. (Signing lives here until the shared
``dunning_runtime.signing`` lands; then this should call it.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from notify_svc.channels import Outgoing, Receipt, TemporaryFailure, http_failure

SIGNATURE_HEADER = "Dunning-Signature"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Dunning-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookChannel:
    """POSTs the notice's JSON to ``message.to`` (the tenant's endpoint)."""

    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, secret: str, timeout_s: float) -> None:
        self.client = client
        self.secret = secret.encode()
        self.timeout_s = timeout_s

    async def send(self, message: Outgoing) -> Receipt:
        """POST and sign; 2xx accepts, 408/429/5xx and transport errors are temporary."""
        body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.notification_id,
            "Dunning-Notification-Id": message.notification_id,
        }
        if self.secret:
            # Signed at the moment of sending: the receiver checks the timestamp is recent.
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        try:
            response = await self.client.post(
                message.to, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"webhook {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise http_failure(response.status_code, response.text)
        return Receipt(provider_message_id=response.headers.get("X-Request-Id"))
