"""Partition runs in the spirit of Jepsen: many jobs, several cuts, and the violations found.

Runs ``tests/queues/_partition.py``'s harness: worker processes in network
namespaces of the run's own, joined by veth pairs to a bridge on which the
run starts its own PostgreSQL cluster (``initdb`` + ``postgres``) and
redis-server. Several times during the run, a worker that holds RUNNING jobs
is cut off (its link taken down: packets dropped, connections stalled) until
every job it held has been claimed by a worker on the other side; then the
link heals. At the end every job must be terminal, completed once by the
attempt the store kept, each cut-off attempt reported refused (LEASE_LOST)
by the worker that lost it, one charge per job, no refund, and balances
equal to their entries. Prints one line per run for benchmarks/README.md.

    sudo python benchmarks/partition.py [--jobs 300] [--workers 3] [--cuts 6]
        [--kinds arq,procrastinate,next] [--runs 1]

Needs root, ``ip`` (iproute2), PostgreSQL's server binaries and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._partition import missing, partition

HEADER = (
    "| kind | seed | jobs | workers | cuts | longest cut (s) | jobs held when cut | taken over "
    "| late writes refused | lost attempts that died with their connection "
    "| succeeded | failed | charges | refunds | violations | seconds |"
)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--cuts", type=int, default=6)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--call-seconds", type=float, default=2.0)
    # Few slots per worker, so the jobs last through every cut.
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kinds", default="arq,procrastinate,next")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    reason = missing()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    print(f"load before: {os.getloadavg()}")
    print(HEADER)
    print("|---" * 16 + "|")
    for seed in range(1, args.runs + 1):
        for kind in args.kinds.split(","):
            r = await partition(
                kind,
                jobs=args.jobs,
                workers=args.workers,
                cuts=args.cuts,
                lease=args.lease,
                call_seconds=args.call_seconds,
                concurrency=args.concurrency,
                seed=seed,
                give_up_after=600,
            )
            held = sum(len(c["held"]) for c in r.cut_log)
            longest = max((c["seconds"] for c in r.cut_log), default=0.0)
            print(
                f"| {kind} | {seed} | {r.jobs} | {r.workers} | {r.cuts} | {longest:.1f} | {held} "
                f"| {r.taken_over} | {r.stale_writes_refused} | {r.stale_attempts_without_write} "
                f"| {r.statuses.get('succeeded', 0)} | {r.statuses.get('failed', 0)} "
                f"| {r.charges} | {r.refunds} | {len(r.violations)} | {r.seconds:.0f} |",
                flush=True,
            )
            for c in r.cut_log:
                print(
                    f"  cut {c['worker']}: held {len(c['held'])}, "
                    f"taken over {len(c['taken_over'])} in {c['seconds']} s"
                )
            if r.queue_rows_left:
                print(f"  Procrastinate rows left at the end: {r.queue_rows_left}")
            for v in r.violations[:20]:
                print(f"  violation: {v}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
