"""Full chaos runs of the queue adapters: jobs, SIGKILLs, outages and violations.

Runs ``tests/queues/_fleet.py``'s harness (worker processes of arq or
Procrastinate on PostgreSQL, SIGKILLed at random and restarted; one broker
outage: the run's own redis-server killed and started again empty, or every
worker connection cut with ``pg_terminate_backend`` for a few seconds; a
provider with transient and permanent faults, awaited hangs, and event-loop
blocks past the lease) and prints one line per run for benchmarks/README.md.

    python benchmarks/queue_chaos.py [--jobs 1000] [--workers 4] [--runs 1]
        [--kinds arq,procrastinate]

Needs CHATSVG_TEST_POSTGRES_URL and redis-server on PATH (for arq).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._fleet import ROW_HEADER, chaos


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--kinds", default="arq,procrastinate")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    print(ROW_HEADER)
    for seed in range(1, args.runs + 1):
        for kind in args.kinds.split(","):
            with tempfile.TemporaryDirectory() as folder:
                r = await chaos(
                    kind,
                    postgres_url=os.environ["CHATSVG_TEST_POSTGRES_URL"],
                    jobs=args.jobs,
                    workers=args.workers,
                    seed=seed,
                    kill_every=args.kill_every,
                    give_up_after=1800,
                    workdir=Path(folder),
                )
            print(r.row(), flush=True)
            for v in r.violations[:20]:
                print(f"  violation: {v}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
