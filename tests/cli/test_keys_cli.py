"""``dunning keys`` end to end against a served invoice-svc: create (the key printed once,
alone on stdout), list (never a key), rotate with an overlap, revoke; and the exit codes
(1: no such key or one that cannot be rotated; 2: a wrong argument or a refused call)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import unittest.mock
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dunning_cli.main import main
from dunning_runtime.app import create_app
from invoice_svc.main import SPEC
from tests.support.fixtures import ADMIN_KEY, running
from tests.support.serving import serving
from tests.test_stack import free_base_port


def command(*args: str, stdin: str = "") -> Result:
    """``dunning ARGS`` in this process, its output captured. (Not capsys: a service
    started under it would log to its stream after the fixture closed it.)"""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        unittest.mock.patch("sys.stdin", io.StringIO(stdin)),
    ):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Command:
    """``dunning keys ...`` in this process (a subprocess each time took 3 s to import),
    in a thread: the service runs in this event loop, and the command runs its own."""

    def __init__(self, base: int, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in {
            "DUNNING_BASE_PORT": str(base),
            "DUNNING_HOST": "127.0.0.1",
            "COLUMNS": "200",
        }.items():
            monkeypatch.setenv(name, value)
        self.monkeypatch = monkeypatch

    async def __call__(self, *args: str, admin_key: str = ADMIN_KEY) -> Result:
        self.monkeypatch.setenv("DUNNING_ADMIN_KEY", admin_key)
        return await asyncio.to_thread(command, "keys", *args)


async def status_with(url: str, key: str) -> int:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/v1/invoices", headers={"Authorization": f"Bearer {key}"})
        return answer.status_code


async def test_keys_create_list_rotate_revoke(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = free_base_port()
    run = Command(base, monkeypatch)
    app = create_app(SPEC, settings_factory(SPEC.name, key_pepper="cli-pepper"))
    async with serving(app, port=base) as url:
        created = await run("create", "--tenant", "acme")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert key.startswith("dk_") and "\n" not in key
        assert "store it now" in created.stderr and key not in created.stderr
        assert await status_with(url, key) == 200
        key_id = key.split("_")[1]

        admin = await run("create", "--admin", "--expires-in", "1d")
        assert admin.returncode == 0, admin.stderr
        admin_key = admin.stdout.strip()
        # The managed admin key drives the command too.
        listed = await run("list", admin_key=admin_key)
        assert listed.returncode == 0, listed.stderr
        assert key_id in listed.stdout and "tenant acme" in listed.stdout
        assert "expiring" in listed.stdout and "active" in listed.stdout
        assert key not in listed.stdout and admin_key not in listed.stdout

        rotated = await run("rotate", key_id, "--overlap", "1h")
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip()
        assert new.startswith("dk_") and new != key
        assert f"Key {key_id} works until" in rotated.stderr
        assert await status_with(url, new) == await status_with(url, key) == 200

        revoked = await run("revoke", new.split("_")[1])
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked key" in revoked.stdout
        # The service that took the call refuses it at once.
        assert await status_with(url, new) == 401

        # Exit 1: the command ran, the key is missing or no longer usable.
        missing = await run("revoke", "0123456789abcdef")
        assert missing.returncode == 1 and "No managed key" in missing.stderr
        gone = await run("rotate", new.split("_")[1])
        assert gone.returncode == 1 and "revoked" in gone.stderr
        # Exit 2: refused input (named), a wrong admin key, a wrong argument.
        bad = await run("create", "--tenant", "no spaces")
        assert bad.returncode == 2 and "body.tenant" in bad.stderr
        wrong = await run("list", admin_key="not-the-admin-key")
        assert wrong.returncode == 2 and "401" in wrong.stderr
        both = await run("create", "--tenant", "acme", "--admin")
        assert both.returncode == 2 and "exactly one of --tenant and --admin" in both.stderr
        for result in (missing, gone, bad, wrong, both):
            assert "Traceback" not in result.stderr


async def test_keys_hash_prints_the_stored_form_the_services_accept(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUNNING_KEY_PEPPER", "cli-pepper")
    hashed = command("keys", "hash", stdin="plain-acme-key\n")
    assert hashed.returncode == 0, hashed.stderr
    stored = hashed.stdout.strip()
    assert stored.startswith("hmac-sha256:") and "plain-acme-key" not in stored
    stored_admin = command("keys", "hash", stdin="plain-admin-key\n").stdout.strip()
    assert command("keys", "hash").returncode == 2  # nothing on stdin
    settings = settings_factory(
        SPEC.name,
        key_pepper="cli-pepper",
        api_keys=f"acme:{stored}",
        admin_key=stored_admin,
    )
    async with running(create_app(SPEC, settings)) as client:

        async def status(key: str, path: str = "/v1/invoices") -> int:
            answer = await client.get(path, headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

        assert await status("plain-acme-key") == 200
        assert await status(stored) == 401  # the stored form is not a key
        assert await status("plain-admin-key", "/v1/admin/keys") == 200
        assert await status(stored_admin, "/v1/admin/keys") == 401
        assert await status("plain-acme-key", "/v1/admin/keys") == 403
