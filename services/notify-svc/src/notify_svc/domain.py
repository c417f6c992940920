"""notify-svc's decisions, as pure functions of (request, state, now): whether a notice
is sent or suppressed and why, where it goes, when it is due, and what an interrupted
send means. No IO here; the shell loads the state and acts on the answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from dunning_events import Contact, NotificationRequested
from dunning_events.notifications import TaskOutcome
from dunning_runtime import rules
from dunning_runtime.rules import RuleError

Status = Literal["pending", "sent", "failed", "suppressed"]
Reason = Literal["opted_out", "no_address", "obsolete"]

#: The channels a contact address can opt out of, by kind of address.
EMAIL_CHANNELS: tuple[str, ...] = ("email",)
PHONE_CHANNELS: tuple[str, ...] = ("sms", "task")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{4,31}$")


class NotifyRuleError(RuleError):
    """A request notify-svc's rules refuse; ``field`` names the part at fault (in the
    body unless ``location`` says ``path``)."""


class NotFound(NotifyRuleError, rules.NotFound):
    """The resource does not exist for this tenant."""


class Conflict(NotifyRuleError, rules.Conflict):
    """The resource is not in a state that allows the change."""


def normalize_address(address: str) -> str:
    """An email address lower-cased, a phone number as ``+`` and digits only, so that
    ``AP@Acme.example`` and ``ap@acme.example`` (or ``+49 30 1234`` and ``+49301234``)
    are one contact. Raises ``NotifyRuleError`` for anything else."""
    text = address.strip()
    if _EMAIL.fullmatch(text):
        return text.lower()
    if _PHONE.fullmatch(text):
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) >= 4:
            return ("+" if text.startswith("+") else "") + digits
    raise NotifyRuleError(
        "must be an email address (name@example.com) or a phone number (+49 30 123456)",
        "address",
        location="path",
    )


def contact_key(address: str | None) -> str | None:
    """``normalize_address``, or None for no address or one that is neither an email
    address nor a phone number (it cannot have opted out)."""
    if not address:
        return None
    try:
        return normalize_address(address)
    except NotifyRuleError:
        return None


def address_kind(normalized: str) -> Literal["email", "phone"]:
    """Whether a normalized address is an email address or a phone number."""
    return "email" if "@" in normalized else "phone"


def channels_of(normalized: str) -> tuple[str, ...]:
    """The channels that reach an address of this kind."""
    return EMAIL_CHANNELS if address_kind(normalized) == "email" else PHONE_CHANNELS


def address_for(channel: str, recipient: Contact, webhook_url: str | None) -> str | None:
    """Where a notice on ``channel`` goes: the recipient's email or phone, or the tenant's
    webhook endpoint; None when there is none."""
    if channel == "email":
        return recipient.email
    if channel in ("sms", "task"):
        return recipient.phone
    return webhook_url or None


@dataclass(frozen=True)
class NoticeFilter:
    """Which of a tenant's notices a page shows (None: any)."""

    account_id: str | None = None
    status: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class TaskCompletion:
    """What came of a collector's call: the outcome, and for ``promised`` the amount,
    currency and date promised (the API has checked they come together)."""

    outcome: TaskOutcome
    note: str
    completed_by: str
    amount: Decimal | None = None
    currency: str | None = None
    promised_date: date | None = None


@dataclass(frozen=True)
class TaskFilter:
    """Which of a tenant's tasks a page shows (None: any)."""

    status: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class Profile:
    """A tenant's profile fields, and when it was stored (None: the defaults)."""

    fields: dict[str, Any]
    updated_at: datetime | None


@dataclass(frozen=True)
class OptedOut:
    """One channel a contact opted out of, why and since when."""

    channel: str
    reason: str
    since: datetime | None


@dataclass(frozen=True)
class ContactOptOuts:
    """A normalized contact address and its opt-outs, by channel."""

    address: str
    opted_out: list[OptedOut]


@dataclass(frozen=True)
class Suppression:
    """A notice that is not sent, and why."""

    reason: Reason
    detail: str


def suppression(
    request: NotificationRequested,
    *,
    address: str | None,
    opted_out_channels: frozenset[str],
    current_sequence: int,
) -> Suppression | None:
    """Why ``request`` must not be sent, or None to send it.

    ``current_sequence`` is the highest ``DunningStageChanged.sequence`` seen for the
    account that moved it to ``current`` (0 if none): a request made at a lower stage
    sequence belongs to an escalation that has ended. ``opted_out_channels`` are the
    channels the recipient's address for this channel opted out of.
    """
    if request.stage_sequence < current_sequence:
        return Suppression(
            "obsolete", obsolete_detail(request.stage_sequence, request.stage, current_sequence)
        )
    if address is None:
        if request.channel == "webhook":
            return Suppression("no_address", "the tenant's profile has no webhook_url")
        what = "email address" if request.channel == "email" else "phone number"
        return Suppression(
            "no_address", f"{request.recipient.name} has no {what}, needed for {request.channel}"
        )
    if request.channel in opted_out_channels:
        return Suppression("opted_out", f"{address} opted out of {request.channel}")
    return None


def due_at(request: NotificationRequested, now: datetime) -> datetime:
    """When a notice may go out, in UTC: its ``not_before``, or now."""
    if request.not_before is not None and request.not_before > now:
        return request.not_before.astimezone(UTC)
    return now.astimezone(UTC)


def obsolete_after(stage_sequence: int, to_stage: str, sequence: int) -> bool:
    """Whether a change to ``to_stage`` with ``sequence`` makes a pending notice requested
    at ``stage_sequence`` obsolete: a return to ``current`` after it was requested."""
    return to_stage == "current" and sequence > stage_sequence


def obsolete_detail(stage_sequence: int, stage: str, current_sequence: int) -> str:
    """Why a notice requested at ``stage_sequence`` is obsolete: the account returned to
    ``current`` at the later stage change ``current_sequence``."""
    return (
        f"requested at stage change {stage_sequence} ({stage}); the "
        f"account returned to current at stage change {current_sequence}"
    )


@dataclass(frozen=True)
class StageSeen:
    """The latest stage change notify-svc has seen for an account, and the sequence of
    its last return to ``current`` (0 when there was none)."""

    sequence: int
    stage: str
    current_sequence: int


def follow_stage(seen: StageSeen | None, sequence: int, to_stage: str) -> StageSeen:
    """``seen`` after a ``DunningStageChanged`` (changes from the two topics come in any
    order: the highest sequence wins, and a return to ``current`` is kept apart)."""
    state = seen or StageSeen(sequence=0, stage=to_stage, current_sequence=0)
    if sequence > state.sequence:
        state = replace(state, sequence=sequence, stage=to_stage)
    if to_stage == "current" and sequence > state.current_sequence:
        state = replace(state, current_sequence=sequence)
    return state


def obsoleted_by_return(
    stage_sequence: int, stage: str, *, sending: bool, current_sequence: int
) -> Suppression | None:
    """Whether a pending notice is suppressed because its account returned to
    ``current`` after it was requested. A send in flight (``sending``) cannot be called
    back; its outcome is recorded as it ends."""
    if sending or not obsolete_after(stage_sequence, "current", current_sequence):
        return None
    return Suppression("obsolete", obsolete_detail(stage_sequence, stage, current_sequence))


def copies_to(
    channel: str, cc: Iterable[str | None], opted_out_of_email: Iterable[str | None]
) -> list[str]:
    """The ``cc`` addresses an email notice is copied to: those given, less those that
    opted out of email (``opted_out_of_email`` holds their normalized forms). Only email
    has copies."""
    if channel != "email":
        return []
    refused = set(opted_out_of_email)
    return [c for c in cc if c and contact_key(c) not in refused]


@dataclass(frozen=True)
class ContactMade:
    """A notice of the account that went out (or is going out right now): its contact
    moment (``stage_sequence`` and ``stage``) and when, on the service clock."""

    stage_sequence: int
    stage: str
    at: datetime
    #: Being sent by a live instance: it counts for the cap, but it may still fail, so
    #: it supersedes nothing yet.
    in_flight: bool = False


@dataclass(frozen=True)
class Send:
    """Send the notice now."""


@dataclass(frozen=True)
class Hold:
    """Not yet: the notice is due again at ``until`` (``why`` says what holds it)."""

    until: datetime
    why: str


@dataclass(frozen=True)
class Superseded:
    """Never: a later contact moment of the account already went out."""

    detail: str


SendTime = Send | Hold | Superseded


def at_send_time(
    *,
    stage_sequence: int,
    stage: str,
    not_before: datetime | None,
    contact_cap_days: int,
    contacts: Iterable[ContactMade],
    now: datetime,
) -> SendTime:
    """Whether a notice may go out at ``now``, decided again just before each attempt:
    the first, a retry and a notice taken over from a dead instance alike, however
    late that is.

    A notice of the same contact moment (the same ``stage_sequence`` and ``stage``, e.g.
    the email and the SMS of one step) neither orders nor caps another. Against the
    other moments in ``contacts``:

    * one with a higher ``stage_sequence`` went out: this notice is ``Superseded``;
      sending it would reverse the stage order (a reminder after its overdue notice).
    * ``not_before`` and the contact cap: the notice is held until ``not_before`` and
      until ``contact_cap_days`` after the latest other chasing contact (a thank-you,
      stage ``current``, is no chase and caps nothing).
    """
    others = [c for c in contacts if (c.stage_sequence, c.stage) != (stage_sequence, stage)]
    later = [c for c in others if c.stage_sequence > stage_sequence and not c.in_flight]
    if later:
        first = min(later, key=lambda c: (c.stage_sequence, c.at))
        return Superseded(
            f"requested at stage change {stage_sequence} ({stage}); the {first.stage} notice "
            f"of stage change {first.stage_sequence} went out at {first.at.isoformat()} "
            "before it could"
        )
    until, why = now, ""
    if not_before is not None and not_before > until:
        until, why = not_before, f"not before {not_before.astimezone(UTC).isoformat()}"
    chases = [c.at for c in others if c.stage != "current"]
    if contact_cap_days and chases:
        free = max(chases) + timedelta(days=contact_cap_days)
        if free > until:
            until = free
            why = (
                f"the contact cap ({contact_cap_days} days) after the notice sent at "
                f"{max(chases).astimezone(UTC).isoformat()}"
            )
    if until > now:
        return Hold(until.astimezone(UTC), why)
    return Send()


SendPlan = Literal["send", "send_possible_duplicate", "give_up"]


def plan_send(*, interrupted: bool, possible_duplicate: bool) -> SendPlan:
    """What to do with a notice about to be sent.

    ``interrupted``: a previous send began and its result was never recorded (the
    process died between sending and recording). It may have gone out, so sending again
    may duplicate it: the send goes ahead once, marked ``possible_duplicate``. If that
    send is interrupted too, a second resend could make two duplicates, so it gives up:
    at most one duplicate per notice.
    """
    if not interrupted:
        return "send"
    if possible_duplicate:
        return "give_up"
    return "send_possible_duplicate"


def message_id(tenant: str, notification_id: str, domain: str) -> str:
    """The notice's stable RFC 5322 Message-ID: the same on every attempt, so a mail
    system that sees a duplicate can tell (ids may hold ``:``, which a Message-ID may not,
    hence the digest)."""
    digest = hashlib.sha256(f"{tenant}\0{notification_id}".encode()).hexdigest()[:32]
    return f"<ntf.{digest}@{domain}>"


def language_of(locale: str, shipped: tuple[str, ...]) -> str:
    """The shipped template language for a BCP 47 ``locale`` (``de-AT`` -> ``de``),
    English when the language is not shipped."""
    language = re.split(r"[-_]", locale, maxsplit=1)[0].lower()
    return language if language in shipped else "en"


@dataclass(frozen=True)
class RetryPolicy:
    """How temporary failures are retried: exponential backoff with full jitter
    (``backoff_s`` growing to ``backoff_max_s``) for ``max_s`` seconds of wall-clock time
    from the first attempt. Permanent failures are not retried."""

    max_s: float
    backoff_s: float
    backoff_max_s: float

    def budget(self, first_attempt_at: datetime, now: datetime) -> float:
        """Seconds left for retries at ``now`` (never negative): the first attempt's
        time counts, so a notice taken over or retried keeps its original bound."""
        return max(0.0, self.max_s - (now - first_attempt_at).total_seconds())


def gave_up(attempts: int, error: str) -> str:
    """The error recorded when temporary failures outlast the retry budget."""
    return f"gave up after {attempts} attempts: {error}"


#: The error recorded when a notice's resend was interrupted too (``plan_send``).
INTERRUPTED_TWICE = (
    "two sends were interrupted before their outcome was recorded; the notice "
    "may have been delivered and is not sent a third time"
)

#: Which adapter sends a channel's notices.
Route = Literal["smtp", "eml_files", "sms_gateway", "sms_files", "webhook"]


def route_of(channel: str, *, smtp: bool, sms_gateway: bool) -> Route:
    """The adapter for ``channel``: a configured server (``smtp``, ``sms_gateway``), or
    files in the data directory when none is; every other channel is a webhook (tasks
    never leave the process and have no adapter)."""
    if channel == "email":
        return "smtp" if smtp else "eml_files"
    if channel == "sms":
        return "sms_gateway" if sms_gateway else "sms_files"
    return "webhook"
