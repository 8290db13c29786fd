"""OpenTelemetry traces and metrics for the engine (the ``otel`` extra).

``pip install 'chatsvg-core[otel]'`` brings ``opentelemetry-api`` only; the
host chooses the SDK and exporters (OTLP, Prometheus...). Pass an
:class:`OpenTelemetryInstrumentation` to the engine::

    from chatsvg_core.otel import OpenTelemetryInstrumentation

    engine = Engine(store, queue, provider,
                    instrumentation=OpenTelemetryInstrumentation(messaging_system="rabbitmq"))

There are no OpenTelemetry conventions for job engines, so the messaging ones
are followed: ``submit`` is a PRODUCER span (``send generate``) whose context
is stored in the job record (``Job.trace_context``, W3C ``traceparent``), so
it crosses any queue engine; each attempt is a CONSUMER span (``process
generate``) *linked* to that context, with children ``chatsvg.claim`` (claim
and charge, one transaction), ``chatsvg.provider``, ``chatsvg.extract`` and
``chatsvg.sanitize``. ``messaging.system`` names the real broker (set it);
job id, attempt and fencing token are ``chatsvg.job.id``,
``chatsvg.job.attempt`` and ``chatsvg.job.fencing_token``.

Metrics (meter ``chatsvg_core``):

==================================  =========  ==========================================
name                                unit       what
==================================  =========  ==========================================
``chatsvg.jobs.submitted``          {job}      new jobs (``chatsvg.replayed`` for key replays)
``chatsvg.jobs.finished``           {job}      terminal jobs by ``chatsvg.outcome``
``chatsvg.attempt.duration``        s          claim to outcome, by ``chatsvg.outcome``
``chatsvg.job.queue_wait``          s          due time to claim
``chatsvg.credits.charged``         {credit}   credits charged
``chatsvg.credits.refunded``        {credit}   credits refunded
``chatsvg.job.retries``             {retry}    retries scheduled, by ``error.type``
``chatsvg.sanitizer.removals``      {change}   sanitizer changes to model output
==================================  =========  ==========================================
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from chatsvg_core.engine import EngineEvent, EventKind, Step
from chatsvg_core.jobs import Job, JobStatus

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["DESTINATION", "OpenTelemetryInstrumentation"]

DESTINATION = "generate"
"""``messaging.destination.name``: the engine's one operation."""

_SCOPE = "chatsvg_core"


class OpenTelemetryInstrumentation:
    """Spans and metrics for one engine (see the module docs for names).

    Args:
        tracer_provider: default: the global one (``trace.set_tracer_provider``).
        meter_provider: default: the global one.
        messaging_system: ``messaging.system``: the broker the job ids travel
            through (``rabbitmq``, ``redis``, ``postgresql`` for a
            database-backed queue...); ``chatsvg`` for the in-process queue.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        messaging_system: str = "chatsvg",
    ) -> None:
        from chatsvg_core import __version__

        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self.messaging_system = messaging_system
        self.submitted = meter.create_counter(
            "chatsvg.jobs.submitted", unit="{job}", description="Jobs submitted."
        )
        self.finished_jobs = meter.create_counter(
            "chatsvg.jobs.finished", unit="{job}", description="Jobs that reached a final state."
        )
        self.attempt_duration = meter.create_histogram(
            "chatsvg.attempt.duration",
            unit="s",
            description="One attempt, from the start of its claim to its outcome.",
        )
        self.queue_wait = meter.create_histogram(
            "chatsvg.job.queue_wait",
            unit="s",
            description="From the time a job was due to its claim.",
        )
        self.charged = meter.create_counter(
            "chatsvg.credits.charged", unit="{credit}", description="Credits charged."
        )
        self.refunded = meter.create_counter(
            "chatsvg.credits.refunded", unit="{credit}", description="Credits refunded."
        )
        self.retries = meter.create_counter(
            "chatsvg.job.retries", unit="{retry}", description="Job retries scheduled."
        )
        self.removals = meter.create_counter(
            "chatsvg.sanitizer.removals",
            unit="{change}",
            description="Changes the sanitizer made to model output.",
        )

    def _base(self, operation: str, kind: str) -> dict[str, Any]:
        return {
            "messaging.system": self.messaging_system,
            "messaging.operation.name": operation,
            "messaging.operation.type": kind,
            "messaging.destination.name": DESTINATION,
        }

    # --- the Instrumentation protocol -------------------------------------------

    def submit(self, owner: str) -> _Submit:
        """A PRODUCER span around one submit."""
        return _Submit(self)

    def attempt(self, worker_id: str) -> _Attempt:
        """A CONSUMER span around one attempt (begun once the claim names the job)."""
        return _Attempt(self, worker_id)

    def event(self, event: EngineEvent) -> None:
        """Counters from engine events."""
        kind = event.kind
        fields = event.fields
        if kind is EventKind.CHARGED:
            self.charged.add(_int(fields.get("amount")))
        elif kind is EventKind.REFUNDED:
            self.refunded.add(_int(fields.get("amount")))
        elif kind is EventKind.RETRY_SCHEDULED:
            self.retries.add(1, {"error.type": str(fields.get("error_code"))})
        elif kind is EventKind.GENERATED:
            self.removals.add(_int(fields.get("removed")))
        elif kind is EventKind.SUCCEEDED:
            self.finished_jobs.add(1, {"chatsvg.outcome": "succeeded"})
        elif kind is EventKind.FAILED:
            self.finished_jobs.add(
                1, {"chatsvg.outcome": "failed", "error.type": str(fields.get("error_code"))}
            )


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class _Submit:
    __slots__ = ("_inst", "_span", "_token")

    def __init__(self, inst: OpenTelemetryInstrumentation) -> None:
        self._inst = inst

    def __enter__(self) -> _Submit:
        self._span = self._inst.tracer.start_span(
            f"send {DESTINATION}",
            kind=SpanKind.PRODUCER,
            attributes=self._inst._base("send", "send"),
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def carrier(self) -> Mapping[str, str] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier or None

    def done(self, job: Job, *, replayed: bool) -> None:
        self._span.set_attributes(
            {
                "messaging.message.id": job.id,
                "chatsvg.job.id": job.id,
                "chatsvg.replayed": replayed,
            }
        )
        self._inst.submitted.add(1, {"chatsvg.replayed": replayed})

    def __exit__(self, *exc_info: object) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, BaseException):
            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self._span.set_attribute("error.type", _error_type(error))
        otel_context.detach(self._token)
        self._span.end()


class _Attempt:
    __slots__ = ("_inst", "_span", "_started", "_token", "_worker")

    def __init__(self, inst: OpenTelemetryInstrumentation, worker_id: str) -> None:
        self._inst = inst
        self._worker = worker_id
        self._span: Span | None = None
        self._token: object = None
        self._started = 0

    def claimed(self, job: Job | None, *, claim_started_ns: int) -> None:
        if job is None:
            return  # nothing was claimed: not an attempt
        inst = self._inst
        self._started = claim_started_ns
        links = []
        if job.trace_context:
            submitter = trace.get_current_span(propagate.extract(job.trace_context))
            if submitter.get_span_context().is_valid:
                links.append(Link(submitter.get_span_context()))
        attributes = {
            **inst._base("process", "process"),
            "messaging.message.id": job.id,
            "chatsvg.job.id": job.id,
            "chatsvg.job.attempt": job.attempt,
            "chatsvg.worker.id": self._worker,
        }
        if job.lease_token is not None:
            attributes["chatsvg.job.fencing_token"] = job.lease_token
        span = inst.tracer.start_span(
            f"process {DESTINATION}",
            kind=SpanKind.CONSUMER,
            links=links,
            start_time=claim_started_ns,
            attributes=attributes,
        )
        self._span = span
        # The claim already happened: record it as a child with its real times.
        claim = inst.tracer.start_span(
            "chatsvg.claim",
            context=trace.set_span_in_context(span),
            start_time=claim_started_ns,
            attributes={"chatsvg.job.id": job.id},
        )
        if job.status is JobStatus.FAILED and job.last_error is not None:
            claim.set_status(Status(StatusCode.ERROR, job.last_error.code))
        claim.end()
        due_ns = int(job.run_at.timestamp() * 1e9)
        inst.queue_wait.record(max(0.0, (claim_started_ns - due_ns) / 1e9))

    def step(self, name: Step) -> AbstractContextManager[object]:
        return self._inst.tracer.start_as_current_span(
            f"chatsvg.{name}", kind=SpanKind.CLIENT if name == "provider" else SpanKind.INTERNAL
        )

    def finished(self, job: Job | None, error: BaseException | None = None) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        if error is not None:
            outcome = "error"
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", _error_type(error))
        elif job is None:
            outcome = "lease_lost"
            span.set_status(Status(StatusCode.ERROR, "lease lost"))
        else:
            outcome = {
                JobStatus.SUCCEEDED: "succeeded",
                JobStatus.FAILED: "failed",
                JobStatus.QUEUED: "retry",
            }.get(job.status, job.status.value)
            if job.status is not JobStatus.SUCCEEDED and job.last_error is not None:
                span.set_status(Status(StatusCode.ERROR, job.last_error.code))
                span.set_attribute("error.type", job.last_error.code)
        span.set_attribute("chatsvg.outcome", outcome)
        span.end()
        self._inst.attempt_duration.record(
            max(0.0, (time.time_ns() - self._started) / 1e9), {"chatsvg.outcome": outcome}
        )

    def __enter__(self) -> _Attempt:
        if self._span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None


def _error_type(error: BaseException) -> str:
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else type(error).__qualname__
