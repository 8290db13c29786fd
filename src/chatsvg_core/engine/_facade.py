"""Sync hosts' view of the engine, and a one-call helper for notebooks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from chatsvg_core._sync import run_sync
from chatsvg_core.engine._engine import Engine, RecoveryReport, SubmitResult
from chatsvg_core.generate import GenerationRequest
from chatsvg_core.jobs import Job
from chatsvg_core.storage import JobResult

__all__ = ["SyncEngine"]

T = TypeVar("T")


class SyncEngine:
    """The :class:`Engine`'s methods, callable from sync code (Celery, Django, scripts).

    Every call runs on the library's one event-loop thread per process, so
    the async store and provider keep their connection pools across calls.
    Build the engine on that loop with :meth:`build` (async resources such as
    PostgreSQL pools bind to the loop that created them):

    >>> engine = SyncEngine.build(lambda: Engine(MemoryStore(), None, OfflineSketchProvider()))
    ... # doctest: +SKIP
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def build(cls, factory: Callable[[], Engine]) -> SyncEngine:
        """Call ``factory`` on the library's loop thread and wrap what it returns."""

        async def make() -> Engine:
            return factory()

        return cls(run_sync(make))

    @staticmethod
    def _call(coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return run_sync(coro_fn, *args)

    def submit(
        self,
        owner: str,
        idempotency_key: str | None,
        request: GenerationRequest | Mapping[str, Any],
    ) -> SubmitResult:
        """See :meth:`Engine.submit`."""
        return self._call(self.engine.submit, owner, idempotency_key, request)

    def process(self, job_id: str, worker_id: str) -> Job | None:
        """See :meth:`Engine.process`."""
        return self._call(self.engine.process, job_id, worker_id)

    def recover(self) -> RecoveryReport:
        """See :meth:`Engine.recover`."""
        return self._call(self.engine.recover)

    def get(self, job_id: str) -> Job:
        """See :meth:`Engine.get`."""
        return self._call(self.engine.get, job_id)

    def result(self, job_id: str) -> JobResult | None:
        """See :meth:`Engine.result`."""
        return self._call(self.engine.result, job_id)
