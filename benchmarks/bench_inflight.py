"""Many generations in flight in ONE worker process, per queue adapter.

A provider that awaits ``--call`` seconds per call; ``--jobs`` jobs submitted,
then announced at once; one worker process (the built-in in-process queue fed
by a store sweep, arq, Procrastinate) on PostgreSQL with ``--lease`` second
leases. Reports the peak of model calls in flight, leases lost, lease-upkeep
statements (heartbeat rounds: one statement each, for all the leases the
process holds) per job, and the worker's CPU time over the run's wall time.

    python benchmarks/bench_inflight.py [--jobs 500] [--call 10] [--lease 30]
        [--kinds inprocess,arq,procrastinate]

Needs CHATSVG_TEST_POSTGRES_URL (and CHATSVG_TEST_REDIS_URL for arq; db 5 is used).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._fleet import inflight
from tests.queues._support import redis_db


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--call", type=float, default=10.0)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--kinds", default="inprocess,arq,procrastinate")
    args = parser.parse_args()
    postgres = os.environ["CHATSVG_TEST_POSTGRES_URL"]
    redis = redis_db(os.environ.get("CHATSVG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), 5)
    print(f"load before: {os.getloadavg()}")
    print(
        "| worker | jobs | call s | lease s | peak in flight | leases lost | heartbeat "
        "statements | statements/job | worker CPU s | wall s | CPU share of a core |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in args.kinds.split(","):
        r = await inflight(
            kind,
            postgres_url=postgres,
            redis_url=redis,
            jobs=args.jobs,
            call_seconds=args.call,
            lease=args.lease,
        )
        print(
            f"| {kind} | {r.jobs} | {r.call_seconds:g} | {r.lease:g} | {r.peak_in_flight} "
            f"| {r.lease_lost} | {r.keeper_rounds} | {r.lease_statements_per_job:.3f} "
            f"| {r.worker_cpu_seconds:.1f} | {r.run_seconds:.1f} | {r.cpu_share:.2f} |",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
