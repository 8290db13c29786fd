"""The Celery adapter: what it publishes, what it refuses, and workers on real brokers."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.engine import Engine
from chatsvg_core.errors import ConfigurationError
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import PROCESS_TASK, CeleryQueue, JobQueue, setup_celery
from chatsvg_core.storage.postgres import PostgresStore

from ._celery_chaos import ChaosReport, celery_chaos, spare_port


def _redis_db(redis_url: str, db: int) -> str:
    # This engineer's Redis dbs are 1-3; db 0 belongs to nobody's tests in particular.
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def test_setup_refuses_a_countdown_the_broker_would_redeliver() -> None:
    app = Celery("t", broker="memory://")
    with pytest.raises(ConfigurationError, match="visibility timeout"):
        setup_celery(
            app,
            "memory://",
            provider=OfflineSketchProvider,
            max_countdown=4000,
            visibility_timeout=3600,
        )
    with pytest.raises(ConfigurationError, match="lease"):
        setup_celery(
            app,
            "memory://",
            provider=OfflineSketchProvider,
            visibility_timeout=60,
            max_countdown=30,
            lease=timedelta(minutes=5),
        )


def test_setup_sets_at_least_once_delivery_and_the_beat() -> None:
    app = Celery("t", broker="memory://")
    workers = setup_celery(app, "memory://", provider=OfflineSketchProvider, queue="gen")
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 3600
    assert {e["task"] for e in conf.beat_schedule.values()} == {
        "chatsvg_core.recover",
        "chatsvg_core.sweep",
    }
    assert isinstance(workers.queue, JobQueue)
    assert app.tasks[PROCESS_TASK].acks_late


def test_the_tasks_keep_one_result_backend_whatever_the_thread() -> None:
    """Celery's app.backend is thread-local (greenlet-local under gevent): not for our tasks.

    Celery reads ``task.backend`` on every run; built per thread, under the
    gevent pool that was a new backend (and an entry-point scan) per task.
    """
    import threading

    from celery.backends.base import DisabledBackend

    app = Celery("t", broker="memory://")
    setup_celery(app, "memory://", provider=OfflineSketchProvider)
    seen: dict[str, list[object]] = {"ours": [], "app": []}

    def look() -> None:
        seen["ours"].append(app.tasks[PROCESS_TASK].backend)
        seen["app"].append(app.backend)

    for _ in range(3):
        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
    ours, per_thread = seen["ours"], seen["app"]
    assert isinstance(ours[0], DisabledBackend)
    assert all(b is ours[0] for b in ours)
    assert len({id(b) for b in per_thread}) == 3  # what a task without it would get


def test_a_green_pool_worker_acks_when_the_task_ends() -> None:
    """Without a hub (gevent), acks go out at once; other deferred operations still wait."""
    from celery.worker.consumer import Consumer

    app = Celery("t", broker="memory://")
    setup_celery(app, "memory://", provider=OfflineSketchProvider)
    (step,) = [s for s in app.steps["consumer"] if s.__name__ == "ImmediateAcks"]

    class Message:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def ack_log_error(self, logger: object, errors: object) -> None:
            self.calls.append("ack")

        def reject_log_error(self, logger: object, errors: object, requeue: bool = False) -> None:
            self.calls.append("reject")

    consumer = Consumer.__new__(Consumer)  # the attributes the step and call_soon use
    consumer.hub = None
    consumer._pending_operations = collections.deque()  # a list before Celery 5.7
    step(consumer)
    sender = consumer.chatsvg_acks
    sent: list[int] = []
    send = sender.send
    sender.send = lambda operation: (sent.append(1), send(operation))[1]
    message = Message()
    if hasattr(Consumer, "call_soon_ack"):
        # Celery >= 5.7 acks at once by itself, each ack on its own; they go
        # through the one sender instead (a burst of them overflowed kombu's
        # Redis pool, as on older versions without the step).
        consumer.call_soon_ack(message.ack_log_error, None, ())
        consumer.call_soon_ack(message.reject_log_error, None, ())
    else:
        consumer.call_soon(message.ack_log_error, None, ())
        consumer.call_soon(message.reject_log_error, None, ())
    assert message.calls == ["ack", "reject"]
    assert sent == [1, 1]
    later: list[int] = []
    consumer.call_soon(later.append, 1)  # anything else: still on the loop's next turn
    assert later == [] and len(consumer._pending_operations) == 1
    consumer.perform_pending_operations()
    assert later == [1]


class _Kill(BaseException):
    """Stands for ``GreenletExit``: a sending task killed mid-batch."""


@settings(max_examples=400, deadline=None)
@given(
    fanout=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    kill_at=st.one_of(st.none(), st.integers(0, 39)),
    hand_off=st.booleans(),
)
def test_acks_go_out_one_batch_at_a_time_each_exactly_once(
    fanout: list[int], kill_at: int | None, hand_off: bool
) -> None:
    """Every queued ack runs once, in order, never two batches at once, even if a sender dies.

    Deterministic stand-in for green threads: an ack may itself call
    ``send`` (as another task ending while the batch waits on the broker
    would); operation ``i`` sends ``fanout[i]`` more. ``kill_at``: the batch
    holding that operation dies with a ``BaseException`` after running it.
    ``hand_off``: every sending task has used up its time at once, so the
    sending goes to a new thread (run here when the test says so).
    """
    from chatsvg_core.queues._celery import _AckSender, _run_each

    sender = _AckSender()
    sender.pump_limit = -1.0 if hand_off else 1e9
    threads: list[Callable[[], None]] = []
    sender.spawn = threads.append
    ran: list[int] = []
    sent: list[int] = []
    in_batch = [0]
    killed = [False]

    def batch(operations: list[Callable[[], Any]]) -> None:
        in_batch[0] += 1
        assert in_batch[0] == 1, "two batches at once"
        try:
            before = len(ran)
            _run_each(operations)
            if not killed[0] and kill_at is not None and kill_at in ran[before:]:
                killed[0] = True
                raise _Kill
        finally:
            in_batch[0] -= 1

    sender.batch = batch

    def op(i: int) -> Callable[[], None]:
        def run() -> None:
            ran.append(i)
            for _ in range(fanout[i] if i < len(fanout) else 0):
                if len(sent) < len(fanout):
                    n = len(sent)
                    sent.append(n)
                    sender.send(op(n))

        return run

    def dead_or_alive(call: Callable[[], None]) -> None:
        try:
            call()
        except _Kill:
            sender.send(lambda: None)  # the next ack sends what the dead batch left

    sent.append(0)
    dead_or_alive(lambda: sender.send(op(0)))
    while threads:
        assert len(threads) == 1, "two senders at once"
        dead_or_alive(threads.pop())
    assert ran == sent  # each once, in the order sent
    assert in_batch[0] == 0 and not sender._sending and not sender._waiting


@pytest.mark.redis
async def test_enqueue_sends_a_countdown_and_leaves_long_delays_to_the_sweep(
    redis_url: str,
) -> None:
    import redis

    url = _redis_db(redis_url, 1)
    queue_name = f"chatsvg-t-{secrets.token_hex(4)}"
    app = Celery("t", broker=url)
    queue = CeleryQueue(app, queue=queue_name, max_countdown=60)
    client = redis.Redis.from_url(url)
    try:
        await queue.enqueue("job-now")
        await queue.enqueue("job-soon", delay=30)
        await queue.enqueue("job-later", delay=61)  # over the cap: not sent
        with pytest.raises(ValueError, match="finite"):
            await queue.enqueue("bad", delay=float("inf"))
        messages = [json.loads(m) for m in client.lrange(queue_name, 0, -1)]
        sent = {m["headers"]["argsrepr"]: m["headers"].get("eta") for m in messages}
        assert set(sent) == {"('job-now',)", "('job-soon',)"}
        assert sent["('job-now',)"] is None
        assert sent["('job-soon',)"] is not None
        assert {m["headers"]["task"] for m in messages} == {PROCESS_TASK}
        assert queue.dropped == 1
    finally:
        client.delete(queue_name)
        client.close()


async def test_a_broker_outage_does_not_fail_the_submit() -> None:
    # Nothing listens on this port: the publish fails fast and is left to the sweep.
    app = Celery("t", broker=f"redis://127.0.0.1:{spare_port()}/1")
    app.conf.broker_connection_timeout = 0.5
    queue = CeleryQueue(app)
    await queue.enqueue("job-1")
    assert queue.dropped == 1


@pytest.mark.redis
async def test_in_a_broker_outage_announcements_are_dropped_at_once_then_resume() -> None:
    # One publishing thread per process: without the pause after a failure,
    # 50 announcements would each wait out the retry policy behind it in turn.
    import time

    import redis

    from ._celery_chaos import OwnRedis

    broker = OwnRedis()
    broker.start()
    app = Celery("t", broker=broker.url)
    app.conf.broker_connection_timeout = 0.5
    queue_name = f"chatsvg-t-{secrets.token_hex(4)}"
    queue = CeleryQueue(app, queue=queue_name)
    try:
        await queue.enqueue("before")
        assert queue.dropped == 0
        broker.stop()
        start = time.monotonic()
        await asyncio.gather(*(queue.enqueue(f"lost-{i}") for i in range(50)))
        assert time.monotonic() - start < 15
        assert queue.dropped == 50
        broker.start()  # empty: the outage lost "before"
        await asyncio.sleep(1.2)  # past the pause: the next one is tried again
        await queue.enqueue("after")
        assert queue.dropped == 50
        client = redis.Redis.from_url(broker.url)
        messages = [json.loads(m) for m in client.lrange(queue_name, 0, -1)]
        client.close()
        assert [m["headers"]["argsrepr"] for m in messages] == ["('after',)"]
    finally:
        broker.stop()


@pytest.mark.postgres
async def test_two_recovery_passes_at_once_take_each_job_once(postgres_url: str) -> None:
    # Two beats run recover() at the same moment over the same expired leases.
    schema = f"chatsvg_beat_{secrets.token_hex(4)}"
    stores = [
        await PostgresStore.open(postgres_url, schema=schema, min_size=1, max_size=2)
        for _ in range(2)
    ]
    try:
        lease = timedelta(seconds=30)
        engines = [Engine(s, None, OfflineSketchProvider(), lease=lease) for s in stores]
        await Ledger(stores[0]).grant("alice", 1000)
        ids = []
        for i in range(40):
            job = (await engines[0].submit("alice", None, {"prompt": f"a cat {i}"})).job
            ids.append(job.id)
        for _ in range(40):
            # Claim (and charge) every job, then "die": the leases lapse. Half are on
            # their last attempt, so recovery fails and refunds them.
            claimed = await engines[0]._claim_and_charge(None, "dead")
            assert claimed is not None
        async with stores[0].transaction() as tx:
            for job_id in ids[:20]:
                await tx._exec(  # type: ignore[attr-defined]
                    "UPDATE chatsvg_jobs SET max_attempts = 1 WHERE id = ?", (job_id,)
                )
        later = engines[0].clock.now() + 2 * lease
        reports = await asyncio.gather(*(e.recover(now=later) for e in engines * 2))
        requeued = [j for r in reports for j in r.requeued]
        failed = [j for r in reports for j in r.failed]
        refunded = [j for r in reports for j in r.refunded]
        assert sorted(requeued) == sorted(ids[20:])
        assert sorted(failed) == sorted(ids[:20])
        assert sorted(refunded) == sorted(ids[:20])
        async with stores[0].transaction() as tx:
            entries = await tx.entries("alice", limit=1000)
        kinds = [e.kind.value for e in entries]
        assert kinds.count("charge") == 40
        assert kinds.count("refund") == 20
    finally:
        for s in stores:
            await s.aclose()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _check(report: ChaosReport) -> None:
    print(f"\n{report}")
    assert report.violations == []
    assert report.kills > 0, "the run killed nobody: it proved nothing"
    assert report.broker_outages == 1
    assert sum(report.statuses.values()) == report.jobs
    assert report.statuses["succeeded"] > 0
    assert report.statuses["failed"] > 0  # the permanent faults and the poor owner
    assert report.statuses["queued"] == report.statuses["running"] == 0


CHAOS: dict[str, Any] = {"jobs": 60, "workers": 4, "concurrency": 8, "kill_every": 3.0}


@pytest.mark.postgres
@pytest.mark.redis
async def test_celery_on_its_own_redis_survives_kills_and_an_outage(postgres_url: str) -> None:
    report = await celery_chaos(broker="redis", postgres_url=postgres_url, seed=1, **CHAOS)
    _check(report)


@pytest.mark.postgres
@pytest.mark.amqp
async def test_celery_on_rabbitmq_survives_kills_and_a_cut_link(
    postgres_url: str, amqp_url: str
) -> None:
    report = await celery_chaos(
        broker="amqp", postgres_url=postgres_url, amqp_url=amqp_url, seed=2, **CHAOS
    )
    _check(report)


def _how_to_module() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "queues" / "celery.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.redis
def test_the_how_to_example_runs_as_written(tmp_path: Path, redis_url: str) -> None:
    # The page's module, a real worker with its embedded beat, jobs submitted
    # through web_engine(): what a host following the page gets.
    import redis

    (tmp_path / "chatsvg_tasks.py").write_text(_how_to_module())
    broker = _redis_db(redis_url, 3)
    redis.Redis.from_url(broker).delete("celery")
    env = {
        **os.environ,
        "CHATSVG_DATABASE_URL": f"sqlite:///{tmp_path}/howto.db",
        "CHATSVG_BROKER_URL": broker,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path("src").resolve())]),
    }
    cmd = [sys.executable, "-m", "celery", "-A", "chatsvg_tasks", "worker", "--pool", "gevent"]
    cmd += ["--concurrency", "20", "--without-mingle", "--without-gossip", "-l", "ERROR"]
    worker = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    beat = [sys.executable, "-m", "celery", "-A", "chatsvg_tasks", "beat", "-l", "ERROR"]
    beater = subprocess.Popen([*beat, "-s", str(tmp_path / "schedule")], env=env, cwd=tmp_path)
    code = (
        "import time, chatsvg_tasks as t\n"
        "from chatsvg_core import SyncLedger\n"
        "e = t.web_engine()\n"
        "SyncLedger(e.store).grant('u', 50)\n"
        "ids = [e.submit('u', f'k{i}', {'prompt': f'a lighthouse {i}'}).job.id for i in range(5)]\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline and any(not e.get(i).terminal for i in ids):\n"
        "    time.sleep(0.2)\n"
        "print(sorted({e.get(i).status.value for i in ids}))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert out.stdout.strip() == "['succeeded']", out.stderr[-2000:]
    finally:
        beater.terminate()
        beater.wait(timeout=30)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        redis.Redis.from_url(broker).delete("celery")
    assert worker.returncode == 0, err.decode()[-2000:]


@pytest.mark.redis
@pytest.mark.parametrize("pool", ["gevent", "threads"])
def test_sigterm_hands_a_running_job_back(tmp_path: Path, redis_url: str, pool: str) -> None:
    # A real worker process mid-call (each model call awaits 300 s), stopped as a
    # deploy stops it: after its grace (1 s) the job is QUEUED again at once,
    # not RUNNING until its 60 s lease lapses, and the worker exits cleanly.
    import time

    from chatsvg_core import SyncLedger
    from chatsvg_core.engine import SyncEngine
    from chatsvg_core.jobs import JobStatus

    from ._celery_chaos import APP_DIR, _env, worker_cmd

    db = f"sqlite:///{tmp_path}/jobs.db"
    queue_name = f"chatsvg-t-{secrets.token_hex(4)}"
    broker = _redis_db(redis_url, 1)
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
    engine = SyncEngine.open(
        db,
        provider=OfflineSketchProvider(),
        queue=CeleryQueue(Celery("host", broker=broker), queue=queue_name),
    )
    worker = subprocess.Popen(
        worker_cmd("w1", queue_name, pool, 4), env=env, cwd=APP_DIR, stderr=subprocess.PIPE
    )
    try:
        SyncLedger(engine.store).grant("u", 10)
        job_id = engine.submit("u", "k1", {"prompt": "a kite"}).job.id
        deadline = time.monotonic() + 60
        while engine.get(job_id).status is not JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.1)
        time.sleep(0.5)  # mid-call
        stopping = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        took = time.monotonic() - stopping
        job = engine.get(job_id)
        assert worker.returncode == 0, err.decode()[-2000:]
        assert job.status is JobStatus.QUEUED, (job.status, err.decode()[-2000:])
        assert job.attempt == 1
        assert took < 15, f"the worker took {took:.1f} s to stop"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        engine.close()
        import redis

        redis.Redis.from_url(broker).delete(queue_name)


# A worker app whose one task counts itself, with the adapter's delivery
# settings and consumer steps (or without the refill step: the control).
_COUNTING_APP = """
import os

import redis
from celery import Celery

from chatsvg_core.queues._celery import _immediate_acks_step, _redis_refill_step

app = Celery("refill", broker=os.environ["REFILL_BROKER"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_enable_remote_control=False,
)
app.steps["consumer"].add(_immediate_acks_step())
if os.environ.get("REFILL_STEP") == "1":
    app.steps["consumer"].add(_redis_refill_step())
counter = redis.Redis.from_url(os.environ["REFILL_BROKER"])
# REFILL_BARRIER=n: every task waits until n have started (or 0.5 s), so n end,
# and ack, at the same moment (a gevent pool runs them in one thread).
barrier = int(os.environ.get("REFILL_BARRIER") or 0)
state = {"started": 0, "gate": None}


@app.task(name="refill.count", ignore_result=True)
def count(key):
    if barrier:
        from gevent.event import Event

        if state["gate"] is None:
            state["gate"] = Event()
        gate = state["gate"]
        state["started"] += 1
        if state["started"] % barrier == 0:
            state["gate"] = None
            gate.set()
        else:
            gate.wait(0.5)
    counter.incr(key)
"""


def _run_counted(
    tmp_path: Path,
    broker: str,
    tasks: int,
    *,
    step: bool,
    slots: int = 2,
    barrier: int = 0,
    limit: float = 120,
    then: Callable[[], None] | None = None,
) -> float:
    """Seconds a gevent worker of ``slots`` took to run ``tasks`` instant tasks.

    ``then`` runs after the last task, while the worker still runs.
    """
    import time

    import redis

    (tmp_path / "refill_app.py").write_text(_COUNTING_APP)
    queue_name = f"refill-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "REFILL_BROKER": broker,
        "REFILL_STEP": "1" if step else "0",
        "REFILL_BARRIER": str(barrier),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path("src").resolve())]),
    }
    cmd = [sys.executable, "-m", "celery", "-A", "refill_app", "worker", "--pool", "gevent"]
    cmd += ["--concurrency", str(slots), "-Q", queue_name, "--without-mingle", "--without-gossip"]
    worker = subprocess.Popen([*cmd, "-l", "ERROR"], env=env, cwd=tmp_path)
    client = redis.Redis.from_url(broker)
    app = Celery("refill-host", broker=broker)
    key = f"count:{queue_name}"

    def send(k: str, n: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("refill.count", args=(k,), queue=queue_name, producer=producer)

    def wait(k: str, n: int, limit: float) -> None:
        deadline = time.monotonic() + limit
        while int(client.get(k) or 0) < n:
            assert time.monotonic() < deadline, f"{client.get(k)} of {n} tasks ran"
            time.sleep(0.01)

    try:
        send(key + ":warm", 2)  # the worker is up and consuming before the clock
        wait(key + ":warm", 2, 60)
        start = time.monotonic()
        send(key, tasks)
        wait(key, tasks, limit)
        seconds = time.monotonic() - start
        if then is not None:
            then()
        return seconds
    finally:
        worker.kill()
        worker.wait()
        client.delete(key, key + ":warm", queue_name)


@pytest.mark.redis
def test_a_green_worker_on_redis_refills_a_freed_slot_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    """kombu fetches again only when its poller comes round (2 s with a full window): not with us.

    Two slots, instant tasks: without the refill step a pair of tasks waits
    for the rest of the poller's 2 s timeout once it has filled the window
    (the control: 6 tasks took 2.3-4.1 s in our runs, depending on where the
    poller's wait stood when they came); with it, 60 tasks run in a fraction
    of that (a round trip or two per task).
    """
    broker = _redis_db(redis_url, 2)
    control = _run_counted(tmp_path, broker, 6, step=False)
    assert control >= 1.5, f"the control ran 6 tasks in {control:.1f} s"
    refilled = _run_counted(tmp_path, broker, 60, step=True)
    assert refilled < 10, f"60 tasks took {refilled:.1f} s"


@pytest.mark.redis
def test_a_burst_of_acks_on_redis_loses_no_message_and_leaves_none_unacked(
    tmp_path: Path,
) -> None:
    """50 tasks that end at once: their 50 acks must not need 50 Redis connections.

    kombu's Redis channel takes each ack's connection from a pool of 10 that
    raises past its limit ("Too many connections"). When every task greenlet
    acked by itself, a burst of acks overflowed it: a failed ack left its
    message in kombu's ``unacked`` hash and its prefetch slot taken for good,
    and the fetch that found the pool empty popped a message and lost it
    (the session-7 benchmark round that hung with one job QUEUED). Acks now
    go out one batch at a time.
    """
    import time

    import redis

    from ._celery_chaos import OwnRedis

    own = OwnRedis()  # kombu's unacked hash is per database: a server of the test's own
    own.start()
    client = redis.Redis.from_url(own.url)

    def left() -> dict[str, int]:
        return {"unacked": client.hlen("unacked"), "index": client.zcard("unacked_index")}

    def all_acked() -> None:
        # The last tasks count themselves just before their acks go out.
        deadline = time.monotonic() + 10
        while left() != {"unacked": 0, "index": 0} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left() == {"unacked": 0, "index": 0}

    try:
        seconds = _run_counted(
            tmp_path, own.url, 400, step=True, slots=50, barrier=50, limit=60, then=all_acked
        )
        assert seconds < 30, f"400 tasks took {seconds:.1f} s"
    finally:
        own.stop()
