"""The sync facade: the engine from plain sync code, on the library's one loop thread."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from chatsvg_core import (
    ConfigurationError,
    Engine,
    InProcessQueue,
    JobStatus,
    MemoryStore,
    OfflineSketchProvider,
    SyncEngine,
    SyncLedger,
)


def test_sync_engine_runs_a_job_from_sync_code_and_threads() -> None:
    engine = SyncEngine.build(lambda: Engine(MemoryStore(), None, OfflineSketchProvider()))
    SyncLedger(engine.engine.store).grant("bob", 20)
    results: list[JobStatus] = []

    def work(i: int) -> None:
        sub = engine.submit("bob", f"k{i}", {"prompt": f"a house {i}"})
        again = engine.submit("bob", f"k{i}", {"prompt": f"a house {i}"})
        assert again.replayed
        job = engine.process(sub.job.id, f"thread-{i}")
        assert job is not None
        results.append(job.status)
        result = engine.result(sub.job.id)
        assert result is not None
        assert result.svg.startswith("<svg")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [JobStatus.SUCCEEDED] * 4
    assert engine.recover().requeued == []


def _sync_hosts_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    section = text[text.index("## Sync hosts") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_sync_pattern_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_sync_hosts_example(), "docs/engine.md", "exec"), {})
    assert capsys.readouterr().out.startswith("succeeded <svg")
    assert (tmp_path / "chatsvg.db").exists()


def test_open_builds_from_a_url_and_keeps_one_loop_across_threads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/many.db"
    with SyncEngine.open(url, provider=OfflineSketchProvider, queue=None) as engine:
        SyncLedger(engine.store).grant("carol", 100)
        ids = [engine.submit("carol", f"k{i}", {"prompt": f"a tree {i}"}).job.id for i in range(8)]
        done: list[JobStatus] = []

        def work(n: int) -> None:
            while (job := engine.process_next(f"t{n}")) is not None:
                done.append(job.status)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(done) == [JobStatus.SUCCEEDED] * 8
        assert all(engine.get(i).status is JobStatus.SUCCEEDED for i in ids)
        assert engine.sweep() == 0  # no queue: nothing to announce
        assert engine.recover().requeued == []


def test_open_refuses_a_bad_url_with_a_typed_error() -> None:
    with pytest.raises(ConfigurationError):
        SyncEngine.open("nosuch://x", provider=OfflineSketchProvider())


@pytest.mark.postgres
def test_open_on_postgres_with_a_queue_sweeps_and_processes(postgres_url: str) -> None:
    import secrets

    import psycopg

    schema = f"chatsvg_sync_{secrets.token_hex(4)}"
    queue = InProcessQueue()
    engine = SyncEngine.open(
        postgres_url,
        provider=OfflineSketchProvider(),
        queue=queue,
        storage_options={"schema": schema, "max_size": 2},
        lease=timedelta(seconds=30),
    )
    try:
        SyncLedger(engine.store).grant("dan", 10)
        job = engine.submit("dan", None, {"prompt": "a boat"}).job
        assert len(queue) == 1
        assert engine.sweep() == 1
        processed = engine.process(job.id, "w1")
        assert processed is not None
        assert processed.status is JobStatus.SUCCEEDED
        assert engine.process(job.id, "w2") is None  # a duplicate delivery is harmless
        assert engine.process_next("w3") is None
    finally:
        engine.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
