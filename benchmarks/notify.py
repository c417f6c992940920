"""notify-svc: notices sent per second, from NotificationRequested on the bus to a mail
accepted by a local SMTP server (aiosmtpd, in the same process, on a thread and event
loop of its own).

Each notice is consumed, recorded, rendered (Jinja2 + Babel, text and HTML), claimed
by the delivery worker, sent over one of its kept-open SMTP connections and recorded as
sent with its NotificationSent in the outbox. The SMTP server shares the process, so its
CPU counts against the figure: a remote server would leave more for notify-svc.

``notify_sends_per_s``: notices per second, from the first publish until the server
accepted the last. ``notify_cpu_us_per_send``: the process's CPU time (all threads,
the SMTP server's included) over that same window, per notice: steadier than the rate
on a busy machine, and the figure to compare before and after.
``notify_smtp_server_cpu_us_per_send``: the SMTP server thread's share of it (its own
CPU clock), per notice; ``notify_service_cpu_us_per_send``: the rest, notify-svc's own
(and the bench's publishing of the requests, which is in the window).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from asgi_lifespan import LifespanManager

from benchmarks.isolation import isolated
from dunning_events import NotificationRequested, make_envelope, topics
from dunning_events.codec import to_kafka
from dunning_events.samples import sample_event
from dunning_runtime.app import create_app
from dunning_runtime.bus import create_bus
from dunning_runtime.bus.port import OutgoingMessage
from notify_svc.main import SPEC


class _Counter:
    """An SMTP handler that only counts accepted messages."""

    def __init__(self, expected: int) -> None:
        self.accepted = 0
        self.expected = expected
        self.all_in = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # the bench's, where all_in is awaited

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted += 1
        if self.accepted == self.expected:
            self._loop.call_soon_threadsafe(self.all_in.set)
        return "250 2.0.0 accepted"


@contextmanager
def _smtp_server(counter: _Counter) -> Iterator[tuple[int, Any]]:
    """aiosmtpd on a thread and event loop of its own: its port, and a function giving
    that thread's CPU time so far (seconds)."""
    started = threading.Event()
    found: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(
            loop.create_server(lambda: SMTP(counter, loop=loop), "127.0.0.1", 0)
        )
        found.update(loop=loop, port=server.sockets[0].getsockname()[1])
        started.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

    thread = threading.Thread(target=serve, name="bench-smtp", daemon=True)
    thread.start()
    started.wait(30)
    clock = time.pthread_getcpuclockid(thread.ident or 0)
    try:
        yield found["port"], lambda: time.clock_gettime(clock)
    finally:
        found["loop"].call_soon_threadsafe(found["loop"].stop)
        thread.join(30)


def _request(i: int) -> NotificationRequested:
    return sample_event(
        NotificationRequested,
        notification_id=f"NTF-{i:07d}",
        account_id=f"ACC-{i % 5000:05d}",
        not_before=None,
    )


async def run(count: int, data_dir: Path) -> dict[str, float]:
    """Publish ``count`` requests, then time until the SMTP server accepted all of them."""
    counter = _Counter(count)
    with _smtp_server(counter) as (port, server_cpu):
        async with isolated(
            SPEC, data_dir, smtp_url=f"smtp://127.0.0.1:{port}", smtp_starttls="off"
        ) as settings:
            bus = create_bus(settings)
            await bus.start()
            try:
                messages = []
                now = datetime.now(UTC)
                for i in range(count):
                    kafka = to_kafka(
                        make_envelope(_request(i), tenant="bench", source="/bench", time=now)
                    )
                    messages.append(
                        OutgoingMessage(
                            topics.DUNNING_COMMANDS, kafka.key, kafka.value, list(kafka.headers)
                        )
                    )
                app = create_app(SPEC, settings)
                async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
                    started, cpu, served = time.perf_counter(), time.process_time(), server_cpu()
                    for start in range(0, count, 500):
                        await bus.publish(messages[start : start + 500])
                    await asyncio.wait_for(counter.all_in.wait(), timeout=600)
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu
                    served = server_cpu() - served
            finally:
                await bus.close()
    return {
        "notify_sends_per_s": count / elapsed,
        "notify_cpu_us_per_send": cpu / count * 1e6,
        "notify_smtp_server_cpu_us_per_send": served / count * 1e6,
        "notify_service_cpu_us_per_send": (cpu - served) / count * 1e6,
    }
