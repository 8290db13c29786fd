"""The engine's instrumentation interface: a few calls at fixed points of a job's life.

The engine calls an :class:`Instrumentation` when a job is submitted, around
each attempt (claim and charge, the provider call, extraction, sanitizing),
and with every :class:`~chatsvg_core.engine.EngineEvent`. The default,
:data:`NO_INSTRUMENTATION`, does nothing and imports nothing; the
OpenTelemetry implementation lives in :mod:`chatsvg_core.otel` (the ``otel``
extra). Like stamina's ``instrumentation`` package, a host can write its own
(Prometheus without OpenTelemetry, say) against this protocol.

Timestamps are ``time.time_ns()`` values so an implementation can place spans
that it learns about late (the attempt span begins when the claim began, but
only the claim tells whose job it is and which trace it continues).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from chatsvg_core.engine._events import EngineEvent
    from chatsvg_core.jobs import Job

__all__ = [
    "NO_INSTRUMENTATION",
    "NO_SCOPE",
    "AttemptScope",
    "Instrumentation",
    "Step",
    "SubmitScope",
]

Step = Literal["provider", "extract", "sanitize"]
"""The named child steps of an attempt."""


@runtime_checkable
class SubmitScope(Protocol):
    """One :meth:`Engine.submit <chatsvg_core.engine.Engine.submit>` call."""

    def carrier(self) -> Mapping[str, str] | None:
        """The trace context to store in the new job (``None``: none)."""
        ...

    def done(self, job: Job, *, replayed: bool) -> None:
        """The job was written (or the key replayed an existing one)."""
        ...

    def __enter__(self) -> SubmitScope: ...

    def __exit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class AttemptScope(Protocol):
    """One call of ``process`` / ``process_next``, from before the claim to its outcome."""

    def claimed(self, job: Job | None, *, claim_started_ns: int) -> None:
        """The claim-and-charge transaction ended; ``job`` is what it returned.

        ``None`` or a job that is not RUNNING means nothing runs now (unknown,
        not due, duplicate delivery, or failed at charge).
        """
        ...

    def step(self, name: Step) -> AbstractContextManager[object]:
        """Around one step of the attempt."""
        ...

    def finished(self, job: Job | None, error: BaseException | None = None) -> None:
        """The attempt ended: ``job`` as it left it (``None``: lease lost or nothing to do)."""
        ...

    def __enter__(self) -> AttemptScope: ...

    def __exit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class Instrumentation(Protocol):
    """What an engine tells an observer; every method must be cheap and must not raise."""

    def submit(self, owner: str) -> SubmitScope:
        """A scope around one submit (a producer span, in messaging terms)."""
        ...

    def attempt(self, worker_id: str) -> AttemptScope:
        """A scope around one attempt (a consumer span)."""
        ...

    def event(self, event: EngineEvent) -> None:
        """Every engine event (counters: outcomes, credits, retries, removals)."""
        ...


class _NoScope:
    """Both scopes, doing nothing; one shared instance."""

    __slots__ = ()

    def carrier(self) -> None:
        return None

    def done(self, job: Job, *, replayed: bool) -> None:
        return None

    def claimed(self, job: Job | None, *, claim_started_ns: int) -> None:
        return None

    def step(self, name: Step) -> AbstractContextManager[object]:
        return _NULL

    def finished(self, job: Job | None, error: BaseException | None = None) -> None:
        return None

    def __enter__(self) -> _NoScope:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class _NoInstrumentation:
    """The default: every call is a no-op returning a shared object."""

    __slots__ = ()

    def submit(self, owner: str) -> _NoScope:
        return _NO_SCOPE

    def attempt(self, worker_id: str) -> _NoScope:
        return _NO_SCOPE

    def event(self, event: EngineEvent) -> None:
        return None

    def __repr__(self) -> str:
        return "NO_INSTRUMENTATION"


_NULL: AbstractContextManager[object] = nullcontext()
_NO_SCOPE = _NoScope()
NO_SCOPE: AttemptScope = _NO_SCOPE
"""The scope :data:`NO_INSTRUMENTATION` returns (the engine skips its no-op steps)."""
NO_INSTRUMENTATION: Instrumentation = _NoInstrumentation()
"""The engine's default instrumentation: does nothing, costs a few attribute lookups."""
