"""Every service's OpenAPI document is true: schemathesis fuzzes it, and the rules it
relies on are checked directly (issue 6, section 7).

The fuzz test serves each service of ``dunning_cli.stack.SERVICES`` (so a service
added there is fuzzed from its first commit) with uvicorn on a local port, on the active
backends, with the manual clock so the admin routes exist too, and runs the schemathesis
CLI against its ``/openapi.json`` with a tenant key and the admin key. It fails on any
5xx, on a status code, content type, header or body the document does not describe, on
an unsupported method answered without a correct ``Allow``, and on input outside the
document that is accepted. With ``CI=true`` the run is derandomized (the same cases every
run); else schemathesis picks a seed and prints it, so a failure can be replayed with
``--seed``.

``positive_data_acceptance`` is the one schemathesis check left out: JSON Schema cannot
say that a due date is not before its issue date, that lines add up to the amount due,
or that an amount has no more decimals than its currency, so a schema-valid body can be
rightly refused with a 422.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import APIRouter
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from dunning_cli.stack import SERVICES
from dunning_events.common import MAX_DAY, MIN_DAY, BoundedDay
from dunning_events.money import Currency, Percent, PositiveAmount, PositiveMoney
from dunning_runtime.app import ServiceSpec, create_app
from dunning_runtime.auth import Tenant
from dunning_runtime.openapi import ADMIN_SCHEME, PROBLEM_SCHEMA, SIGNATURE_SCHEME, TENANT_SCHEME
from tests.support.fixtures import backend_name, ledger_spec, running
from tests.support.serving import serving

#: Test cases per operation and phase; the run stays within a minute or two per service.
MAX_EXAMPLES = int(os.environ.get("DUNNING_TEST_FUZZ_EXAMPLES", "60"))
#: The harness limit on one service's whole fuzz run (it catches a hang, not slowness).
RUN_LIMIT_S = 900
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
        "use_after_free",
        "ensure_resource_availability",
    ]
)
PROBLEM_JSON = "application/problem+json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def spec_of(module: str) -> ServiceSpec:
    """The ``SPEC`` of a service's main module."""
    spec: ServiceSpec = importlib.import_module(module).SPEC
    return spec


SERVICE_PARAMS = [pytest.param(module, id=name) for name, module in SERVICES]


def schemathesis_config(tenant_key: str, admin_key: str) -> str:
    """A schemathesis.toml giving each security scheme of the documents its key.

    A run where most requests are refused for their key would test nothing but the 401,
    so schemathesis's "missing_auth" warning fails it; so do the warnings that say the
    document itself cannot be used (a regex or reference it cannot read).
    """
    return (
        f'[auth.openapi.{TENANT_SCHEME}]\nbearer = "{tenant_key}"\n\n'
        f'[auth.openapi.{ADMIN_SCHEME}]\nbearer = "{admin_key}"\n\n'
        "[warnings]\n"
        'fail-on = ["missing_auth", "unsupported_regex", "unresolvable_reference",'
        ' "missing_deserializer"]\n'
    )


def schemathesis_command(base_url: str, config: Path) -> list[str]:
    """The schemathesis CLI run against one service."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        # A generous bound that catches a hang, not a speed limit.
        "--request-timeout",
        "30",
        # Speed is measured by benchmarks: a loaded machine must not fail the run.
        "--suppress-health-check",
        "too_slow",
    ]
    if os.environ.get("CI", "").lower() == "true":
        # Hypothesis's derandomize: the same cases on every run, no example database.
        command += ["--generation-deterministic"]
    else:
        command += ["--generation-database", ":memory:"]
    return command


async def keys_are_accepted(base_url: str, tenant_key: str, admin_key: str) -> None:
    """Fail unless every documented /v1 path takes its key (else the fuzz tests only 401s)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        document = (await client.get("/openapi.json")).json()
        for method, path, _ in operations(document):
            if not path.startswith("/v1/"):
                continue
            key = admin_key if path.startswith("/v1/admin/") else tenant_key
            url = path.replace("{", "").replace("}", "")
            # Only reads: a write with a valid key would change what the fuzzer starts from.
            if method == "get":
                response = await client.get(url, headers={"Authorization": f"Bearer {key}"})
                assert response.status_code not in (401, 403), f"GET {path}: {response.text}"


async def fuzz(spec: ServiceSpec, settings: Any, workdir: Path) -> tuple[int, str]:
    """Serve ``spec`` and run schemathesis against it: its exit code and report."""
    tenant_key = next(iter(settings.api_keys))
    admin_key = settings.admin_key.get_secret_value()
    config = workdir / "schemathesis.toml"
    config.write_text(schemathesis_config(tenant_key, admin_key))
    async with serving(create_app(spec, settings)) as base_url:
        await keys_are_accepted(base_url, tenant_key, admin_key)
        process = await asyncio.create_subprocess_exec(
            *schemathesis_command(base_url, config),
            cwd=workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), RUN_LIMIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("module", SERVICE_PARAMS)
async def test_fuzzing_finds_nothing_the_document_does_not_describe(
    module: str, settings_factory: Any, tmp_path: Path
) -> None:
    spec = spec_of(module)
    started = time.monotonic()
    code, report = await fuzz(spec, settings_factory(spec.name, clock="manual"), tmp_path)
    elapsed = time.monotonic() - started
    print(f"\n{spec.name} on {backend_name()}: fuzzed in {elapsed:.1f} s\n{report[-3000:]}")
    assert code == 0, f"schemathesis found problems in {spec.name}:\n{report}"


class Divisor(BaseModel):
    """The body of the deliberately broken route."""

    by: int


def _broken_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/broken")

    @router.post("/divide")
    async def divide(body: Divisor, _tenant: Tenant) -> dict[str, float]:
        return {"result": 100 / body.by}  # 0 is a ZeroDivisionError: a 500

    return router


async def test_the_fuzz_run_fails_on_a_server_error(settings_factory: Any, tmp_path: Path) -> None:
    """The harness itself: keys, checks and exit code catch a route that can 500."""
    spec = ledger_spec(_broken_routes(), name="broken-svc")
    code, report = await fuzz(spec, settings_factory("broken-svc", clock="manual"), tmp_path)
    assert code != 0, report
    assert "POST /v1/broken/divide" in report
    assert "Server error" in report, report


# -- the rules the documents rely on, checked directly --------------------------------------

# JSON Schema 2020-12 keywords (core, applicator, validation, unevaluated, format,
# content, meta-data) plus what OpenAPI 3.1 adds to a Schema Object.
SCHEMA_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor",
    "$vocabulary", "$comment", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "dependentSchemas", "prefixItems", "items", "contains", "properties",
    "patternProperties", "additionalProperties", "propertyNames", "unevaluatedItems",
    "unevaluatedProperties", "type", "enum", "const", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties",
    "minProperties", "required", "dependentRequired", "format", "contentEncoding",
    "contentMediaType", "contentSchema", "title", "description", "default", "deprecated",
    "readOnly", "writeOnly", "examples", "discriminator", "xml", "externalDocs", "example",
}  # fmt: skip
_SUBSCHEMA = {"not", "if", "then", "else", "items", "contains", "additionalProperties",
              "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}  # fmt: skip
_SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_SUBSCHEMA_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}


def schema_keywords(schema: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every (location, keyword) used in ``schema`` and its subschemas."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield where, key
        if key in _SUBSCHEMA:
            yield from schema_keywords(value, f"{where}/{key}")
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for index, item in enumerate(value):
                yield from schema_keywords(item, f"{where}/{key}/{index}")
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, item in value.items():
                yield from schema_keywords(item, f"{where}/{key}/{name}")


def schemas_of(document: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every schema of an OpenAPI document: components, parameters, bodies, responses."""
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        yield f"components/{name}", schema
    for path, item in document["paths"].items():
        for method, operation in item.items():
            here = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                yield f"{here} {parameter['in']}.{parameter['name']}", parameter.get("schema")
            bodies = [("body", operation.get("requestBody", {}))] + [
                (f"response {status}", response)
                for status, response in operation.get("responses", {}).items()
            ]
            for label, body in bodies:
                for media_type, content in body.get("content", {}).items():
                    yield f"{here} {label} {media_type}", content.get("schema")


def document_of(module: str, settings_factory: Any) -> dict[str, Any]:
    """The OpenAPI document a service serves, with the manual clock's admin routes."""
    spec = spec_of(module)
    document: dict[str, Any] = create_app(
        spec, settings_factory(spec.name, clock="manual")
    ).openapi()
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in ``document``."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


@pytest.mark.parametrize("module", SERVICE_PARAMS)
async def test_documents_use_only_json_schema_keywords(module: str, settings_factory: Any) -> None:
    document = document_of(module, settings_factory)
    found = [
        f"{where}: {keyword}"
        for label, schema in schemas_of(document)
        for where, keyword in schema_keywords(schema, label)
        if keyword not in SCHEMA_KEYWORDS
    ]
    assert found == []


@pytest.mark.parametrize("module", SERVICE_PARAMS)
async def test_documents_describe_keys_and_problems(module: str, settings_factory: Any) -> None:
    document = document_of(module, settings_factory)
    schemes = document["components"].get("securitySchemes", {})
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert PROBLEM_SCHEMA in document["components"]["schemas"]
    for method, path, operation in operations(document):
        responses = operation["responses"]
        label = f"{method.upper()} {path}"
        expected = {"500"}
        if path.startswith("/v1/webhooks/"):
            # Processors sign their notices; they have no key of ours.
            assert operation["security"] == [{SIGNATURE_SCHEME: []}], label
            assert schemes[SIGNATURE_SCHEME]["type"] == "apiKey"
            assert schemes[SIGNATURE_SCHEME]["name"] == "Dunning-Signature"
            expected |= {"401", "503"}
            if method in ("post", "put", "patch", "delete"):
                expected.add("409")
        elif path.startswith("/v1/"):
            scheme = ADMIN_SCHEME if path.startswith("/v1/admin/") else TENANT_SCHEME
            assert operation["security"] == [{scheme: []}], label
            assert schemes[scheme] == {**schemes[scheme], "type": "http", "scheme": "bearer"}
            expected |= {"401", "403"} if scheme == ADMIN_SCHEME else {"401", "429"}
            expected.add("503")  # a database or bus that is away
            if method in ("post", "put", "patch", "delete"):
                expected.add("409")
        else:
            assert "security" not in operation, label
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "422"}
        for status, response in responses.items():
            headers = set(response["headers"])
            assert "X-Content-Type-Options" in headers, f"{label} {status}"
            assert ("Cache-Control" in headers) == path.startswith("/v1/"), f"{label} {status}"
            assert ("WWW-Authenticate" in headers) == (status == "401"), f"{label} {status}"
            if status[0] in "45":
                assert list(response["content"]) == [PROBLEM_JSON], f"{label} {status}"
                schema = response["content"][PROBLEM_JSON]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}
        assert expected <= set(responses), f"{label} lacks {sorted(expected - set(responses))}"


@pytest.mark.parametrize("module", SERVICE_PARAMS)
async def test_an_unsupported_method_is_a_405_listing_every_method_of_the_path(
    module: str, settings_factory: Any
) -> None:
    spec = spec_of(module)
    settings = settings_factory(spec.name, clock="manual")
    tenant = {"Authorization": f"Bearer {next(iter(settings.api_keys))}"}
    admin = {"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"}
    app = create_app(spec, settings)
    document = app.openapi()
    async with running(app) as client:
        for path, item in document["paths"].items():
            url = path.replace("{", "").replace("}", "")  # any value stands for a parameter
            headers = admin if path.startswith("/v1/admin/") else tenant
            documented = {method.upper() for method in item if method in HTTP_METHODS}
            for method in ("OPTIONS", "DELETE", "PATCH"):
                if method in documented:
                    continue
                response = await client.request(method, url, headers=headers)
                assert response.status_code == 405, f"{method} {path}: {response.text}"
                assert response.headers["content-type"] == PROBLEM_JSON
                allowed = {m.strip() for m in response.headers["allow"].split(",")}
                assert allowed - {"HEAD"} == documented, f"{method} {path}"
                assert response.json()["status"] == 405


# -- money schemas refuse exactly what validation refuses -----------------------------------

_CURRENCY = jsonschema_rs.validator_for(TypeAdapter(Currency).json_schema())


@pytest.mark.parametrize("code", ["AAA", "eur", "EURO", "XAU", "XXX", "", "ANG"])
def test_the_currency_schema_refuses_what_validation_refuses(code: str) -> None:
    assert not _CURRENCY.is_valid(code)
    with pytest.raises(ValidationError):
        TypeAdapter(Currency).validate_python(code)


@pytest.mark.parametrize("code", ["EUR", "JPY", "BHD", "CLF", "USD"])
def test_the_currency_schema_accepts_what_validation_accepts(code: str) -> None:
    assert _CURRENCY.is_valid(code)
    assert TypeAdapter(Currency).validate_python(code) == code


_DECIMAL_TEXT = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,17}(\.[0-9]{1,13})?\Z"),
    st.sampled_from(["0", "0.00", "-0", "00", "100", "100.00", "100.01", "0.001", "1e3", ""]),
)


@pytest.mark.parametrize("annotated", [PositiveAmount, Percent], ids=["PositiveAmount", "Percent"])
@given(text=_DECIMAL_TEXT)
def test_amount_schemas_accept_exactly_what_validation_accepts(annotated: Any, text: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(annotated)
    schema_says = jsonschema_rs.validator_for(adapter.json_schema()).is_valid(text)
    try:
        adapter.validate_python(text)
        accepted = True
    except ValidationError:
        accepted = False
    assert schema_says == accepted, f"{text!r}: schema {schema_says}, validation {accepted}"


def test_positive_money_schema_refuses_zero_and_unknown_currencies() -> None:
    validator = jsonschema_rs.validator_for(TypeAdapter(PositiveMoney).json_schema())
    assert validator.is_valid({"currency": "EUR", "amount": "0.01"})
    assert not validator.is_valid({"currency": "EUR", "amount": "0"})
    assert not validator.is_valid({"currency": "EUR", "amount": "0.00"})
    assert not validator.is_valid({"currency": "AAA", "amount": "1.00"})


def test_the_bounded_day_schema_refuses_what_validation_refuses() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(BoundedDay)
    validator = jsonschema_rs.validator_for(adapter.json_schema())
    inside = [MIN_DAY, MAX_DAY, date(2026, 2, 28)]
    outside = [MIN_DAY - timedelta(days=1), MAX_DAY + timedelta(days=1), date(9999, 12, 31)]
    for day in inside:
        assert validator.is_valid(day.isoformat()), day
        adapter.validate_python(day.isoformat())
    for day in outside:
        assert not validator.is_valid(day.isoformat()), day
        with pytest.raises(ValidationError):
            adapter.validate_python(day.isoformat())
