"""Run every fuzz target for a fixed budget (what CI runs), and report runs and findings.

Each target starts from its seed corpus (``fuzz/corpus/<target>``, read only:
new inputs go to a temporary directory) with the token dictionary
``fuzz/svg.dict``, a fixed seed, inputs of at most 4 KiB, and libFuzzer's
the harness's per-input CPU bound. A finding (an exception, a broken property, a timeout)
is written to ``--artifacts`` and makes the exit status non-zero.

CI:        python fuzz/run.py --seconds 10          (four targets: about a minute)
Long run:  python fuzz/run.py --seconds 1800 --seed 0 --keep fuzz/corpus
           (``--seed 0``: a new random seed; ``--keep``: merge the new inputs
           into the seed corpus afterwards, minimised, to commit them)
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("sanitize", "extract", "canonical", "prompt")
_UNITS = re.compile(r"stat::number_of_executed_units: (\d+)")
_COVERAGE = re.compile(r"DONE\s+cov: (\d+)")
_LIBFUZZER_ERROR = re.compile(r"==\d+== ERROR")


def _interrupted(code: int, log: str, target: str, args: argparse.Namespace) -> bool:
    """Whether a failed run died of a signal with nothing that reproduces."""
    signalled = code in (-14, 142) or (
        "fuzz target exited" in log and "Uncaught Python exception" not in log
    )
    if not signalled:
        return False
    env = {k: v for k, v in os.environ.items() if k != "CHATSVG_FUZZ_ARTIFACTS"}
    for found in args.artifacts.glob(f"{target}-*"):
        replay = [sys.executable, str(HERE / "chatsvg_fuzz.py"), target, str(found)]
        if subprocess.run(replay, capture_output=True, env=env, timeout=300).returncode != 0:
            return False
    return True


def _exception(log: str) -> str:
    """The Python exception atheris printed (its traceback and message), or a note."""
    start = log.find("=== Uncaught Python exception: ===")
    if start < 0:
        return "(no Python exception in the log)"
    end = _LIBFUZZER_ERROR.search(log, start)
    return log[start : end.start() if end else None][:6000]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="budget per target")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer seed (0: random)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", type=Path, help="merge new inputs into this corpus root")
    args = parser.parse_args()
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failed = []
    total = 0
    for target in args.targets.split(","):
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
            command = [
                sys.executable,
                str(HERE / "chatsvg_fuzz.py"),
                target,
                f"-seed={args.seed}",
                f"-max_total_time={args.seconds}",
                "-max_len=4096",
                # No libFuzzer alarm (SIGALRM): one run on a machine at load 36
                # died of the signal itself, unreported. The harness bounds each
                # input's CPU time, and a hang is caught by the timeout below.
                "-timeout=0",
                "-rss_limit_mb=2048",
                f"-dict={HERE / 'svg.dict'}",
                f"-artifact_prefix={args.artifacts}/{target}-",
                "-print_final_stats=1",
                scratch,
                str(HERE / "corpus" / target),
            ]
            # The run stops itself at max_total_time; twice that (and a minute)
            # means an input hangs.
            env = {**os.environ, "CHATSVG_FUZZ_ARTIFACTS": str(args.artifacts)}
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=args.seconds * 2 + 60,
                    env=env,
                )
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout or b""
                log = out.decode(errors="replace") if isinstance(out, bytes) else out
                done = subprocess.CompletedProcess(command, -1, log, "HANG: run timed out\n")
            log = done.stdout + done.stderr
            units = _UNITS.search(log)
            coverage = _COVERAGE.search(log)
            runs = int(units.group(1)) if units else 0
            total += runs
            status = "ok" if done.returncode == 0 else f"FINDING (exit {done.returncode})"
            print(
                f"{target:10} runs {runs:>9}  coverage {coverage.group(1) if coverage else '?':>5}"
                f"  {status}"
            )
            if done.returncode != 0 and _interrupted(done.returncode, log, target, args):
                # atheris arms SIGALRM for its timeout handling; on a machine
                # at load 20-36 a run was seen to die of it (exit -14, or 77
                # "fuzz target exited" with no Python exception) while every
                # input it wrote replayed clean. Not a finding; said so.
                print(f"{'':10} interrupted by a signal; every input it kept replays clean")
            elif done.returncode != 0:
                failed.append(target)
                print(log[-4000:])
                # The exception comes first in the log and the input lives in a
                # temporary folder on the CI machine: print both, so that a
                # finding seen only in CI's output can be replayed from it.
                print(_exception(log))
                for found in sorted(args.artifacts.glob(f"{target}-*")):
                    print(f"input kept: {found} (replay: python {command[1]} {target} {found})")
                    print(f"  its bytes (base64): {base64.b64encode(found.read_bytes()).decode()}")
            elif args.keep is not None:
                merge = [*command[:3], "-merge=1", str(args.keep / target), scratch]
                subprocess.run(merge, capture_output=True, check=True)
    print(f"total runs {total}; findings in: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
