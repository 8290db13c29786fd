"""The sync facade: the engine from plain sync code, on the library's one loop thread."""

from __future__ import annotations

import threading

from chatsvg_core import (
    Engine,
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
