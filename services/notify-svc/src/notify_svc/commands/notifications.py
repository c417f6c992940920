"""Reading the ledger of notices: a page of them, or one."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_runtime.pagination import Page, keyset_page
from notify_svc.domain import NotFound, NoticeFilter
from notify_svc.storage import notices


async def list_notifications(
    session: AsyncSession, tenant: str, where: NoticeFilter, after: int | None, limit: int
) -> Page[RowMapping]:
    """A page of the tenant's notices, in the order they were requested."""
    rows = await notices.notices_after(session, tenant, where, after, limit)
    return keyset_page(rows, limit, by_seq)


def by_seq(row: RowMapping) -> int:
    """A row's position in a keyset page: its sequence id."""
    seq: int = row["seq"]
    return seq


async def get_notification(session: AsyncSession, tenant: str, notification_id: str) -> RowMapping:
    """One of the tenant's notices; ``NotFound`` otherwise."""
    row = await notices.notice_of(session, tenant, notification_id)
    if row is None:
        raise NotFound(f"There is no notification {notification_id!r}.")
    return row
