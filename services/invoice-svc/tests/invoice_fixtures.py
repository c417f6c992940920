"""invoice-svc test helpers: keys, a valid invoice body."""

from __future__ import annotations

from typing import Any

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}
START = "2026-03-01T09:00:00Z"


def invoice(**changes: Any) -> dict[str, Any]:
    """A valid invoice body, with ``changes`` applied."""
    body: dict[str, Any] = {
        "invoice_id": "INV-1001",
        "account_id": "ACME-42",
        "account_name": "ACME GmbH",
        "contact": {"name": "Dana Fischer", "email": "ap@acme.example", "phone": "+49 30 1234567"},
        "currency": "EUR",
        "amount_due": "1250.00",
        "issue_date": "2026-02-01",
        "due_date": "2026-03-03",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
        "terms": {"net_days": 30},
        "early_payment_discount": {"percent": "2", "within_days": 10},
        "late_fee": {"kind": "percent_per_month", "percent": "1.5", "cap": "100.00"},
        "lines": [
            {
                "description": "Consulting",
                "quantity": "10",
                "unit_price": "125.00",
                "amount": "1250.00",
            }
        ],
        "metadata": {"erp_document": "4711"},
    }
    body.update(changes)
    return body
