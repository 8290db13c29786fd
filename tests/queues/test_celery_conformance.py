"""The queue conformance suite, unchanged, on Celery: a real worker on Redis and on RabbitMQ.

Each worker is Celery's own ``WorkController`` with the threads pool, run in
a thread of the test process; its task body is the one ``setup_celery``
registers, reaching the suite's engine through
``QueueConformance.sync_engine`` (a portal on the suite's loop). Stopping it
is a warm shutdown as SIGTERM starts one: ``worker_shutting_down`` is sent
(the adapter's hand-back timer starts), then the worker stops taking work
and waits for its running tasks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from uuid import uuid4

import pytest
from celery import Celery, signals

from chatsvg_core.engine import Engine, SyncEngine
from chatsvg_core.queues import CeleryQueue, JobQueue, setup_celery
from chatsvg_core.testing.conformance import QueueConformance

from ._support import redis_db

CELERY_REDIS_DB = 2
"""This file's Redis database (test_celery.py uses 1 and 3; the arq suite 4)."""


_RUNNING: set[Any] = set()
"""The Celery workers this process runs now (the suite's tests run on one thread)."""


@contextmanager
def celery_worker(app: Celery, queue: str, *, concurrency: int = 16) -> Iterator[Any]:
    """A Celery worker (threads pool) in a thread; leaving it is a warm shutdown."""
    from celery.worker import state

    ready = threading.Event()

    class Worker(app.WorkController):  # type: ignore[name-defined,misc]
        def on_consumer_ready(self, consumer: Any) -> None:
            # A SIGTERM would interrupt the event loop's poll at once; a flag
            # set from another thread is seen only when it wakes (up to 10 s
            # on RabbitMQ), so keep its polls short.
            if self.hub is not None:
                self.hub.call_repeatedly(0.05, lambda: None)
            ready.set()

    # The threads pool runs each task through Celery's *current* app, as a
    # `celery -A <app> worker` process sets it (for all its threads).
    app.set_default()
    worker = Worker(
        hostname=f"chatsvg-suite-{uuid4().hex[:8]}@localhost",
        pool="threads",
        queues=[queue],  # as `celery worker -Q <queue>`
        concurrency=concurrency,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="ERROR",
        # Celery's event loop (kombu's hub) is process-global: a second
        # worker in this process (the two-worker test) must not share it,
        # and takes the plain loop (it polls the broker every 2 s).
        use_eventloop=not _RUNNING,
    )
    _RUNNING.add(worker)
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    try:
        if not ready.wait(20):
            raise TimeoutError("the Celery worker did not start")
        yield worker
    finally:
        # What the SIGTERM handler does, minus the signal: tell the hooks,
        # then ask the consumer loop to stop (it waits for running tasks).
        signals.worker_shutting_down.send(
            sender=worker.hostname, sig="SIGTERM", how="Warm", exitcode=0
        )
        state.should_stop = 0
        thread.join(60)
        state.should_stop = None
        _RUNNING.discard(worker)
        assert not thread.is_alive(), "the Celery worker did not stop"


class _CeleryConformance(QueueConformance):
    """The suite on a Celery broker; subclasses name the broker URL."""

    broker: str
    # A worker holds a countdown's message until its ETA; its timer fires
    # on wall-clock time with about a millisecond of slack.
    delay_tolerance = 0.02
    shutdown_within = 10.0
    grace = 0.5

    def _app(self, queue_name: str) -> Celery:
        app = Celery(f"suite-{uuid4().hex[:8]}", broker=self.broker, set_as_current=False)
        app.conf.update(
            worker_enable_remote_control=False,
            worker_send_task_events=False,
            worker_hijack_root_logger=False,
            broker_connection_timeout=2,
        )
        return app

    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        name = f"chatsvg-suite-{uuid4().hex[:12]}"
        app = self._app(name)
        queue = CeleryQueue(app, queue=name)
        try:
            yield queue
        finally:
            await asyncio.to_thread(self._purge, app, name)

    @staticmethod
    def _purge(app: Celery, name: str) -> None:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            channel.queue_delete(name)
        app.close()

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, CeleryQueue) and queue.queue is not None
        # A Celery app per worker: two workers in one process stand for two hosts.
        app = self._app(queue.queue)
        sync: SyncEngine = self.sync_engine(engine)
        setup_celery(
            app,
            open_engine=lambda _: sync,
            close_engine=False,  # the suite's engine: the suite closes its store
            shutdown_grace=self.grace,
            queue=queue.queue,
        )
        worker_cm = celery_worker(app, queue.queue)
        # Started and stopped off the loop: the worker's task threads call
        # into this loop, which must keep running while they finish.
        await asyncio.to_thread(worker_cm.__enter__)
        try:
            yield
        finally:
            await asyncio.to_thread(worker_cm.__exit__, None, None, None)
            app.close()


@pytest.mark.redis
class TestCeleryOnRedis(_CeleryConformance):
    @pytest.fixture(autouse=True)
    def _broker(self, redis_url: str) -> None:
        self.broker = redis_db(redis_url, CELERY_REDIS_DB)


@pytest.mark.amqp
class TestCeleryOnRabbitMQ(_CeleryConformance):
    @pytest.fixture(autouse=True)
    def _broker(self, amqp_url: str) -> None:
        self.broker = amqp_url
