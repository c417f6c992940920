"""dunning-svc's HTTP API: manual actions, worklist, policies and reports, failures too."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from dunning_fixtures import ACME, GLOBEX, issued, paid, publish
from test_dunning_flow import account, day, known, move

from tests.support.fixtures import ADMIN, until


async def seeded(client: httpx.AsyncClient, settings: Any, *accounts: str) -> None:
    """Accounts with one 1250.00 EUR invoice due 3 March each."""
    await publish(
        settings, *(issued(f"INV-{a}", due=date(2026, 3, 3), account=a) for a in accounts)
    )
    for name in accounts:
        await known(client, name)


def fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return [e["field"] for e in response.json().get("errors", [])]


async def test_promise_to_pay_pauses_and_refuses_what_the_rules_refuse(
    client, dunning_settings
) -> None:
    await seeded(client, dunning_settings, "ACME-42")
    url = "/v1/accounts/ACME-42/promise-to-pay"
    body = {
        "promise_id": "PTP-1",
        "amount": "500.00",
        "currency": "EUR",
        "promised_date": "2026-03-20",
    }
    response = await client.post(url, json=body, headers={**ACME, "Idempotency-Key": "k1"})
    assert response.status_code == 201, response.text
    state = response.json()
    assert state["paused"] and state["pause_reason"].startswith("promise to pay PTP-1")
    # Typed, in the contract's terms: decimal strings with a currency, no internal keys.
    promise = state["promise"]
    assert promise == {
        "promise_id": "PTP-1",
        "amount": {"currency": "EUR", "amount": "500.00"},
        "promised_date": "2026-03-20",
        "recorded_at": promise["recorded_at"],
        "amount_received": {"currency": "EUR", "amount": "0.00"},
    }
    assert datetime.fromisoformat(promise["recorded_at"]).tzinfo is not None
    # The same request again is a replay; another promise is a conflict.
    again = await client.post(url, json=body, headers={**ACME, "Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json() == state
    other = await client.post(url, json={**body, "promise_id": "PTP-2"}, headers=ACME)
    assert other.status_code == 409
    past = await client.post(url, json={**body, "promised_date": "2026-02-01"}, headers=ACME)
    assert past.status_code in (409, 422)
    cents = await client.post(url, json={**body, "amount": "1.001"}, headers=ACME)
    assert cents.status_code == 422 and fields(cents) == ["body"]
    assert (
        await client.post("/v1/accounts/NOPE/promise-to-pay", json=body, headers=ACME)
    ).status_code == 404
    assert (await client.post(url, json=body, headers=GLOBEX)).status_code == 404
    timeline = (await client.get("/v1/accounts/ACME-42/timeline", headers=ACME)).json()
    actions = [e for e in timeline["items"] if e["kind"] == "action"]
    assert actions[0]["actor"] == "api" and "PTP-1" in actions[0]["summary"]


async def test_a_promise_date_in_the_past_names_the_field(client, dunning_settings) -> None:
    await seeded(client, dunning_settings, "ACME-42")
    response = await client.post(
        "/v1/accounts/ACME-42/promise-to-pay",
        json={"amount": "500.00", "currency": "EUR", "promised_date": "2026-02-01"},
        headers=ACME,
    )
    assert response.status_code == 422 and fields(response) == ["body.promised_date"]


async def test_plan_pause_resume_handoff_write_off(client, dunning_settings) -> None:
    await seeded(client, dunning_settings, "ACME-42")
    base = "/v1/accounts/ACME-42"
    unordered = {
        "currency": "EUR",
        "installments": [
            {"due_date": "2026-04-01", "amount": "600.00"},
            {"due_date": "2026-03-15", "amount": "650.00"},
        ],
    }
    assert (
        await client.post(f"{base}/payment-plan", json=unordered, headers=ACME)
    ).status_code == 422
    plan = {
        "plan_id": "PLAN-1",
        "currency": "EUR",
        "installments": [
            {"due_date": "2026-03-15", "amount": "600.00"},
            {"due_date": "2026-04-15", "amount": "650.00"},
        ],
    }
    response = await client.post(f"{base}/payment-plan", json=plan, headers=ACME)
    assert response.status_code == 201 and response.json()["plan"]["plan_id"] == "PLAN-1"
    assert (
        await client.post(f"{base}/payment-plan", json=plan | {"plan_id": "PLAN-2"}, headers=ACME)
    ).status_code == 409
    response = await client.post(f"{base}/resume", json={}, headers={**ACME, "X-Actor": "jo"})
    assert response.status_code == 200 and not response.json()["paused"]
    assert (await client.post(f"{base}/resume", headers=ACME)).status_code == 409
    response = await client.post(
        f"{base}/pause", json={"reason": "on holiday", "until": "2026-03-20"}, headers=ACME
    )
    assert response.status_code == 200
    assert response.json()["pause_reason"] == "manual: on holiday"
    bad = await client.post(f"{base}/pause", json={"reason": ""}, headers=ACME)
    assert bad.status_code == 422 and fields(bad) == ["body.reason"]
    assert (await client.post(f"{base}/handoff/approve", headers=ACME)).status_code == 409
    response = await client.post(f"{base}/write-off", json={"reason": "insolvent"}, headers=ACME)
    assert response.status_code == 200 and response.json()["written_off"]
    assert (
        await client.post(f"{base}/write-off", json={"reason": "again"}, headers=ACME)
    ).status_code == 409


async def test_contacts(client, dunning_settings) -> None:
    await seeded(client, dunning_settings, "ACME-42")
    url = "/v1/accounts/ACME-42/contacts"
    boss = {"name": "Finance Director", "email": "fd@acme.example"}
    response = await client.put(url, json={"escalation_contact": boss}, headers=ACME)
    assert response.status_code == 200
    assert response.json()["escalation_contact"] == {**boss, "phone": None}
    bad = await client.put(
        url, json={"escalation_contact": {"name": "x", "email": "nope"}}, headers=ACME
    )
    assert bad.status_code == 422 and fields(bad) == ["body.escalation_contact.email"]


async def test_the_worklist_filters_sorts_and_pages(client, dunning_settings) -> None:
    await publish(
        dunning_settings,
        issued("INV-A", "100.00", due=date(2026, 3, 3), account="A"),
        issued("INV-B", "900.00", due=date(2026, 3, 3), account="B"),
        issued("INV-C", "500.00", due=date(2026, 2, 1), account="C"),
        issued("INV-D", "50.00", due=date(2026, 6, 1), account="D"),
    )
    for name in "ABCD":
        await known(client, name)
    await move(client, day(date(2026, 3, 5)))
    page = (await client.get("/v1/accounts?sort=overdue&limit=2", headers=ACME)).json()
    assert [i["account_id"] for i in page["items"]] == ["B", "C"]
    rest = (
        await client.get(
            f"/v1/accounts?sort=overdue&limit=2&cursor={page['next_cursor']}", headers=ACME
        )
    ).json()
    assert [i["account_id"] for i in rest["items"]] == ["A", "D"] and rest["next_cursor"] is None
    by_age = (await client.get("/v1/accounts?sort=days_past_due", headers=ACME)).json()
    assert by_age["items"][0]["account_id"] == "C"
    big = (await client.get("/v1/accounts?min_overdue=500", headers=ACME)).json()
    assert sorted(i["account_id"] for i in big["items"]) == ["B", "C"]
    staged = (await client.get("/v1/accounts?stage=overdue_1", headers=ACME)).json()
    assert sorted(i["account_id"] for i in staged["items"]) == ["A", "B"]
    bad = await client.get("/v1/accounts?cursor=nonsense", headers=ACME)
    assert bad.status_code == 422 and fields(bad) == ["query.cursor"]
    assert (await client.get("/v1/accounts", headers=GLOBEX)).json()["items"] == []


async def test_policies_are_versioned_data(client, dunning_settings) -> None:
    listed = (await client.get("/v1/policies", headers=ACME)).json()
    assert [p["segment"] for p in listed] == ["high_risk", "standard", "strategic"]
    standard = (await client.get("/v1/policies/standard", headers=ACME)).json()
    assert standard["version"] == 0 and standard["policy"]["steps"][1]["stage"] == "overdue_1"
    policy = standard["policy"]
    broken = {**policy, "steps": [policy["steps"][2], policy["steps"][1]]}
    response = await client.put("/v1/policies/standard", json=broken, headers=ACME)
    assert response.status_code == 422, response.text
    assert "days_past_due must increase" in response.text
    # Named like every other 422: the step and its field, not the whole body.
    assert fields(response) == ["body.steps[1].days_past_due"]
    assert (
        await client.put("/v1/policies/standard", json={**policy, "bogus": 1}, headers=ACME)
    ).status_code == 422
    # An account in dunning stays on its version; a new one takes the newest.
    await seeded(client, dunning_settings, "ACME-42")
    await move(client, day(date(2026, 3, 5)))
    assert (await account(client))["policy_version"] == 0
    slower = {**policy, "contact_cap_days": 5}
    response = await client.put(
        "/v1/policies/standard", json=slower, headers={**ACME, "X-Actor": "cfo"}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["version"], response.json()["created_by"]) == (1, "cfo")
    await move(client, day(date(2026, 3, 6)))
    assert (await account(client))["policy_version"] == 0
    response = await client.put(
        "/v1/policies/standard", json={**slower, "apply_to_running": True}, headers=ACME
    )
    assert response.json()["version"] == 2
    again = await client.put(
        "/v1/policies/standard", json={**slower, "apply_to_running": True}, headers=ACME
    )
    assert again.json()["version"] == 2  # a retried PUT makes no new version
    await move(client, day(date(2026, 3, 7)))
    assert (await account(client))["policy_version"] == 2
    versions = (await client.get("/v1/policies/standard/versions", headers=ACME)).json()
    assert [v["version"] for v in versions["versions"]] == [2, 1, 0]
    assert [v["apply_to_running"] for v in versions["versions"]] == [True, False, False]
    # Other tenants keep the shipped policy.
    other = (await client.get("/v1/policies/standard", headers=GLOBEX)).json()
    assert other["version"] == 0
    assert (await client.get("/v1/policies/Bad!", headers=ACME)).status_code == 422


async def test_aging_and_dso(client, dunning_settings) -> None:
    await publish(
        dunning_settings,
        issued("INV-1", "100.00", due=date(2026, 3, 10), account="A"),
        issued("INV-2", "200.00", due=date(2026, 2, 20), account="A"),
        issued("INV-3", "300.00", due=date(2026, 1, 15), account="B"),
        issued("INV-4", "400.00", due=date(2025, 11, 1), account="B"),
        issued("INV-5", "50", due=date(2026, 2, 1), account="C", currency="JPY"),
    )
    for name in "ABC":
        await known(client, name)
    report = (
        await client.get("/v1/reports/aging?as_of=2026-03-01&by_account=true", headers=ACME)
    ).json()
    eur = next(t for t in report["totals"] if t["currency"] == "EUR")
    assert (eur["current"], eur["days_1_30"], eur["days_31_60"], eur["days_over_90"]) == (
        "100.00",
        "200.00",
        "300.00",
        "400.00",
    )
    assert eur["total"] == "1000.00"
    assert sorted(a["account_id"] for a in report["accounts"]) == ["A", "B", "C"]
    # INV-2 is paid on 5 March: still open in a report as of 1 March, gone as of the 5th.
    await publish(
        dunning_settings,
        paid("P1", ("INV-2", "200.00"), at=datetime(2026, 3, 5, 10, tzinfo=UTC), account="A"),
    )

    async def payment_seen() -> bool:
        state = (await client.get("/v1/accounts/A", headers=ACME)).json()
        return [i["invoice_id"] for i in state["invoices"]] == ["INV-1"]

    await until(payment_seen, what="the payment applied")

    async def eur_totals(as_of: str) -> dict[str, str]:
        url = f"/v1/reports/aging?as_of={as_of}"
        totals = (await client.get(url, headers=ACME)).json()["totals"]
        return next(t for t in totals if t["currency"] == "EUR")

    assert (await eur_totals("2026-03-01"))["days_1_30"] == "200.00"
    assert (await eur_totals("2026-03-04"))["total"] == "1000.00"
    assert (await eur_totals("2026-03-05"))["total"] == "800.00"
    dso = (await client.get("/v1/reports/dso?from=2026-02-01&to=2026-03-01", headers=ACME)).json()
    figures = {f["currency"]: f for f in dso["figures"]}
    assert figures["EUR"]["days"] == 29
    # Receivables at the period's end as they stood then: the payment came after it.
    assert figures["EUR"]["receivables"] == "1000.00"
    assert figures["JPY"]["receivables"] == "50"
    bad = await client.get("/v1/reports/dso?from=2026-03-02&to=2026-03-01", headers=ACME)
    assert bad.status_code == 422 and fields(bad) == ["query.from"]


@pytest.mark.parametrize("path", ["/v1/accounts/NOPE", "/v1/accounts/NOPE/timeline"])
async def test_unknown_accounts_are_404(client, path: str) -> None:
    response = await client.get(path, headers=ACME)
    assert response.status_code == 404 and fields(response) == []


async def test_admin_routes_need_the_admin_key(client) -> None:
    assert (await client.post("/v1/admin/tick", headers=ACME)).status_code == 403
    assert (await client.post("/v1/admin/tick", headers=ADMIN)).status_code == 200


async def test_the_account_shows_its_promise_and_plan_typed_with_what_has_arrived(
    client, dunning_settings
) -> None:
    """Promise and plan read as the contract writes amounts (decimal strings with a
    currency) and say how far the customer has got: the installments paid so far."""
    await seeded(client, dunning_settings, "ACME-42")
    base = "/v1/accounts/ACME-42"
    plan = {
        "plan_id": "PLAN-1",
        "currency": "EUR",
        "installments": [
            {"due_date": "2026-03-15", "amount": "600.00"},
            {"due_date": "2026-04-15", "amount": "650.00"},
        ],
    }
    agreed = await client.post(f"{base}/payment-plan", json=plan, headers=ACME)
    assert agreed.status_code == 201, agreed.text
    shown = agreed.json()["plan"]
    assert [(i["due_date"], i["amount"], i["paid"]) for i in shown["installments"]] == [
        ("2026-03-15", {"currency": "EUR", "amount": "600.00"}, False),
        ("2026-04-15", {"currency": "EUR", "amount": "650.00"}, False),
    ]
    assert shown["currency"] == "EUR" and shown["amount_received"]["amount"] == "0.00"
    after = datetime.fromisoformat(shown["agreed_at"]).replace(hour=23)
    await publish(dunning_settings, paid("P-1", ("INV-ACME-42", "600.00"), at=after))

    async def first_paid() -> bool:
        current = (await account(client))["plan"]
        return current is not None and current["installments"][0]["paid"]

    await until(first_paid, what="the first installment shown as paid")
    current = (await account(client))["plan"]
    assert [i["paid"] for i in current["installments"]] == [True, False]
    assert current["amount_received"] == {"currency": "EUR", "amount": "600.00"}
