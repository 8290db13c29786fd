"""A longer crash soak than the test suite's: jobs, SIGKILLs and invariant violations.

Runs the harness of ``tests/engine/_crash.py`` (worker processes killed with
SIGKILL at named steps and at random moments, stalls past the lease, transient
provider faults, recovery in the parent) on SQLite and, when a server is given,
PostgreSQL, and prints one line per run for ``benchmarks/README.md``.

    python benchmarks/crash_soak.py [--postgres URL] [--jobs 200] [--workers 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine._crash import Target, soak


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        "| backend | seed | jobs | workers | SIGKILLs (by parent) | succeeded | failed | "
        "violations | seconds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in range(1, args.runs + 1):
        targets = []
        folder = tempfile.mkdtemp()
        from chatsvg_core.storage.sqlite import SQLiteStore

        path = Path(folder) / "soak.db"
        await (await SQLiteStore.open(path)).aclose()
        targets.append(Target("sqlite", str(path)))
        schema = None
        if args.postgres:
            from chatsvg_core.storage.postgres import PostgresStore

            schema = f"chatsvg_soak_{secrets.token_hex(4)}"
            await (await PostgresStore.open(args.postgres, schema=schema)).aclose()
            targets.append(Target("postgres", args.postgres, schema))
        for target in targets:
            r = await soak(
                target, jobs=args.jobs, workers=args.workers, seed=seed, give_up_after=600
            )
            print(
                f"| {r.backend} | {seed} | {r.jobs} | {r.workers} | {r.crashes} ({r.parent_kills}) "
                f"| {r.statuses['succeeded']} | {r.statuses['failed']} | {len(r.violations)} "
                f"| {r.seconds:.0f} |",
                flush=True,
            )
            for v in r.violations:
                print(f"  violation: {v}")
        if schema:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    asyncio.run(main())
