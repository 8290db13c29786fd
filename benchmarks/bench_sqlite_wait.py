"""CPU a SQLite store's task spends waiting for another process's write lock (issue 15).

A second process takes the write lock (``BEGIN IMMEDIATE``) and holds it for
``hold`` seconds; meanwhile this process's task runs a one-statement
transaction, which waits for the lock. Reported per wait: this process's CPU
(all its threads, ``time.process_time``) and wall time, medians over the
tries, for a task alone in its process (``alone``) and for one with a second
task beside it (``beside``: a task asleep, so the store takes the path that
never blocks the loop). The baseline row is the same transaction with no one
holding the lock.

    PYTHONPATH=src python benchmarks/bench_sqlite_wait.py [--tries 40]

Run it with two ``PYTHONPATH``s (two checkouts) to compare versions.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatsvg_core.storage.sqlite import SQLiteStore

HOLDS = (0.0005, 0.002, 0.01, 0.04, 0.15)


def holder(path: str, orders: Any, held: Any) -> None:
    """The other process: on each order, take the lock, say so, hold it, release it."""
    conn = sqlite3.connect(path, isolation_level=None)
    while (hold := orders.get()) is not None:
        conn.execute("BEGIN IMMEDIATE")
        held.put(True)
        time.sleep(hold)
        conn.execute("COMMIT")
    conn.close()


async def measure(
    store: SQLiteStore, orders: Any, held: Any, hold: float | None, tries: int
) -> tuple[float, float]:
    cpus, walls = [], []
    for _ in range(tries):
        if hold is not None:
            orders.put(hold)
            held.get()
        cpu, wall = time.process_time(), time.perf_counter()
        async with store.transaction() as tx:
            await tx._one("SELECT 1")
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
        if hold is not None:
            await asyncio.sleep(max(0.0, hold - walls[-1]) + 0.002)  # the holder has let go
    return statistics.median(cpus), statistics.median(walls)


async def main(tries: int) -> None:
    path = str(Path(tempfile.mkdtemp()) / "wait.db")
    store = await SQLiteStore.open(path)
    ctx = mp.get_context("spawn")
    orders, held = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=holder, args=(path, orders, held))
    proc.start()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}, {tries} tries")
    print("| lock held by the other process | task | CPU µs per transaction | wall ms |")
    print("| --- | --- | --- | --- |")
    try:
        for hold in (None, *HOLDS):
            for task in ("alone", "beside"):
                other = asyncio.create_task(asyncio.sleep(3600)) if task == "beside" else None
                n = tries if hold is None or hold < 0.05 else max(5, tries // 4)
                cpu, wall = await measure(store, orders, held, hold, n)
                if other is not None:
                    other.cancel()
                    await asyncio.gather(other, return_exceptions=True)
                label = "nobody (baseline)" if hold is None else f"{hold * 1000:g} ms"
                print(f"| {label} | {task} | {cpu * 1e6:.0f} | {wall * 1000:.2f} |", flush=True)
    finally:
        orders.put(None)
        proc.join()
        await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=40)
    asyncio.run(main(parser.parse_args().tries))
