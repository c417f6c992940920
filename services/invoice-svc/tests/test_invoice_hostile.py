"""Hostile input found by fuzzing (issue 6, §7): each is a 4xx problem naming the field,
and nothing is stored."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from invoice_fixtures import ACME, invoice

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body["errors"]}


async def count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/invoices?limit=1000", headers=ACME)).json()["items"])


def late_fee(**fee: str) -> dict[str, str]:
    return {"kind": "flat", **fee}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"late_fee": late_fee(amount="5.001")}, "body.late_fee.amount", "EUR allows at most 2"),
        (
            {"late_fee": late_fee(amount="5.00", cap="10.001")},
            "body.late_fee.cap",
            "EUR allows at most 2",
        ),
        (
            {
                "currency": "JPY",
                "amount_due": "1000",
                "lines": [],
                "late_fee": {"kind": "percent_per_month", "percent": "1", "cap": "1.5"},
            },
            "body.late_fee.cap",
            "JPY allows at most 0",
        ),
        (
            {"currency": "CLF", "amount_due": "999999999999999.9999", "lines": []},
            "body.amount_due",
            "below 10^12",
        ),
        ({"amount_due": "1000000000000.00", "lines": []}, "body.amount_due", "below 10^12"),
        ({"due_date": "9999-12-31"}, "body.due_date", "between 2000-01-01 and 2199-12-31"),
        ({"issue_date": "0001-01-01"}, "body.issue_date", "between 2000-01-01 and 2199-12-31"),
        ({"invoice_id": "a/b"}, "body.invoice_id", "letters, digits"),
        ({"invoice_id": "../x"}, "body.invoice_id", "letters, digits"),
        ({"invoice_id": ".."}, "body.invoice_id", '"." or ".."'),
        ({"invoice_id": "x" * 101}, "body.invoice_id", "at most 100"),
        ({"account_id": "ACME 42"}, "body.account_id", "letters, digits"),
        ({"account_name": "ACME\x07 GmbH"}, "body.account_name", "control characters"),
        ({"contact": {"name": "Dana\x00"}}, "body.contact.name", "control characters"),
        ({"metadata": {"note": "a\x1bb"}}, "body.metadata.note", "control characters"),
    ],
)
async def test_hostile_invoice_is_a_422_naming_the_field(
    client: httpx.AsyncClient, changes: dict[str, Any], field: str, message: str
) -> None:
    body = problem(await client.post("/v1/invoices", json=invoice(**changes), headers=ACME), 422)
    errors = errors_of(body)
    assert field in errors, errors
    assert message in errors[field]
    assert await count(client) == 0


async def test_newlines_and_tabs_are_free_text(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/invoices",
        json=invoice(account_name="ACME\tGmbH", metadata={"note": "line 1\nline 2"}),
        headers=ACME,
    )
    assert response.status_code == 201, response.text
    assert response.json()["metadata"]["note"] == "line 1\nline 2"


async def test_batch_with_a_hostile_item_answers_each_and_stores_the_valid_one(
    client: httpx.AsyncClient,
) -> None:
    items = [
        invoice(invoice_id="GOOD"),
        invoice(invoice_id="BAD-FEE", late_fee=late_fee(amount="5.001")),
        invoice(invoice_id="BAD-DUE", due_date="9999-12-31"),
        invoice(invoice_id="a/b"),
    ]
    response = await client.post("/v1/invoices/batch", json={"invoices": items}, headers=ACME)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 422, 422]
    assert [e["field"] for e in results[1]["problem"]["errors"]] == [
        "body.invoices[1].late_fee.amount"
    ]
    assert [e["field"] for e in results[2]["problem"]["errors"]] == ["body.invoices[2].due_date"]
    assert [e["field"] for e in results[3]["problem"]["errors"]] == ["body.invoices[3].invoice_id"]
    listed = (await client.get("/v1/invoices", headers=ACME)).json()["items"]
    assert [i["invoice_id"] for i in listed] == ["GOOD"]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "bm90LWEtY3Vyc29y",
        _b64("1" + "0" * 30),
        _b64("s:1" + "0" * 30),
        _b64("s:-1"),
        "A" * 65,
    ],
)
async def test_a_cursor_not_returned_by_the_api_is_a_422(
    client: httpx.AsyncClient, cursor: str
) -> None:
    body = problem(await client.get("/v1/invoices", params={"cursor": cursor}, headers=ACME), 422)
    assert list(errors_of(body)) == ["query.cursor"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"due_before": "9999-12-31"}, "query.due_before"),
        ({"due_after": "0001-01-01"}, "query.due_after"),
        ({"account_id": "a/b"}, "query.account_id"),
    ],
)
async def test_list_filters_are_validated(
    client: httpx.AsyncClient, query: dict[str, str], field: str
) -> None:
    body = problem(await client.get("/v1/invoices", params=query, headers=ACME), 422)
    assert field in errors_of(body)


@pytest.mark.parametrize("invoice_id", ["a%20b", "x" * 101, "%C3%A4"])
async def test_an_unaddressable_invoice_id_in_the_path_is_a_422(
    client: httpx.AsyncClient, invoice_id: str
) -> None:
    for response in (
        await client.get(f"/v1/invoices/{invoice_id}", headers=ACME),
        await client.post(f"/v1/invoices/{invoice_id}/void", headers=ACME),
    ):
        assert "path.invoice_id" in errors_of(problem(response, 422))


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("dispute", {"reason": "bad\x00reason"}, "body.reason"),
        ("dispute", {"reason": "x", "amount": "1000000000000.00"}, "body.amount"),
        ("void", {"reason": "\x1b[31mred"}, "body.reason"),
    ],
)
async def test_hostile_change_is_a_422_and_changes_nothing(
    client: httpx.AsyncClient, path: str, body: dict[str, str], field: str
) -> None:
    created = (await client.post("/v1/invoices", json=invoice(), headers=ACME)).json()
    answer = problem(
        await client.post(f"/v1/invoices/INV-1001/{path}", json=body, headers=ACME), 422
    )
    assert field in errors_of(answer)
    assert (await client.get("/v1/invoices/INV-1001", headers=ACME)).json() == created


async def test_a_void_invoice_owes_nothing_and_shows_what_was_written_off(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/invoices", json=invoice(), headers=ACME)
    voided = (await client.post("/v1/invoices/INV-1001/void", headers=ACME)).json()
    assert (voided["status"], voided["balance"], voided["balance_voided"]) == (
        "void",
        "0.00",
        "1250.00",
    )
    fetched = (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()
    assert (fetched["balance"], fetched["balance_voided"]) == ("0.00", "1250.00")


# -- every POST is idempotent ------------------------------------------------


async def test_retried_dispute_and_resolve_replay_their_first_result(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/invoices", json=invoice(), headers=ACME)
    dispute = {**ACME, "Idempotency-Key": "dispute-1"}
    first = await client.post(
        "/v1/invoices/INV-1001/dispute",
        json={"reason": "price", "amount": "50.00"},
        headers=dispute,
    )
    again = await client.post(
        "/v1/invoices/INV-1001/dispute",
        json={"amount": "50.00", "reason": "price"},
        headers=dispute,
    )
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"

    resolve = {**ACME, "Idempotency-Key": "resolve-1"}
    resolved = await client.post(
        "/v1/invoices/INV-1001/dispute/resolve", json={"resolution": "upheld"}, headers=resolve
    )
    replayed = await client.post(
        "/v1/invoices/INV-1001/dispute/resolve", json={"resolution": "upheld"}, headers=resolve
    )
    assert (resolved.status_code, replayed.status_code) == (200, 200)
    assert replayed.json() == resolved.json()
    assert resolved.json()["credited"] == "50.00"
    # Applied once: the credit was not granted twice.
    assert (await client.get("/v1/invoices/INV-1001", headers=ACME)).json()["balance"] == "1200.00"


async def test_a_key_belongs_to_one_request_and_one_tenant(client: httpx.AsyncClient) -> None:
    await client.post("/v1/invoices", json=invoice(), headers=ACME)
    await client.post(
        "/v1/invoices", json=invoice(), headers={"Authorization": "Bearer globex-key"}
    )
    key = {"Idempotency-Key": "k-1"}
    acme = await client.post(
        "/v1/invoices/INV-1001/dispute", json={"reason": "a"}, headers={**ACME, **key}
    )
    other = await client.post(
        "/v1/invoices/INV-1001/dispute", json={"reason": "b"}, headers={**ACME, **key}
    )
    assert acme.status_code == 200
    assert problem(other, 409)["type"].endswith("idempotency-key-reused")
    # Another tenant may use the same key for its own request.
    globex = await client.post(
        "/v1/invoices/INV-1001/dispute",
        json={"reason": "b"},
        headers={"Authorization": "Bearer globex-key", **key},
    )
    assert (globex.status_code, globex.json()["dispute"]["reason"]) == (200, "b")


async def test_a_failed_request_does_not_use_up_its_key(client: httpx.AsyncClient) -> None:
    key = {**ACME, "Idempotency-Key": "void-early"}
    problem(await client.post("/v1/invoices/INV-1001/void", headers=key), 404)
    await client.post("/v1/invoices", json=invoice(), headers=ACME)
    voided = await client.post("/v1/invoices/INV-1001/void", headers=key)
    assert (voided.status_code, voided.json()["status"]) == (200, "void")


@pytest.mark.parametrize("key", ["", "x" * 201, b"caf\xe9"])
async def test_a_bad_idempotency_key_is_a_422_naming_the_header(
    client: httpx.AsyncClient, key: str | bytes
) -> None:
    response = await client.post(
        "/v1/invoices", json=invoice(), headers={**ACME, "Idempotency-Key": key}
    )
    assert list(errors_of(problem(response, 422))) == ["header.Idempotency-Key"]
    assert await count(client) == 0
