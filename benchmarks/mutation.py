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
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transitions": ("src/chatsvg_core/jobs/_transitions.py", ("tests/jobs",)),
    "ledger": (
        "src/chatsvg_core/ledger/_ops.py",
        (
            "tests/ledger",
            "tests/storage/test_memory_conformance.py",
            "tests/storage/test_construct.py",
        ),
    ),
    "idempotency": ("src/chatsvg_core/idempotency/_semantics.py", ("tests/idempotency",)),
    "storage-jobs": (
        "src/chatsvg_core/storage/_jobs.py",
        (
            "tests/storage/test_job_ops.py",
            "tests/storage/test_job_ops_contract.py",
            "tests/storage/test_transition_sequences.py",
            "tests/storage/test_memory_conformance.py",
        ),
    ),
    "retry": ("src/chatsvg_core/retry/_policy.py", ("tests/retry",)),
    "construct": (
        "src/chatsvg_core/_construct.py",
        (
            "tests/storage/test_construct.py",
            "tests/storage/test_plain_json.py",
            "tests/jobs/test_fast_paths.py",
            "tests/engine/test_hot_path.py",
        ),
    ),
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


# Tests that run the module in other processes (worker scripts started with
# subprocess). mutmut traces calls in the test process only, so it never hands
# these tests a mutant; a survivor of a matching function is run against them
# here instead, with MUTANT_UNDER_TEST in the environment its workers inherit
# (and only when they pass on the unmutated code first).
PROCESS_TESTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "ledger": (
        (
            "x__settle__mutmut_*",
            (
                "tests/admission/test_admission_processes.py"
                "::test_a_capture_and_a_release_racing_settle_a_reservation_once",
            ),
        ),
    ),
}


# Survivors judged equivalent (no test can tell them from the code): the mutant's
# function (a glob on its name), the lines its diff removes and adds, and why.
# Matched on the diff rather than the mutant's number, so a renumbering after an
# edit elsewhere keeps the judgement, and an edit of the line itself asks for a
# new one. docs/mutation.md and benchmarks/README.md explain each.
EQUIVALENT: dict[str, tuple[tuple[str, tuple[str, ...], str], ...]] = {
    "transitions": (
        (
            "x__error_info__mutmut_*",
            (
                "-return error if isinstance(error, JobErrorInfo) else"
                " JobErrorInfo.model_validate(error)",
                "+return error if (isinstance(error, JobErrorInfo)) and False else"
                " JobErrorInfo.model_validate(error)",
            ),
            "model_validate() hands a JobErrorInfo back as it is (pydantic does not"
            " revalidate instances by default): the test only saves the call",
        ),
    ),
    "ledger": (
        (
            "x__append__mutmut_*",
            (
                "-return written if written.id == wanted.id else _same(written, owner, amount)",
                "+return written if (written.id == wanted.id) and False else _same(written, owner,"
                " amount)",
            ),
            "_same() hands back the entry we just wrote: it has our owner and amount",
        ),
        (
            "x__spend__mutmut_*",
            (
                "-window = None if cap is None else day.window(now)",
                "+window = None if (cap is None) and False else day.window(now)",
            ),
            "without a cap the day's usage is read but never looked at",
        ),
        (
            "x__spend__mutmut_*",
            (
                "-assert window is not None and state.used is not None",
                "+assert window is not None or state.used is not None",
            ),
            "with a cap both are always set; the assert only informs the type checker",
        ),
        (
            "x_adjust__mutmut_*",
            (
                "-amount = _check_amount(amount, owner=owner, positive=False)",
                "+amount = _check_amount(amount, owner=owner, positive=None)",
            ),
            "None is as false as False",
        ),
        (
            "x_adjust__mutmut_*",
            (
                "-has_account = await tx.lock_account(owner, create=amount > 0)",
                "+has_account = await tx.lock_account(owner, create=amount >= 0)",
            ),
            "an adjustment of 0 was refused above",
        ),
        (
            "x_adjust__mutmut_*",
            ("-if amount < 0:", "+if amount <= 0:"),
            "an adjustment of 0 was refused above",
        ),
        (
            "x_adjust__mutmut_*",
            ("-if amount < 0:", "+if amount < 1:"),
            "an adjustment of 0 was refused above (amounts are ints)",
        ),
        (
            "x_adjust__mutmut_*",
            (
                "-available = await tx.balance(owner) if has_account else 0",
                "+available = await tx.balance(owner) if (has_account) or True else 0",
            ),
            "balance() of an owner without entries is 0 (store protocol); the guard saves a read",
        ),
    ),
    "storage-jobs": (
        (
            "x_expire_leases__mutmut_*",
            (
                "-or job.status is not JobStatus.RUNNING",
                "-or job.lease_expires_at is None",
                "+or job.status is not JobStatus.RUNNING and job.lease_expires_at is None",
            ),
            "a job has a lease expiry exactly when it is RUNNING (the Job model's rule),"
            " so either test alone decides",
        ),
    ),
    "sanitize-policy": (
        (
            "x__host_names__mutmut_*",
            (
                '-value = frozenset(v.lower().rstrip(".") for v in value)',
                '+value = frozenset(v.lower().rstrip("XX.XX") for v in value)',
            ),
            "the names were lowered first: no capital X is left to strip",
        ),
    ),
    "retry": (
        (
            "xǁRetryPolicyǁ_verdict_to_decision__mutmut_*",
            (
                "-retry_after = verdict.retry_after if self.honour_retry_after else None",
                "+retry_after = verdict.retry_after if (self.honour_retry_after) or True else None",
            ),
            "delay() ignores retry_after itself when honour_retry_after is off",
        ),
    ),
}


def _changed_lines(diff: str) -> tuple[str, ...]:
    """The removed and added lines of a mutant's diff, with their whitespace folded."""
    return tuple(
        ln[0] + " ".join(ln[1:].split())
        for ln in diff.splitlines()
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    )


def _equivalent(target: str, mutant: str, changed: tuple[str, ...]) -> str | None:
    function = mutant.rpartition(".")[2]
    for pattern, lines, why in EQUIVALENT.get(target, ()):
        if fnmatch.fnmatch(function, pattern) and lines == changed:
            return why
    return None


def sample_names(module: str, size: int, seed: int) -> list[str]:
    """``size`` of the module's mutants, drawn with ``seed``, by mutmut's own generator."""
    # The generator is mutmut's internal API (pinned in the mutation extra).
    from mutmut.mutation.file_mutation import mutate_file_contents

    path = ROOT / module
    names = list(mutate_file_contents(str(path), path.read_text()).mutant_names)
    dotted = ".".join(Path(module).with_suffix("").parts[1:])
    chosen = random.Random(seed).sample(names, min(size, len(names)))
    return sorted(f"{dotted}.{name}" for name in chosen)


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


def _run_process_tests(work: Path, mutant: str, tests: tuple[str, ...]) -> int:
    """pytest's exit status for ``tests`` against ``mutant`` ("" for the unmutated code)."""
    mutants = work / "mutants"
    env = {
        **os.environ,
        "MUTANT_UNDER_TEST": mutant,
        # The workers find the package the test process imported: the mutated copy.
        "PYTHONPATH": str(mutants / "src"),
        "CHATSVG_REQUIRE_SERVICES": "1",
    }
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *tests]
    return subprocess.run(cmd, cwd=mutants, env=env, capture_output=True, check=False).returncode


def _process_pass(name: str, work: Path, survivors: list[str]) -> list[str]:
    """Run the process tests against the survivors they concern; return those they kill."""
    killed: list[str] = []
    for pattern, tests in PROCESS_TESTS.get(name, ()):
        concerned = [m for m in survivors if fnmatch.fnmatch(m.rpartition(".")[2], pattern)]
        if not concerned:
            continue
        if _run_process_tests(work, "", tests) != 0:
            print(f"   process tests for {pattern} fail unmutated: not used", file=sys.stderr)
            continue
        killed += [m for m in concerned if _run_process_tests(work, m, tests) not in (0, 5)]
    return killed


def run_target(name: str, *, max_children: int, only: list[str], keep: bool) -> dict[str, Any]:
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
        for mutant in _process_pass(name, work, survivors):
            survivors.remove(mutant)
            statuses["survived"] -= 1
            statuses["killed by process tests"] += 1
        unexplained: dict[str, tuple[str, ...]] = {}
        equivalent: dict[str, str] = {}
        for mutant in survivors:
            changed = _changed_lines(_mutmut(work, "show", mutant).stdout)
            why = _equivalent(name, mutant, changed)
            if why is None:
                unexplained[mutant] = changed
            else:
                equivalent[mutant] = why
        statuses["survived"] -= len(equivalent)
        statuses["equivalent"] += len(equivalent)
        statuses = +statuses  # drop a count that fell to zero
        print(f"\n== {name}: {module} ({elapsed:.0f} s)")
        print("   " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        for mutant, changed in unexplained.items():
            print(f"   survived {mutant}")
            for ln in changed:
                print(f"      {ln}")
        return {
            "module": module,
            "seconds": round(elapsed),
            "counts": dict(statuses),
            "survivors": list(unexplained),
            "equivalent": equivalent,
            "mutmut_exit": ran.returncode,
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
    parser.add_argument("--only", action="append", default=[], help="mutant name glob")
    parser.add_argument("--sample", type=int, help="run only this many mutants, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="the draw of --sample (default 0)")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a survivor is not a listed equivalent"
    )
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--keep", action="store_true", help="keep the work copies")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    if args.sample is not None and args.only:
        parser.error("--sample and --only choose mutants in two ways: give one")
    results = {}
    for name in args.targets or list(TARGETS):
        only = args.only
        if args.sample is not None:
            only = sample_names(TARGETS[name][0], args.sample, args.seed)
        results[name] = run_target(name, max_children=args.max_children, only=only, keep=args.keep)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = [n for n, r in results.items() if r["survivors"] or r["mutmut_exit"] != 0]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
