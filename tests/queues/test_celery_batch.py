"""The Celery adapter's messages naming several jobs: how they are grouped, run and handed back."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from celery import Celery
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.engine import Engine, SyncEngine
from chatsvg_core.errors import ConfigurationError
from chatsvg_core.generate import GenerationRequest, ProviderOutput
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import (
    PROCESS_MANY_TASK,
    PROCESS_TASK,
    CeleryQueue,
    CeleryWorkers,
    setup_celery,
)
from chatsvg_core.queues._celery import _Publisher, _Slots
from chatsvg_core.storage import MemoryStore

from .test_celery import _redis_db

SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><rect width="4" height="4"/></svg>'


def _messages(
    per_message: int, batch: list[tuple[str, float]]
) -> list[tuple[list[str], float, int]]:
    fake = SimpleNamespace(_queue=SimpleNamespace(per_message=per_message))
    announcements = [(job_id, delay, None, None) for job_id, delay in batch]
    return _Publisher._messages(fake, announcements)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    per_message=st.integers(1, 6),
    batch=st.lists(
        st.tuples(st.sampled_from([f"j{i}" for i in range(8)]), st.sampled_from([0.0, 0.0, 2.5])),
        min_size=1,
        max_size=24,
    ),
)
def test_waiting_announcements_become_few_messages_covering_each_once(
    per_message: int, batch: list[tuple[str, float]]
) -> None:
    messages = _messages(per_message, batch)
    # Every announcement is covered by exactly one message (the dropped count relies on it).
    assert sum(covers for _, _, covers in messages) == len(batch)
    for job_ids, delay, covers in messages:
        assert 1 <= len(job_ids) <= per_message
        assert covers >= len(job_ids)
        if delay:  # a delayed announcement is a message of its own, with its countdown
            assert len(job_ids) == 1 and covers == 1
    # Each delayed announcement keeps its message; each job due now is named exactly once.
    delayed = Counter(job_id for job_id, delay in batch if delay)
    sent_delayed = Counter(ids[0] for ids, delay, _ in messages if delay)
    if per_message == 1:
        assert len(messages) == len(batch)
    else:
        assert sent_delayed == delayed
        due = [j for ids, delay, _ in messages if not delay for j in ids]
        assert sorted(due) == sorted({job_id for job_id, delay in batch if not delay})
        # As few messages as the size allows.
        assert len([m for m in messages if not m[1]]) == -(-len(due) // per_message)


def test_per_message_and_max_in_flight_must_be_positive() -> None:
    app = Celery("t", broker="memory://")
    with pytest.raises(ConfigurationError, match="per_message"):
        CeleryQueue(app, per_message=0)
    with pytest.raises(ConfigurationError, match="max_in_flight"):
        setup_celery(app, "memory://", provider=_Instant, max_in_flight=0)


def test_setup_registers_both_task_forms_with_late_acks() -> None:
    app = Celery("t", broker="memory://")
    setup_celery(app, "memory://", provider=_Instant, queue="q1")
    for name in (PROCESS_TASK, PROCESS_MANY_TASK):
        assert app.tasks[name].acks_late and app.tasks[name].reject_on_worker_lost
        assert app.conf.task_routes[name] == {"queue": "q1"}


# --- the in-flight slots ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 4), jobs=st.integers(0, 12), stop_after=st.none() | st.integers(1, 12))
def test_slots_bound_jobs_in_flight_and_a_stop_refuses_every_waiter(
    size: int, jobs: int, stop_after: int | None
) -> None:
    async def main() -> None:
        slots = _Slots(size)
        now = peak = ran = 0
        refused = 0
        order: list[int] = []

        async def job(i: int) -> None:
            nonlocal now, peak, ran, refused
            if not await slots.take():
                refused += 1
                return
            try:
                order.append(i)
                now += 1
                peak = max(peak, now)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                ran += 1
                if stop_after is not None and ran == stop_after:
                    slots.stop()
            finally:
                now -= 1
                slots.give()

        await asyncio.gather(*(job(i) for i in range(jobs)))
        assert peak <= size
        assert ran + refused == jobs
        assert order == sorted(order)  # first come, first served
        if stop_after is None or stop_after >= jobs:
            assert ran == jobs
        else:
            # No job starts after the stop: only those already running finish.
            assert ran <= stop_after + size - 1
        assert slots.free == size

    asyncio.run(main())


def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    async def main() -> None:
        slots = _Slots(1)
        assert await slots.take()
        first = asyncio.ensure_future(slots.take())
        second = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        slots.give()  # handed to `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1)
        slots.give()
        assert slots.free == 1

    asyncio.run(main())


# --- process_many on a real engine ----------------------------------------------------------


class _Instant:
    name = "instant"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


class _Gated:
    """Counts calls in flight; prompts starting with ``hang`` wait until cancelled."""

    name = "gated"

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.calls: Counter[str] = Counter()

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.calls[request.prompt] += 1
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if request.prompt.startswith("hang"):
                await asyncio.Event().wait()
            await asyncio.sleep(0.02)
        finally:
            self.now -= 1
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


class _Recorder:
    """A queue that records announcements (the engine's, and the adapter's hand-backs)."""

    def __init__(self) -> None:
        self.announced: list[str] = []

    async def enqueue(self, job_id: str, *, delay: float = 0.0) -> None:
        self.announced.append(job_id)


@contextmanager
def _workers(
    provider: Any, *, max_in_flight: int, grace: float = 0.0, engine_class: type[Engine] = Engine
) -> Iterator[tuple[CeleryWorkers, SyncEngine, _Recorder]]:
    recorder = _Recorder()
    with start_blocking_portal() as portal:
        store = MemoryStore()
        engine = engine_class(store, recorder, provider)
        portal.call(Ledger(store).grant, "o", 1_000)
        sync = SyncEngine(engine, portal=portal)
        app = Celery("t", broker="memory://")
        workers = CeleryWorkers(
            app,
            CeleryQueue(app),
            lambda _: sync,
            overdue=30,
            shutdown_grace=grace,
            close_engine=False,
            max_in_flight=max_in_flight,
        )
        try:
            yield workers, sync, recorder
        finally:
            portal.call(store.aclose)


def _submit(sync: SyncEngine, engine_recorder: _Recorder, prompts: list[str]) -> list[str]:
    ids = [sync.submit("o", f"k-{p}", {"prompt": p}).job.id for p in prompts]
    engine_recorder.announced.clear()  # the submits' own announcements
    return ids


def test_a_message_of_several_jobs_runs_each_once_within_the_in_flight_limit() -> None:
    provider = _Gated()
    with _workers(provider, max_in_flight=2) as (workers, sync, recorder):
        ids = _submit(sync, recorder, [f"ok {i}" for i in range(7)])
        # Twice: a redelivered message (a crash before its ack) is only duplicates.
        statuses = workers.process_many(ids)
        again = workers.process_many([*ids, ids[0]])
        jobs = [sync.get(i) for i in ids]
    assert statuses == ["succeeded"] * 7
    assert again == [None] * 8
    assert all(j is not None and j.status is JobStatus.SUCCEEDED for j in jobs)
    assert provider.peak == 2, provider.peak  # the jobs ran at once, two at a time
    assert set(provider.calls.values()) == {1}


def test_single_and_several_job_messages_share_the_process_slots() -> None:
    provider = _Gated()
    with _workers(provider, max_in_flight=3) as (workers, sync, recorder):
        ids = _submit(sync, recorder, [f"ok {i}" for i in range(9)])
        threads = [
            threading.Thread(target=workers.process_many, args=(ids[:4],)),
            threading.Thread(target=workers.process_many, args=(ids[4:8],)),
            threading.Thread(target=workers.process, args=(ids[8],)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        jobs = [sync.get(i) for i in ids]
    assert all(j is not None and j.status is JobStatus.SUCCEEDED for j in jobs)
    assert provider.peak <= 3


def test_shutdown_starts_no_waiting_job_announces_it_again_and_hands_back_the_running() -> None:
    provider = _Gated()
    with _workers(provider, max_in_flight=1, grace=0.2) as (workers, sync, recorder):
        ids = _submit(sync, recorder, ["hang 0", "ok 1", "ok 2"])
        result: list[Any] = []
        runner = threading.Thread(target=lambda: result.append(workers.process_many(ids)))
        runner.start()
        deadline = time.monotonic() + 5
        while not provider.calls["hang 0"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert provider.calls["hang 0"] == 1
        workers._shutting_down()  # as worker_shutting_down does at SIGTERM
        runner.join(10)
        assert not runner.is_alive()
        jobs = [sync.get(i) for i in ids]
    # The running job handed back (QUEUED, announced by the engine); the two that
    # waited for the slot never started and were announced again at once.
    assert result == [[None, None, None]]
    assert all(j is not None and j.status is JobStatus.QUEUED for j in jobs)
    assert jobs[0] is not None and jobs[0].attempt == 1
    assert sorted(recorder.announced) == sorted(ids)
    assert provider.calls == Counter({"hang 0": 1})


class _Breaking(Engine):
    async def process(self, job_id: str, worker_id: str) -> Any:
        if job_id == "boom":
            raise RuntimeError("the store is gone")
        return await super().process(job_id, worker_id)


def test_one_failing_job_does_not_stop_the_others() -> None:
    provider = _Gated()
    with _workers(provider, max_in_flight=4, engine_class=_Breaking) as (workers, sync, rec):
        ids = _submit(sync, rec, ["ok a", "ok b"])
        # Raised after the others end, so Celery logs the task's failure as for one job.
        with pytest.raises(RuntimeError, match="store is gone"):
            workers.process_many([ids[0], "boom", ids[1]])
        jobs = [sync.get(i) for i in ids]
    assert all(j is not None and j.status is JobStatus.SUCCEEDED for j in jobs)


# --- on a real broker ------------------------------------------------------------------------


@pytest.mark.redis
async def test_concurrent_announcements_go_out_as_messages_naming_several_jobs(
    redis_url: str,
) -> None:
    import redis

    url = _redis_db(redis_url, 3)
    queue_name = f"chatsvg-t-{secrets.token_hex(4)}"
    app = Celery("t", broker=url)
    queue = CeleryQueue(app, queue=queue_name, per_message=4)
    client = redis.Redis.from_url(url)
    try:
        ids = [f"job-{i}" for i in range(40)]
        await asyncio.gather(*(queue.enqueue(i) for i in ids))
        await queue.enqueue("alone")
        await queue.enqueue("later", delay=30)
        messages = [json.loads(m) for m in client.lrange(queue_name, 0, -1)]
        named: list[str] = []
        for m in messages:
            body = json.loads(__import__("base64").b64decode(m["body"]))
            (args, _, _) = body
            if m["headers"]["task"] == PROCESS_MANY_TASK:
                (job_ids,) = args
                assert 2 <= len(job_ids) <= 4
                assert m["headers"]["chatsvg_jobs"] == len(job_ids)
                named += job_ids
            else:
                assert m["headers"]["task"] == PROCESS_TASK
                named += args
        assert sorted(named) == sorted([*ids, "alone", "later"])
        assert len(messages) == queue.messages
        assert len(messages) < len(ids)  # they waited together: fewer messages than jobs
        assert queue.dropped == 0
    finally:
        client.delete(queue_name)
        client.close()


# --- the prefetch window counts jobs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "jobs", "borrowed"),
    [(50, 8, 7), (50, 1, 0), (4, 8, 3), (1, 8, 0), (0, 8, 0)],
)
def test_a_message_of_n_jobs_borrows_n_minus_1_from_the_window_until_it_is_settled(
    monkeypatch: pytest.MonkeyPatch, window: int, jobs: int, borrowed: int
) -> None:
    from celery.worker import strategy
    from kombu.common import QoS

    from chatsvg_core.queues._celery import _window_strategy

    handled: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        strategy,
        "default",
        lambda *a, **k: lambda message, body, ack, reject, callbacks: handled.append((ack, reject)),
    )
    applied: list[int] = []
    consumer = SimpleNamespace(
        qos=QoS(lambda prefetch_count: applied.append(prefetch_count), window)
    )
    on_message = _window_strategy(None, None, consumer)
    settled: list[str] = []
    for settle in ("ack", "reject"):
        message = SimpleNamespace(headers={"task": PROCESS_MANY_TASK, "chatsvg_jobs": jobs})
        on_message(
            message, None, lambda *a: settled.append("ack"), lambda *a: settled.append("reject"), []
        )
        assert consumer.qos.value == window - borrowed  # at most down to 1; 0 (no limit) stays
        ack, reject = handled.pop()
        (ack if settle == "ack" else reject)("logger", ())
        (ack if settle == "ack" else reject)("logger", ())  # a second settle repays nothing
        assert consumer.qos.value == window
    assert settled == ["ack", "ack", "reject", "reject"]


@pytest.mark.redis
def test_a_green_worker_holds_messages_for_as_many_jobs_as_it_has_slots(
    tmp_path: Any, redis_url: str
) -> None:
    # A real gevent worker with 4 slots, model calls that hang, and 4 messages of 4 jobs:
    # it runs 4 jobs and holds at most one message beyond the one it runs (the window
    # counts jobs; without that it would hold all 4 messages, 16 jobs, running 4).
    # SIGTERM then hands the running jobs back and announces the waiting ones again.
    import signal
    import subprocess

    import redis

    from chatsvg_core import SyncLedger

    from ._celery_chaos import APP_DIR, _env, worker_cmd

    db = f"sqlite:///{tmp_path}/jobs.db"
    queue_name = f"chatsvg-t-{secrets.token_hex(4)}"
    broker = _redis_db(redis_url, 3)
    env = _env(
        broker,
        db,
        "",
        queue_name,
        tmp_path,
        CHATSVG_CELERY_SLEEP="300",
        CHATSVG_CELERY_LEASE="60",
        CHATSVG_CELERY_BEAT="30",
        CHATSVG_CELERY_GRACE="1",
    )
    silent = SyncEngine.open(db, provider=_Instant())
    client = redis.Redis.from_url(broker)
    queue = CeleryQueue(Celery("host", broker=broker), queue=queue_name)
    worker = None
    try:
        SyncLedger(silent.store).grant("u", 100)
        ids = [silent.submit("u", f"k{i}", {"prompt": f"a kite {i}"}).job.id for i in range(16)]
        for first in range(0, 16, 4):
            assert queue._publish(ids[first : first + 4], 0.0, None, 4)
        worker = subprocess.Popen(
            worker_cmd("w1", queue_name, "gevent", 4), env=env, cwd=APP_DIR, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while sum(silent.get(i).status is JobStatus.RUNNING for i in ids) < 4:
            assert time.monotonic() < deadline, "the worker never ran 4 jobs"
            time.sleep(0.1)
        time.sleep(1.0)  # time to fetch more, if it would
        running = sum(silent.get(i).status is JobStatus.RUNNING for i in ids)
        waiting_in_redis = client.llen(queue_name)
        # kombu's `unacked` hash is shared by every queue of this Redis database
        # (other tests' killed workers leave entries): count this queue's only.
        held = sum(json.loads(raw)[2] == queue_name for raw in client.hvals("unacked"))
        assert running == 4
        assert held <= 2, f"the worker holds {held} messages for 4 slots"
        assert waiting_in_redis >= 2
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()[-2000:]
        jobs = [silent.get(i) for i in ids]
        assert all(j.status is JobStatus.QUEUED for j in jobs), Counter(j.status for j in jobs)
        # Every job is announced again or still waits in the broker: none left to the sweep.
        named = set()
        for raw in client.lrange(queue_name, 0, -1):
            message = json.loads(raw)
            (args, _, _) = json.loads(__import__("base64").b64decode(message["body"]))
            named |= set(args[0]) if isinstance(args[0], list) else {args[0]}
        assert named == set(ids)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        silent.close()
        client.delete(queue_name)
        client.close()
