"""Instructions per job executed while the SQLite write lock is held, engine beside the floor.

Counts, under callgrind, only what runs between ``BEGIN IMMEDIATE`` returning
and ``COMMIT`` being sent (the statements and the Python between them): with
several processes on one file, that time holds up every other process
(``bench_floor.py --contention``). One process per side, ``--jobs`` jobs of
one owner after 50 warm-up jobs of another, ``synchronous=FULL``; both sides
send ``BEGIN`` and ``COMMIT`` through ``Connection.execute``, where a
connection subclass switches collection on and off (the helper module of
``bench_floor_regions.py``).

    python benchmarks/bench_floor_locked.py [--jobs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

WARM_UP = 50


def _child(kind: str, jobs: int) -> None:
    import cgtoggle  # type: ignore[import-not-found]  # built by bench_floor_regions._build

    import bench_floor as bf

    counting = [False]

    class Toggled(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if counting[0] and sql == "COMMIT":
                cgtoggle.off()
            cur = super().execute(sql, *args)
            if counting[0] and sql.startswith("BEGIN"):
                cgtoggle.on()
            return cur

    path = str(Path(tempfile.mkdtemp()) / "bench.db")
    asyncio.run(bf.prepare("sqlite", path, None, 2, 10 * (jobs + WARM_UP)))
    original = sqlite3.connect
    sqlite3.connect = lambda *a, **k: original(*a, factory=Toggled, **k)  # type: ignore[assignment]
    if kind == "floor":
        bf.floor_sqlite(path, 1, WARM_UP)
        counting[0] = True
        assert bf.floor_sqlite(path, 0, jobs) == jobs
        return

    async def engine() -> None:
        store = await bf.open_store("sqlite", path, None)
        await bf.engine_share(store, 1, WARM_UP)
        counting[0] = True
        assert await bf.engine_share(store, 0, jobs) == jobs
        counting[0] = False
        await store.aclose()

    asyncio.run(engine())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--child", choices=["floor", "engine"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.jobs)
        return
    from bench_floor_regions import _build

    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        _build(Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [tmp, *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        for kind in ("floor", "engine"):
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", "--collect-atstart=no",
                 f"--callgrind-out-file={tmp}/callgrind.{kind}", sys.executable, __file__,
                 "--child", kind, "--jobs", str(args.jobs)],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            match = re.search(r"Collected : (\d+)", out.stderr)
            if match is None:
                raise RuntimeError(f"no callgrind total in:\n{out.stderr[-2000:]}")
            counts[kind] = int(match[1]) / args.jobs
    print(f"# {args.jobs} jobs, load {os.getloadavg()[0]:.1f}")
    print("| floor instructions/job, lock held | engine | engine ÷ floor |")
    print("| --- | --- | --- |")
    print(
        f"| {counts['floor'] / 1e3:.0f} k | {counts['engine'] / 1e3:.0f} k | "
        f"{counts['engine'] / counts['floor']:.2f}x |"
    )


if __name__ == "__main__":
    main()
