"""The Celery app of ``bench_inflight.py`` and ``bench_queues.py``: model calls, counted.

``celery -A _celery_bench_app worker -P gevent -c 500``, configured from the
environment by the benchmark:

* ``CHATSVG_INFLIGHT_BROKER``, ``CHATSVG_INFLIGHT_DB``, ``CHATSVG_INFLIGHT_SCHEMA``,
  ``CHATSVG_INFLIGHT_QUEUE``: where it works;
* ``CHATSVG_INFLIGHT_CALL``: seconds each model call awaits (0: the instant
  provider of the throughput benchmark); ``CHATSVG_INFLIGHT_LEASE``:
  the lease (the keeper extends every lease the process holds every third of it);
* ``CHATSVG_INFLIGHT_REPORT``: a file the worker writes at shutdown: the peak of
  calls in flight, heartbeat rounds (one statement each) and leases lost.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from typing import Any

from celery import Celery, signals

from chatsvg_core.engine import EngineEvent, EventKind
from chatsvg_core.generate import GenerationRequest, OfflineSketchProvider, ProviderOutput
from chatsvg_core.queues import setup_celery

env = os.environ
CALL = float(env.get("CHATSVG_INFLIGHT_CALL", "10"))
stats = {"in_flight": 0, "peak": 0, "calls": 0, "lease_lost": 0}


class SlowProvider:
    """The offline sketcher after ``CALL`` seconds awaited (no CPU: a model far away)."""

    name = "slow"

    def __init__(self) -> None:
        self.inner = OfflineSketchProvider()

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        stats["in_flight"] += 1
        stats["peak"] = max(stats["peak"], stats["in_flight"])
        stats["calls"] += 1
        if CPULOG and not request.prompt.startswith("warm"):
            _cpu_mark()
        try:
            if CALL and not request.prompt.startswith("warm"):
                await asyncio.sleep(CALL)
            return await self.inner.generate(request)
        finally:
            stats["in_flight"] -= 1


# CHATSVG_INFLIGHT_CPULOG (a folder): the worker's CPU seconds at its 1st, 2nd, 5th, 10th,
# 25th... job, one file per process (where a cost fixed per worker is spent).
CPULOG = env.get("CHATSVG_INFLIGHT_CPULOG", "")
_MARKS = {1, 2, 5, 10, 25, 50, 100, 150, 200, 300, 400, 500, 600, 700, 800, 1000, 1500, 2000}
_seen = [0]


def _cpu_mark(label: str = "") -> None:
    import resource
    import time

    if not label:
        _seen[0] += 1
        if _seen[0] not in _MARKS:
            return
        label = str(_seen[0])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.path.join(CPULOG, f"cpu-{os.getpid()}"), "a") as f:
        f.write(f"{label} {usage.ru_utime + usage.ru_stime:.4f} {time.time():.4f}\n")


def on_event(event: EngineEvent) -> None:
    if event.kind is EventKind.LEASE_LOST:
        stats["lease_lost"] += 1


def report(**_: Any) -> None:
    # Connected before setup_celery's own shutdown handler, which closes the engine.
    if not env.get("CHATSVG_INFLIGHT_REPORT"):
        return
    engine = workers._engine
    rounds = 0 if engine is None else sum(k.rounds for k in engine.engine._keepers.values())
    with open(env["CHATSVG_INFLIGHT_REPORT"], "w") as f:
        json.dump({**stats, "keeper_rounds": rounds}, f)


signals.worker_shutdown.connect(report, weak=False)


def warm(**_: Any) -> None:
    """``CHATSVG_INFLIGHT_WARM`` empty claims at once, then a file in ``..._READY_DIR``.

    bench_queues starts the clock with every worker's engine open and its
    connections warm, as a polling ``process_next`` worker's are: the engine
    opens at a worker's first task, and the run's few warm-up jobs need not
    reach every worker. Sent before any job exists, so the claims find none.
    """
    count = int(env.get("CHATSVG_INFLIGHT_WARM", "0"))
    if not count:
        return
    engine = workers.engine()

    async def claims() -> None:
        pid = os.getpid()
        await asyncio.gather(*(engine.engine.process_next(f"warm-{pid}-{n}") for n in range(count)))

    engine.portal.call(claims)
    if CPULOG:
        _cpu_mark("ready")
    with open(os.path.join(env["CHATSVG_INFLIGHT_READY_DIR"], f"ready-{os.getpid()}"), "w"):
        pass


signals.worker_ready.connect(warm, weak=False)

app = Celery("chatsvg_inflight", broker=env.get("CHATSVG_INFLIGHT_BROKER", "memory://"))
app.conf.update(worker_enable_remote_control=False, worker_send_task_events=False)
workers = setup_celery(
    app,
    env.get("CHATSVG_INFLIGHT_DB", "memory://"),
    provider=SlowProvider,
    queue=env.get("CHATSVG_INFLIGHT_QUEUE") or None,
    storage_options=(
        {
            "schema": env["CHATSVG_INFLIGHT_SCHEMA"],
            # The warm-up's connections open before READY (see warm and _fleet.Spec.warm).
            "min_size": max(2, min(int(env.get("CHATSVG_INFLIGHT_WARM", "0")), 10)),
            "max_size": 10,
        }
        if env.get("CHATSVG_INFLIGHT_SCHEMA")
        else None
    ),
    lease=timedelta(seconds=float(env.get("CHATSVG_INFLIGHT_LEASE", "30"))),
    on_event=on_event,
)
