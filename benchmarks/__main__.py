"""``make bench``: every benchmark, on the backends the settings name.

Set DUNNING_BUS_URL / DUNNING_DATABASE_URL for Kafka + PostgreSQL; the default
is the embedded log and SQLite. Figures vary with the machine: compare runs on
the same one. ``--only bus`` or ``--only invoices`` runs one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks import bus, invoices


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--only", choices=["bus", "invoices"])
    parser.add_argument("--events", type=int, default=20_000, help="bus benchmark size")
    parser.add_argument("--invoices", type=int, default=20_000, help="invoice benchmark size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dunning-bench-") as tmp:
        if args.only in (None, "bus"):
            asyncio.run(bus.run(args.events, Path(tmp) / "bus"))
        if args.only in (None, "invoices"):
            asyncio.run(invoices.run(args.invoices, Path(tmp) / "invoices"))


if __name__ == "__main__":
    main()
