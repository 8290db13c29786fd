"""``chatsvg worker --queue ...``: one command starts a worker of each kind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatsvg_core import JobStatus, OfflineSketchProvider, SyncEngine, SyncLedger
from chatsvg_core.cli import main


def _submit(url: str, n: int, queue: object = None) -> tuple[SyncEngine, list[str]]:
    engine = SyncEngine.open(url, provider=OfflineSketchProvider(), queue=queue)  # type: ignore[arg-type]
    SyncLedger(engine.store).grant("local", 10 * n)
    ids = [engine.submit("local", None, {"prompt": f"a kite {i}"}).job.id for i in range(n)]
    return engine, ids


def test_db_queue_drains_due_jobs_with_process_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATSVG_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path}/db.db"
    engine, ids = _submit(url, 6)
    try:
        assert main(["worker", "--queue", "db", "--once", "-q", "--database-url", url]) == 0
        assert {engine.get(i).status for i in ids} == {JobStatus.SUCCEEDED}
    finally:
        engine.close()


def test_engine_queues_need_a_broker_and_refuse_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--queue", "celery"]) == 2
    assert "needs --broker" in capsys.readouterr().err
    assert main(["worker", "--queue", "arq", "--broker", "redis://x", "--once"]) == 2
    assert main(["worker", "--queue", "kafka"]) == 2


@pytest.mark.redis
def test_celery_worker_from_the_cli_runs_submitted_jobs(tmp_path: Path, redis_url: str) -> None:
    from celery import Celery

    from chatsvg_core.queues import CeleryQueue

    broker = redis_url.rsplit("/", 1)[0] + "/2"
    url = f"sqlite:///{tmp_path}/celery.db"
    queue_name = "celery"  # the CLI worker serves Celery's default queue
    app = Celery("host", broker=broker)
    import redis

    redis.Redis.from_url(broker).delete(queue_name)
    engine, ids = _submit(url, 5, CeleryQueue(app))
    env = {**os.environ, "CHATSVG_HOME": str(tmp_path), "PYTHONPATH": str(Path("src").resolve())}
    args = ["--broker", broker, "--database-url", url, "--concurrency", "4", "--pool", "threads"]
    args += ["--provider", "offline"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "chatsvg_core.cli", "worker", "--queue", "celery", *args, "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(engine.get(i).status is JobStatus.SUCCEEDED for i in ids):
                break
            time.sleep(0.3)
        assert {engine.get(i).status for i in ids} == {JobStatus.SUCCEEDED}
    finally:
        worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        _, err = worker.communicate(timeout=30)
        engine.close()
        redis.Redis.from_url(broker).delete(queue_name)
    assert worker.returncode == 0, err.decode()[-2000:]
    assert b"through celery" in err
