"""``make bench``: every benchmark on the backends the settings name; prints a table and
records the figures in ``bench/results.json``.

Set DUNNING_BUS_URL / DUNNING_DATABASE_URL for Kafka + PostgreSQL; the default is the
embedded log and SQLite. results.json keeps one entry per backend ("embedded",
"kafka_postgres"), so a run on one backend leaves the other's figures in place.
Figures vary with the machine and its load: compare runs on the same one.
``--only bus|invoices|payments|dunning|notify|scale|e2e`` runs one of them (scale: Kafka +
PostgreSQL only; the full run includes it there). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import bus, dunning, e2e, invoices, notify, payments, scale_out
from dunning_runtime.settings import ServiceSettings

RESULTS = Path("bench/results.json")

# (key, label, unit) in the order the table shows them.
ROWS = [
    ("raw_consume_events_per_s", "raw consume (the ceiling)", "events/s"),
    ("raw_consume_one_by_one_events_per_s", "raw consume, one record at a time", "events/s"),
    ("runtime_events_per_s", "runtime consume + upsert + inbox", "events/s"),
    ("runtime_vs_raw_consume", "runtime / raw consume", "ratio"),
    ("runtime_cpu_us_per_event", "runtime CPU in this process", "µs/event"),
    ("decode_us_per_event", "from_kafka decode", "µs/event"),
    ("encode_us_per_event", "outbox encode (envelope, record, row)", "µs/event"),
    ("publish_events_per_s", "bus publish (batches of 500)", "events/s"),
    ("outbox_write_events_per_s", "outbox write (100 per transaction)", "events/s"),
    ("relay_events_per_s", "outbox relay publish", "events/s"),
    ("ingest_invoices_per_s", "invoice batch ingest (1,000 per POST)", "invoices/s"),
    ("overdue_tick_invoices_per_s", "overdue tick (detect + publish all)", "invoices/s"),
    ("ingest_payments_per_s", "payment batch ingest (1,000 per POST)", "payments/s"),
    ("dunning_raw_consume_events_per_s", "raw consume, dunning's run", "events/s"),
    ("dunning_events_per_s", "dunning-svc consume + fold + writes", "events/s"),
    ("dunning_vs_raw_consume", "dunning-svc / raw consume", "ratio"),
    ("dunning_cpu_us_per_event", "dunning-svc CPU in this process", "µs/event"),
    ("timer_sweep_accounts_per_s", "dunning timer sweep", "accounts/s"),
    ("timer_sweep_1m_accounts_s", "timer sweep, 1,000,000 due accounts", "s"),
    ("timer_sweep_cpu_us_per_account", "timer sweep CPU in this process", "µs/account"),
    ("sweep_core_us_per_account", "sweep's pure core per account", "µs/account"),
    ("sweep_cpu_us_per_account", "sweep's work per account, no IO", "µs/account"),
    ("timer_sweep_1m_cpu_floor_s", "that for 1,000,000 accounts (one core)", "s"),
    ("dunning_rss_mb", "RSS after the sweep", "MiB"),
    ("notify_sends_per_s", "notices sent to a local SMTP server", "sends/s"),
    ("notify_cpu_us_per_send", "notify-svc CPU per notice sent", "µs/send"),
    ("notify_smtp_server_cpu_us_per_send", "  of which the bench's SMTP server", "µs/send"),
    ("notify_service_cpu_us_per_send", "  of which notify-svc's own", "µs/send"),
    ("scale_out_1_events_per_s", "scale-out: dunning events, 1 process", "events/s"),
    ("scale_out_2_events_per_s", "scale-out: dunning events, 2 processes", "events/s"),
    ("scale_out_2_replicas", "scale-out: 2 processes / 1, events", "ratio"),
    ("scale_out_split", "scale-out: each process's share of events", "shares"),
    ("scale_out_sweep_2_replicas", "scale-out: 2 processes / 1, sweep", "ratio"),
    ("scale_out_sweep_split", "scale-out: each one's share of the sweep", "shares"),
    ("scale_out_lock_wait_s", "scale-out: each one's wait for locks", "s"),
    ("scale_out_cpu_share", "scale-out: cores used, 1 process, then 2", "cores"),
    ("e2e_sent_per_s", "end to end: payments sent on schedule", "payments/s"),
    ("e2e_rate_per_s", "end to end: payments sent to last answer", "payments/s"),
    ("e2e_p50_ms", "end to end: POST to dunning-svc, p50", "ms"),
    ("e2e_p99_ms", "end to end: POST to dunning-svc, p99", "ms"),
    ("e2e_post_p99_ms", "end to end: the POST alone, p99", "ms"),
    ("e2e_poll_ms", "end to end: one worklist poll", "ms"),
    ("e2e_post_cpu_ms", "end to end: payment-svc CPU per payment", "ms"),
    ("peak_rss_mb", "peak RSS", "MiB"),
]


def backend_name(settings: ServiceSettings) -> str:
    """``embedded``, ``kafka_postgres``, or ``<bus>_<store>`` for a mixed pair."""
    bus_name = "embedded" if settings.is_embedded_bus else "kafka"
    store = "postgres" if settings.effective_schema else "sqlite"
    if (bus_name, store) == ("embedded", "sqlite"):
        return "embedded"
    return f"{bus_name}_{store}"


def quiet_logs() -> None:
    """The table, not request logs: only errors get through (aiokafka's start-up
    chatter about a coordinator not yet available is not one)."""
    logging.disable(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def record(backend: str, figures: dict[str, Any], path: Path = RESULTS) -> dict[str, Any]:
    """Store ``figures`` in ``backend``'s entry in ``path``, keeping the other entries (and
    this entry's figures a partial run, ``--only``, did not measure)."""
    results: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                results = loaded
        except ValueError:
            pass  # a broken file is replaced, not fatal
    previous = results.get(backend)
    results[backend] = {**(previous if isinstance(previous, dict) else {}), **figures}
    results["cores"], results["date"] = figures["cores"], figures["date"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def table(backend: str, figures: dict[str, Any]) -> str:
    """The figures as aligned text."""
    sizes = []
    if "events" in figures:
        sizes.append(
            f"{figures['events']:,} events (median of {figures['repetitions']} consume runs)"
        )
    if "invoices" in figures:
        sizes.append(f"{figures['invoices']:,} invoices")
    if "payments" in figures:
        sizes.append(f"{figures['payments']:,} payments")
    if "notices" in figures:
        sizes.append(f"{figures['notices']:,} notices")
    if "e2e_payments" in figures:
        sizes.append(
            f"{figures['e2e_payments']:,.0f} end-to-end payments at "
            f"{figures['e2e_target_per_s']:,.0f}/s"
        )
    if "timer_sweep_accounts" in figures:
        sizes.append(
            f"{figures['dunning_events']:,} dunning events, "
            f"{figures['timer_sweep_accounts']:,} swept accounts"
        )
    if "scale_out_events" in figures:
        sizes.append(
            f"scale-out: {figures['scale_out_events']:,} events, "
            f"{figures['scale_out_swept_accounts']:,} swept accounts"
        )
    lines = [
        f"make bench — {backend}: {', '.join(sizes)}; {figures['cores']} cores; {figures['date']}"
    ]
    if "runtime_handler" in figures:
        lines.append(f"  runtime handler: {figures['runtime_handler']}")
    for key, label, unit in ROWS:
        if key not in figures:
            continue
        value = figures[key]
        if isinstance(value, list):
            lines.append(f"  {label:<40} {' / '.join(f'{v:.2f}' for v in value):>10} {unit}")
            continue
        shown = (
            f"{value:.3f}"
            if unit == "ratio"
            else f"{value:.1f}"
            if value < 100
            else f"{value:,.0f}"
        )
        lines.append(f"  {label:<40} {shown:>10} {unit}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument(
        "--only", choices=["bus", "invoices", "payments", "dunning", "notify", "scale", "e2e"]
    )
    parser.add_argument("--events", type=int, default=20_000, help="bus benchmark size")
    parser.add_argument("--invoices", type=int, default=20_000, help="invoice benchmark size")
    parser.add_argument("--payments", type=int, default=20_000, help="payment benchmark size")
    parser.add_argument("--notices", type=int, default=2_000, help="notify benchmark size")
    parser.add_argument("--repeat", type=int, default=3, help="consume runs (the median counts)")
    parser.add_argument("--dunning-events", type=int, default=20_000, help="dunning-svc events")
    parser.add_argument(
        "--dunning-accounts",
        type=int,
        default=50_000,
        help="accounts the timer sweep runs (scaled to 1,000,000 in timer_sweep_1m_accounts_s)",
    )
    parser.add_argument("--scale-events", type=int, default=20_000, help="scale-out events")
    parser.add_argument(
        "--scale-accounts", type=int, default=20_000, help="accounts the scale-out sweep runs"
    )
    parser.add_argument(
        "--e2e-rate", type=float, default=500.0, help="payments/s of the end-to-end run"
    )
    parser.add_argument(
        "--e2e-seconds", type=float, default=20.0, help="measured seconds of the end-to-end run"
    )
    parser.add_argument(
        "--e2e-senders",
        type=int,
        default=2,
        help="processes sending the end-to-end run's payments (each an open-loop share)",
    )
    parser.add_argument(
        "--profile", type=Path, help="profile one more runtime run into this file (pyinstrument)"
    )
    args = parser.parse_args()
    quiet_logs()
    backend = backend_name(ServiceSettings(service_name="bench"))
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dunning-bench-") as tmp:
        if args.only in (None, "bus"):
            figures.update(
                asyncio.run(bus.run(args.events, args.repeat, Path(tmp) / "bus", args.profile))
            )
        if args.only in (None, "invoices"):
            figures["invoices"] = args.invoices
            figures.update(asyncio.run(invoices.run(args.invoices, Path(tmp) / "invoices")))
        if args.only in (None, "payments"):
            figures["payments"] = args.payments
            figures.update(asyncio.run(payments.run(args.payments, Path(tmp) / "payments")))
        if args.only in (None, "dunning"):
            figures.update(
                asyncio.run(
                    dunning.run(args.dunning_events, args.dunning_accounts, Path(tmp) / "dunning")
                )
            )
        if args.only in (None, "notify"):
            figures["notices"] = args.notices
            figures.update(asyncio.run(notify.run(args.notices, Path(tmp) / "notify")))
        if args.only == "scale" or (args.only is None and backend == "kafka_postgres"):
            figures.update(
                asyncio.run(
                    scale_out.run(args.scale_events, args.scale_accounts, Path(tmp) / "scale")
                )
            )
        if args.only in (None, "e2e"):
            # Four service processes on the configured backends (embedded too: the harness
            # gives them one embedded log and their own SQLite files).
            figures.update(
                e2e.run(args.e2e_rate, args.e2e_seconds, Path(tmp) / "e2e", args.e2e_senders)
            )
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["cores"] = os.cpu_count()
    figures["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    record(backend, figures)
    print(table(backend, figures))
    print(f"  written to {RESULTS}")


if __name__ == "__main__":
    main()
