"""A FastAPI service on chatsvg-core: submit with an Idempotency-Key, poll or wait, cancel.

Credits are reserved at submit (``charge_at="submit"``), so a user without
credits hears 402 at once; every library error becomes an RFC 9457 problem
document through ``problem_details`` (with ``Retry-After`` where it helps).

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
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from chatsvg_core import (
    ChatSVGError,
    Engine,
    InProcessQueue,
    InvalidRequest,
    Job,
    JobNotFound,
    Ledger,
    OfflineSketchProvider,
    open_storage,
    problem_details,
    submit_headers,
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
        # Reserve the price at submit: no credits is a 402 now, not a failed job later.
        engine = Engine(store, queue, OfflineSketchProvider(), charge_at="submit")
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

    async def problem(request: Request, exc: Exception) -> Response:
        # Any error as an RFC 9457 document: library errors keep their status,
        # code and safe fields; anything else is a bare 500 that reveals nothing.
        answer = problem_details(exc, instance=request.url.path)
        return Response(answer.content, status_code=answer.status, headers=answer.headers)

    app.add_exception_handler(ChatSVGError, problem)
    app.add_exception_handler(Exception, problem)  # Starlette still logs these

    def view(job: Job) -> dict[str, object]:
        return {
            "id": job.id,
            "status": job.status.value,
            "attempt": job.attempt,
            "error": None if job.last_error is None else job.last_error.code,
        }

    @app.post("/drawings", status_code=202)
    async def submit(
        request: Request,
        owner: Owner,
        engine: TheEngine,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        # The raw JSON goes to the engine, which names any bad field itself.
        try:
            body: Any = await request.json()
        except ValueError:
            raise InvalidRequest("the body is not JSON", field="(request)", errors=[]) from None
        sub = await engine.submit(owner, idempotency_key, body)
        return JSONResponse(
            {**view(sub.job), "replayed": sub.replayed},
            status_code=202,
            headers=submit_headers(sub.replayed, location=f"/drawings/{sub.job.id}"),
        )

    async def own_job(job_id: str, owner: str, engine: Engine) -> Job:
        job = await engine.get(job_id)
        if job.owner != owner:  # another owner's job does not exist for this caller
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        return job

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
        return view(await own_job(job_id, owner, engine))

    @app.get("/drawings/{job_id}/wait")
    async def wait(
        job_id: str,
        owner: Owner,
        engine: TheEngine,
        seconds: Annotated[float, Query(alias="timeout", ge=0, le=60)] = 25.0,
    ) -> dict[str, object]:
        # A long poll: answers when the job ends, or as it stands after `timeout`.
        job = await engine.wait(job_id, timeout=seconds, owner=owner)
        return view(job)

    @app.get("/drawings/{job_id}/events")
    async def events(job_id: str, owner: Owner, engine: TheEngine) -> StreamingResponse:
        await own_job(job_id, owner, engine)  # a 404 before the stream starts
        stream = engine.updates(job_id, timeout=300, owner=owner)
        updates = (update.to_sse() async for update in stream)
        return StreamingResponse(updates, media_type="text/event-stream")

    @app.post("/drawings/{job_id}/cancel")
    async def cancel(job_id: str, owner: Owner, engine: TheEngine) -> dict[str, object]:
        return view(await engine.cancel(job_id, owner))

    @app.get("/balance")
    async def balance(owner: Owner, engine: TheEngine) -> dict[str, object]:
        # An owner who never had credits has 0, not an error.
        return {"owner": owner, "balance": await Ledger(engine.store).balance(owner)}

    return app


app = create_app(os.environ.get("CHATSVG_DATABASE_URL", "sqlite:///chatsvg.db"))
