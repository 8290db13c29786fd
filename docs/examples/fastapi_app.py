"""A FastAPI service on chatsvg-core: submit with an Idempotency-Key, poll, fetch the SVG.

Run it with ``uvicorn fastapi_app:app`` after ``chatsvg migrate`` (the service
opens the database with ``migrate=False``: the schema is a deploy step).
The in-process queue runs jobs inside the service; with Celery, arq or
Procrastinate pass their adapter as ``queue=`` and run workers elsewhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

from chatsvg_core import (
    ChatSVGError,
    Engine,
    GenerationRequest,
    InProcessQueue,
    JobNotFound,
    OfflineSketchProvider,
    open_storage,
)


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def user(
    x_user: Annotated[str, Header(description="Stand-in for your authentication.")],
) -> str:
    return x_user


Owner = Annotated[str, Depends(user)]
TheEngine = Annotated[Engine, Depends(engine_of)]


def create_app(database_url: str) -> FastAPI:
    """The service, over the store ``database_url`` names (already migrated)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_storage(database_url, migrate=False)
        queue = InProcessQueue(concurrency=4)
        engine = Engine(store, queue, OfflineSketchProvider())
        await engine.recover()  # leases a previous process left behind
        await engine.sweep()  # jobs queued while nobody served them

        async def handle(job_id: str) -> None:
            await engine.process(job_id, worker_id="api")

        server = asyncio.create_task(queue.serve(handle))
        app.state.engine = engine
        try:
            yield
        finally:
            await queue.stop(grace=30)  # running jobs finish, or go back to the queue
            await server
            await store.aclose()

    app = FastAPI(title="drawings", lifespan=lifespan)

    @app.exception_handler(ChatSVGError)
    async def chatsvg_error(request: Request, exc: ChatSVGError) -> JSONResponse:
        # Every library error has a code, safe fields and a suggested status.
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.post("/drawings", status_code=202)
    async def submit(
        body: GenerationRequest,
        owner: Owner,
        engine: TheEngine,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, object]:
        sub = await engine.submit(owner, idempotency_key, body)
        return {"id": sub.job.id, "status": sub.job.status.value, "replayed": sub.replayed}

    async def own_job(job_id: str, owner: str, engine: Engine) -> None:
        job = await engine.get(job_id)
        if job.owner != owner:  # another owner's job does not exist for this caller
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)

    @app.get("/drawings/{job_id}.svg")
    async def picture(job_id: str, owner: Owner, engine: TheEngine) -> Response:
        await own_job(job_id, owner, engine)
        result = await engine.result(job_id)
        if result is None:
            return JSONResponse({"code": "not_ready"}, status_code=409)
        return Response(
            result.svg,
            media_type="image/svg+xml",
            # Defence in depth around the sanitized SVG when opened directly.
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )

    @app.get("/drawings/{job_id}")
    async def status(job_id: str, owner: Owner, engine: TheEngine) -> dict[str, object]:
        await own_job(job_id, owner, engine)
        job = await engine.get(job_id)
        return {
            "id": job.id,
            "status": job.status.value,
            "attempt": job.attempt,
            "error": None if job.last_error is None else job.last_error.code,
        }

    return app


app = create_app(os.environ.get("CHATSVG_DATABASE_URL", "sqlite:///chatsvg.db"))
