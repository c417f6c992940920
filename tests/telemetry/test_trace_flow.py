"""The trace of one business flow, with real components: the four services as processes
exporting over OTLP/HTTP to an OpenTelemetry Collector (built by its official builder
from deploy/otelcol/manifest.yaml), which exports to Zipkin (the trace store CI can
install), to a file and to span metrics for Prometheus.

An ERP posts an invoice; the manual clock moves past the due date until a notice reaches
a local SMTP server. Read back through Zipkin's API, the POST, InvoiceIssued applied in
dunning-svc and in payment-svc, InvoiceOverdue, the decision, NotificationRequested and
the send are joined by parents and links across the four services.

What is checked where: spans, parents and services in Zipkin (``/api/v2/traces``,
``/api/v2/trace/{id}``); links in Zipkin too, where the collector's Zipkin exporter keeps
them as ``otlp.link.<n>`` tags (Zipkin's v2 model has no links), and each of those is
checked against the collector's file exporter, which writes OTLP JSON with real links.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support.platform import Platform
from tests.support.smtp import MailServer
from tests.telemetry.spans import Node, components, personal_attributes
from tests.telemetry.stores import Stores, running_stores

SERVICES = ["invoice-svc", "payment-svc", "dunning-svc", "notify-svc"]
CONTACT = {"name": "Dana Fischer", "email": "ap@acme.example", "phone": "+49 30 1234567"}
INVOICE = {
    "invoice_id": "INV-TRACE-1",
    "account_id": "ACME-TRACE",
    "account_name": "Fischer Consulting",
    "contact": CONTACT,
    "currency": "EUR",
    "amount_due": "1250.00",
    "issue_date": "2027-02-01",
    "due_date": "2027-03-03",
    "timezone": "Europe/Berlin",
    "locale": "en-GB",
}
# After the machine's wall clock: a manual clock starts there and only moves forward.
START = datetime(2027, 3, 1, 9, tzinfo=UTC)
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 90) -> T:
    """``probe()``'s first truthy result; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.5)


def named(nodes: list[Node], name: str, **tags: str) -> list[Node]:
    """The spans called ``name`` (Zipkin lowercases span names) with these tags."""
    return [
        n
        for n in nodes
        if n.name == name.lower() and all(n.attributes.get(k) == v for k, v in tags.items())
    ]


def sent(stores: Stores) -> list[Node] | None:
    nodes = stores.zipkin_nodes(["notify-svc"])
    return [
        n
        for n in named(nodes, "notify send", **{"dunning.outcome": "sent"})
        if n.attributes.get("dunning.stage", "").startswith("overdue")
    ] or None


def test_the_erps_post_leads_to_the_notice_sent_after_the_due_date(tmp_path: Path) -> None:
    with running_stores(tmp_path) as stores, MailServer() as mail:
        env = {
            "DUNNING_OTLP_ENDPOINT": stores.otlp_endpoint,
            "DUNNING_SMTP_URL": mail.url,
            "DUNNING_GRACE_DAYS": "0",
        }
        with Platform(tmp_path, env=env, start_at=START) as platform:
            sends = _run_the_flow(platform, stores)
            nodes = eventually(lambda: _complete(stores), "the flow's spans in Zipkin")
        # The notice really went out, to the SMTP server.
        assert mail.messages_to(CONTACT["email"])
        _check_the_graph(stores, nodes, sends)


def _run_the_flow(platform: Platform, stores: Stores) -> list[Node]:
    """Post the invoice and move the clock a day at a time until an overdue notice is
    sent; returns the send spans."""
    response = platform.client("acme", "invoice-svc").post(
        "/v1/invoices", json=INVOICE, headers={"Idempotency-Key": "trace-flow-1"}
    )
    assert response.status_code == 201, response.text

    def known() -> bool:
        found = platform.client("acme", "dunning-svc").get("/v1/accounts/ACME-TRACE")
        return found.status_code == 200 and bool(found.json()["invoices"])

    eventually(known, "dunning-svc knows the invoice")
    day = START
    while day < START + timedelta(days=10) and not sent(stores):
        day += timedelta(days=1)
        platform.advance(day)
    return eventually(lambda: sent(stores), "an overdue notice's send span in Zipkin")


def _overdue_decisions(nodes: list[Node]) -> list[Node]:
    return [
        d
        for d in named(nodes, "dunning decision", **{"dunning.account_id": "ACME-TRACE"})
        if d.attributes.get("dunning.stage.to", "").startswith("overdue")
    ]


def _complete(stores: Stores) -> list[Node] | None:
    """Zipkin's spans once the flow's landmarks are all there (each service exports in
    its own batches, so they arrive in any order). The landmarks include every kind of
    span the checks pick out by name, the publishes too: a check must never read a list
    that a later batch would still have filled."""
    nodes = stores.zipkin_nodes(SERVICES)
    landmarks = {
        "post": named(nodes, "POST /v1/invoices"),
        "issued": named(
            nodes, "invoices publish", **{"cloudevents.event_type": "dunning.InvoiceIssued.v1"}
        ),
        "requested": named(
            nodes,
            "dunning.commands publish",
            **{"cloudevents.event_type": "dunning.NotificationRequested.v1"},
        ),
        "overdue": named(nodes, "invoice overdue"),
        "decision": _overdue_decisions(nodes),
        "send": sent(stores),
        "payment-svc": [n for n in nodes if n.service == "payment-svc"],
    }
    missing = [k for k, v in landmarks.items() if not v]
    print(f"trace flow: waiting for {missing}" if missing else "trace flow: complete")
    return None if missing else nodes


def _check_the_graph(stores: Stores, nodes: list[Node], sends: list[Node]) -> None:
    by_id = {n.span_id: n for n in nodes}
    posts = named(nodes, "POST /v1/invoices")
    assert len(posts) == 1, sorted({(n.service, n.name) for n in nodes})
    post = posts[0]
    assert post.service == "invoice-svc"
    issued = named(
        nodes, "invoices publish", **{"cloudevents.event_type": "dunning.InvoiceIssued.v1"}
    )
    assert issued and all(p.parent_id == post.span_id for p in issued)
    applied = {
        n.service: n
        for n in named(nodes, "invoices process")
        if n.parent_id in {p.span_id for p in issued}
    }
    assert {"dunning-svc", "payment-svc"} <= set(applied)

    [overdue] = named(nodes, "invoice overdue", **{"dunning.invoice_id": "INV-TRACE-1"})
    assert overdue.service == "invoice-svc" and overdue.parent_id is None
    assert overdue.trace_id != post.trace_id
    assert {by_id[link].trace_id for link in overdue.links if link in by_id} == {post.trace_id}
    [overdue_publish] = [
        n for n in named(nodes, "invoices publish") if n.parent_id == overdue.span_id
    ]
    decisions = _overdue_decisions(nodes)
    assert decisions, [n.attributes for n in named(nodes, "dunning decision")]
    assert all(d.service == "dunning-svc" for d in decisions)
    for decision in decisions:
        assert decision.attributes["dunning.stage.from"]
        assert decision.attributes["dunning.reason"]
        assert decision.attributes["dunning.policy_version"] == "0"
    requested = named(
        nodes,
        "dunning.commands publish",
        **{"cloudevents.event_type": "dunning.NotificationRequested.v1"},
    )
    # The NotificationRequested the overdue decision published, and the send it led to.
    requested = [r for r in requested if r.parent_id in {d.span_id for d in decisions}]
    assert requested and all(r.service == "dunning-svc" for r in requested)
    assert all(s.parent_id in {d.span_id for d in decisions} for s in sends)
    assert all(
        s.service == "notify-svc" and s.attributes["dunning.channel"] == "email" for s in sends
    )

    # One connected graph across the four services, by parents and links.
    wanted = [post, applied["dunning-svc"], applied["payment-svc"], overdue, overdue_publish]
    wanted += [*decisions, *requested, *sends]
    component = components(nodes)
    assert {component[n.span_id] for n in wanted} == {component[post.span_id]}
    assert {n.service for n in wanted} == set(SERVICES)
    # Zipkin's single-trace API serves the notice's trace with its ancestors in it.
    trace = {s["id"]: s for s in stores.zipkin(f"/api/v2/trace/{sends[0].trace_id}")}
    assert sends[0].span_id in trace and any(d.span_id in trace for d in decisions)

    # Every link Zipkin shows is a real span link in the collector's OTLP output.
    file_links = stores.file_links()
    for node in nodes:
        if node.links:
            assert sorted(node.links) == sorted(file_links.get(node.span_id, [])), node.name
    assert overdue.links and file_links[overdue.span_id] == overdue.links

    # The span-metrics connector counted the decisions for Prometheus.
    metrics = eventually(
        lambda: _span_metrics(stores, "dunning decision"), "span metrics of the decisions"
    )
    assert 'service_name="dunning-svc"' in metrics

    assert personal_attributes(nodes) == []
    texts = [str(v) for n in nodes for v in n.attributes.values()]
    assert not [t for t in texts if "Dana" in t or "Fischer" in t or "acme.example" in t]


def _span_metrics(stores: Stores, span_name: str) -> str | None:
    """The collector's Prometheus lines about ``span_name``, None while there are none."""
    text = httpx.get(f"{stores.prometheus_url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if f'span_name="{span_name}"' in line]
    return "\n".join(lines) or None
