"""Every route of every service, from its own OpenAPI document, against every key.

Nothing is listed by hand: the operations come from each service's ``/openapi.json``,
so a route added tomorrow is probed tomorrow. Per operation:

- under ``/v1``: 401 problem+json (with ``WWW-Authenticate: Bearer``) without a key and
  with a wrong key; a signed webhook refuses a request without a valid signature;
- under ``/v1/admin``: 403 problem+json for a tenant's key;
- tenant routes with a path parameter: as ``globex``, with ``acme``'s id (and acme's
  Idempotency-Key and body for a write) the answer is exactly globex's answer for an id
  nobody has (same status, same body once the id is replaced), and it carries none of
  acme's data; afterwards acme reads every resource as it was;
- tenant writes without a path parameter: globex sending acme's very request (same ids,
  same Idempotency-Key) gets what acme got the first time, a creation of its own, not a
  conflict or a replay of acme's answer.

A path parameter the scenario has no acme id for fails the test: extend the scenario
(conftest.py) when a new resource type appears.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.security.conftest import (
    ACCOUNT,
    ACCOUNT_NAME,
    PERSONAL,
    TEMPLATE_MARKER,
    SecurityRun,
)
from tests.support.platform import KEEPALIVE

#: What no answer to globex may contain: acme's data, whichever route leaks it.
ACME_ONLY = (ACCOUNT, ACCOUNT_NAME, TEMPLATE_MARKER, *PERSONAL)
#: Per path parameter, an id nobody has, the same for the whole run (so that it sees the
#: same requests as acme's id); template keys and providers exist for every tenant.
_NONCE = uuid.uuid4().hex[:8]
ABSENT: dict[str, str] = defaultdict(
    lambda: f"absent-{_NONCE}",
    key="zz_absent.en",
    address=f"nobody-{_NONCE}@example.org",
    provider=f"absent{_NONCE}",
)
WRITES = ("post", "put", "patch", "delete")
_PARAMETER = re.compile(r"\{([^/{}:]+)\}")


@dataclass(frozen=True)
class Operation:
    """One documented operation of one service."""

    service: str
    method: str
    path: str
    spec: dict[str, Any]
    components: dict[str, Any]

    @property
    def scheme(self) -> str:
        """The security scheme the document gives it ('' when none)."""
        security = self.spec.get("security") or [{}]
        return next(iter(security[0]), "")

    @property
    def parameters(self) -> list[str]:
        """Names of its path parameters, in order."""
        return _PARAMETER.findall(self.path)

    def __str__(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"


def operations(run: SecurityRun) -> Iterator[Operation]:
    """Every operation of every service, read from the running service's document."""
    with httpx.Client(timeout=30) as client:
        for service in run.platform.services:
            document = client.get(f"{run.platform.url(service)}/openapi.json").json()
            for path, item in document["paths"].items():
                for method, spec in item.items():
                    if method in ("get", *WRITES):
                        yield Operation(service, method, path, spec, document["components"])


def tenant_client(run: SecurityRun, tenant: str) -> dict[str, httpx.Client]:
    """Per service, a client with ``tenant``'s key (closed with the platform's)."""
    clients = {}
    for service in run.platform.services:
        client = httpx.Client(
            base_url=run.platform.url(service),
            headers={"Authorization": f"Bearer {run.tenant_keys[tenant]}"},
            timeout=30,
            limits=KEEPALIVE,
        )
        run.closing.append(client)
        clients[service] = client
    return clients


def fill(path: str, values: dict[str, str]) -> str:
    """``path`` with each parameter replaced by its value."""
    return _PARAMETER.sub(lambda m: values[m.group(1)], path)


def is_problem(response: httpx.Response, status: int) -> bool:
    """Whether ``response`` is a problem+json with ``status``."""
    return (
        response.status_code == status
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.json().get("status") == status
    )


def example_body(operation: Operation) -> Any:
    """A valid body for an operation acme did not call: its schema's first example, or
    nothing when the body is optional."""
    body = operation.spec.get("requestBody")
    if body is None:
        return None
    schema = body["content"]["application/json"]["schema"]
    if any(option.get("type") == "null" for option in schema.get("anyOf", [])):
        return None  # the body is optional: none is valid
    refs = [schema.get("$ref"), *(o.get("$ref") for o in schema.get("anyOf", []))]
    ref = next((r for r in refs if r), None)
    named = operation.components["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema
    if "examples" in named:
        return named["examples"][0]
    return {"reason": "probe"}  # every remaining action body asks for a reason alone


def send(
    client: httpx.Client, operation: Operation, path: str, body: Any, idempotency_key: str
) -> httpx.Response:
    """``operation`` at ``path`` with ``body`` (JSON) and an Idempotency-Key on writes."""
    headers = {"Idempotency-Key": idempotency_key} if operation.method in WRITES else {}
    content = None if body is None else json.dumps(body).encode()
    if content is not None:
        headers["Content-Type"] = "application/json"
    return client.request(operation.method.upper(), path, content=content, headers=headers)


def normalized(response: httpx.Response, ids: list[str]) -> str:
    """The answer's status and body with the probed ids replaced by a placeholder."""
    text = response.text
    for value in ids:
        text = text.replace(value, "{id}")
    return f"{response.status_code} {text}"


def test_every_route_refuses_missing_wrong_and_tenant_keys(security_run: SecurityRun) -> None:
    run = security_run
    probed = 0
    failures: list[str] = []
    tenant_key = run.tenant_keys["globex"]
    with httpx.Client(timeout=30) as client:
        for operation in operations(run):
            if not operation.path.startswith("/v1/"):
                continue
            base = run.platform.url(operation.service)
            # Any value reaches the guard: it answers before routing.
            values = {p: run.scenario.ids.get(p, "probe") for p in operation.parameters}
            path = base + fill(operation.path, values)
            body = example_body(operation)
            if operation.scheme == "webhookSignature":
                answers = {
                    "no signature": send(client, operation, path, body, uuid.uuid4().hex),
                }
                client.headers["Dunning-Signature"] = "t=1,v1=00"
                answers["a wrong signature"] = send(client, operation, path, body, "x")
                del client.headers["Dunning-Signature"]
                for why, answer in answers.items():
                    if not is_problem(answer, 401):
                        failures.append(f"{operation} with {why}: {answer.status_code}")
                probed += 1
                continue
            keys = {"no key": None, "a wrong key": "not-a-key-" + uuid.uuid4().hex}
            for why, key in keys.items():
                client.headers.pop("Authorization", None)
                if key:
                    client.headers["Authorization"] = f"Bearer {key}"
                answer = send(client, operation, path, body, uuid.uuid4().hex)
                if not is_problem(answer, 401) or answer.headers.get("www-authenticate") != (
                    "Bearer"
                ):
                    failures.append(f"{operation} with {why}: {answer.status_code} {answer.text}")
            client.headers.pop("Authorization", None)
            if operation.scheme == "adminKey":
                client.headers["Authorization"] = f"Bearer {tenant_key}"
                answer = send(client, operation, path, body, uuid.uuid4().hex)
                if not is_problem(answer, 403):
                    failures.append(
                        f"{operation} with a tenant key: {answer.status_code} {answer.text}"
                    )
                client.headers.pop("Authorization", None)
            else:
                assert operation.scheme == "tenantKey", f"{operation}: scheme {operation.scheme}"
            probed += 1
    assert not failures, "\n".join(failures)
    assert probed >= 40, f"only {probed} operations documented"


def test_another_tenants_ids_answer_as_missing_ones_and_leak_nothing(
    security_run: SecurityRun,
) -> None:
    run = security_run
    scenario = run.scenario
    tenant_routes = [o for o in operations(run) if o.scheme == "tenantKey"]
    templated = [o for o in tenant_routes if o.parameters]
    unknown = {p for o in templated for p in o.parameters} - set(scenario.ids)
    assert not unknown, f"no acme resource for path parameters {unknown}: extend the scenario"
    acme, globex, initech = (tenant_client(run, t) for t in ("acme", "globex", "initech"))

    def acme_reads() -> dict[str, str]:
        return {
            str(o): send(acme[o.service], o, fill(o.path, scenario.ids), None, "").text
            for o in templated
            if o.method == "get"
        }

    before = acme_reads()
    for operation, text in before.items():
        assert "/problems/" not in text[:80], f"acme cannot read its own {operation}: {text}"

    failures: list[str] = []
    for operation in templated:
        theirs = fill(operation.path, scenario.ids)
        absent = fill(operation.path, ABSENT)
        written = scenario.writes.get((operation.service, operation.method.upper(), theirs))
        body = written.body if written else example_body(operation)
        key = written.idempotency_key if written else uuid.uuid4().hex
        # globex and initech (which never wrote anything else either) send the same
        # requests in the same order: what globex sees may not depend on acme's data.
        probe = send(globex[operation.service], operation, theirs, body, key)
        unaware = send(initech[operation.service], operation, theirs, body, key)
        missing_key = uuid.uuid4().hex
        missing = send(globex[operation.service], operation, absent, body, missing_key)
        send(initech[operation.service], operation, absent, body, missing_key)
        seen = normalized(probe, [scenario.ids[p] for p in operation.parameters])
        if seen != normalized(unaware, [scenario.ids[p] for p in operation.parameters]):
            failures.append(
                f"{operation}: globex with acme's id got {seen[:400]}\n"
                f"    a tenant without acme's data got {unaware.status_code} {unaware.text[:400]}"
            )
        expected = normalized(missing, [ABSENT[p] for p in operation.parameters])
        if probe.status_code >= 400 and seen != expected:
            failures.append(
                f"{operation}: acme's id answers {seen[:400]}\n"
                f"    an absent id answers {expected[:400]}"
            )
        sent = json.dumps(body)
        leaked = [m for m in ACME_ONLY if m in seen and m not in sent]
        if leaked:
            failures.append(f"{operation}: globex's answer carries acme's {leaked}: {seen[:400]}")
    assert not failures, "\n".join(failures)

    # Nothing globex sent changed anything of acme's.
    run.platform.settle()
    after = acme_reads()
    changed = [o for o in before if before[o] != after[o]]
    assert not changed, f"globex's probes changed acme's {changed}"


def test_another_tenant_reusing_acmes_ids_and_keys_gets_its_own_answer(
    security_run: SecurityRun,
) -> None:
    run = security_run
    scenario = run.scenario
    tenant_writes = [
        o
        for o in operations(run)
        if o.scheme == "tenantKey" and o.method in WRITES and not o.parameters
    ]
    failures: list[str] = []
    for operation in tenant_writes:
        written = scenario.writes.get((operation.service, operation.method.upper(), operation.path))
        assert written, f"the scenario never calls {operation}: extend it"
        globex = run.platform.client("globex", operation.service)
        answer = send(globex, operation, operation.path, written.body, written.idempotency_key)
        if answer.status_code != written.status:
            failures.append(
                f"{operation}: acme got {written.status}, globex with acme's request got "
                f"{answer.status_code}: {answer.text}"
            )
    assert not failures, "\n".join(failures)
