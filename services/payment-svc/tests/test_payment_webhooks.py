"""Processor webhooks: signatures valid, tampered, stale, replayed, rotated; one payment
whether it comes over HTTP, by webhook or both."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from payment_fixtures import (
    ACME,
    GLOBEX,
    GLOBEX_STRIPE,
    START,
    STRIPE_NEW,
    STRIPE_OLD,
    get,
    payment,
    published,
    signed,
)

from dunning_events import PaymentReceived, PaymentReversed
from dunning_runtime import signing

NOW = int(datetime.fromisoformat(START).timestamp())


def notice(event_id: str = "evt_1", kind: str = "payment.succeeded", **data: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "payment_id": "ch_1",
        "account_id": "ACME-42",
        "currency": "EUR",
        "amount": "250.00",
        "received_at": "2026-03-01T08:55:00Z",
        "method": "card",
    }
    if kind == "payment.reversed":
        fields = {"payment_id": "ch_1", "reason": "chargeback"}
    fields.update(data)
    return {"id": event_id, "type": kind, "created": NOW, "data": fields}


async def post(
    client: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    *,
    secret: str = STRIPE_NEW,
    at: int = NOW,
    provider: str = "stripe",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    raw, signature = signed(secret, body, at)
    return await client.post(f"/v1/webhooks/{provider}", content=raw, headers=headers or signature)


async def test_a_signed_notice_records_the_payment_once_however_often_it_comes(
    client: httpx.AsyncClient,
) -> None:
    first = await post(client, notice())
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["outcome"], body["payment"]["source"], body["payment"]["amount"]) == (
        "recorded",
        "webhook:stripe",
        "250.00",
    )
    # The processor retries the same event (a new signature, a later moment): the first result.
    replay = await post(client, notice(), at=NOW + 60)
    assert (replay.status_code, replay.json()) == (200, body)
    # A new event for the same payment counts it once too.
    other = await post(client, notice("evt_2", amount="260.00"))
    assert other.json()["outcome"] == "already_recorded"
    assert other.json()["differences"] == ["amount"]
    assert [type(e) for e in await published(client, 1)] == [PaymentReceived]
    assert (await get(client, "ch_1"))["amount"] == "250.00"


async def test_the_same_payment_over_http_and_by_webhook_counts_once(
    client: httpx.AsyncClient,
) -> None:
    over_http = payment(payment_id="ch_1", amount="250.00", method="card")
    assert (await client.post("/v1/payments", json=over_http, headers=ACME)).status_code == 201
    response = await post(client, notice())
    assert response.status_code == 200
    assert response.json()["outcome"] == "already_recorded"
    assert response.json()["payment"]["source"] == "api"
    # And the other way round: the ERP posts what the processor reported.
    await post(client, notice("evt_9", payment_id="ch_2"))
    again = payment(payment_id="ch_2", amount="250.00", method="card", reference=None)
    replayed = await client.post("/v1/payments", json=again, headers=ACME)
    assert replayed.status_code == 409  # the ERP's body differs: say where
    events = await published(client, 2)
    assert sorted(e.payment_id for e in events) == ["ch_1", "ch_2"]


async def test_a_rotated_secret_still_verifies_and_names_the_tenant(
    client: httpx.AsyncClient,
) -> None:
    assert (await post(client, notice(), secret=STRIPE_OLD)).status_code == 200
    globex = await post(client, notice("evt_g", account_id="GLOBEX-1"), secret=GLOBEX_STRIPE)
    assert globex.status_code == 200
    assert (await client.get("/v1/payments/ch_1", headers=GLOBEX)).json()["account_id"] == (
        "GLOBEX-1"
    )
    assert (await client.get("/v1/payments/ch_1", headers=ACME)).json()["account_id"] == "ACME-42"
    # One header may carry a signature per secret during a rotation.
    raw = json.dumps(notice("evt_3", payment_id="ch_3")).encode()
    both = (
        f"t={NOW},v1={signing.digest('whsec_unknown_0123456789', NOW, raw)},"
        f"v1={signing.digest(STRIPE_NEW, NOW, raw)}"
    )
    response = await client.post(
        "/v1/webhooks/stripe", content=raw, headers={"Dunning-Signature": both}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "case",
    ["tampered", "wrong secret", "stale", "future", "missing", "malformed", "no v1", "bearer only"],
)
async def test_a_bad_signature_is_a_401_and_records_nothing(
    client: httpx.AsyncClient, case: str
) -> None:
    raw, headers = signed(STRIPE_NEW, notice(), NOW)
    if case == "tampered":
        raw = raw.replace(b"250.00", b"2500.00")
    elif case == "wrong secret":
        headers = signed("whsec_someone_else_0000", raw, NOW)[1]
    elif case == "stale":
        headers = signed(STRIPE_NEW, raw, NOW - 301)[1]
    elif case == "future":
        headers = signed(STRIPE_NEW, raw, NOW + 301)[1]
    elif case == "missing":
        headers = {}
    elif case == "malformed":
        headers = {"Dunning-Signature": "sha256=abc"}
    elif case == "no v1":
        headers = {"Dunning-Signature": f"t={NOW},v0=abc"}
    else:
        headers = dict(ACME)
    response = await client.post("/v1/webhooks/stripe", content=raw, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Dunning-Signature" in response.headers["www-authenticate"]
    assert (await client.get("/v1/payments/ch_1", headers=ACME)).status_code == 404


async def test_within_five_minutes_either_way_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await post(client, notice("e1", payment_id="a"), at=NOW - 300)).status_code == 200
    assert (await post(client, notice("e2", payment_id="b"), at=NOW + 300)).status_code == 200


async def test_unknown_provider_is_404_and_a_bad_notice_is_422(client: httpx.AsyncClient) -> None:
    assert (await post(client, notice(), provider="paypal")).status_code == 404
    invalid = await post(client, notice(amount="12.345"))
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "body.data.amount"
    kind = await post(client, {**notice(), "type": "payment.refunded"})
    assert (kind.status_code, kind.json()["errors"][0]["field"]) == (422, "body.type")
    garbage = await post(client, b"not json")
    assert (garbage.status_code, garbage.json()["errors"][0]["field"]) == (422, "body")


async def test_a_reversal_notice_reverses_once(client: httpx.AsyncClient) -> None:
    await post(client, notice())
    reversal = notice("evt_r", "payment.reversed")
    first = await post(client, reversal)
    assert (first.status_code, first.json()["outcome"]) == (200, "reversed")
    assert first.json()["payment"]["status"] == "reversed"
    again = await post(client, notice("evt_r2", "payment.reversed"))
    assert (again.status_code, again.json()["outcome"]) == (200, "already_reversed")
    unknown = await post(client, notice("evt_r3", "payment.reversed", payment_id="nope"))
    assert unknown.status_code == 404
    assert [type(e) for e in await published(client, 2)] == [PaymentReceived, PaymentReversed]


async def test_outcomes_are_counted_for_operators(client: httpx.AsyncClient) -> None:
    def count(text: str, outcome: str) -> float:
        label = f'dunning_webhooks_total{{outcome="{outcome}",provider="stripe"}}'
        lines = [line for line in text.splitlines() if line.startswith(label)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = (await client.get("/metrics")).text
    await post(client, notice())
    await post(client, notice())
    await post(client, notice("evt_x"), secret="whsec_someone_else_0000")
    after = (await client.get("/metrics")).text
    for outcome in ("recorded", "replayed", "invalid_signature"):
        assert count(after, outcome) == count(before, outcome) + 1, outcome
