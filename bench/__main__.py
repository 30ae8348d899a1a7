"""tsaccess benchmarks: ``nox -s bench`` (or ``python -m bench [--quick] [--json FILE]``).

Every figure is reported against a baseline measured in the same run on the same throwaway
server: audited vs unaudited ingest, pre-flight vs no pre-flight, pool vs plain psycopg. One
module per subject (``--only`` picks one).
"""

from __future__ import annotations

import argparse
import json
import time

from bench.aio import bench_aio
from bench.audit import bench_audit
from bench.chunks import bench_chunks
from bench.common import RESULTS
from bench.connections import bench_connections
from bench.integrity import bench_integrity
from bench.plan import bench_plan
from bench.preflight import bench_preflight
from tsaccess.ephemeral import EphemeralServer

SUBJECTS = {
    "connections": bench_connections,
    "audit": bench_audit,
    "preflight": bench_preflight,
    "plan": bench_plan,
    "async": bench_aio,
    "chunks": bench_chunks,
    "integrity": bench_integrity,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--only", choices=sorted(SUBJECTS))
    args = parser.parse_args()
    t0 = time.perf_counter()
    server = EphemeralServer()
    info = server.start()
    RESULTS["server_start_s"] = time.perf_counter() - t0
    print(
        f"throwaway server: {info.backend}, TimescaleDB {'yes' if info.timescaledb else 'no'},"
        f" started in {RESULTS['server_start_s']:.2f} s"
    )
    try:
        for name, fn in SUBJECTS.items():
            if args.only in (None, name):
                fn(info, args.quick)
    finally:
        server.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
