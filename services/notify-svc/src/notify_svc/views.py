"""Stored rows as the API shows them."""

from __future__ import annotations

from typing import Any

from dunning_events.money import from_minor
from dunning_runtime.db import utc
from notify_svc.domain import ContactOptOuts, Profile
from notify_svc.models import (
    ContactOut,
    NotificationDetail,
    NotificationOut,
    OptOut,
    ProfileOut,
    TaskOut,
    TemplateOut,
    TemplatePreview,
)
from notify_svc.rendering import TemplateShown

_LIST_FIELDS = (
    "notification_id",
    "account_id",
    "account_name",
    "stage",
    "stage_sequence",
    "channel",
    "template",
    "locale",
    "status",
    "subject",
    "reason",
    "error",
    "attempts",
    "possible_duplicate",
    "provider_message_id",
)


def _common(row: Any) -> dict[str, Any]:
    return {
        **{f: row[f] for f in _LIST_FIELDS},
        "to": row["to_address"],
        "due_at": utc(row["due_at"]),
        "created_at": utc(row["created_at"]),
        "sent_at": utc(row["sent_at"]),
    }


def notification_view(row: Any) -> NotificationOut:
    """A notice as the list shows it."""
    return NotificationOut.model_validate(_common(row))


def notification_detail(row: Any) -> NotificationDetail:
    """A notice with its rendered bodies."""
    return NotificationDetail.model_validate(
        {
            **_common(row),
            "cc": row["cc"] or [],
            "message_id": row["message_id"],
            "body_text": row["body_text"],
            "body_html": row["body_html"],
            "body_sms": row["body_sms"],
            "permanent": row["permanent"],
            "request": row["request"],
        }
    )


def task_view(row: Any) -> TaskOut:
    """A collector's task."""
    currency = row["promised_currency"]
    promised = (
        from_minor(row["promised_minor"], currency)
        if row["promised_minor"] is not None and currency
        else None
    )
    return TaskOut.model_validate(
        {
            **{
                f: row[f]
                for f in (
                    "task_id",
                    "notification_id",
                    "account_id",
                    "account_name",
                    "stage",
                    "contact",
                    "subject",
                    "body_text",
                    "total_overdue",
                    "status",
                    "outcome",
                    "note",
                    "promised_date",
                    "completed_by",
                )
            },
            "promised_amount": promised,
            "promised_currency": currency,
            "created_at": utc(row["created_at"]),
            "completed_at": utc(row["completed_at"]),
        }
    )


def template_view(shown: TemplateShown) -> TemplateOut:
    """A template as it renders for the tenant, with its preview."""
    rendered = shown.preview
    return TemplateOut(
        key=shown.key,
        parts=shown.parts,
        overridden=shown.overridden,
        preview=TemplatePreview(
            subject=rendered.subject, text=rendered.text, html=rendered.html, sms=rendered.sms
        ),
    )


def profile_view(profile: Profile) -> ProfileOut:
    """The tenant's profile (the defaults until one is stored)."""
    return ProfileOut.model_validate({**profile.fields, "updated_at": profile.updated_at})


def contact_view(contact: ContactOptOuts) -> ContactOut:
    """A contact's opt-outs."""
    return ContactOut(
        address=contact.address,
        opted_out=[
            OptOut.model_validate({"channel": o.channel, "reason": o.reason, "since": o.since})
            for o in contact.opted_out
        ],
    )
