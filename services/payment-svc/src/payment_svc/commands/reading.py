"""Reading payments and credit: what the GET routes show, loaded through storage."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.pagination import Page, keyset_page
from payment_svc import storage
from payment_svc.domain import PaymentNotFound
from payment_svc.storage import PaymentFilter, Row, StoredPayment


async def load(session: AsyncSession, tenant: str, payment_id: str) -> StoredPayment:
    """A payment of the tenant with its applications; ``PaymentNotFound`` otherwise."""
    found = await storage.payments_by_id(session, tenant, [payment_id])
    if payment_id not in found:
        raise PaymentNotFound(f"There is no payment {payment_id!r}.")
    apps = await storage.applications_of(session, [(tenant, payment_id)])
    return StoredPayment(found[payment_id], apps)


async def list_payments(
    session: AsyncSession, tenant: str, only: PaymentFilter, after: int | None, limit: int
) -> Page[StoredPayment]:
    """Up to ``limit`` payments (filtered by ``only``) after position ``after`` in the
    order they were recorded, with their applications, and the cursor of the next page."""
    rows = await storage.payments_page(session, tenant, only, after, limit)
    page = keyset_page(rows, limit, lambda row: int(row["seq"]))
    keys = [(tenant, row["payment_id"]) for row in page.items]
    grouped = storage.by_payment(await storage.applications_of(session, keys))
    found = [StoredPayment(row, grouped.get(row["payment_id"], [])) for row in page.items]
    return Page(found, page.next_cursor)


async def account_credit(session: AsyncSession, tenant: str, account_id: str) -> list[Row]:
    """The account's payments with money not applied yet, oldest first."""
    return await storage.payments_with_credit(session, [(tenant, account_id)])
