"""The Celery app the real-worker tests and benchmarks start (``celery -A _celery_app worker``).

Configured from the environment by the harness that starts it, so one
module serves the chaos test, the chaos script and the benchmarks:

* ``CHATSVG_CELERY_BROKER``: the broker URL (``redis://`` or ``amqp://``).
* ``CHATSVG_CELERY_DB``: the storage URL; ``CHATSVG_CELERY_SCHEMA``: its schema.
* ``CHATSVG_CELERY_QUEUE``: the Celery queue name (unique per run).
* ``CHATSVG_CELERY_LEASE``, ``CHATSVG_CELERY_BEAT``: lease and beat period (s).
* ``CHATSVG_CELERY_FAULTS``: ``transient,permanent,hang`` probabilities per call.
* ``CHATSVG_CELERY_SLEEP``: seconds each provider call awaits (I/O-bound model).
* ``CHATSVG_CELERY_GRACE``: seconds running jobs may finish on SIGTERM (10).
* ``CHATSVG_CELERY_EVENTS``: a directory; each process appends its
  ``succeeded`` and ``lease_lost`` events there as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from datetime import timedelta
from pathlib import Path

from celery import Celery

from chatsvg_core.engine import EngineEvent, EventKind
from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError
from chatsvg_core.generate import GenerationRequest, OfflineSketchProvider, ProviderOutput
from chatsvg_core.queues import setup_celery
from chatsvg_core.retry import Jitter, RetryPolicy

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.3, jitter=Jitter.FULL)

env = os.environ
LEASE = float(env.get("CHATSVG_CELERY_LEASE", "2"))
BEAT = float(env.get("CHATSVG_CELERY_BEAT", "1"))
TRANSIENT, PERMANENT, HANG = (
    float(x) for x in env.get("CHATSVG_CELERY_FAULTS", "0,0,0").split(",")
)
SLEEP = float(env.get("CHATSVG_CELERY_SLEEP", "0"))
GRACE = float(env.get("CHATSVG_CELERY_GRACE", "10"))


class ChaosProvider:
    """The offline sketcher, slowed to ``SLEEP`` s a call, with scripted fault rates."""

    name = "chaos"

    def __init__(self) -> None:
        self.inner = OfflineSketchProvider()
        self.rng = random.Random(os.getpid() ^ time.monotonic_ns())

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        roll = self.rng.random()
        if roll < TRANSIENT:
            raise ProviderTransientError("chaos: 503", provider=self.name, status=503)
        if roll < TRANSIENT + PERMANENT:
            raise ProviderPermanentError("chaos: 400", provider=self.name, status=400)
        if roll < TRANSIENT + PERMANENT + HANG:
            # Stall this process's loop past the lease: no heartbeat can run, a
            # beat's recovery takes the job, and this attempt's late writes
            # must be refused.
            time.sleep(LEASE * 1.5)  # noqa: ASYNC251 (blocking on purpose)
        if SLEEP:
            await asyncio.sleep(SLEEP)
        return await self.inner.generate(request)


class EventLog:
    """Appends the events the harness checks to one file per process."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder

    def __call__(self, event: EngineEvent) -> None:
        if self.folder is None or event.kind not in (EventKind.SUCCEEDED, EventKind.LEASE_LOST):
            return
        line = json.dumps({"kind": event.kind.value, "job": event.job_id, "attempt": event.attempt})
        with (Path(self.folder) / f"{os.getpid()}.jsonl").open("a") as f:
            f.write(line + "\n")


app = Celery("chatsvg_test", broker=env.get("CHATSVG_CELERY_BROKER", "memory://"))
app.conf.update(
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_max_retries=None,  # outlive the broker outage the harness causes
)
workers = setup_celery(
    app,
    env.get("CHATSVG_CELERY_DB", "memory://"),
    provider=ChaosProvider,
    queue=env.get("CHATSVG_CELERY_QUEUE") or None,
    recover_every=BEAT,
    shutdown_grace=GRACE,
    sweep_every=BEAT,
    overdue=2 * BEAT,
    storage_options=(
        {"schema": env["CHATSVG_CELERY_SCHEMA"], "min_size": 1, "max_size": 4}
        if env.get("CHATSVG_CELERY_SCHEMA")
        else None
    ),
    lease=timedelta(seconds=LEASE),
    policy=POLICY,
    call_policy=POLICY.model_copy(update={"max_attempts": 1}),
    on_event=EventLog(env.get("CHATSVG_CELERY_EVENTS")),
)
