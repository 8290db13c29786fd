"""Helpers for the queue adapter tests: Redis databases and in-loop arq workers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDIS_DB = 4
"""This issue's Redis databases are 4-6 (other engineers use others)."""


def redis_db(url: str, db: int = REDIS_DB) -> str:
    """``url`` pointed at database ``db``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@asynccontextmanager
async def running_arq_worker(settings: dict[str, Any], *, grace: float = 0.5) -> AsyncIterator[Any]:
    """An arq worker on this loop; leaving stops it as SIGTERM with ``grace`` s would."""
    from chatsvg_core.queues import arq_worker

    worker = arq_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    deadline = time.monotonic() + 10
    while "chatsvg_engine" not in worker.ctx:  # on_startup has run
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("arq worker did not start")
        await asyncio.sleep(0.01)
    try:
        yield worker
    finally:
        worker.allow_pick_jobs = False
        running = [t for t in worker.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        worker.handle_sig(signal.SIGTERM)
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()


async def delete_keys(url: str, pattern: str) -> None:
    """Delete every key matching ``pattern`` in the Redis at ``url``."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def new_schema(url: str, *, procrastinate: bool = False) -> str:
    """A new PostgreSQL schema (with Procrastinate's tables in it, if asked); drop it after."""
    import os
    import secrets

    import psycopg

    schema = f"chatsvg_q_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    if procrastinate:
        from procrastinate import App, PsycopgConnector

        app = App(connector=PsycopgConnector(conninfo=in_schema(url, schema)))
        with app.open():
            app.schema_manager.apply_schema()
    return schema


def in_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the search path of every connection."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, options=f"-c search_path={schema}")


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
