"""Celery workers on real brokers under chaos: jobs, SIGKILLs, outages and violations.

Runs the harness of ``tests/queues/_celery_chaos.py``: Celery worker processes
(gevent pool) and two beats on a redis-server of the run's own (killed and
restarted mid-run) or on the machine's RabbitMQ behind a TCP proxy the run
cuts; random workers SIGKILLed and restarted; the workers' PostgreSQL
connections terminated once; a provider with transient faults, permanent
faults and stalls past the lease. Prints one line per run for
``benchmarks/README.md``.

    python benchmarks/celery_chaos.py [--broker redis|amqp|both] [--jobs 1000] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._celery_chaos import celery_chaos


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--amqp", default=os.environ.get("CHATSVG_TEST_AMQP_URL"))
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--faults", default="0.10,0.03,0.02", help="transient,permanent,hang")
    parser.add_argument("--give-up-after", type=float, default=900.0)
    args = parser.parse_args()
    if not args.postgres:
        parser.error("--postgres (or CHATSVG_TEST_POSTGRES_URL) is required")
    brokers = ["redis", "amqp"] if args.broker == "both" else [args.broker]
    faults = tuple(float(x) for x in args.faults.split(","))
    print(
        "| broker | seed | jobs | workers x threads | SIGKILLs | broker outages | "
        "PG backends terminated | lease lost (late writes refused) | succeeded | failed | "
        "violations | seconds | submit messages |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in range(1, args.runs + 1):
        for broker in brokers:
            r = await celery_chaos(
                broker=broker,
                postgres_url=args.postgres,
                amqp_url=args.amqp or "amqp://guest:guest@127.0.0.1:5672//",
                jobs=args.jobs,
                workers=args.workers,
                concurrency=args.concurrency,
                seed=seed,
                kill_every=args.kill_every,
                faults=faults,  # type: ignore[arg-type]
                give_up_after=args.give_up_after,
            )
            print(
                f"| {broker} | {seed} | {r.jobs} | {r.workers} x {r.concurrency} | {r.kills} | "
                f"{r.broker_outages} | {r.db_terminations} | {r.lease_lost} | "
                f"{r.statuses.get('succeeded', 0)} | {r.statuses.get('failed', 0)} | "
                f"{len(r.violations)} {r.violations[:3] or ''} | {r.seconds:.0f} | "
                f"{r.messages} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
