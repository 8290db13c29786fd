"""Where a flushing SQLite ``COMMIT`` runs: in place for a task alone, else on the store's thread.

A ``COMMIT`` with ``synchronous=FULL`` waits for the disk. With other tasks in
the process it runs on the store's thread, so they go on meanwhile; when the
running task is the only one, nothing could run meanwhile, and the trip to the
thread and back (more than the ``COMMIT``'s own work) is skipped (issue 15).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatsvg_core.storage import sqlite as sqlite_module
from chatsvg_core.storage.sqlite import SQLiteStore

from .test_sql_backends import a_job


class Trips:
    """Counts the store's trips to its thread, and on which thread each COMMIT ran."""

    def __init__(self, store: SQLiteStore) -> None:
        self.trips = 0
        self.commit_threads: list[str] = []
        original = store._call

        async def call(fn: Callable[[], Any]) -> Any:
            self.trips += 1
            return await original(fn)

        store._call = call  # type: ignore[method-assign]
        store._fault_hook = self.hook

    def hook(self, point: str) -> None:
        if point == "before_commit":
            self.commit_threads.append(threading.current_thread().name)


async def open_full(tmp_path: Path) -> SQLiteStore:
    return await SQLiteStore.open(tmp_path / "jobs.db", synchronous="full")


def run_loop(coro_fn: Callable[[], Any]) -> Any:
    """Run ``coro_fn()`` on a fresh event loop."""
    return asyncio.run(coro_fn())


# Whether a task is alone is a question about the whole process, and a test
# run leaves tasks of earlier tests behind (portal threads' loops): these run
# in a fresh interpreter.
ALONE = """
import asyncio, json, sys, threading
from pathlib import Path
from chatsvg_core.jobs import new_job
from chatsvg_core.storage.sqlite import SQLiteStore
from datetime import UTC, datetime

async def main():
    store = await SQLiteStore.open(Path(sys.argv[1]) / "jobs.db", synchronous="full")
    trips, threads = [0], []
    original = store._call
    async def call(fn):
        trips[0] += 1
        return await original(fn)
    store._call = call
    store._fault_hook = lambda point: point == "before_commit" and threads.append(
        threading.current_thread().name)
    if sys.argv[2] == "leftover":
        done = asyncio.create_task(asyncio.sleep(0))
        await done  # finished, still referenced: does not count
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(3):
        async with store.transaction() as tx:
            await tx.insert_job(new_job(job_id=f"j{i}", owner="o", request={}, request_hash="h",
                                        now=now))
    await store.aclose()
    print(json.dumps({"trips": trips[0], "threads": threads}))

asyncio.run(main())
"""


def run_alone(tmp_path: Path, variant: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", ALONE, str(tmp_path), variant],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("variant", ["plain", "leftover"])
def test_a_task_alone_commits_in_place(tmp_path: Path, variant: str) -> None:
    got = run_alone(tmp_path, variant)
    assert got == {"trips": 1, "threads": ["MainThread"] * 3}  # one trip: aclose's


@pytest.mark.parametrize("other", ["sleeper", "other_loop"])
def test_with_another_task_the_commit_goes_to_the_thread(tmp_path: Path, other: str) -> None:
    stop = threading.Event()

    def other_loop() -> None:
        async def wait() -> None:
            await asyncio.to_thread(stop.wait)  # a live task on another thread's loop

        asyncio.run(wait())

    async def main() -> tuple[int, list[str]]:
        store = await open_full(tmp_path)
        trips = Trips(store)
        sleeper = asyncio.create_task(asyncio.sleep(30)) if other == "sleeper" else None
        for i in range(3):
            async with store.transaction() as tx:
                await tx.insert_job(a_job(f"j{i}"))
        if sleeper is not None:
            sleeper.cancel()
        await store.aclose()
        return trips.trips, trips.commit_threads

    thread = threading.Thread(target=other_loop)
    if other == "other_loop":
        thread.start()
        time.sleep(0.05)
    try:
        trips, threads = run_loop(main)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
    assert threads == ["chatsvg-sqlite"] * 3
    assert trips == 3 + 1


def test_other_tasks_run_while_a_slow_commit_waits(tmp_path: Path) -> None:
    # A slow disk, played by the hook: the COMMIT takes 0.3 s. A ticking task
    # keeps ticking meanwhile, because with it alive the COMMIT runs on the
    # store's thread.
    async def main() -> int:
        store = await open_full(tmp_path)
        ticks = 0

        def slow(point: str) -> None:
            if point == "before_commit":
                time.sleep(0.3)

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        store._fault_hook = slow
        async with store.transaction() as tx:
            await tx.insert_job(a_job("slow"))
        during = ticks
        ticker.cancel()
        await store.aclose()
        return during

    assert run_loop(main) >= 10


def test_alone_is_false_without_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python whose task registry is not where we look: always the thread.
    async def main() -> bool:
        return sqlite_module._alone()

    monkeypatch.setattr(sqlite_module, "_TASKS", None)
    assert asyncio.run(main()) is False
    monkeypatch.setattr(sqlite_module, "_TASKS", set())  # holds no task of ours
    assert asyncio.run(main()) is False


ASKED = """
import asyncio, json
from chatsvg_core.storage import sqlite as sqlite_module

async def main():
    answers = [sqlite_module._alone()]  # alone: asked the first time
    answers.append(sqlite_module._alone())  # and again, from the kept reference
    release = asyncio.Event()

    async def other():
        await release.wait()
        return sqlite_module._alone()

    waiting = asyncio.create_task(other())
    await asyncio.sleep(0)
    answers.append(sqlite_module._alone())  # not alone: the other task waits
    release.set()
    answers.append(await waiting)  # the other task, while main waits for it
    return answers

async def later():
    return sqlite_module._alone()

first = asyncio.run(main())
print(json.dumps(first + [asyncio.run(later())]))
"""


def test_alone_answers_for_the_task_asking_not_the_one_asked_last() -> None:
    # _alone keeps a weak reference to the task it was asked about last; a
    # task asking next, alone or not, must get its own answer, as must a new
    # loop's task after the kept reference's task has finished. (A fresh
    # interpreter: see ALONE.)
    out = subprocess.run(
        [sys.executable, "-c", ASKED], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, True, False, False, True]
