"""``make bench`` on a small scale: every figure is measured on the configured backend,
and bench/results.json keeps what this run did not measure. No speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bus, dunning, invoices, notify, payments, scale_out
from benchmarks.__main__ import record, table
from dunning_runtime.settings import ServiceSettings

BUS_FIGURES = {
    "raw_consume_events_per_s",
    "runtime_events_per_s",
    "runtime_vs_raw_consume",
    "runtime_cpu_us_per_event",
    "decode_us_per_event",
    "encode_us_per_event",
    "publish_events_per_s",
    "outbox_write_events_per_s",
    "relay_events_per_s",
}


async def test_the_bus_bench_measures_every_figure(tmp_path: Path) -> None:
    figures = await bus.run(400, 1, tmp_path)
    assert figures.keys() >= BUS_FIGURES
    assert all(figures[key] > 0 for key in BUS_FIGURES), figures
    assert figures["runtime_handler"] == "batch handler, one upsert per chunk"


async def test_the_invoice_bench_posts_and_ticks_through_the_public_routes(
    tmp_path: Path,
) -> None:
    figures = await invoices.run(50, tmp_path)
    assert figures["ingest_invoices_per_s"] > 0
    assert figures["overdue_tick_invoices_per_s"] > 0


async def test_the_payment_bench_posts_batches_through_the_public_route(tmp_path: Path) -> None:
    figures = await payments.run(50, tmp_path)
    assert figures["ingest_payments_per_s"] > 0


async def test_the_notify_bench_tells_the_smtp_servers_cpu_from_the_services(
    tmp_path: Path,
) -> None:
    figures = await notify.run(20, tmp_path)
    assert figures["notify_sends_per_s"] > 0
    assert figures["notify_smtp_server_cpu_us_per_send"] > 0
    assert figures["notify_service_cpu_us_per_send"] > 0
    assert figures["notify_cpu_us_per_send"] == pytest.approx(
        figures["notify_smtp_server_cpu_us_per_send"] + figures["notify_service_cpu_us_per_send"]
    )


async def test_the_dunning_bench_measures_consume_sweep_and_memory(tmp_path: Path) -> None:
    figures = await dunning.run(200, 300, tmp_path)
    for key in (
        "dunning_events_per_s",
        "dunning_vs_raw_consume",
        "timer_sweep_1m_accounts_s",
        "dunning_rss_mb",
        "sweep_core_us_per_account",
        "sweep_cpu_us_per_account",
        "timer_sweep_1m_cpu_floor_s",
    ):
        assert figures[key] > 0, key
    assert figures["timer_sweep_accounts"] == 300
    # No comparison between two timings here: each is measured apart, and on a busy
    # machine either can come out higher (a timing assertion, flaky by nature).


async def test_the_scale_out_bench_splits_the_work_of_two_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two worker processes: the run itself checks that no event and no account was
    handled twice; here, that each did some of the work. Embedded: skipped, said why."""
    figures = await scale_out.run(400, 400, tmp_path)
    if ServiceSettings(service_name="bench").is_embedded_bus:
        assert figures == {}
        assert "scale-out: skipped" in capsys.readouterr().out
        return
    assert figures["scale_out_2_replicas"] > 0
    for key in ("scale_out_split", "scale_out_sweep_split"):
        shares = figures[key]
        assert len(shares) == 2 and abs(sum(shares) - 1) < 1e-9, (key, shares)
    # Every partition is another process's, so both get events; a sweep batch is 1,000,
    # so with 400 accounts one process may take them all.
    assert all(share > 0 for share in figures["scale_out_split"]), figures


def test_results_keep_the_other_backend_and_figures_a_partial_run_did_not_measure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench" / "results.json"
    common = {"cores": 2, "date": "2026-11-24T21:00:00+00:00"}
    record("kafka_postgres", {**common, "runtime_events_per_s": 11_000.0}, path)
    record("embedded", {**common, "runtime_events_per_s": 9_000.0, "peak_rss_mb": 200.0}, path)
    later = {"cores": 2, "date": "2026-11-24T22:00:00+00:00"}
    record("embedded", {**later, "ingest_invoices_per_s": 4_000.0}, path)

    results = json.loads(path.read_text())
    assert results["kafka_postgres"]["runtime_events_per_s"] == 11_000.0
    assert results["embedded"] == {
        **later,
        "runtime_events_per_s": 9_000.0,
        "peak_rss_mb": 200.0,
        "ingest_invoices_per_s": 4_000.0,
    }
    assert (results["cores"], results["date"]) == (2, later["date"])


def test_a_broken_results_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("{not json")
    record("embedded", {"cores": 2, "date": "d", "peak_rss_mb": 1.0}, path)
    assert json.loads(path.read_text())["embedded"]["peak_rss_mb"] == 1.0


def test_the_table_names_each_figure_with_its_unit() -> None:
    text = table(
        "embedded",
        {"cores": 2, "date": "d", "runtime_events_per_s": 12_345.6, "runtime_vs_raw_consume": 0.1},
    )
    assert "runtime consume + upsert + inbox" in text and "12,346 events/s" in text
    assert "0.100 ratio" in text
    shares = table("kafka_postgres", {"cores": 2, "date": "d", "scale_out_split": [0.48, 0.52]})
    assert "0.48 / 0.52 shares" in shares
