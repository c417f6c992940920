"""Reading payments and credit: what the GET routes show, loaded through storage."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payment_svc import storage
from payment_svc.domain import PaymentNotFound
from payment_svc.storage import Row, StoredPayment


async def load(session: AsyncSession, tenant: str, payment_id: str) -> StoredPayment:
    """A payment of the tenant with its applications; ``PaymentNotFound`` otherwise."""
    found = await storage.payments_by_id(session, tenant, [payment_id])
    if payment_id not in found:
        raise PaymentNotFound(f"There is no payment {payment_id!r}.")
    apps = await storage.applications_of(session, [(tenant, payment_id)])
    return StoredPayment(found[payment_id], apps)


async def list_payments(
    session: AsyncSession,
    tenant: str,
    *,
    account_id: str | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[StoredPayment], int | None]:
    """Up to ``limit`` payments after position ``after`` in the order they were
    recorded, and the position the next page starts after (None on the last page)."""
    rows = await storage.payments_page(
        session, tenant, account_id=account_id, status=status, after=after, limit=limit + 1
    )
    page = rows[:limit]
    apps = await storage.applications_of(session, [(tenant, r["payment_id"]) for r in page])
    grouped = storage.by_payment(apps)
    found = [StoredPayment(row, grouped.get(row["payment_id"], [])) for row in page]
    return found, page[-1]["seq"] if len(rows) > limit else None


async def account_credit(session: AsyncSession, tenant: str, account_id: str) -> list[Row]:
    """The account's payments with money not applied yet, oldest first."""
    return await storage.payments_with_credit(session, [(tenant, account_id)])
