"""Drive the platform through faults: writes that retry as an ERP would, a clock that
moves only once the platform has settled, and the faults themselves.

The e2e ``Platform`` assumes its services stay up; here any of them may be dead, the
broker away or the database restarting at any moment. So every call retries on a
refused connection, a 5xx or a 409 "in use" (with the same Idempotency-Key), bounded,
and counts what it saw; and "settled" is read from the gauges alone
(``dunning_consumer_lag`` and ``dunning_outbox_backlog`` 0 on every service, no due
notice pending), which a restarted process computes afresh, instead of the counters,
which it loses.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.faults.load import Write
from tests.support.platform import ADMIN_KEY, TENANT_KEYS, Platform, PlatformError, parse_metrics

ROOT = Path(__file__).resolve().parents[2]
#: How long one write, one clock move or one settle may take before the run gives up:
#: longer than the longest fault (the broker's 30 s, the mail server's 60 s of 4xx).
PATIENCE_S = 150.0
#: Statuses after which the same request is sent again: the service is away or busy.
RETRIED = {409, 425, 429, 500, 502, 503, 504}


@dataclass
class Tally:
    """What the clients saw while a fault was on (or between faults)."""

    writes: int = 0  # 2xx writes
    retries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # non-2xx answers and errors


class Servers:
    """The suite's own Kafka broker and PostgreSQL server, through the repo's scripts."""

    def __init__(self, kafka_port: int, pg_port: int) -> None:
        self.kafka_port = kafka_port
        self.pg_port = pg_port
        self.bus_url = f"kafka://127.0.0.1:{kafka_port}"
        self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/dunning_test"

    def status(self, server: str) -> bool:
        """Whether ``server`` (kafka or postgres) is up on the suite's port."""
        try:
            self._script("kafka.sh" if server == "kafka" else "pg.sh", "status")
        except PlatformError:
            return False
        return True

    def _script(self, name: str, action: str) -> None:
        env = {
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
            "PG_PORT": str(self.pg_port),
        }
        done = subprocess.run(
            [str(ROOT / "scripts" / name), action],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise PlatformError(f"scripts/{name} {action} failed:\n{done.stdout}{done.stderr}")

    def kafka(self, action: str) -> None:
        """``scripts/kafka.sh ACTION`` on the suite's port."""
        self._script("kafka.sh", action)

    def postgres(self, action: str) -> None:
        """``scripts/pg.sh ACTION`` on the suite's port."""
        self._script("pg.sh", action)


class Driver:
    """The load's side of the platform: writes, clock moves, settling, restarts."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(keepalive_expiry=2.0))
        self.tally = Tally()
        self.clock_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(6, thread_name_prefix="settle")

    def close(self) -> None:
        """Close the HTTP client."""
        self._pool.shutdown()
        self.http.close()

    # --- calls that outlive a fault ------------------------------------------------------

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        bearer: str,
        json: dict[str, Any] | None = None,
        key: str | None = None,
        ok: Callable[[httpx.Response], bool] = lambda r: r.is_success,
    ) -> httpx.Response:
        """Send until the answer is ``ok`` or not worth retrying, within ``PATIENCE_S``."""
        headers = {"Authorization": f"Bearer {bearer}"}
        if key:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + PATIENCE_S
        last = ""
        while True:
            try:
                response = self.http.request(
                    method, self.platform.url(service) + path, json=json, headers=headers
                )
            except httpx.HTTPError as exc:
                self.tally.statuses[type(exc).__name__] += 1
                last = repr(exc)
            else:
                if ok(response) or response.status_code not in RETRIED:
                    return response
                self.tally.statuses[str(response.status_code)] += 1
                last = f"{response.status_code} {response.text[:300]}"
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"{method} {service}{path} (Idempotency-Key {key}): no success within "
                    f"{PATIENCE_S} s; the last answer: {last}"
                )
            self.tally.retries += 1
            time.sleep(0.3)

    def write(self, write: Write) -> None:
        """Make ``write`` (retried with its Idempotency-Key until 2xx or refused)."""
        response = self.call(
            "POST",
            write.service,
            write.path,
            bearer=TENANT_KEYS[write.tenant],
            json=write.body,
            key=write.key,
        )
        write.status = response.status_code
        if response.is_success:
            self.tally.writes += 1
        else:
            write.errors.append(f"{response.status_code}: {response.text[:300]}")

    def admin(self, method: str, service: str, path: str, **options: Any) -> httpx.Response:
        """An admin call, retried like any other."""
        return self.call(method, service, f"/v1/admin{path}", bearer=ADMIN_KEY, **options)

    # --- the clock -----------------------------------------------------------------------

    def set_clock(self, service: str, instant: datetime) -> None:
        """Set ``service``'s clock; a 409 means it is already past ``instant`` (restored)."""
        response = self.admin(
            "PUT",
            service,
            "/clock",
            json={"now": instant.isoformat()},
            ok=lambda r: r.is_success or r.status_code == 409,
        )
        if not (response.is_success or response.status_code == 409):
            raise PlatformError(f"{service}: PUT clock -> {response.status_code}")

    def advance(self, to: datetime, *, tick: bool = True) -> None:
        """Settle, move every clock to ``to`` and (``tick``) tick the services in the order
        of ``dunning clock advance`` (invoice and payment, dunning, notify), settling after
        each."""
        self.settle()
        with self.clock_lock:
            self.platform.now = to
            for service in self.platform.services:
                self.set_clock(service, to)
        if not tick:
            return
        # invoice-svc's and payment-svc's ticks make events dunning-svc only notes (overdue,
        # settled): no need to settle before dunning-svc's; notify-svc's needs its notices.
        for group in (("invoice-svc", "payment-svc", "dunning-svc"), ("notify-svc",)):
            for service in group:
                response = self.admin("POST", service, "/tick")
                if not response.is_success:
                    raise PlatformError(f"{service}: tick -> {response.status_code}")
            self.settle()

    def settle(self, timeout_s: float = PATIENCE_S) -> None:
        """Wait until every service answers, no consumer lags, no outbox row waits and no
        due notice is pending, on two polls in a row."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        why = "not polled yet"
        while time.monotonic() < deadline:
            why = self._busy()
            calm = calm + 1 if not why else 0
            if calm >= 2:
                return
            time.sleep(0.05)
        raise PlatformError(f"the platform did not settle within {timeout_s} s: {why}")

    def _busy(self) -> str:
        # The four scrapes at once: on Kafka each one asks the broker for offsets.
        found = list(self._pool.map(self._service_busy, self.platform.services))
        found += list(self._pool.map(self._notices_busy, TENANT_KEYS))
        return "; ".join(why for why in found if why)

    def _service_busy(self, service: str) -> str:
        try:
            text = self.http.get(self.platform.url(service) + "/metrics", timeout=5).text
            samples = parse_metrics(text)
        except (httpx.HTTPError, ValueError) as exc:
            return f"{service}: {type(exc).__name__}"
        backlog = [v for n, _, v in samples if n == "dunning_outbox_backlog"]
        if not backlog:
            return f"{service} exports no outbox backlog yet"
        lag = sum(v for n, _, v in samples if n == "dunning_consumer_lag")
        if sum(backlog) or lag:
            return f"{service}: {sum(backlog):g} outbox rows, lag {lag:g}"
        return ""

    def _notices_busy(self, tenant: str) -> str:
        try:
            response = self.http.get(
                self.platform.url("notify-svc") + "/v1/notifications",
                params={"status": "pending", "limit": 100},
                headers={"Authorization": f"Bearer {TENANT_KEYS[tenant]}"},
            )
        except httpx.HTTPError as exc:
            return f"notify-svc: {type(exc).__name__}"
        if not response.is_success:
            return f"notify-svc: {response.status_code}"
        due = [
            n
            for n in response.json()["items"]
            if datetime.fromisoformat(n["due_at"]) <= self.platform.now
        ]
        return f"{len(due)} due notice(s) pending for {tenant}" if due else ""

    # --- processes -----------------------------------------------------------------------

    def ready_after(self, since: float, timeout_s: float = 120) -> float:
        """Seconds from ``since`` (monotonic) until every service's /readyz is 200."""
        deadline = time.monotonic() + timeout_s
        waiting = list(self.platform.services)
        while waiting and time.monotonic() < deadline:
            service = waiting[0]
            try:
                status = self.http.get(self.platform.url(service) + "/readyz", timeout=2)
                if status.status_code == 200:
                    waiting.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        if waiting:
            raise PlatformError(f"{waiting} not ready {timeout_s} s after the fault ended")
        return time.monotonic() - since

    def kill_and_restart(
        self, service: str, before_start: Callable[[], None] = lambda: None
    ) -> dict[str, float]:
        """SIGKILL ``service`` (then ``before_start``), start it again; seconds from the kill
        and from the new process's start until every service is ready."""
        killed = time.monotonic()
        self.platform.kill(service)
        before_start()
        spawned = time.monotonic()
        self.platform._spawn(service)
        self.platform._wait_ready(service)
        with self.clock_lock:
            self.set_clock(service, self.platform.now)
        ready = self.ready_after(killed)
        return {
            "ready_after_s": round(ready, 1),
            "ready_after_start_s": round(ready - (spawned - killed), 1),
        }
