"""A worker PROCESS for the multi-process and crash tests (run as a script).

    python _proc_worker.py <mode> <json-config>

It opens its own store on the shared database, prints ``READY``, waits for a
line on stdin (a start barrier, so the workers really overlap), does its
work and prints one JSON line with what it did. Modes:

* ``claim``: claim due jobs until none is left, completing each one;
* ``charge``: charge (and sometimes refund) a list of job references for one
  owner, within a balance and a daily cap;
* ``crash``: write a job, an entry, an idempotency record and a result in one
  transaction, and pause at the fault-hook point named in the config (printing
  ``PAUSED``) so the parent can ``kill -9`` it there.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from chatsvg_core import ledger
from chatsvg_core.errors import DailyCapExceeded, InsufficientCredits, RefundWithoutCharge
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    LedgerEntry,
    Store,
    claim_next,
    complete_job,
)
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore

LEASE = timedelta(minutes=10)


async def open_store(config: dict[str, Any], **extra: Any) -> Store:
    if config["backend"] == "sqlite":
        return await SQLiteStore.open(config["path"], synchronous="normal", **extra)
    return await PostgresStore.open(
        config["url"], schema=config["schema"], min_size=1, max_size=4, **extra
    )


def barrier() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def _arrive(folder: Path, name: str) -> None:
    (folder / name).touch()


def _arrived(folder: Path) -> int:
    return len(list(folder.iterdir()))


async def claim_worker(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    name = config["name"]
    claimed: list[list[Any]] = []
    rendezvous = config.get("rendezvous")

    async def hold() -> None:
        # The test's sharing check must not depend on the scheduler: a fast process can
        # drain every job before the others run at all. So each task holds the first job
        # it claims (its lease live, other processes free to claim the rest) until a
        # second process has claimed one too, marked by a file each process leaves in
        # the rendezvous folder.
        if rendezvous is None:
            return
        _arrive(Path(rendezvous), name)
        for _ in range(3000):  # 30 s, then the test's sharing check fails
            if _arrived(Path(rendezvous)) >= 2:
                return
            await asyncio.sleep(0.01)

    async def loop(task: int) -> None:
        worker_id = f"{name}/{task}"
        held = False
        while True:
            async with store.transaction() as tx:
                job = await claim_next(tx, now=datetime.now(UTC), worker_id=worker_id, lease=LEASE)
            if job is None:
                return
            claimed.append([job.id, job.lease_token, worker_id])
            if not held:
                held = True
                await hold()
            async with store.transaction() as tx:
                await complete_job(
                    tx, job.id, token=job.lease_token or 0, now=datetime.now(UTC), svg="<svg/>"
                )

    await asyncio.gather(*(loop(i) for i in range(config.get("tasks", 2))))
    return {"claimed": claimed}


async def charge_worker(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The ledger's charge and refund (``chatsvg_core.ledger``), racing other processes."""
    owner, amount, cap = config["owner"], config["amount"], config["cap"]
    rng = random.Random(config["seed"])
    refs = list(config["refs"])
    rng.shuffle(refs)
    outcomes: dict[str, int] = {}

    def note(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    for ref in refs:
        try:
            mine = uuid4().hex
            async with store.transaction() as tx:
                written = await ledger.charge(
                    tx,
                    owner,
                    amount,
                    ref=ref,
                    now=datetime.now(UTC),
                    daily_cap=cap,
                    new_id=lambda: mine,  # noqa: B023 - used at once
                )
            # A replay hands back the first charge, written under another id.
            note("charged" if written.id == mine else "replay")
        except InsufficientCredits:
            note("insufficient")
        except DailyCapExceeded:
            note("cap")
        if rng.random() < config["refund_rate"]:
            try:
                mine = uuid4().hex
                async with store.transaction() as tx:
                    written = await ledger.refund(
                        tx,
                        ref,
                        now=datetime.now(UTC),
                        new_id=lambda: mine,  # noqa: B023 - used at once
                    )
                note("refunded" if written.id == mine else "refund_replay")
            except RefundWithoutCharge:
                note("refund_without_charge")
    return {"outcomes": outcomes}


async def crash_worker(config: dict[str, Any]) -> dict[str, Any]:
    point = config["point"]
    armed = False

    def hook(name: str) -> None:
        if armed and name == point:
            print("PAUSED", flush=True)
            time.sleep(120)  # the parent kills us here

    store = await open_store(config, fault_hook=hook)
    now = datetime.now(UTC)
    tag = config["tag"]
    barrier()
    armed = True
    async with store.transaction() as tx:
        await tx.insert_job(
            new_job(
                job_id=f"job-{tag}",
                owner="crash-owner",
                request={"prompt": "x"},
                request_hash="h",
                now=now,
            )
        )
        await tx.lock_account("crash-owner", create=True)
        await tx.insert_entry(
            LedgerEntry(
                id=f"entry-{tag}",
                owner="crash-owner",
                kind=EntryKind.GRANT,
                amount=50,
                ref=f"grant-{tag}",
                created_at=now,
            )
        )
        await tx.claim_idempotency(
            IdempotencyRecord(
                scope="crash-owner",
                key=f"key-{tag}",
                request_hash="h",
                job_id=f"job-{tag}",
                created_at=now,
                expires_at=now + timedelta(days=1),
            ),
            now=now,
        )
        await tx.put_result(JobResult(job_id=f"job-{tag}", svg="<svg/>", created_at=now))
    await store.aclose()
    return {"committed": True}


async def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    config = json.loads(raw)
    if mode == "crash":
        result = await crash_worker(config)
    else:
        store = await open_store(config)
        barrier()
        started = time.perf_counter()
        if mode == "claim":
            result = await claim_worker(store, config)
        else:
            result = await charge_worker(store, config)
        result["seconds"] = time.perf_counter() - started
        await store.aclose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
