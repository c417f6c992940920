"""Reading the ledger of notices: a page of them, or one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.domain import NotFound, NoticeFilter
from notify_svc.storage import notices


@dataclass(frozen=True)
class Page:
    """A page of rows in sequence order; ``after`` is the sequence the next page starts
    after (None on the last page)."""

    rows: Sequence[RowMapping]
    after: int | None

    @classmethod
    def of(cls, rows: Sequence[RowMapping], limit: int) -> Page:
        """The page of ``rows`` read with ``limit + 1``: one more row means there is more."""
        page = rows[:limit]
        return cls(page, page[-1]["seq"] if len(rows) > limit else None)


async def list_notifications(
    session: AsyncSession, tenant: str, where: NoticeFilter, after: int | None, limit: int
) -> Page:
    """A page of the tenant's notices, in the order they were requested."""
    return Page.of(await notices.notices_after(session, tenant, where, after, limit + 1), limit)


async def get_notification(session: AsyncSession, tenant: str, notification_id: str) -> RowMapping:
    """One of the tenant's notices; ``NotFound`` otherwise."""
    row = await notices.notice_of(session, tenant, notification_id)
    if row is None:
        raise NotFound(f"There is no notification {notification_id!r}.")
    return row
