"""The whole platform as four OS processes, for end-to-end tests.

Each service is started the way ``make run`` starts it (``python -m <module>``
with ``DUNNING_PORT`` = base port + its index, see ``dunning_cli.stack``),
on a free block of ports, with its data in a temporary directory, the manual
clock and known keys. On Kafka + PostgreSQL (``DUNNING_BUS_URL`` /
``DUNNING_DATABASE_URL`` of the test run) the platform gets its own topic
prefix and a fresh database, both removed by ``stop()``, so concurrent runs
never meet.

    with Platform(tmp_path, env={"DUNNING_SMTP_URL": mail.url}) as platform:
        acme = platform.client("acme", "invoice-svc")
        acme.post("/v1/invoices", json=...)
        platform.advance(datetime(2027, 3, 1, 10, tzinfo=UTC))

``advance`` moves every clock, ticks the services in order and returns once
the work it caused has settled: every event published has been consumed by
every group that reads its topic, no outbox row waits, and notify-svc has no
notice left ``pending``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dunning_cli.platform import SERVICES
from tests.support.fixtures import BUS_URL, DATABASE_URL, _delete_topics
from tests.support.ports import free_port_block

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: Tenants and their API keys (DUNNING_API_KEYS), and the admin key (DUNNING_ADMIN_KEY).
TENANT_KEYS = {"acme": "acme-e2e-key", "globex": "globex-e2e-key"}
ADMIN_KEY = "admin-e2e-key"

#: Which consumer group reads which topic (each service's Subscription): a topic's
#: events are settled when every group reading it has consumed as many as were published.
READERS: dict[str, tuple[str, ...]] = {
    "invoices": ("dunning-svc", "payment-svc"),
    "payments": ("dunning-svc", "invoice-svc"),
    "dunning.commands": ("notify-svc",),
    "dunning.events": ("notify-svc", "invoice-svc-fees"),
    "notifications": ("dunning-svc",),
}


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


#: Idle connections are dropped after 2 s, before uvicorn closes them (5 s): with both at
#: 5 s, a request sent on a connection the server was closing at that moment failed with
#: "Server disconnected without sending a response" (a POST of the e2e suite, under load).
KEEPALIVE = httpx.Limits(keepalive_expiry=2.0)


class PlatformError(AssertionError):
    """The platform did not start, stop or settle; the message says which service and why."""


class Platform:
    """The four services as child processes on the active backends."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        start_at: datetime = datetime(2027, 1, 4, 8, tzinfo=UTC),
        bus_url: str | None = None,
        database_url: str | None = None,
    ) -> None:
        self.workdir = workdir
        # The servers to run on; the test run's backends unless a suite brings its own
        # (the fault suite stops and restarts its own broker and database server).
        self.bus_url = BUS_URL if bus_url is None else bus_url
        self.server_database_url = DATABASE_URL if database_url is None else database_url
        self.data_dir = workdir / "data"
        self.log_dir = workdir / "logs"
        self.extra_env = dict(env or {})
        self.now = start_at
        self.token = "e2e" + uuid.uuid4().hex[:10]
        self.base_port = 0
        self.database_url = ""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._clients: dict[tuple[str, str], httpx.Client] = {}
        self._http = httpx.Client(timeout=30, limits=KEEPALIVE)
        # Counters as they stood at the last restart: a restarted process counts from 0, so
        # the settled check compares what happened since (see ``restart``).
        self._base: dict[str, dict[tuple[str, str, str], float]] = {}
        self._backlog_exported = False

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def services(self) -> list[str]:
        """Service names in port order."""
        return [name for name, _ in SERVICES]

    def url(self, service: str) -> str:
        """The base URL of ``service``."""
        return f"http://127.0.0.1:{self.base_port + self.services.index(service)}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("DUNNING_")]:
            del env[key]
        env.update(
            DUNNING_DATA_DIR=str(self.data_dir),
            DUNNING_CLOCK="manual",
            DUNNING_API_KEYS=",".join(f"{t}:{k}" for t, k in TENANT_KEYS.items()),
            DUNNING_ADMIN_KEY=ADMIN_KEY,
            DUNNING_BASE_PORT=str(self.base_port),
            DUNNING_LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
        )
        if self.bus_url.startswith("kafka"):
            env["DUNNING_BUS_URL"] = self.bus_url
            env["DUNNING_TOPIC_PREFIX"] = f"{self.token}."
            # Few partitions: topic creation and group joins dominate a short run on Kafka.
            env["DUNNING_BUS_PARTITIONS"] = "2"
        else:  # the embedded log of this platform alone, whatever the run's own setting
            env["DUNNING_BUS_URL"] = f"embedded:{self.data_dir / 'bus.sqlite'}"
        if self.database_url:
            env["DUNNING_DATABASE_URL"] = self.database_url
        # The run's own connection security (TLS, SASL login) goes to the services as it is.
        secure = ("DUNNING_KAFKA_", "DUNNING_DATABASE_SSL_")
        env.update({k: v for k, v in os.environ.items() if k.startswith(secure)})
        env.update(self.extra_env)
        return env

    def start(self) -> Platform:
        """Create the database (PostgreSQL), start every service, wait for /readyz, set the clock."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_port = free_port_block(len(SERVICES))
        if self.server_database_url.startswith("postgresql"):
            self.database_url = _run(_create_database(self.server_database_url, self.token))
        for name in self.services:
            self._spawn(name)
        try:
            for name in self.services:
                self._wait_ready(name)
            for name in self.services:
                self._set_clock(name, self.now)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, service: str) -> None:
        module = dict(SERVICES)[service]
        env = self._env()
        env["DUNNING_PORT"] = str(self.base_port + self.services.index(service))
        log = self._logs.get(service)
        if log is None:
            log = self._logs[service] = (self.log_dir / f"{service}.log").open("ab")
        log.write(f"--- starting {service} ---\n".encode())
        log.flush()
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, service: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        proc = self.procs[service]
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PlatformError(
                    f"{service} exited with {proc.returncode} before it was ready\n"
                    + self.log_tail(service)
                )
            try:
                response = self._http.get(f"{self.url(service)}/readyz", timeout=5)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise PlatformError(
            f"{service} not ready within {timeout_s} s ({last})\n" + self.log_tail(service)
        )

    def stop(self) -> None:
        """SIGTERM every service (SIGKILL after 20 s), then drop the database and topics."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._http.close()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if self.bus_url.startswith("kafka"):
            _run(_delete_topics(self.bus_url, f"{self.token}."))
        if self.database_url:
            _run(_drop_database(self.server_database_url, self.token))
            self.database_url = ""

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def kill(self, service: str) -> None:
        """SIGKILL ``service``: no shutdown, like a crashed container."""
        proc = self.procs[service]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def restart(self, service: str, *, hard: bool = False) -> None:
        """Stop ``service`` (SIGTERM, or SIGKILL when ``hard``), start it again, wait until
        it is ready and set its clock back to the platform's instant (a new process's
        manual clock starts at the wall clock)."""
        # Idle first, so that from here on "published since" equals "consumed since".
        self.settle()
        self._base = self._counters()
        self._base[service] = {}
        proc = self.procs[service]
        if hard:
            self.kill(service)
        elif proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill(service)
        self._spawn(service)
        self._wait_ready(service)
        self._set_clock(service, self.now)

    # --- HTTP ----------------------------------------------------------------------------

    def client(self, tenant: str, service: str) -> httpx.Client:
        """An HTTP client for ``service`` with ``tenant``'s API key."""
        key = (tenant, service)
        if key not in self._clients:
            bearer = ADMIN_KEY if tenant == "admin" else TENANT_KEYS[tenant]
            self._clients[key] = httpx.Client(
                base_url=self.url(service),
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=30,
                limits=KEEPALIVE,
            )
        return self._clients[key]

    def _admin(self, service: str) -> httpx.Client:
        return self.client("admin", service)

    def _set_clock(self, service: str, instant: datetime) -> None:
        response = self._admin(service).put("/v1/admin/clock", json={"now": instant.isoformat()})
        if response.status_code != 200:
            raise PlatformError(
                f"{service}: PUT /v1/admin/clock -> {response.status_code}: {response.text}"
            )

    # --- time ----------------------------------------------------------------------------

    def advance(self, to: datetime, *, timeout_s: float = 60) -> None:
        """Set every clock to ``to``, tick invoice, payment, dunning and notify in that
        order (each once the previous one's work has settled), then wait until settled."""
        if to.tzinfo is None:
            raise ValueError("instants must carry a UTC offset")
        self.settle(timeout_s=timeout_s)
        for service in self.services:
            self._set_clock(service, to)
        self.now = to
        for service in self.services:
            response = self._admin(service).post("/v1/admin/tick")
            if response.status_code != 200:
                raise PlatformError(f"{service}: tick -> {response.status_code}: {response.text}")
            if response.json().get("jobs"):  # a service without scheduled work changed nothing
                self.settle(timeout_s=timeout_s)

    def settle(self, *, timeout_s: float = 60) -> None:
        """Wait (bounded) until the platform is idle: every topic's events consumed by each
        group that reads it, no outbox backlog, no notice pending, and that on several polls
        in a row."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        previous: object = None
        why = "not polled yet"
        while time.monotonic() < deadline:
            for service, proc in self.procs.items():
                if proc.poll() is not None:
                    raise PlatformError(
                        f"{service} exited with {proc.returncode}\n" + self.log_tail(service)
                    )
            state, why = self._idle_state()
            if why == "" and state == previous:
                calm += 1
                # Without the backlog gauge a committed row may still wait for its relay:
                # ask for a longer calm then (the relay is woken at commit, so it is short).
                if calm >= (2 if self._backlog_exported else 3):
                    return
            else:
                calm = 0
            previous = state
            time.sleep(0.1)
        raise PlatformError(f"the platform did not settle within {timeout_s} s: {why}")

    def _counters(self) -> dict[str, dict[tuple[str, str, str], float]]:
        """Per service: published and consumed counters keyed (kind, group, topic), and gauges."""
        found: dict[str, dict[tuple[str, str, str], float]] = {}
        for service in self.services:
            text = self._http.get(f"{self.url(service)}/metrics").text
            mine: dict[tuple[str, str, str], float] = {}
            for name, labels, value in parse_metrics(text):
                topic = labels.get("topic", "").removeprefix(f"{self.token}.")
                group = labels.get("group", "").removeprefix(f"{self.token}.")
                if name == "dunning_events_published_total":
                    key = ("published", "", topic)
                elif name == "dunning_events_consumed_total":
                    key = ("consumed", group, topic)
                elif name == "dunning_consumer_lag":
                    key = ("lag", group, f"{topic}/{labels.get('partition', '')}")
                elif name == "dunning_outbox_backlog":
                    key = ("backlog", "", "")
                else:
                    continue
                mine[key] = mine.get(key, 0) + value
            found[service] = mine
        return found

    def _idle_state(self) -> tuple[object, str]:
        """A snapshot of the counters, and why the platform is busy ('' when idle)."""
        counters = self._counters()
        self._backlog_exported = all(
            any(kind == "backlog" for kind, _, _ in mine) for mine in counters.values()
        )
        published: dict[str, float] = {}
        consumed: dict[tuple[str, str], float] = {}
        busy: list[str] = []
        for service, mine in counters.items():
            base = self._base.get(service, {})
            for (kind, group, topic), value in mine.items():
                if kind == "published":
                    published[topic] = (
                        published.get(topic, 0) + value - base.get((kind, group, topic), 0)
                    )
                elif kind == "consumed":
                    key = (group, topic)
                    consumed[key] = consumed.get(key, 0) + value - base.get((kind, group, topic), 0)
                elif kind == "lag" and value > 0:
                    busy.append(f"{service} lags {value:g} on {topic}")
                elif kind == "backlog" and value > 0:
                    busy.append(f"{service} has {value:g} outbox rows")
        for topic, count in published.items():
            for group in READERS.get(topic, ()):
                seen = consumed.get((group, topic), 0)
                if seen < count:
                    busy.append(f"{group} consumed {seen:g} of {count:g} on {topic}")
        pending = self._pending_notices()
        if pending:
            busy.append(f"{pending} notice(s) pending")
        return (sorted(published.items()), sorted(consumed.items()), pending), "; ".join(busy)

    def _pending_notices(self) -> int:
        """Notices ``pending`` although due (a held ``not_before`` in the future is idle)."""
        count = 0
        for tenant in TENANT_KEYS:
            response = self.client(tenant, "notify-svc").get(
                "/v1/notifications", params={"status": "pending", "limit": 100}
            )
            response.raise_for_status()
            for item in response.json()["items"]:
                if datetime.fromisoformat(item["due_at"]) <= self.now:
                    count += 1
        return count

    # --- logs ----------------------------------------------------------------------------

    def log_tail(self, service: str, lines: int = 60) -> str:
        """The last ``lines`` lines of ``service``'s log."""
        path = self.log_dir / f"{service}.log"
        if not path.exists():
            return f"(no log for {service})"
        # The harness's own polling (metrics, pending notices) would drown what matters.
        text = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if '"GET /metrics' not in line and "/v1/notifications?status=pending" not in line
        ][-lines:]
        return f"--- {service} log (last {len(text)} lines) ---\n" + "\n".join(text)

    def logs(self) -> Iterator[str]:
        """Every service's log tail, for a failed test's report."""
        for service in self.services:
            yield self.log_tail(service)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion, also when called from an async test (whose loop is
    busy in this very thread): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _admin_engine(url: str) -> Any:
    """An AUTOCOMMIT engine on ``url`` with the services' TLS settings (DUNNING_DATABASE_SSL_*)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from dunning_runtime.settings import ServiceSettings
    from dunning_runtime.tls import database_ssl

    ssl = database_ssl(ServiceSettings(database_url=url))
    connect_args = {} if ssl is None else {"ssl": ssl}
    return create_async_engine(url, isolation_level="AUTOCOMMIT", connect_args=connect_args)


async def _create_database(url: str, token: str) -> str:
    """CREATE DATABASE ``token`` next to ``url``'s database; its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{token}"'))
    finally:
        await engine.dispose()
    return make_url(url).set(database=token).render_as_string(hide_password=False)


async def _drop_database(url: str, token: str) -> None:
    from sqlalchemy import text

    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{token}" WITH (FORCE)'))
    except Exception as exc:  # a cleanup failure must not fail the run
        print(f"could not drop database {token}: {exc}", file=sys.stderr)
    finally:
        await engine.dispose()
