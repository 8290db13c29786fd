"""Mutation testing of the modules that hold the core invariants (mutmut 3).

Usage::

    .venv/bin/pip install -e '.[test,mutation]'
    .venv/bin/python benchmarks/mutation.py                 # every target, one after another
    .venv/bin/python benchmarks/mutation.py transitions ledger --max-children 2
    .venv/bin/python benchmarks/mutation.py transitions --only 'x_claim*'   # a sample

Each target is run in a fresh copy of the working tree (so the checkout is
never touched and targets can run side by side), with a ``[tool.mutmut]``
section written for that one module and the test folders it needs; mutmut
then runs, per mutant, only the tests that reached the mutated function.
PostgreSQL-backed tests use ``CHATSVG_TEST_POSTGRES_URL`` when it is set.

Prints, per target, the counts (killed, survived, no tests, timeout, ...) and
the name and diff of every survivor; ``--json FILE`` writes the counts. The
survivors are judged in docs/mutation.md: each is killed by a test or
explained there as equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transitions": ("src/chatsvg_core/jobs/_transitions.py", ("tests/jobs",)),
    "ledger": (
        "src/chatsvg_core/ledger/_ops.py",
        ("tests/ledger", "tests/storage/test_memory_conformance.py"),
    ),
    "idempotency": ("src/chatsvg_core/idempotency/_semantics.py", ("tests/idempotency",)),
    "storage-jobs": (
        "src/chatsvg_core/storage/_jobs.py",
        (
            "tests/storage/test_job_ops.py",
            "tests/storage/test_transition_sequences.py",
            "tests/storage/test_memory_conformance.py",
        ),
    ),
    "retry": ("src/chatsvg_core/retry/_policy.py", ("tests/retry",)),
    "sanitize-policy": (
        "src/chatsvg_core/sanitize/_policy.py",
        ("tests/sanitize/test_sanitize_policy.py", "tests/sanitize/test_sanitize_allowlist.py"),
    ),
}


# Tests that inspect the module itself, and so see mutmut's trampolines (extra,
# undocumented members), not the code under test: they judge nothing here.
DESELECT: dict[str, tuple[str, ...]] = {
    "retry": ("tests/retry/test_retry_api.py::test_all_names_exist_are_unique_and_documented",),
}


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = Path(os.fsdecode(raw))
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _configure(dest: Path, module: str, tests: tuple[str, ...], deselect: tuple[str, ...]) -> None:
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    cut = text.find("\n[tool.mutmut]")
    if cut >= 0:
        text = text[:cut]
    listed = ", ".join(json.dumps(t) for t in tests)
    pytest_args = ["-p", "no:cacheprovider", "-q", "--timeout=300"]
    for test in deselect:
        pytest_args += ["--deselect", test]
    text += (
        "\n\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = [{listed}]\n"
        f"pytest_add_cli_args = {json.dumps(pytest_args)}\n"
        # Some tests read the docs they check (tests/retry/test_retry_docs.py).
        'also_copy = ["docs", "README.md"]\n'
    )
    pyproject.write_text(text)


def _mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev")}
    env.pop("CI", None)
    return subprocess.run(
        [str(exe), *args], cwd=work, env=env, capture_output=True, text=True, check=False
    )


def run_target(name: str, *, max_children: int, only: list[str], keep: bool) -> dict[str, object]:
    module, tests = TARGETS[name]
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    try:
        _copy_tree(work)
        _configure(work, module, tests, DESELECT.get(name, ()))
        started = time.monotonic()
        ran = _mutmut(work, "run", "--max-children", str(max_children), *only)
        elapsed = time.monotonic() - started
        if ran.returncode != 0:
            print(ran.stdout[-3000:], ran.stderr[-3000:], sep="\n", file=sys.stderr)
        listing = _mutmut(work, "results", "--all", "true").stdout
        statuses: Counter[str] = Counter()
        survivors: list[str] = []
        for line in listing.splitlines():
            mutant, _, status = line.strip().rpartition(": ")
            if not mutant:
                continue
            statuses[status] += 1
            if status == "survived":
                survivors.append(mutant)
        print(f"\n== {name}: {module} ({elapsed:.0f} s)")
        print("   " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        for mutant in survivors:
            diff = _mutmut(work, "show", mutant).stdout
            changed = [
                ln
                for ln in diff.splitlines()
                if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
            ]
            print(f"   survived {mutant}")
            for ln in changed:
                print(f"      {ln}")
        return {
            "module": module,
            "seconds": round(elapsed),
            "counts": dict(statuses),
            "survivors": survivors,
        }
    finally:
        if keep:
            print(f"   (kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"any of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", action="append", default=[], help="mutant name glob (sample)")
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--keep", action="store_true", help="keep the work copies")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    results = {
        name: run_target(name, max_children=args.max_children, only=args.only, keep=args.keep)
        for name in (args.targets or list(TARGETS))
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
