"""Every service's OpenAPI document states its limits, and they are the ones enforced.

Read from each service's own document, nothing listed by hand: the body limit of every
request body (``x-max-body-bytes``, equal to what the request guards apply) and its 413;
``Retry-After`` on every 429 and 503; ``maxItems`` of every array a body carries and the
``maximum`` of every ``limit`` (page size). Then each limit is driven one past its value
and must be refused with a problem+json naming the field: 413 ``body``, 422
``body.<array>``, 422 ``query.limit``; at the limit the same request is not refused for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dunning_runtime.app import ServiceSpec, create_app
from dunning_runtime.http_guards import BodyLimits
from dunning_runtime.openapi import MAX_BODY_EXTENSION
from dunning_svc.main import SPEC as DUNNING
from invoice_svc.main import SPEC as INVOICE
from notify_svc.main import SPEC as NOTIFY
from payment_svc.main import SPEC as PAYMENT
from tests.support.fixtures import ADMIN, running

SERVICES = (INVOICE, PAYMENT, DUNNING, NOTIFY)
ACME = {"Authorization": "Bearer acme-key"}
_PARAMETER = re.compile(r"\{[^/{}]+\}")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` of every documented operation."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def body_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """The request body's object schema, its ``$ref`` resolved (also inside ``anyOf``)."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    refs = [schema.get("$ref"), *(o.get("$ref") for o in schema.get("anyOf", []))]
    ref = next((r for r in refs if r), None)
    if ref is None:
        return dict(schema)
    return dict(document["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def headers_for(path: str) -> dict[str, str]:
    """The key a route needs."""
    return ADMIN if path.startswith("/v1/admin/") else ACME


def fields(response: httpx.Response) -> list[str]:
    """The fields a problem's ``errors`` name."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return [error["field"] for error in response.json().get("errors", [])]


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
async def test_the_documented_limits_are_the_enforced_ones(
    spec: ServiceSpec, settings_factory: Any
) -> None:
    settings = settings_factory(spec.name, clock="manual", rate_limit_per_s=0)
    enforced = BodyLimits(spec.body_limits)
    async with running(create_app(spec, settings)) as client:
        document = (await client.get("/openapi.json")).json()
        assert document["components"]["headers"]["Retry-After"]["schema"]["minimum"] == 1
        bodies = pages = arrays = 0
        for path, method, operation in operations(document):
            responses = operation["responses"]
            for status in ("429", "503"):
                if status in responses:
                    assert "Retry-After" in responses[status]["headers"], f"{method} {path}"
            url = _PARAMETER.sub("x", path)

            for parameter in operation.get("parameters", []):
                if parameter["name"] != "limit" or parameter["in"] != "query":
                    continue
                maximum = parameter["schema"]["maximum"]
                at = await client.get(url, params={"limit": maximum}, headers=headers_for(path))
                assert at.status_code != 422, f"GET {path}?limit={maximum}: {at.text}"
                over = await client.get(
                    url, params={"limit": maximum + 1}, headers=headers_for(path)
                )
                assert over.status_code == 422 and fields(over) == ["query.limit"], over.text
                pages += 1

            if "requestBody" not in operation:
                continue
            limit = operation["requestBody"][MAX_BODY_EXTENSION]
            assert limit == enforced.for_path(url), f"{method} {path}"
            assert f"{limit:,} bytes" in responses["413"]["description"]
            too_large = await client.request(
                method.upper(),
                url,
                content=b" " * (limit + 1),
                headers={**headers_for(path), "Content-Type": "application/json"},
            )
            assert too_large.status_code == 413, f"{method} {path}: {too_large.text}"
            assert too_large.json()["type"].endswith("/body-too-large")
            assert fields(too_large) == ["body"]
            bodies += 1

            for name, prop in body_schema(document, operation).get("properties", {}).items():
                if prop.get("type") != "array" or "maxItems" not in prop:
                    continue
                count = prop["maxItems"] + 1
                body = json.dumps({name: [{}] * count}).encode()
                over_items = await client.request(
                    method.upper(),
                    url,
                    content=body,
                    headers={**headers_for(path), "Content-Type": "application/json"},
                )
                assert over_items.status_code == 422, f"{method} {path}: {over_items.text}"
                assert f"body.{name}" in fields(over_items), over_items.text[:500]
                arrays += 1
        assert bodies, f"{spec.name} documents no request body"
        print(f"{spec.name}: {bodies} body limits, {arrays} array limits, {pages} page sizes")
