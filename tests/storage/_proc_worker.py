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
from typing import Any
from uuid import uuid4

from chatsvg_core.jobs import claim, new_job, succeed
from chatsvg_core.storage import EntryKind, IdempotencyRecord, JobResult, LedgerEntry, Store
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


async def claim_worker(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    name = config["name"]
    claimed: list[list[Any]] = []

    async def loop(task: int) -> None:
        worker_id = f"{name}/{task}"
        while True:
            now = datetime.now(UTC)
            async with store.transaction() as tx:
                job = await tx.next_due_job(now)
                if job is None:
                    return
                running = claim(job, now=now, worker_id=worker_id, lease=LEASE)
                if not await tx.update_job(running, expected_version=job.version):
                    raise AssertionError(f"lost a compare-and-set on a locked job {job.id}")
            claimed.append([job.id, running.lease_token, worker_id])
            async with store.transaction() as tx:
                current = await tx.get_job(job.id, for_update=True)
                assert current is not None
                done = succeed(
                    current,
                    now=datetime.now(UTC),
                    token=running.lease_token or 0,
                    result_ref=job.id,
                )
                await tx.put_result(
                    JobResult(job_id=job.id, svg="<svg/>", created_at=datetime.now(UTC))
                )
                if not await tx.update_job(done, expected_version=current.version):
                    raise AssertionError(f"lost a compare-and-set on a locked job {job.id}")

    await asyncio.gather(*(loop(i) for i in range(config.get("tasks", 2))))
    return {"claimed": claimed}


async def charge_worker(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    """The ledger's charge/refund rules over the primitives, as the engine uses them."""
    owner, amount, cap = config["owner"], config["amount"], config["cap"]
    rng = random.Random(config["seed"])
    refs = list(config["refs"])
    rng.shuffle(refs)
    outcomes: dict[str, int] = {}
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def note(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    for ref in refs:
        async with store.transaction() as tx:
            await tx.lock_account(owner)
            if await tx.find_entry(EntryKind.CHARGE, ref) is not None:
                note("replay")
            elif await tx.balance(owner) < amount:
                note("insufficient")
            elif await tx.usage(owner, since=day, until=day + timedelta(days=1)) + amount > cap:
                note("cap")
            else:
                await tx.insert_entry(
                    LedgerEntry(
                        id=uuid4().hex,
                        owner=owner,
                        kind=EntryKind.CHARGE,
                        amount=-amount,
                        ref=ref,
                        created_at=datetime.now(UTC),
                    )
                )
                note("charged")
        if rng.random() < config["refund_rate"]:
            async with store.transaction() as tx:
                await tx.lock_account(owner)
                charge = await tx.find_entry(EntryKind.CHARGE, ref)
                if charge is not None and await tx.find_entry(EntryKind.REFUND, ref) is None:
                    await tx.insert_entry(
                        LedgerEntry(
                            id=uuid4().hex,
                            owner=owner,
                            kind=EntryKind.REFUND,
                            amount=-charge.amount,
                            ref=ref,
                            created_at=datetime.now(UTC),
                        )
                    )
                    note("refunded")
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
