"""A Django view that submits jobs, and a worker that runs them: one file, runnable.

``python django_app.py migrate-store`` applies the chatsvg schema (or use
``chatsvg migrate``); ``python django_app.py runserver`` serves the views;
``python django_app.py worker`` runs jobs from the same database (run it under
your process manager, beside the web processes).

Django views are synchronous, so they use :class:`~chatsvg_core.SyncEngine`:
one engine per process, shared by every request thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from functools import cache

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chatsvg_core import ChatSVGError, JobNotFound, OfflineSketchProvider, SyncEngine

DATABASE_URL = os.environ.get("CHATSVG_DATABASE_URL", "sqlite:///chatsvg.db")

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="change-me",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
    )
    django.setup()


@cache
def engine() -> SyncEngine:
    """The process's engine, opened on first use; the schema is a deploy step."""
    return SyncEngine.open(
        DATABASE_URL, provider=OfflineSketchProvider(), storage_options={"migrate": False}
    )


def _error(exc: ChatSVGError) -> JsonResponse:
    return JsonResponse(exc.to_dict(), status=exc.http_status)


def _owner(request: HttpRequest) -> str:
    return request.headers.get("X-User", "")  # stand-in for request.user


@csrf_exempt  # an API called with a token, not a browser form
@require_POST
def submit(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
        sub = engine().submit(_owner(request), request.headers.get("Idempotency-Key"), body)
    except ChatSVGError as exc:
        return _error(exc)
    except ValueError as exc:  # not JSON, or not a valid request
        return JsonResponse({"code": "bad_request", "message": str(exc)[:200]}, status=400)
    return JsonResponse({"id": sub.job.id, "status": sub.job.status.value}, status=202)


@require_GET
def status(request: HttpRequest, job_id: str) -> HttpResponse:
    try:
        job = engine().get(job_id)
        if job.owner != _owner(request):
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
    except ChatSVGError as exc:
        return _error(exc)
    if request.GET.get("format") == "svg":
        result = engine().result(job_id)
        if result is None:
            return JsonResponse({"code": "not_ready"}, status=409)
        return HttpResponse(result.svg, content_type="image/svg+xml")
    return JsonResponse({"id": job.id, "status": job.status.value, "attempt": job.attempt})


urlpatterns = [
    path("drawings", submit),
    path("drawings/<str:job_id>", status),
]


def worker(stop: threading.Event, poll: float = 1.0) -> None:
    """Run due jobs until ``stop`` is set: the database is the queue (``process_next``)."""
    sync = engine()
    sync.recover()
    while not stop.is_set():
        job = sync.process_next(worker_id=f"django-{os.getpid()}")
        if job is None:  # nothing due: look again shortly, and recover stale leases
            sync.recover()
            stop.wait(poll)


if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["worker"]:
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        with contextlib.suppress(KeyboardInterrupt):
            worker(stopping)
        engine().close()
    elif command == ["migrate-store"]:
        from chatsvg_core.cli import main

        sys.exit(main(["migrate", "--database-url", DATABASE_URL]))
    else:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
