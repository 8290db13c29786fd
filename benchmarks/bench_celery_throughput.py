"""Jobs per second through Celery with 1, 2 and 4 worker processes, beside the floors.

For each worker count, in one run with the modes interleaved:

* ``process_next``: N processes claiming straight from the same PostgreSQL
  (the database as the queue; the engine's own floor);
* ``celery/redis``, ``celery/amqp``: N Celery workers (gevent pool) running
  the chatsvg task (claim + charge, instant provider, sanitize, finish);
* ``noop/redis``, ``noop/amqp``: N Celery workers running a task that does one
  Redis INCR: Celery's own rate with the same delivery settings.

The jobs are in the store before the clock starts; the clock runs from the
first message (or the workers' start, for process_next) to the last job done.

    python benchmarks/bench_celery_throughput.py [--jobs 300] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import redis as redis_lib
from celery import Celery
from tests.queues._celery_chaos import OwnRedis, _env, worker_cmd

from chatsvg_core.engine import Engine
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import CeleryQueue
from chatsvg_core.storage.postgres import PostgresStore

HERE = Path(__file__).resolve().parent


def _pn_worker(pg: str, schema: str, stop_at: int) -> None:
    async def main() -> None:
        store = await PostgresStore.open(pg, schema=schema, min_size=1, max_size=2)
        engine = Engine(store, None, OfflineSketchProvider())
        idle = 0
        while idle < 20:
            job = await engine.process_next(f"pn-{os.getpid()}")
            idle = idle + 1 if job is None else 0
            if job is None:
                await asyncio.sleep(0.05)
        await store.aclose()

    asyncio.run(main())


async def _until(count: Callable[[], Awaitable[int]], target: int, every: float) -> None:
    """Poll ``count()`` every ``every`` seconds until it reaches ``target``."""
    while True:
        if await count() >= target:
            return
        await asyncio.sleep(every)


async def _count_done(store: PostgresStore) -> int:
    async with store.transaction() as tx:
        return len(await tx.list_jobs(status=JobStatus.SUCCEEDED, limit=100_000))


async def _fresh(pg: str, jobs: int) -> tuple[PostgresStore, str, list[str]]:
    schema = f"chatsvg_tp_{secrets.token_hex(4)}"
    store = await PostgresStore.open(pg, schema=schema, min_size=1, max_size=4)
    engine = Engine(store, None, OfflineSketchProvider())
    await Ledger(store).grant("bench", 10 * jobs)
    ids = [
        (await engine.submit("bench", None, {"prompt": f"a kite {i}"})).job.id for i in range(jobs)
    ]
    return store, schema, ids


def _drop(pg: str, schema: str) -> None:
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _spawn(cmds: list[list[str]], env: dict[str, str], cwd: Path) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in cmds
    ]


def _stop(procs: list[Any]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


async def run_process_next(pg: str, n: int, jobs: int) -> float:
    store, schema, _ = await _fresh(pg, jobs)
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    procs = [ctx.Process(target=_pn_worker, args=(pg, schema, jobs)) for _ in range(n)]
    for p in procs:
        p.start()
    await _until(lambda: _count_done(store), jobs, 0.05)
    seconds = time.perf_counter() - start
    for p in procs:
        p.kill()
        p.join()
    await store.aclose()
    _drop(pg, schema)
    return jobs / seconds


async def run_celery(pg: str, broker_url: str, n: int, jobs: int, tmp: Path) -> float:
    store, schema, ids = await _fresh(pg, jobs)
    queue = f"chatsvg-tp-{secrets.token_hex(4)}"
    env = _env(broker_url, pg, schema, queue, tmp, CHATSVG_CELERY_LEASE="60")
    env.update(CHATSVG_CELERY_BEAT="600", CHATSVG_CELERY_FAULTS="0,0,0")
    env.pop("CHATSVG_CELERY_EVENTS")
    procs = _spawn([worker_cmd(f"tp{i}", queue, "gevent", 16) for i in range(n)], env, tmp)
    try:
        app = Celery("tp-host", broker=broker_url)
        q = CeleryQueue(app, queue=queue)
        # Warm-up: each worker has started and opened its engine before the clock.
        await asyncio.sleep(0)
        warm = Engine(store, q, OfflineSketchProvider())
        warm_ids = [
            (await warm.submit("bench", None, {"prompt": f"warm {i}"})).job.id for i in range(n * 4)
        ]
        await _until(lambda: _count_done(store), len(warm_ids), 0.1)
        start = time.perf_counter()
        await asyncio.gather(*(q.enqueue(i) for i in ids))
        await _until(lambda: _count_done(store), jobs + len(warm_ids), 0.05)
        seconds = time.perf_counter() - start
    finally:
        _stop(procs)
        await store.aclose()
        _drop(pg, schema)
    return jobs / seconds


async def _incrs(counter: Any, key: str) -> int:
    return int(counter.get(key) or 0)


async def run_noop(broker_url: str, counter_url: str, n: int, jobs: int, tmp: Path) -> float:
    queue = f"noop-{secrets.token_hex(4)}"
    env = dict(os.environ)
    env.update(
        CHATSVG_CELERY_BROKER=broker_url,
        CHATSVG_NOOP_COUNTER=counter_url,
        PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent / "src")]),
    )
    base = [sys.executable, "-m", "celery", "-A", "_noop_celery_app", "worker", "-P", "gevent"]
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    cmds = [
        [*base, "-c", "16", "-Q", queue, "-n", f"noop{i}@%h", "-l", "ERROR", *quiet]
        for i in range(n)
    ]
    procs = _spawn(cmds, env, tmp)
    counter = redis_lib.Redis.from_url(counter_url)
    key = f"noop:{queue}"
    try:
        app = Celery("noop-host", broker=broker_url)

        def send(k: str, count: int) -> None:
            with app.producer_or_acquire() as producer:
                for _ in range(count):
                    app.send_task("noop.run", args=(k,), queue=queue, producer=producer)

        await asyncio.to_thread(send, key + ":warm", n * 4)
        await _until(lambda: _incrs(counter, key + ":warm"), n * 4, 0.1)
        start = time.perf_counter()
        await asyncio.to_thread(send, key, jobs)
        await _until(lambda: _incrs(counter, key), jobs, 0.02)
        seconds = time.perf_counter() - start
    finally:
        _stop(procs)
        counter.delete(key, key + ":warm")
    return jobs / seconds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--amqp", default=os.environ.get("CHATSVG_TEST_AMQP_URL"))
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    redis = OwnRedis()
    redis.start()
    tmp = Path(tempfile.mkdtemp(prefix="chatsvg-tp-"))
    amqp = args.amqp or "amqp://guest:guest@127.0.0.1:5672//"
    print(f"{args.jobs} jobs per run; instant provider (offline sketch); gevent pool, 16 slots")
    print(
        "| workers | round | process_next | celery/redis | celery/amqp | noop/redis | noop/amqp |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        for r in range(1, args.rounds + 1):
            for n in (int(x) for x in args.workers.split(",")):
                pn = await run_process_next(args.postgres, n, args.jobs)
                cr = await run_celery(args.postgres, redis.url, n, args.jobs, tmp)
                ca = await run_celery(args.postgres, amqp, n, args.jobs, tmp)
                nr = await run_noop(redis.url, redis.url, n, args.jobs, tmp)
                na = await run_noop(amqp, redis.url, n, args.jobs, tmp)
                print(
                    f"| {n} | {r} | {pn:.1f} | {cr:.1f} ({pn / cr:.2f}x) | {ca:.1f} "
                    f"({pn / ca:.2f}x) | {nr:.0f} | {na:.0f} |",
                    flush=True,
                )
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
