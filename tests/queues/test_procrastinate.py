"""The Procrastinate adapter: the queue conformance suite on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest

from chatsvg_core.engine import Engine
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.queues import JobQueue, ProcrastinateQueue, procrastinate_app, serve_procrastinate
from chatsvg_core.storage import MemoryStore
from chatsvg_core.testing.conformance import QueueConformance

from ._support import drop_schema, in_schema, new_schema

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def procrastinate_url(postgres_url: str) -> Iterator[str]:
    """A conninfo on a schema of this module's own, with Procrastinate's tables in it."""
    schema = new_schema(postgres_url, procrastinate=True)
    try:
        yield in_schema(postgres_url, schema)
    finally:
        drop_schema(postgres_url, schema)


@asynccontextmanager
async def running_worker(
    queue: ProcrastinateQueue, engine: Engine, **options: object
) -> AsyncIterator[None]:
    async def same_engine(_: ProcrastinateQueue) -> Engine:
        return engine

    settings: dict[str, Any] = {
        "queue_name": queue.queue_name,
        "concurrency": 64,
        "shutdown_grace": 0.5,
        "close_engine": False,
        "install_signal_handlers": False,
        "poll_interval": 0.2,
        **options,
    }
    task = asyncio.create_task(serve_procrastinate(queue.app, same_engine, **settings))
    await asyncio.sleep(0.2)  # registered and listening
    if task.done():
        task.result()
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class TestProcrastinateQueue(QueueConformance):
    url: str

    @pytest.fixture(autouse=True)
    def _database(self, procrastinate_url: str) -> None:
        self.url = procrastinate_url

    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        from procrastinate import PsycopgConnector

        name = f"chatsvg-test-{uuid4().hex[:12]}"
        app = procrastinate_app(
            PsycopgConnector(conninfo=self.url, min_size=1, max_size=8),
            queue_name=name,
            maintain_every=None,  # the suite calls recover() and sweep() itself
        )
        async with app.open_async():
            yield ProcrastinateQueue(app, queue_name=name)

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, ProcrastinateQueue)
        async with running_worker(queue, engine):
            yield


@asynccontextmanager
async def opened(url: str, **options: object) -> AsyncIterator[ProcrastinateQueue]:
    from procrastinate import PsycopgConnector

    name = f"chatsvg-test-{uuid4().hex[:12]}"
    app = procrastinate_app(
        PsycopgConnector(conninfo=url, min_size=1, max_size=4), queue_name=name, **options
    )  # type: ignore[arg-type]
    async with app.open_async():
        yield ProcrastinateQueue(app, queue_name=name)


async def _waiting(queue: ProcrastinateQueue) -> list[tuple[str, str | None]]:
    async with queue.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            "SELECT status::text, queueing_lock FROM procrastinate_jobs WHERE queue_name = %s",
            (queue.queue_name,),
        )
        return [tuple(r) for r in await cur.fetchall()]


async def test_one_waiting_message_per_job(procrastinate_url: str) -> None:
    async with opened(procrastinate_url, maintain_every=None) as queue:
        await queue.enqueue("j1", delay=30)
        await queue.enqueue("j1")  # refused by the queueing lock: one is waiting
        await queue.enqueue("j1", attempt=1)
        await queue.enqueue("j2")
        assert sorted(await _waiting(queue)) == [
            ("todo", queue.lock("j1")),
            ("todo", queue.lock("j2")),
        ]
        for delay in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="delay"):
                await queue.enqueue("j", delay=delay)


async def _messages(queue: ProcrastinateQueue) -> list[tuple[str | None, list[str]]]:
    """Each waiting message: its queueing lock and the job ids it announces."""
    async with queue.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            "SELECT queueing_lock, args FROM procrastinate_jobs WHERE queue_name = %s "
            "AND status = 'todo' ORDER BY id",
            (queue.queue_name,),
        )
        rows = await cur.fetchall()
    return [
        (lock, args["job_ids"] if "job_ids" in args else [args["job_id"]]) for lock, args in rows
    ]


async def test_concurrent_announcements_share_a_statement_and_a_message(
    procrastinate_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Announcements made at once go in one statement, as messages of several jobs.

    An INSERT per announcement cost the submitting side about 1 ms of CPU
    (client and server) per job at 20 concurrent submits; one for the lot
    about 0.15 ms. A message per job cost the workers Procrastinate's fetch
    and finish per job, about as much as the engine's own work; a message
    for several jobs shares them (benchmarks/README.md). Each job is still
    announced once in the lot; a lone or delayed announcement is a message
    of its own under the job's queueing lock.
    """
    async with opened(procrastinate_url, maintain_every=None) as queue:
        queue.per_message = 20
        manager = queue.app.job_manager
        statements: list[int] = []
        original = manager.batch_defer_jobs_async

        async def counted(jobs: list[Any], connection: Any = None) -> Any:
            statements.append(len(jobs))
            return await original(jobs, connection)

        monkeypatch.setattr(manager, "batch_defer_jobs_async", counted)
        await asyncio.gather(*(queue.enqueue(f"j{i}") for i in range(50)))
        assert len(statements) <= 2, statements  # the first alone, the rest together
        messages = await _messages(queue)
        assert sorted(j for _, ids in messages for j in ids) == sorted(f"j{i}" for i in range(50))
        assert all(len(ids) <= 20 for _, ids in messages)
        assert {lock for lock, ids in messages if len(ids) > 1} == {None}
        before = len(messages)
        # x is announced due and delayed at once: only the due message; z later, alone.
        await asyncio.gather(
            queue.enqueue("x"), queue.enqueue("x", delay=5), queue.enqueue("y"), queue.enqueue("x")
        )
        await queue.enqueue("z", delay=5)
        await queue.enqueue("z")  # refused: z's own message is waiting
        messages = await _messages(queue)
        assert messages[before:] == [(None, ["x", "y"]), (queue.lock("z"), ["z"])]


async def test_an_unreachable_database_loses_the_message_not_the_submit() -> None:
    from procrastinate import PsycopgConnector

    app = procrastinate_app(
        PsycopgConnector(
            conninfo="postgresql://postgres@127.0.0.1:1/x", min_size=0, max_size=1, timeout=0.5
        )
    )
    async with app.open_async():
        queue = ProcrastinateQueue(app)
        await queue.enqueue("j")
        await asyncio.gather(*(queue.enqueue(f"j{i}") for i in range(5)))  # one batch, lost


async def test_the_periodic_task_recovers_and_sweeps(procrastinate_url: str) -> None:
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage import MemoryStore

    async with opened(procrastinate_url, maintain_every=1) as queue:
        store = MemoryStore()
        await Ledger(store).grant("o", 100)
        # Submitted with no queue: its message is lost from the start.
        job = (
            await Engine(store, None, OfflineSketchProvider()).submit("o", "k", {"prompt": "x"})
        ).job
        engine = Engine(store, queue, OfflineSketchProvider())
        async with running_worker(queue, engine):
            for _ in range(200):
                if (await engine.get(job.id)).terminal:
                    break
                await asyncio.sleep(0.05)
        assert (await engine.get(job.id)).status is JobStatus.SUCCEEDED


async def test_recovery_is_fetched_before_a_backlog_and_missed_ticks_collapse(
    procrastinate_url: str,
) -> None:
    """A dead or cut-off worker's jobs must not wait for the whole backlog to be recovered."""
    from procrastinate.periodic import PeriodicDeferrer

    from chatsvg_core.queues._procrastinate import MAINTAIN_TASK, PROCESS_TASK

    async with opened(procrastinate_url, maintain_every=1) as queue:
        for i in range(5):
            await queue.enqueue(f"j{i}")  # the backlog, deferred before the ticks
        (periodic,) = queue.app.periodic_registry.periodic_tasks.values()
        # Three ticks pass while every slot is busy: one run waits, not three.
        await PeriodicDeferrer(queue.app.periodic_registry).defer_jobs(
            [(periodic, 1_000_000 + t) for t in range(3)]
        )
        waiting = await _waiting(queue)
        assert len(waiting) == 6, waiting
        manager = queue.app.job_manager
        worker = await manager.register_worker()
        try:
            fetched = []
            for _ in range(6):
                job = await manager.fetch_job(queues=[queue.queue_name], worker_id=worker)
                assert job is not None
                fetched.append(job.task_name)
        finally:
            await manager.unregister_worker(worker)
        # The maintenance run first, then the announcements in their order.
        assert fetched == [MAINTAIN_TASK] + [PROCESS_TASK] * 5


def test_cron_strings() -> None:
    from chatsvg_core.queues._procrastinate import _every

    assert _every(15) == "* * * * * */15"
    assert _every(60) == "* * * * * 0"
    assert _every(300) == "*/5 * * * * 0"
    with pytest.raises(ValueError, match="maintain_every"):
        _every(7)


async def test_workers_poll_instead_of_a_notify_per_job_for_every_worker() -> None:
    """The settings handed to Procrastinate's worker: polling, unless asked otherwise."""
    from procrastinate import testing

    app = procrastinate_app(testing.InMemoryConnector(), maintain_every=None)
    seen: list[dict[str, object]] = []

    async def run_worker_async(**options: object) -> None:
        seen.append(options)

    app.run_worker_async = run_worker_async  # type: ignore[method-assign]

    async def factory(_: ProcrastinateQueue) -> Engine:
        return Engine(MemoryStore(), None, OfflineSketchProvider())

    await serve_procrastinate(app, factory, install_signal_handlers=False)
    await serve_procrastinate(app, factory, listen_notify=True, poll_interval=2.0)
    assert [(o["listen_notify"], o["fetch_job_polling_interval"]) for o in seen] == [
        (False, 0.5),
        (True, 2.0),
    ]
    from chatsvg_core.queues._procrastinate import _RUNNER, FETCH_SLOTS

    # Procrastinate runs a few messages at once; the jobs they start run apart, 500 at most.
    assert seen[0]["concurrency"] == FETCH_SLOTS and seen[0]["delete_jobs"] == "always"
    assert seen[0]["additional_context"][_RUNNER].free == 500  # type: ignore[index]
    # The signals are the adapter's own: a stop must reach the jobs running apart.
    assert seen[0]["install_signal_handlers"] is False
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="poll_interval"):
            await serve_procrastinate(app, factory, poll_interval=bad)


SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><rect width="4" height="4"/></svg>'


class _Calls:
    """A provider whose calls take ``seconds`` (``hang`` in the prompt: until cancelled)."""

    name = "calls"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0
        self.peak = 0
        self.started: list[str] = []

    async def generate(self, request: Any) -> Any:
        from chatsvg_core.generate import ProviderOutput

        self.now += 1
        self.peak = max(self.peak, self.now)
        self.started.append(request.prompt)
        try:
            if "hang" in request.prompt:
                await asyncio.Event().wait()
            await asyncio.sleep(self.seconds)
        finally:
            self.now -= 1
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


async def _engine(queue: ProcrastinateQueue, provider: Any) -> Engine:
    from chatsvg_core.ledger import Ledger

    store = MemoryStore()
    await Ledger(store).grant("o", 1000)
    return Engine(store, queue, provider)


async def _terminal(engine: Engine, ids: list[str], within: float = 20.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        jobs = [await engine.get(i) for i in ids]
        if all(j.terminal for j in jobs) or loop.time() > deadline:
            return jobs
        await asyncio.sleep(0.05)


async def test_a_message_of_many_jobs_respects_the_slots_and_hands_back_the_rest(
    procrastinate_url: str,
) -> None:
    """A full worker starts no more than ``concurrency`` calls; the rest go back to the queue.

    Eight jobs announced at once are one message; the worker has two slots.
    It starts two, waits ``hold`` for a third, then announces the six again
    (another worker could be idle), and so on until every job has run.
    """
    async with opened(procrastinate_url, maintain_every=None) as queue:
        provider = _Calls(0.4)
        engine = await _engine(queue, provider)
        async with running_worker(queue, engine, concurrency=2, hold=0.1):
            submitted = await asyncio.gather(
                *(engine.submit("o", None, {"prompt": f"p{i}"}) for i in range(8))
            )
            ids = [r.job.id for r in submitted]
            jobs = await _terminal(engine, ids)
        assert [j.status.value for j in jobs] == ["succeeded"] * 8
        assert provider.peak == 2
        assert sorted(provider.started) == sorted(f"p{i}" for i in range(8))  # each once


async def test_shutdown_hands_back_running_jobs_and_the_ones_waiting_for_a_slot(
    procrastinate_url: str,
) -> None:
    async with opened(procrastinate_url, maintain_every=None) as queue:
        provider = _Calls(0.0)
        engine = await _engine(queue, provider)
        async with running_worker(queue, engine, concurrency=1, hold=60.0):
            hung = (await engine.submit("o", None, {"prompt": "hang"})).job.id
            for _ in range(100):
                if provider.started:
                    break
                await asyncio.sleep(0.05)
            waiting = await asyncio.gather(
                *(engine.submit("o", None, {"prompt": f"w{i}"}) for i in range(3))
            )
            await asyncio.sleep(0.5)  # fetched; waits for the one slot
            assert not await _messages(queue)
            stopping = asyncio.get_running_loop().time()
        # Not the 60 s hold: the waiting message gave its jobs back at once, the
        # running job got its 0.5 s grace and was cancelled.
        assert asyncio.get_running_loop().time() - stopping < 5
        assert (await engine.get(hung)).status.value == "queued"
        # The waiting jobs announced again (one message), and the handed-back job's retry.
        left = [j for _, ids in await _messages(queue) for j in ids]
        assert sorted(left) == sorted([hung, *(r.job.id for r in waiting)])
        assert provider.started == ["hang"]


async def test_a_store_outage_at_the_claim_announces_the_job_again(
    procrastinate_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatsvg_core.errors import TransientError

    async with opened(procrastinate_url, maintain_every=None) as queue:
        engine = await _engine(queue, _Calls(0.0))
        failed: list[str] = []
        process = engine.process

        async def flaky(job_id: str, worker_id: str) -> Any:
            if not failed:
                failed.append(job_id)
                raise TransientError("the store went away")
            return await process(job_id, worker_id)

        monkeypatch.setattr(engine, "process", flaky)
        async with running_worker(queue, engine):
            job_id = (await engine.submit("o", None, {"prompt": "p"})).job.id
            (job,) = await _terminal(engine, [job_id])
        assert failed == [job_id]
        assert job.status.value == "succeeded"
