"""The worker examples in docs/queues/*.md, run as written in real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import pytest

from chatsvg_core.engine import Engine
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import JobQueue

from ._fleet import ROOT, _conninfo, drop_schema, new_schema
from ._support import delete_keys, redis_db

pytestmark = [pytest.mark.postgres]

DOCS = ROOT / "docs" / "queues"


def worker_example(page: str) -> str:
    """The first Python block after '## A complete worker' on ``page``."""
    text = (DOCS / page).read_text()
    section = text.split("## A complete worker", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def run_example(
    page: str, env: dict[str, str], queue: JobQueue, database_url: str, tmp_path: Path
) -> None:
    from chatsvg_core.storage import open_storage

    (tmp_path / "worker.py").write_text(worker_example(page))
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once; the test then polls it)
        [sys.executable, "worker.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = await open_storage(database_url)
    try:
        await Ledger(store).grant("alice", 10)
        engine = Engine(store, queue, OfflineSketchProvider())
        job = (await engine.submit("alice", "k1", {"prompt": "a lighthouse at dusk"})).job
        deadline = time.monotonic() + 60
        while not (await engine.get(job.id)).terminal:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the example worker did not run the job"
            await asyncio.sleep(0.1)
        assert (await engine.get(job.id)).status is JobStatus.SUCCEEDED
    finally:
        await store.aclose()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


@pytest.mark.redis
async def test_the_arq_example_runs(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    from chatsvg_core.queues import ArqQueue

    schema = await new_schema(postgres_url, procrastinate=False)
    database_url = f"{postgres_url}?schema={schema}"
    redis = redis_db(redis_url, 6)
    name = f"chatsvg-docs-{uuid4().hex[:8]}"
    queue = await ArqQueue.connect(redis, queue_name=name)
    env = {"CHATSVG_DATABASE_URL": database_url, "CHATSVG_REDIS_URL": redis, "CHATSVG_QUEUE": name}
    try:
        await run_example("arq.md", env, queue, database_url, tmp_path)
    finally:
        await queue.aclose()
        await delete_keys(redis, f"*{name}*")
        drop_schema(postgres_url, schema)


async def test_the_procrastinate_example_runs(postgres_url: str, tmp_path: Path) -> None:
    from procrastinate import PsycopgConnector

    from chatsvg_core.queues import ProcrastinateQueue, procrastinate_app

    schema = await new_schema(postgres_url, procrastinate=True)
    database_url = f"{postgres_url}?schema={schema}"
    conninfo = _conninfo(postgres_url, "chatsvg-docs", f"{schema}_pq")
    name = f"chatsvg-docs-{uuid4().hex[:8]}"
    app = procrastinate_app(PsycopgConnector(conninfo=conninfo), queue_name=name)
    env = {
        "CHATSVG_DATABASE_URL": database_url,
        "CHATSVG_PROCRASTINATE_URL": conninfo,
        "CHATSVG_QUEUE": name,
    }
    try:
        async with app.open_async():
            queue = ProcrastinateQueue(app, queue_name=name)
            await run_example("procrastinate.md", env, queue, database_url, tmp_path)
    finally:
        drop_schema(postgres_url, schema)
