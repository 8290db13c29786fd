"""Which Celery pool serves I/O-bound model calls: gevent vs threads vs prefork.

One Celery worker (one process, or prefork's parent and children) on a
redis-server of the run's own and a PostgreSQL schema of its own; the
provider awaits ``--sleep`` seconds per call (a model that takes its time)
and uses no CPU. For each pool: jobs per second, the peak number of jobs
RUNNING at once (sampled from the store), and the CPU seconds and memory the
worker's processes used. Pools run one after another in rounds (interleaved)
so a change of machine load hits each alike.

    python benchmarks/bench_celery_pools.py [--jobs 300] [--sleep 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery import Celery
from tests.queues._celery_chaos import OwnRedis, _env, worker_cmd

from chatsvg_core.engine import Engine
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import setup_celery
from chatsvg_core.storage.postgres import PostgresStore


def _tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes of ``pid`` and its children (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except FileNotFoundError:
        pass
    cpu, rss = 0.0, 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, IndexError):
            continue
    return cpu, rss


def _start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def one(pool: str, concurrency: int, jobs: int, sleep: float, pg: str) -> dict[str, float]:
    schema = f"chatsvg_pool_{secrets.token_hex(4)}"
    queue = f"chatsvg-pool-{secrets.token_hex(4)}"
    redis = OwnRedis()
    redis.start()
    store = await PostgresStore.open(pg, schema=schema, min_size=1, max_size=4)
    tmp = Path(tempfile.mkdtemp(prefix="chatsvg-pool-"))
    (tmp / "events").mkdir()
    env = _env(
        redis.url,
        pg,
        schema,
        queue,
        tmp / "events",
        CHATSVG_CELERY_LEASE="60",
        CHATSVG_CELERY_BEAT="30",
        CHATSVG_CELERY_SLEEP=str(sleep),
        CHATSVG_CELERY_FAULTS="0,0,0",
    )
    env.pop("CHATSVG_CELERY_EVENTS")
    worker = _start(worker_cmd("bench", queue, pool, concurrency), env, tmp)
    try:
        app = Celery("bench-host", broker=redis.url)
        host = setup_celery(app, pg, provider=OfflineSketchProvider, queue=queue)
        engine = Engine(store, host.queue, OfflineSketchProvider())
        await Ledger(store).grant("bench", 10 * jobs)
        # Warm-up: the worker is up and has opened its engine before the clock starts.
        warm = (await engine.submit("bench", None, {"prompt": "warm up"})).job.id
        for _ in range(600):
            if (await engine.get(warm)).terminal:
                break
            await asyncio.sleep(0.2)
        cpu0, _ = _tree_usage(worker.pid)
        start = time.perf_counter()
        ids = [
            (await engine.submit("bench", None, {"prompt": f"a kite {i}"})).job.id
            for i in range(jobs)
        ]
        submitted = time.perf_counter() - start
        peak = 0
        rss_peak = 0
        while True:
            async with store.transaction() as tx:
                running = len(await tx.list_jobs(status=JobStatus.RUNNING, limit=10_000))
                done = len(await tx.list_jobs(status=JobStatus.SUCCEEDED, limit=10_000))
            peak = max(peak, running)
            rss_peak = max(rss_peak, _tree_usage(worker.pid)[1])
            if done >= len(ids) + 1:
                break
            await asyncio.sleep(0.25)
        seconds = time.perf_counter() - start
        cpu1, _ = _tree_usage(worker.pid)
    finally:
        worker.kill()
        worker.wait()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        await store.aclose()
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "jobs_per_s": jobs / seconds,
        "peak_in_flight": peak,
        "cpu_s_per_job": (cpu1 - cpu0) / jobs,
        "cpu_share": (cpu1 - cpu0) / seconds,
        "rss_mb": rss_peak / 2**20,
        "submit_s": submitted,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--slots", type=int, default=100, help="gevent/threads concurrency")
    parser.add_argument("--children", type=int, default=8, help="prefork processes")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    pools = [("gevent", args.slots), ("threads", args.slots), ("prefork", args.children)]
    print(f"provider awaits {args.sleep} s per call; {args.jobs} jobs per run")
    print(
        "| pool | slots | round | jobs/s | peak in flight | CPU per job | CPU (cores) | RSS MB "
        "| submitting took (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in range(1, args.rounds + 1):
        for pool, slots in pools:
            m = await one(pool, slots, args.jobs, args.sleep, args.postgres)
            print(
                f"| {pool} | {slots} | {r} | {m['jobs_per_s']:.1f} | {m['peak_in_flight']:.0f} | "
                f"{m['cpu_s_per_job'] * 1000:.1f} ms | {m['cpu_share']:.2f} | {m['rss_mb']:.0f} | "
                f"{m['submit_s']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
