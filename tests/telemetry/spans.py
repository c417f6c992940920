"""Reading spans as a graph: which spans are connected by parents or links.

Shared by the in-process test (the SDK's in-memory exporter) and the real-components
test (spans read back from Zipkin and the collector's file exporter), which bring spans
in different shapes; both reduce them to ``Node``s first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

#: What no span attribute may hold: an email address, a phone number.
PERSONAL = (
    re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", re.IGNORECASE),
    re.compile(r"\+\d[\d ]{7,}"),
)


@dataclass
class Node:
    """One span: ids as hex, the service that made it, its links' span ids."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)


def from_sdk(spans: Iterable[ReadableSpan]) -> list[Node]:
    """Nodes of spans from the SDK (the in-memory exporter)."""
    nodes = []
    for span in spans:
        assert span.context is not None
        nodes.append(
            Node(
                trace_id=f"{span.context.trace_id:032x}",
                span_id=f"{span.context.span_id:016x}",
                parent_id=f"{span.parent.span_id:016x}" if span.parent else None,
                name=span.name,
                service=str(span.resource.attributes.get("service.name", "")),
                attributes=dict(span.attributes or {}),
                links=[f"{link.context.span_id:016x}" for link in span.links],
            )
        )
    return nodes


def components(nodes: Iterable[Node]) -> dict[str, int]:
    """Each span id's connected component (parents and links as undirected edges)."""
    nodes = list(nodes)
    parent: dict[str, str] = {n.span_id: n.span_id for n in nodes}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for node in nodes:
        if node.parent_id:
            join(node.span_id, node.parent_id)
        for link in node.links:
            join(node.span_id, link)
    roots: dict[str, int] = {}
    return {n.span_id: roots.setdefault(find(n.span_id), len(roots)) for n in nodes}


def personal_attributes(nodes: Iterable[Node]) -> list[tuple[str, str, str]]:
    """``(span, attribute, value)`` of every attribute that looks like contact data."""
    found = []
    for node in nodes:
        for key, value in node.attributes.items():
            text = str(value)
            if any(p.search(text) for p in PERSONAL):
                found.append((node.name, key, text))
    return found
