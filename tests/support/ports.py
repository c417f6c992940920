"""Loopback ports for servers a test starts, picked where nothing else will take them.

A port bound to 0 and released comes from the kernel's ephemeral range, the same range
every outgoing connection (a Kafka client, a database pool, an HTTP call) takes its
local port from. Between the check and the server's own bind, on a busy machine with two
suites side by side, another process's connection could take it (seen: a service of the
e2e platform failing to start on "address already in use"). Ports below the ephemeral
range are never handed out by the kernel, so a port found free there stays free until a
test binds it; tests pick at random, and check, so two of them rarely meet.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Never below this: the well-known and registered ports many daemons use.
_LOWEST = 20000
_picker = random.SystemRandom()


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux), or IANA's 49152."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def _all_free(base: int, size: int) -> bool:
    sockets: list[socket.socket] = []
    try:
        for port in range(base, base + size):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports, below the ephemeral range."""
    highest = _ephemeral_start() - size
    if highest <= _LOWEST:
        raise RuntimeError("the ephemeral port range leaves no room below it for test servers")
    for _ in range(500):
        base = _picker.randrange(_LOWEST, highest)
        if _all_free(base, size):
            return base
    raise RuntimeError(f"no block of {size} free ports found")


def free_port() -> int:
    """One free port, below the ephemeral range."""
    return free_port_block(1)
