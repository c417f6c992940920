"""The ``dunning`` command line (Click for arguments, Rich for tables and progress).

Exit codes: 0 done; 1 the command ran but found something wrong (``status``: a service
not ready; ``dlq replay --id``: an id not found; ``keys rotate``/``revoke``: no such key,
or a key that can no longer be rotated); 2 a wrong argument, a bad setting or
an unreachable service, always printed as one line, never as a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dunning_cli import clock as platform_clock
from dunning_cli import keys as api_keys
from dunning_cli.platform import Platform, Unreachable
from dunning_cli.status import read_status, status_table
from dunning_cli.terminal import console, errors, progress_bar
from dunning_events.topics import DEAD_LETTER_SUFFIX, dead_letter_topic
from dunning_runtime.settings import SERVICE_ORDER, ServiceSettings, load_settings

if TYPE_CHECKING:
    from dunning_runtime.dlq import DeadLetter

#: Entry points in this group add ``dunning <name>`` subcommands: a callable taking the
#: remaining arguments and returning an exit code (dunning-svc's ``simulate``). The
#: command knows no service; a service plugs its command in from its own pyproject.
COMMANDS_GROUP = "dunning.commands"
USAGE_ERROR = 2

T = TypeVar("T")


class Failed(Exception):
    """The command ran and found something wrong: its message, exit code 1."""


def _settings(ctx: click.Context) -> ServiceSettings:
    overrides = {k: v for k, v in ctx.obj.items() if v}
    return load_settings("dunning", **overrides)


def _platform(ctx: click.Context) -> Platform:
    return Platform.from_settings(_settings(ctx))


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(work())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default=None, help="Where the services listen (default DUNNING_HOST).")
@click.option(
    "--base-port",
    type=click.IntRange(1, 65532),
    default=None,
    help="invoice-svc's port; the others follow (default DUNNING_BASE_PORT, else 8001).",
)
@click.pass_context
def cli(ctx: click.Context, host: str | None, base_port: int | None) -> None:
    """Start, drive and watch the dunning platform. Settings: the DUNNING_* variables."""
    ctx.obj = {"host": host, "base_port": base_port}


@cli.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the four services (what `make run` runs); Ctrl-C stops them.

    Without DUNNING_CLOCK the manual clock is used (DUNNING_CLOCK=system: wall-clock time).
    """
    from dunning_cli import stack

    if ctx.obj["host"]:
        raise click.UsageError("--host is for commands that call the platform, not for up")
    sys.exit(stack.run(ctx.obj["base_port"] or 0))


@cli.group()
def clock() -> None:
    """Show, set or advance the platform's manual clock (DUNNING_CLOCK=manual)."""


@clock.command("show")
@click.pass_context
def clock_show(ctx: click.Context) -> None:
    """Print the platform's current time."""
    platform = _platform(ctx)

    async def work() -> datetime:
        async with platform.client() as client:
            return await platform_clock.now(platform, client)

    console.print(_run(work).isoformat())


@clock.command("set")
@click.argument("instant")
@click.pass_context
def clock_set(ctx: click.Context, instant: str) -> None:
    """Set every service's clock to INSTANT (ISO 8601 with an offset), run the due work."""
    try:
        when = platform_clock.parse_instant(instant)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="INSTANT") from None
    platform = _platform(ctx)

    async def work() -> None:
        async with platform.client() as client:
            await platform_clock.step(platform, client, when)

    _run(work)
    console.print(f"clock set to {when.isoformat()}; due work done")


@clock.command("advance")
@click.argument("duration")
@click.pass_context
def clock_advance(ctx: click.Context, duration: str) -> None:
    """Move the clock forward by DURATION (7d, 12h, 90m, 1w, 1d12h) a day at a time."""
    try:
        delta = platform_clock.parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DURATION") from None
    platform = _platform(ctx)

    async def work() -> datetime:
        async with platform.client() as client:
            start = await platform_clock.now(platform, client)
            days = max(1, -(-delta // platform_clock.ONE_DAY))
            with progress_bar() as bar:
                task = bar.add_task(f"advancing {duration}", total=days)

                def on_step(instant: datetime) -> None:
                    bar.update(task, advance=1, description=f"{instant:%Y-%m-%d %H:%M}")

                return await platform_clock.advance(platform, client, delta, on_step, start=start)

    console.print(f"clock at {_run(work).isoformat()}; due work done")


@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Readiness, consumer lag, outbox backlog and dead letters of each service.

    Exit code 1 when a service is unreachable or not ready (the table says which);
    2 when none answers.
    """
    platform = _platform(ctx)

    async def work() -> list[Any]:
        async with platform.client() as client:
            return await read_status(platform, client)

    statuses = _run(work)
    if all(s.reading is None and not s.ready for s in statuses):
        # Nothing answers at all: most likely the wrong host or port, not a platform fault.
        urls = ", ".join(s.service.url for s in statuses)
        raise Unreachable(f"no service answers at {urls} (is `dunning up` running?)")
    console.print(status_table(statuses))
    if not all(s.ready for s in statuses):
        raise Failed("not every service is ready")


@cli.command()
@click.option("--tenant", default=None, help="Tenant to post the ledger in (default: demo).")
@click.option("--days", type=click.IntRange(1, 365), default=60, show_default=True)
@click.pass_context
def demo(ctx: click.Context, tenant: str | None, days: int) -> None:
    """Post a realistic ledger of eight accounts and watch 60 days of dunning unfold."""
    from dunning_cli.demo import run_demo

    settings = _settings(ctx)
    platform = Platform.from_settings(settings)
    _run(lambda: run_demo(platform, settings, console, tenant=tenant, days=days))


@cli.group("dlq")
def dead_letters() -> None:
    """Inspect and re-drive dead-letter topics (on the bus the settings name)."""


@dead_letters.command("list")
@click.argument("topic")
@click.pass_context
def dlq_list(ctx: click.Context, topic: str) -> None:
    """Print the records of TOPIC.dlq (TOPIC is the original topic, e.g. invoices)."""
    from dunning_runtime import dlq  # the bus's clients load only for dlq commands

    name = topic.removesuffix(DEAD_LETTER_SUFFIX)
    settings = _settings(ctx)

    async def work() -> list[DeadLetter]:
        return await _with_bus(settings, lambda bus: dlq.list_dead_letters(bus, name))

    letters = _run(work)
    for letter in letters:
        click.echo(letter.describe())
    click.echo(f"{len(letters)} dead-lettered event(s) in {dead_letter_topic(name)}")


@dead_letters.command("replay")
@click.argument("topic")
@click.option("--id", "ids", multiple=True, help="Only this event id (repeatable).")
@click.pass_context
def dlq_replay(ctx: click.Context, topic: str, ids: tuple[str, ...]) -> None:
    """Publish TOPIC.dlq's records not replayed yet (or only --id ones) to TOPIC again."""
    from dunning_runtime import dlq

    name = topic.removesuffix(DEAD_LETTER_SUFFIX)
    settings = _settings(ctx)

    async def work() -> list[DeadLetter]:
        return await _with_bus(settings, lambda bus: dlq.replay(bus, name, set(ids)))

    replayed = _run(work)
    for letter in replayed:
        click.echo(f"replayed {letter.event_id} to {letter.original_topic}")
    click.echo(f"{len(replayed)} event(s) replayed from {dead_letter_topic(name)}")
    missing = set(ids) - {letter.event_id for letter in replayed}
    if missing:
        raise Failed(f"not found (or replayed before): {', '.join(sorted(missing))}")


@cli.group("keys")
@click.option(
    "--service",
    type=click.Choice(SERVICE_ORDER),
    default=SERVICE_ORDER[0],
    show_default=True,
    help="The service whose admin routes to call (every service learns the change).",
)
@click.pass_context
def keys(ctx: click.Context, service: str) -> None:
    """Create, list, rotate and revoke managed API keys (with the admin key).

    A key is printed once, when it is created, alone on standard output.
    """
    ctx.meta["keys_service"] = service  # not ctx.obj: that holds setting overrides


def _keys_call(
    ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    platform = _platform(ctx)
    service = platform.service(ctx.meta["keys_service"])

    async def work() -> Any:
        async with platform.client() as client:
            return await api_keys.admin_call(platform, client, service, method, path, body)

    try:
        return _run(work)
    except api_keys.Refused as exc:
        raise Failed(str(exc)) from None


@keys.command("create")
@click.option("--tenant", default=None, help="The tenant whose key it is.")
@click.option("--admin", "admin_key", is_flag=True, help="An admin key instead (no tenant).")
@click.option("--expires-in", default=None, help="Make it expire after this long (90d, 12h, 1w).")
@click.pass_context
def keys_create(
    ctx: click.Context, tenant: str | None, admin_key: bool, expires_in: str | None
) -> None:
    """Create a key for --tenant T, or with --admin; print it (shown this once)."""
    if (tenant is None) == (not admin_key):
        raise click.UsageError("give exactly one of --tenant and --admin")
    expires_at = None
    if expires_in is not None:
        try:
            expires_at = datetime.now().astimezone() + platform_clock.parse_duration(expires_in)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires-in") from None
    body = api_keys.new_key_body(tenant, admin_key, expires_at)
    created = _keys_call(ctx, "POST", api_keys.ADMIN_KEYS, body)
    click.echo(created["key"])
    errors.print(
        f"created key {created['key_id']} for {api_keys.owner(created)}; store it now, "
        "it is not shown again",
        markup=False,
        highlight=False,
    )


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """Every managed key: id, tenant or admin, prefix, state and dates (never the key)."""
    listed = _keys_call(ctx, "GET", api_keys.ADMIN_KEYS)
    console.print(api_keys.keys_table(listed["items"]))


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--overlap",
    default="24h",
    show_default=True,
    help="How long the old key keeps working next to the new one (24h, 7d, 30m).",
)
@click.pass_context
def keys_rotate(ctx: click.Context, key_id: str, overlap: str) -> None:
    """Replace key KEY_ID with a new one (printed once); the old one works --overlap longer."""
    try:
        span = platform_clock.parse_duration(overlap)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--overlap") from None
    path = f"{api_keys.ADMIN_KEYS}/{key_id}/rotate"
    rotated = _keys_call(ctx, "POST", path, api_keys.rotation_body(span))
    click.echo(rotated["key"])
    old = rotated["replaces"]
    errors.print(
        f"created key {rotated['key_id']} for {api_keys.owner(rotated)}; store it now, it "
        f"is not shown again. Key {old['key_id']} works until {old['expires_at']}.",
        markup=False,
        highlight=False,
    )


@keys.command("hash")
@click.pass_context
def keys_hash(ctx: click.Context) -> None:
    """Read a key on standard input; print its stored form for DUNNING_API_KEYS or
    DUNNING_ADMIN_KEY (hmac-sha256:<hex>, under this environment's DUNNING_KEY_PEPPER)."""
    from dunning_runtime.api_keys import stored_form

    settings = _settings(ctx)
    key = sys.stdin.readline().strip()
    if not key:
        raise click.UsageError("give the key on standard input")
    pepper = settings.key_pepper.get_secret_value()
    if not pepper:
        errors.print(
            "warning: DUNNING_KEY_PEPPER is empty here; the services must use the same pepper",
            markup=False,
            highlight=False,
        )
    click.echo(stored_form(pepper.encode(), key))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke key KEY_ID: every service refuses it within seconds."""
    revoked = _keys_call(ctx, "DELETE", f"{api_keys.ADMIN_KEYS}/{key_id}")
    click.echo(f"revoked key {revoked['key_id']} ({api_keys.owner(revoked)})")


async def _with_bus(settings: ServiceSettings, work: Callable[[Any], Awaitable[T]]) -> T:
    from dunning_runtime.bus import create_bus

    bus = create_bus(settings)
    try:
        await bus.start()
    except Exception as exc:  # any broker failure: one line, exit 2
        raise Unreachable(f"the bus at {settings.bus_url} is unreachable ({exc})") from None
    try:
        return await work(bus)
    finally:
        await bus.close()


def _plugged_commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def _plug(entry: EntryPoint) -> click.Command:
    """A subcommand that hands its arguments whole to the plugged callable."""

    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        plugged: Callable[[list[str]], int] = entry.load()
        ctx.exit(plugged(list(args)))

    return click.Command(
        entry.name,
        callback=command,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"See: dunning {entry.name} --help (from {entry.value.split(':')[0]}).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


for _entry in _plugged_commands().values():
    if _entry.name not in cli.commands:
        cli.add_command(_plug(_entry))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dunning`` console script; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="dunning", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _error(f"{exc.format_message()}{where}".replace("\n", " "))
        return USAGE_ERROR
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except Unreachable as exc:
        _error(str(exc))
        return USAGE_ERROR
    except Failed as exc:
        _error(str(exc))
        return 1
    except (click.Abort, KeyboardInterrupt):
        _error("interrupted")
        return 130
    except SystemExit as exc:
        # load_settings exits with the bad variables named; one line of them.
        if isinstance(exc.code, str):
            _error("; ".join(line.strip() for line in exc.code.splitlines()))
            return USAGE_ERROR
        return int(exc.code or 0)
    return result if isinstance(result, int) else 0


def _error(message: str) -> None:
    errors.print(f"dunning: error: {message}", markup=False, highlight=False, soft_wrap=True)
