"""Instructions per job, engine beside hand-written SQL, on SQLite (load-independent).

Runs one process of each side under valgrind's callgrind, counting only the
measured jobs: ``--jobs`` jobs of one owner (submitted with idempotency keys,
then drained with ``process_next``, as ``bench_floor.py`` does), after 50
warm-up jobs of another owner, so the daily-usage scan sees only the measured
owner's charges. Counting is switched on and off around them with
``callgrind_control``, so setup, imports and the warm-up are not counted. Both
sides use ``synchronous=FULL`` (``BENCH_SQLITE_SYNCHRONOUS`` overrides).

    python benchmarks/bench_floor_instructions.py [--jobs 200]

Needs ``valgrind`` (with ``callgrind_control``) on PATH; takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_floor as bf

WARM_UP = 50


def _toggle(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


def _measure(kind: str, jobs: int) -> None:
    """The child's side: one measured share, counting toggled around it."""
    path = str(Path(tempfile.mkdtemp()) / "bench.db")
    asyncio.run(bf.prepare("sqlite", path, None, 2, 10 * (jobs + WARM_UP)))
    if kind == "floor":
        bf.floor_sqlite(path, 1, WARM_UP)
        _toggle(True)
        done = bf.floor_sqlite(path, 0, jobs)
        _toggle(False)
        assert done == jobs, done
        return

    async def engine() -> None:
        store = await bf.open_store("sqlite", path, None)
        engine = bf.Engine(store, None, bf.InstantProvider(), daily_cap=bf.CAP, lease=bf.LEASE)

        async def share(owner: str, tag: str, n: int) -> int:
            for i in range(n):
                await engine.submit(owner, f"{tag}-{i}", {"prompt": f"a cat {tag}-{i}"})
            done = 0
            while await engine.process_next("w0") is not None:
                done += 1
            return done

        await share(bf.owner_of(1), "warm", WARM_UP)
        _toggle(True)
        done = await share(bf.owner_of(0), "run", jobs)
        _toggle(False)
        await store.aclose()
        assert done == jobs, done

    asyncio.run(engine())


def _count(kind: str, jobs: int) -> int:
    """Instructions callgrind counted for one side's measured jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                kind,
                "--jobs",
                str(jobs),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no callgrind total in:\n{out.stderr[-2000:]}")
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--child", choices=["floor", "engine"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure(args.child, args.jobs)
        return
    counts = {kind: _count(kind, args.jobs) / args.jobs for kind in ("floor", "engine")}
    print(f"# SQLite synchronous={bf.SYNCHRONOUS}, {args.jobs} jobs, load {os.getloadavg()[0]:.1f}")
    print("| floor instructions/job | engine instructions/job | engine ÷ floor |")
    print("| --- | --- | --- |")
    print(
        f"| {counts['floor'] / 1e6:.2f} M | {counts['engine'] / 1e6:.2f} M | "
        f"{counts['engine'] / counts['floor']:.2f}x |"
    )


if __name__ == "__main__":
    main()
