"""Many generations in flight in ONE worker process, per queue adapter.

A provider that awaits ``--call`` seconds per call; ``--jobs`` jobs submitted,
then announced at once; one worker process (the built-in in-process queue fed
by a store sweep, arq, Procrastinate, or Celery with the gevent pool and one
slot per job on a redis-server of the run's own) on PostgreSQL with
``--lease`` second leases. Reports the peak of model calls in flight, leases lost, lease-upkeep
statements (heartbeat rounds: one statement each, for all the leases the
process holds) per job, and the worker's CPU time over the run's wall time.

    python benchmarks/bench_inflight.py [--jobs 500] [--call 10] [--lease 30]
        [--kinds inprocess,arq,procrastinate,celery]

Needs CHATSVG_TEST_POSTGRES_URL (and CHATSVG_TEST_REDIS_URL for arq; db 5 is used).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._celery_chaos import OwnRedis
from tests.queues._fleet import InflightReport, inflight
from tests.queues._support import redis_db

HERE = Path(__file__).resolve().parent


def _cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def celery_inflight(
    postgres: str, *, jobs: int, call_seconds: float, lease: float, pool: str = "gevent"
) -> InflightReport:
    """One Celery worker (``pool``, ``jobs`` slots) on a redis-server of the run's own."""
    from celery import Celery

    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.queues import CeleryQueue
    from chatsvg_core.storage.postgres import PostgresStore

    report = InflightReport(
        kind=f"celery ({pool})", jobs=jobs, call_seconds=call_seconds, lease=lease
    )
    schema = f"chatsvg_infl_{secrets.token_hex(4)}"
    queue_name = f"inflight-{schema}"
    redis = OwnRedis()
    redis.start()
    tmp = Path(tempfile.mkdtemp(prefix="chatsvg-inflight-"))
    store = await PostgresStore.open(postgres, schema=schema, min_size=1, max_size=4)
    env = {
        **os.environ,
        "CHATSVG_INFLIGHT_BROKER": redis.url,
        "CHATSVG_INFLIGHT_DB": postgres,
        "CHATSVG_INFLIGHT_SCHEMA": schema,
        "CHATSVG_INFLIGHT_QUEUE": queue_name,
        "CHATSVG_INFLIGHT_CALL": str(call_seconds),
        "CHATSVG_INFLIGHT_LEASE": str(lease),
        "CHATSVG_INFLIGHT_REPORT": str(tmp / "report.json"),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "src")]),
    }
    cmd = [sys.executable, "-m", "celery", "-A", "_celery_bench_app", "worker"]
    cmd += ["-P", pool, "-c", str(jobs), "-Q", queue_name, "-l", "ERROR"]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = _start(cmd, env, tmp)
    try:
        app = Celery("inflight-host", broker=redis.url)
        queue = CeleryQueue(app, queue=queue_name)
        engine = Engine(store, queue, OfflineSketchProvider())
        owners = [f"o{i}" for i in range(50)]
        for owner in owners:
            await Ledger(store).grant(owner, 10 * jobs)
        # Warm-up: the worker is up and has opened its engine before the clock.
        warm = (await engine.submit("o0", "warm", {"prompt": "warm up"})).job.id
        await engine.wait(warm, timeout=120)
        silent = Engine(store, None, OfflineSketchProvider())
        ids = [
            (await silent.submit(owners[i % 50], f"k{i}", {"prompt": f"p{i}"})).job.id
            for i in range(jobs)
        ]
        cpu0 = _cpu(worker.pid)
        start = time.monotonic()
        await asyncio.gather(*(queue.enqueue(i) for i in ids))
        deadline = start + 60 + 4 * call_seconds
        while time.monotonic() < deadline and worker.poll() is None:
            async with store.transaction() as tx:
                done = [await tx.get_job(i) for i in ids]
            if all(j is not None and j.terminal for j in done):
                break
            await engine.recover()  # as the beat would: a lapsed lease is taken
            await asyncio.sleep(0.25)
        report.run_seconds = time.monotonic() - start
        report.worker_cpu_seconds = _cpu(worker.pid) - cpu0
        report.succeeded = sum(1 for j in done if j is not None and j.status.value == "succeeded")
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        stats = json.loads((tmp / "report.json").read_text())
        report.peak_in_flight = int(stats["peak"])
        report.lease_lost = int(stats["lease_lost"])
        report.keeper_rounds = int(stats["keeper_rounds"])
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        redis.stop()
        await store.aclose()
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--call", type=float, default=10.0)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--kinds", default="inprocess,arq,procrastinate,celery")
    args = parser.parse_args()
    postgres = os.environ["CHATSVG_TEST_POSTGRES_URL"]
    redis = redis_db(os.environ.get("CHATSVG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), 5)
    print(f"load before: {os.getloadavg()}")
    print(
        "| worker | jobs | call s | lease s | peak in flight | leases lost | heartbeat "
        "statements | statements/job | worker CPU s | wall s | CPU share of a core |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in args.kinds.split(","):
        if kind == "celery":
            r = await celery_inflight(
                postgres, jobs=args.jobs, call_seconds=args.call, lease=args.lease
            )
        else:
            r = await inflight(
                kind,
                postgres_url=postgres,
                redis_url=redis,
                jobs=args.jobs,
                call_seconds=args.call,
                lease=args.lease,
            )
        print(
            f"| {r.kind} | {r.jobs} | {r.call_seconds:g} | {r.lease:g} | {r.peak_in_flight} "
            f"| {r.lease_lost} | {r.keeper_rounds} | {r.lease_statements_per_job:.3f} "
            f"| {r.worker_cpu_seconds:.1f} | {r.run_seconds:.1f} | {r.cpu_share:.2f} |",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
