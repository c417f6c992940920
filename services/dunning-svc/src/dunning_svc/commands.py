"""dunning-svc's use cases: fold inputs (events, timers, manual actions) through the core.

Every entry point (the event handler, the timer job, the HTTP routes) calls
``process`` inside its transaction: it locks the accounts the inputs concern, loads
them with one query, resolves each account's policy version, folds the inputs in
order through the core's ``fold``, then writes the accounts back
in one statement, appends the timeline, and stages the commands in the outbox, so a
decision and what it causes commit together.

Tracing (the shell's part; the core stays free of IO): every fold that emits commands
gets a ``dunning decision`` span built from what the core returned (the stage before
and after, the stage change's reason, the policy version), and the commands carry that
span's context. An event's decision continues the event's trace; a timer's decision
starts a trace of its own, linked to the account's last input (``last_traceparent``,
stored with the account), so a notice sent weeks later leads back to its invoice.
"""

from __future__ import annotations

from collections import Counter as CountOf
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from dunning_events import DunningStageChanged, Envelope, Event, InvoiceIssued
from dunning_runtime.app import Runtime
from dunning_runtime.db import Database
from dunning_runtime.idempotency import in_transaction
from dunning_runtime.locks import lock_accounts, try_lock_accounts
from dunning_runtime.outbox import Outbox
from dunning_runtime.rules import NotFound
from dunning_runtime.scope import Scope, envelope_of
from dunning_runtime.telemetry import (
    context_of,
    current_traceparent,
    links_to,
    start_clock_span,
    tracer,
    tracing_enabled,
    with_trace_of,
)
from dunning_svc import core, storage
from dunning_svc.core import Account, Input, Tick
from dunning_svc.events import SERVICE, input_name, summary
from dunning_svc.policy import (
    SHIPPED_SEGMENTS,
    Policy,
    PublishedPolicy,
    load_policy_json,
    shipped_policy,
)
from dunning_svc.storage import WorklistQuery as WorklistQuery

#: What the engine decides, for dashboards: stage changes by target stage, commands by type.
STAGE_CHANGES = Counter(
    "dunning_stage_changes_total",
    "Accounts moved to a stage of their escalation policy",
    ["segment", "to_stage"],
)
DECISIONS = Counter(
    "dunning_decisions_total",
    "Stage transitions the engine decided, by segment and stages",
    ["segment", "from_stage", "to_stage"],
)
COMMANDS = Counter(
    "dunning_commands_total", "Events dunning-svc decided to publish", ["event_type"]
)

Key = tuple[str, str]

_TICK = Tick()


class PolicyBook:
    """Parsed policy versions, kept per process: versions are immutable, so the cache
    never goes stale. ``prepare`` reads what a transaction needs into a ``Policies``."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, str, int], Policy] = {}

    async def prepare(
        self,
        session: AsyncSession,
        tenants_segments: Iterable[tuple[str, str]],
        pinned: Iterable[tuple[str, str, int]] = (),
    ) -> Policies:
        """Read the newest versions of these segments (one query) and any body not parsed
        yet (one more), so resolving needs no IO."""
        wanted = set(tenants_segments)
        latest = {k: 0 for k in wanted} | await storage.latest_versions(session, wanted)
        needed = {(t, s, v) for (t, s), v in latest.items() if v} | {k for k in pinned if k[2]}
        missing = [k for k in needed if k not in self._parsed]
        for key, body in (await storage.policy_bodies(session, missing)).items():
            self._parsed[key] = load_policy_json(body, version=key[2])
        return Policies(latest, self._parsed)


@dataclass(frozen=True)
class Policies:
    """The policy each account runs on: the version its dunning cycle started with, else
    the newest of its tenant and segment (version 0 is the shipped YAML)."""

    latest: dict[tuple[str, str], int]
    parsed: dict[tuple[str, str, int], Policy]

    def resolve(self, account: Account) -> Policy:
        """The policy ``account`` runs on now."""
        version = account.policy_version
        if version is None:
            version = self.latest.get((account.tenant, account.segment), 0)
        if version:
            found = self.parsed.get((account.tenant, account.segment, version))
            if found is not None:
                return found
        return shipped_policy(account.segment)


@dataclass
class Work:
    """One input for one account: an event, a timer or a manual action by ``actor``;
    ``traceparent`` is the trace context it came with (an event's), if any."""

    tenant: str
    account_id: str
    input: Input
    actor: str | None = None
    traceparent: str | None = None


@dataclass
class Outcome:
    """What ``process`` did: the accounts as they now are and what each input emitted."""

    accounts: dict[Key, Account] = field(default_factory=dict)
    commands: list[list[Event]] = field(default_factory=list)


async def process(
    session: AsyncSession,
    outbox: Outbox,
    book: PolicyBook,
    work: Sequence[Work],
    now: datetime,
    *,
    create: bool = True,
) -> Outcome:
    """Fold ``work`` in order at ``now``; see the module docstring. With ``create`` an
    input for an unknown account starts one; without, unknown accounts are skipped.
    A ``DomainRuleError`` from a manual action propagates (and rolls back)."""
    outcome = Outcome()
    if not work:
        return outcome
    keys = {(w.tenant, w.account_id) for w in work}
    await lock_accounts(session, keys)
    loaded, policies = await _load(session, book, work, keys)
    seqs: dict[Key, int | None] = {k: seq for k, (seq, _) in loaded.items()}
    accounts = {k: a for k, (_, a) in loaded.items()}
    # Insertion-ordered set: a list's ``in`` made a 1,000-account batch quadratic.
    touched: dict[Key, None] = {}
    timeline: list[dict[str, Any]] = []
    staged: list[Envelope] = []
    command_rows: list[dict[str, Any]] = []  # the timeline row of each staged command
    scopes: dict[str, Scope] = {}
    tracing = tracing_enabled()
    # The trace context of each account's last input (not of its timers), to store.
    last_inputs: dict[Key, str | None] = {}
    stored_inputs = await storage.last_traceparents(session, keys) if tracing else {}
    # The caller's context, for inputs that bring none: the loop's decision spans are
    # never made current, so it is the same for the whole chunk (read once, not per input).
    here = current_traceparent()
    for item in work:
        key = (item.tenant, item.account_id)
        account = accounts.get(key)
        if account is None:
            if not create:
                outcome.commands.append([])
                continue
            account = accounts[key] = Account(item.tenant, item.account_id)
            seqs[key] = None
        stage_before = account.stage
        commands, rows = fold(account, item, policies, now)
        outcome.commands.append(commands)
        timeline += rows
        touched[key] = None
        if not isinstance(item.input, Tick):
            last_inputs[key] = item.traceparent or here
        if not commands:
            continue
        command_rows += rows[len(rows) - len(commands) :]
        scope = scopes.get(item.tenant) or scopes.setdefault(
            item.tenant, Scope.of(SERVICE, item.tenant, now, outbox)
        )
        span = None
        if tracing:
            caused_by = last_inputs.get(key) or stored_inputs.get(key)
            version = policies.resolve(account).version
            span = _decision_span(item, account, stage_before, version, commands, caused_by)
        staged += [with_trace_of(envelope_of(scope, c), span) for c in commands]
        if span is not None:
            span.end()
    _count(staged)
    await storage.save_accounts(
        session,
        [(seqs[k], accounts[k], accounts[k].local_today(now)) for k in touched],
        now,
        last_inputs,
    )
    if staged:
        messages = await outbox.add(session, *staged)
        for row, message in zip(command_rows, messages, strict=True):
            row["data"] = message.value.decode()
    await storage.append_timeline(session, timeline)
    outcome.accounts = {k: accounts[k] for k in touched}
    return outcome


async def _load(
    session: AsyncSession, book: PolicyBook, work: Sequence[Work], keys: set[Key]
) -> tuple[dict[Key, tuple[int, Account]], Policies]:
    """The stored accounts among ``keys`` (with their row ids) and the policies the
    inputs may need: their segments' newest versions and the versions accounts run on."""
    loaded = await storage.load_accounts(session, keys)
    segments = {(t, a.segment) for (t, _), (_, a) in loaded.items()}
    segments |= {(w.tenant, w.input.segment) for w in work if isinstance(w.input, InvoiceIssued)}
    segments |= {(w.tenant, "standard") for w in work}
    pinned = {
        (t, a.segment, a.policy_version)
        for (t, _), (_, a) in loaded.items()
        if a.policy_version is not None
    }
    return loaded, await book.prepare(session, segments, pinned)


def _count(staged: Iterable[Envelope]) -> None:
    """Add the staged commands to the decision counters, one increment per label set."""
    emitted: CountOf[tuple[str, str | None, str | None, str | None]] = CountOf()
    for command in (e.data for e in staged):
        if isinstance(command, DunningStageChanged):
            emitted[
                (command.event_type, command.segment, command.from_stage, command.to_stage)
            ] += 1
        else:
            emitted[(command.event_type, None, None, None)] += 1
    for (event_type, segment, from_stage, to_stage), count in emitted.items():
        COMMANDS.labels(event_type).inc(count)
        if segment is not None and from_stage is not None and to_stage is not None:
            STAGE_CHANGES.labels(segment, to_stage).inc(count)
            DECISIONS.labels(segment, from_stage, to_stage).inc(count)


def fold(
    account: Account, item: Work, policies: Policies, now: datetime
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Apply one input to ``account`` in place; the commands and the timeline rows."""
    folded = core.fold(account, item.input, policies.resolve, now)
    commands, applied, decided = folded.commands, folded.applied, folded.decided
    version = folded.policy.version
    kind = "input" if isinstance(item.input, Event) else "action"
    rows = [storage.timeline_row(account, now, kind, r, actor=item.actor) for r in applied]
    if isinstance(item.input, Event) and not applied:
        rows.append(storage.timeline_row(account, now, kind, item.input.event_type))
    rows += [
        storage.timeline_row(
            account,
            now,
            "stage" if r.startswith("stage ") else "decision",
            r,
            policy_version=version,
        )
        for r in decided
    ]
    # The commands' rows come last, one per command in order; ``process`` fills in their
    # ``data`` with the JSON the outbox publishes, so each command is encoded once.
    rows += [
        storage.timeline_row(account, now, "command", summary(c), policy_version=version)
        for c in commands
    ]
    return commands, rows


def _decision_span(
    item: Work,
    account: Account,
    stage_before: str,
    policy_version: int,
    commands: Sequence[Event],
    caused_by: str | None,
) -> Span:
    """The span of one decision, from what the core returned; not yet ended.

    An event's decision is the child of the consumer's span when the event is in that
    span's trace, else of the event's own context (a chunk holds events of many traces),
    linked to the chunk's span. A timer's decision starts a trace, linked to the
    account's last input. Attributes hold ids, stages and reasons, never contact data.
    """
    changes = [c for c in commands if isinstance(c, DunningStageChanged)]
    attributes: dict[str, Any] = {
        "dunning.tenant": account.tenant,
        "dunning.account_id": account.account_id,
        "dunning.stage.from": stage_before,
        "dunning.stage.to": account.stage,
        "dunning.reason": changes[-1].reason if changes else summary(commands[0]),
        "dunning.policy_version": policy_version,
        "dunning.input": input_name(item.input),
        "dunning.commands": [summary(c) for c in commands],
    }
    if isinstance(item.input, Tick):
        return start_clock_span("dunning decision", [caused_by], **attributes)
    current = trace.get_current_span()
    parent = context_of(item.traceparent)
    own = trace.get_current_span(parent).get_span_context()
    if not own.is_valid or own.trace_id == current.get_span_context().trace_id:
        return tracer().start_span("dunning decision", attributes=attributes)
    return tracer().start_span(
        "dunning decision",
        context=parent,
        links=links_to([current_traceparent()]),
        attributes=attributes,
    )


# -- the entry points: events, timers, manual actions, policies ---------------------------


class AccountNotFound(NotFound):
    """The tenant has no account ``account_id`` (a manual action or a read needs one)."""

    code = "account-not-found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"There is no account {account_id!r}.")
        self.account_id = account_id


async def apply_events(
    session: AsyncSession, runtime: Runtime, book: PolicyBook, envelopes: Sequence[Envelope]
) -> None:
    """Fold a chunk of events into their accounts at the service's clock."""
    work = [Work(e.tenant, e.data.account_id, e.data, traceparent=e.traceparent) for e in envelopes]
    await process(session, runtime.outbox, book, work, runtime.clock.now())


async def sweep_batch(
    session: AsyncSession, outbox: Outbox, book: PolicyBook, now: datetime, batch_size: int
) -> int:
    """Run the timers of up to ``batch_size`` accounts due at ``now``; returns how many
    were claimed (``batch_size`` means: there may be more), or 0 when another
    transaction held every one of them (the sweep stops until its next run).

    Replicas sweep at the same time without waiting on each other or taking an account
    twice. On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED``: rows another
    sweep claimed (or a writer is updating) are skipped, so concurrent batches are
    disjoint. The claimed accounts' locks are then taken without waiting
    (``try_lock_accounts``), never waited for: a consumer chunk takes an account's lock
    first and updates its row later, so a sweep that held the row and waited for the
    lock would close a cycle with it (a deadlock). An account whose lock is busy is
    left for the next batch; the consumer waits at most for this transaction to commit
    (the row lock), and this transaction waits for nothing the consumer holds. On
    SQLite (one process, one writer) the claim is a plain read.
    """
    due = await storage.due_accounts(session, now, batch_size)
    mine = await try_lock_accounts(session, due)
    work = [Work(t, a, _TICK) for t, a in due if (t, a) in mine]
    if work:
        await process(session, outbox, book, work, now, create=False)
    return len(due) if work else 0


async def sweep_timers(runtime: Runtime, book: PolicyBook, batch_size: int) -> int:
    """Run every account timer due as of the clock, ``batch_size`` accounts per
    transaction; returns how many accounts were claimed (see ``sweep_batch``)."""
    now = runtime.clock.now()
    total = 0
    while True:
        async with runtime.database.transaction() as session:
            count = await sweep_batch(session, runtime.outbox, book, now, batch_size)
        total += count
        if count < batch_size:
            return total


async def act(
    runtime: Runtime,
    book: PolicyBook,
    work: Work,
    now: datetime,
) -> Account:
    """Run one manual action on an existing account at ``now``, in a transaction of its
    own; the account as it now is. ``AccountNotFound`` (nothing written) when the tenant
    has no such account; a ``DunningRuleError`` when the core refuses the action."""

    async def run(session: AsyncSession) -> Account:
        outcome = await process(session, runtime.outbox, book, [work], now, create=False)
        account = outcome.accounts.get((work.tenant, work.account_id))
        if account is None:
            raise AccountNotFound(work.account_id)
        return account

    return await in_transaction(runtime.database, run)


async def publish_policy(
    database: Database,
    tenant: str,
    policy: Policy,
    *,
    apply_to_running: bool,
    by: str,
    now: datetime,
) -> PublishedPolicy:
    """Publish ``policy`` (its version number is ignored) as its segment's next version.

    The same policy again with the same ``apply_to_running`` (a retried PUT) is no new
    version: the newest is returned as it was published. Accounts not in dunning look
    again at their next timer sweep; with ``apply_to_running``, accounts in dunning move
    to the new version and look again too."""
    segment = policy.segment
    proposed = PublishedPolicy(segment, policy, apply_to_running, by, now)

    async def run(session: AsyncSession) -> PublishedPolicy:
        newest = await storage.newest_policy(session, tenant, segment)
        if newest is not None and _same_policy(newest, proposed):
            return newest
        version = (newest.version if newest is not None else 0) + 1
        published = replace(proposed, policy=policy.model_copy(update={"version": version}))
        await storage.add_policy(session, tenant, published)
        if apply_to_running:
            await storage.repin_running(session, tenant, segment, version, now)
        await storage.wake_idle(session, tenant, segment, now)
        return published

    return await in_transaction(database, run)


def _same_policy(stored: PublishedPolicy, proposed: PublishedPolicy) -> bool:
    """Whether ``proposed`` is ``stored`` published again (version aside)."""
    same = proposed.policy.model_copy(update={"version": stored.version})
    return stored.policy == same and stored.apply_to_running == proposed.apply_to_running


# -- reads ---------------------------------------------------------------------------------


async def read_account(database: Database, tenant: str, account_id: str) -> Account:
    """One account of ``tenant``; ``AccountNotFound`` when there is none."""
    async with database.sessions() as session:
        account = await storage.load_account(session, tenant, account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


async def worklist(
    database: Database, tenant: str, wanted: WorklistQuery, *, offset: int, limit: int
) -> list[Account]:
    """``limit`` + 1 accounts of the tenant's worklist ``wanted`` from position ``offset``
    (the one more says a next page exists)."""
    async with database.sessions() as session:
        return await storage.worklist(session, tenant, wanted, offset=offset, limit=limit)


async def timeline(
    database: Database, tenant: str, account_id: str, *, after: int | None, limit: int
) -> list[storage.TimelineRecord]:
    """``limit`` + 1 timeline entries of an account, oldest first, after entry ``after``
    (the one more says a next page exists); ``AccountNotFound`` when the tenant has no
    such account."""
    await read_account(database, tenant, account_id)
    async with database.sessions() as session:
        return await storage.timeline_entries(session, tenant, account_id, after=after, limit=limit)


async def policy_versions(database: Database, tenant: str, segment: str) -> list[PublishedPolicy]:
    """Every version of a segment's policy, newest first; the shipped one (0) is last."""
    async with database.sessions() as session:
        stored = await storage.policy_versions(session, tenant, segment)
    return [*stored, PublishedPolicy(segment, shipped_policy(segment))]


async def newest_policies(database: Database, tenant: str) -> list[PublishedPolicy]:
    """The newest policy of every shipped segment and every segment the tenant published
    a policy for, by segment name."""
    async with database.sessions() as session:
        stored = await storage.policy_segments(session, tenant)
    return [
        (await policy_versions(database, tenant, segment))[0]
        for segment in sorted({*SHIPPED_SEGMENTS, *stored})
    ]


def accounts_of(database: Database, tenant: str | None = None) -> AsyncIterator[Account]:
    """Every account of ``tenant`` (or of all tenants), a page at a time."""
    return storage.each_account(database, tenant)


async def stage_counts(database: Database) -> dict[tuple[str, str, str], int]:
    """How many accounts each ``(tenant, stage, segment)`` has."""
    async with database.sessions() as session:
        return await storage.accounts_by_stage(session)
