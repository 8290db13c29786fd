"""Sanitizer cost beside the lxml floor in instructions (valgrind), not seconds.

On a shared machine the CPU-time ratio of ``bench_sanitize.py`` swings by a
third between runs (the floor alone varies up to 2x from run to run). Instruction
counts do not: the same code on the same input counts the same, whatever else
the machine does. So this is the tool to tell whether a change to the sanitizer
made it cheaper; ``bench_sanitize.py`` stays the measure of the goal, because
instructions are not time: interpreted Python retires fewer instructions per
cycle than libxml2, and on the machines measured so far the time ratio was
about 1.3-1.5x the instruction ratio.

Each number is the difference between a process that sanitizes a document
``1 + k`` times and one that does it once, divided by ``k``: imports, start-up
and the first call (regex compiles, a parser per thread) cancel out. The
garbage collector is off and the hash seed fixed in those processes, so a
collection or a different dict layout cannot land in one count and not the
other.

Run:  python benchmarks/bench_sanitize_instructions.py [--sizes 1000,10000] [--src DIR]
(needs valgrind; about a minute per size on two cores)
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("floor", "warm", "cold")
_COLLECTED = re.compile(rb"Collected : (\d+)")


def child(src: str, size: int, mode: str, calls: int) -> None:
    """Run ``mode`` on a synthetic document ``calls`` times after one warm-up call."""
    sys.path.insert(0, src)
    # Imported from ``src`` before bench_sanitize puts this checkout's src first.
    from chatsvg_core.sanitize import SanitizePolicy, Sanitizer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_sanitize import floor, forget, synthetic_svg

    doc = synthetic_svg(size)
    sanitizer = Sanitizer(SanitizePolicy.default())
    gc.collect()
    gc.disable()
    sanitizer.sanitize(doc)
    floor(doc)
    for _ in range(calls):
        if mode == "floor":
            floor(doc)
        else:
            if mode == "cold":
                forget(sanitizer)
            sanitizer.sanitize(doc)


def instructions(src: str, size: int, mode: str, calls: int) -> int:
    """Instructions of a child process that runs ``mode`` ``calls`` times."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, __file__, "--child", src, str(size), mode, str(calls)]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, env=env, check=True)
    match = _COLLECTED.search(done.stderr)
    if match is None:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    return int(match.group(1))


def per_call(src: str, size: int, mode: str, extra: int) -> float:
    return (instructions(src, size, mode, 1 + extra) - instructions(src, size, mode, 1)) / extra


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,10000,100000", help="synthetic sizes in bytes")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the chatsvg_core to measure")
    ap.add_argument("--calls", type=int, default=4, help="extra calls per count")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    sizes = [int(s) for s in args.sizes.split(",")]
    jobs = [(size, mode) for size in sizes for mode in MODES]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(
            zip(jobs, pool.map(lambda job: per_call(args.src, *job, args.calls), jobs), strict=True)
        )
    print(f"{'input':>16} {'floor Ir':>12} {'warm Ir':>12} {'cold Ir':>12} {'warm':>6} {'cold':>6}")
    for size in sizes:
        fl, warm, cold = (counts[(size, mode)] for mode in MODES)
        print(
            f"{f'synthetic {size // 1000} KB':>16} {fl:>12,.0f} {warm:>12,.0f} {cold:>12,.0f} "
            f"{warm / fl:>6.2f} {cold / fl:>6.2f}"
        )


if __name__ == "__main__":
    main()
