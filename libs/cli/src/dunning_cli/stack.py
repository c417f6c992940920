"""``make run``: the whole platform on one machine, on the embedded defaults.

Starts the four services as child processes on ports ``DUNNING_BASE_PORT`` ..
+3 (default 8001-8004; ``--base-port`` overrides it), data in ``./var``, and on
Ctrl-C or SIGTERM stops them all cleanly. Every log line names its service.
Without ``DUNNING_API_KEYS`` or ``DUNNING_ADMIN_KEY`` it uses development keys
and prints them; without ``DUNNING_CLOCK`` it uses the manual clock (so that
``dunning clock advance`` and ``dunning demo`` can move time) and says so:
``DUNNING_CLOCK=system`` gives wall-clock time. ``dunning up`` runs this;
``dunning-stack`` is the same command under its older name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType

#: In port order (``SERVICE_ORDER``): each listens on the base port + its index.
SERVICES = [
    ("invoice-svc", "invoice_svc.main"),
    ("payment-svc", "payment_svc.main"),
    ("dunning-svc", "dunning_svc.main"),
    ("notify-svc", "notify_svc.main"),
]
DEV_KEYS = "demo:demo-key"
DEV_ADMIN_KEY = "dev-admin-key"
DEV_CLOCK = "manual"


def _wait_healthy(port: int, host: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> None:
    """The ``dunning-stack`` console script (``dunning up`` under its older name)."""
    import argparse

    parser = argparse.ArgumentParser(prog="dunning-stack", description=__doc__)
    parser.add_argument(
        "--base-port",
        type=int,
        default=0,
        help="give the services ports base .. base+3 (default: DUNNING_BASE_PORT, else 8001)",
    )
    args = parser.parse_args(argv)
    sys.exit(run(args.base_port))


def run(base_port_option: int = 0) -> int:
    """Run every service until interrupted; the exit code (0 after a clean stop)."""
    from dunning_runtime.settings import load_settings

    env = dict(os.environ)
    overrides = {"base_port": base_port_option} if base_port_option else {}
    # Validates DUNNING_BASE_PORT (and the rest) before any child starts.
    base_port = load_settings("stack", **overrides).base_port
    env["DUNNING_BASE_PORT"] = str(base_port)
    if not env.get("DUNNING_API_KEYS"):
        env["DUNNING_API_KEYS"] = DEV_KEYS
        print(f"DUNNING_API_KEYS not set: using the development key ({DEV_KEYS})", flush=True)
    if not env.get("DUNNING_ADMIN_KEY"):
        env["DUNNING_ADMIN_KEY"] = DEV_ADMIN_KEY
        print(
            f"DUNNING_ADMIN_KEY not set: using the development admin key ({DEV_ADMIN_KEY})",
            flush=True,
        )
    if not env.get("DUNNING_CLOCK"):
        env["DUNNING_CLOCK"] = DEV_CLOCK
        print(
            "DUNNING_CLOCK not set: using the manual clock (move it with `dunning clock "
            "advance 1d`); DUNNING_CLOCK=system gives wall-clock time",
            flush=True,
        )
    children: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(_signum: int = 0, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping the platform ...", flush=True)
        for _, _, proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, _, proc in children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it")
                proc.kill()
        print("stopped.")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # One DUNNING_PORT for four services makes no sense: each gets its own.
    env.pop("DUNNING_PORT", None)
    for index, (name, module) in enumerate(SERVICES):
        child_env = dict(env)
        child_env["DUNNING_PORT"] = str(base_port + index)
        settings = load_settings(name, port=base_port + index)
        # start_new_session: Ctrl-C reaches only us; we stop the children in order.
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=child_env, start_new_session=True
        )
        children.append((name, settings.port, proc))
    deadline = time.monotonic() + 60
    for name, port, proc in children:
        host = os.environ.get("DUNNING_HOST", "127.0.0.1")
        if _wait_healthy(port, "127.0.0.1" if host == "0.0.0.0" else host, deadline):  # noqa: S104
            print(f"  {name:<12} http://{host}:{port}  (docs: /docs)", flush=True)
        else:
            print(f"  {name} did not become healthy (exit code {proc.poll()})", flush=True)
            stop()
            return 1
    print("platform up; Ctrl-C stops it.", flush=True)
    while not stopping:
        for name, _, proc in children:
            if proc.poll() is not None and not stopping:
                print(f"{name} exited with code {proc.returncode}; stopping the rest")
                stop()
                return 1
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    main()
