"""OpenTelemetry: spans and metrics of real engine runs, read from the SDK's in-memory exporters.

The submitter and the worker are separate engines over one SQLite file, so
the trace context reaches the worker only through the job record.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chatsvg_core import Engine, Ledger, open_storage
from chatsvg_core.jobs import JobStatus
from chatsvg_core.otel import OpenTelemetryInstrumentation
from chatsvg_core.retry import RetryPolicy

from ._support import ScriptedProvider

NS = 'xmlns="http://www.w3.org/2000/svg"'


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrumentation(self, system: str = "chatsvg") -> OpenTelemetryInstrumentation:
        return OpenTelemetryInstrumentation(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            messaging_system=system,
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[attr-defined]
                        out.setdefault(metric.name, []).append(
                            (dict(point.attributes or {}), value)
                        )
        return out


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_submit_to_worker_through_the_job_record(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    tracer = telemetry.tracer_provider.get_tracer("host")
    submitter_store = await open_storage(url)
    await Ledger(submitter_store).grant("ann", 10)
    submitter = Engine(
        submitter_store, None, ScriptedProvider(), instrumentation=telemetry.instrumentation()
    )
    with tracer.start_as_current_span("POST /drawings") as request_span:
        job = (await submitter.submit("ann", "k1", {"prompt": "a fox"})).job
    await submitter_store.aclose()
    assert job.trace_context is not None
    assert job.trace_context["traceparent"].split("-")[1] == format(
        request_span.get_span_context().trace_id, "032x"
    )

    # Another engine, another store connection: only the row carries the context.
    worker_store = await open_storage(url)
    worker = Engine(
        worker_store,
        None,
        ScriptedProvider(["prose"]),
        instrumentation=telemetry.instrumentation("postgresql"),
    )
    done = await worker.process_next("w1")
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert (await worker.get(job.id)).trace_context == job.trace_context
    await worker_store.aclose()

    spans = telemetry.finished()
    [send] = _by_name(spans, "send generate")
    [process] = _by_name(spans, "process generate")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == request_span.get_span_context().span_id
    assert send.attributes is not None
    assert send.attributes["chatsvg.job.id"] == job.id
    assert send.attributes["messaging.system"] == "chatsvg"
    assert send.attributes["messaging.operation.type"] == "send"

    assert process.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    attrs = process.attributes
    assert attrs is not None
    assert attrs["messaging.system"] == "postgresql"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.message.id"] == job.id
    assert attrs["chatsvg.job.id"] == job.id
    assert attrs["chatsvg.job.attempt"] == 1
    assert attrs["chatsvg.job.fencing_token"] == 1
    assert attrs["chatsvg.outcome"] == "succeeded"
    children = {
        s.name: s for s in spans if s.parent and s.parent.span_id == process.context.span_id
    }
    assert set(children) == {
        "chatsvg.claim",
        "chatsvg.provider",
        "chatsvg.extract",
        "chatsvg.sanitize",
    }
    assert process.start_time == children["chatsvg.claim"].start_time
    order = ["chatsvg.claim", "chatsvg.provider", "chatsvg.extract", "chatsvg.sanitize"]
    starts = [children[n].start_time for n in order]
    assert starts == sorted(starts)
    assert children["chatsvg.provider"].kind is SpanKind.CLIENT

    metrics = telemetry.metrics()
    assert metrics["chatsvg.credits.charged"] == [({}, 2)]
    assert metrics["chatsvg.jobs.finished"] == [({"chatsvg.outcome": "succeeded"}, 1)]
    assert metrics["chatsvg.attempt.duration"] == [({"chatsvg.outcome": "succeeded"}, 1)]
    assert metrics["chatsvg.job.queue_wait"][0][1] == 1
    assert metrics["chatsvg.jobs.submitted"] == [({"chatsvg.replayed": False}, 1)]
    assert "chatsvg.sanitizer.removals" in metrics


async def test_retries_failures_refunds_and_removals_are_counted(telemetry: Telemetry) -> None:
    store = await open_storage("memory://")
    await Ledger(store).grant("bo", 10)
    dirty = ScriptedProvider(["transient", "transient", "permanent"])
    engine = Engine(
        store,
        None,
        dirty,
        policy=RetryPolicy(max_attempts=3, jitter="none", initial_delay=0.0),
        call_policy=RetryPolicy(max_attempts=1),
        instrumentation=telemetry.instrumentation(),
    )
    job = (await engine.submit("bo", None, {"prompt": "a bee"})).job
    outcomes = []
    for _ in range(3):
        done = await engine.process(job.id, "w")
        assert done is not None
        outcomes.append(done.status)
    assert outcomes == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]
    metrics = telemetry.metrics()
    assert metrics["chatsvg.job.retries"] == [({"error.type": "provider_transient"}, 2)]
    assert metrics["chatsvg.credits.charged"] == [({}, 2)]  # once, for every attempt
    assert metrics["chatsvg.credits.refunded"] == [({}, 2)]
    assert metrics["chatsvg.jobs.finished"] == [
        ({"chatsvg.outcome": "failed", "error.type": "provider_permanent"}, 1)
    ]
    durations = {a["chatsvg.outcome"]: n for a, n in metrics["chatsvg.attempt.duration"]}
    assert durations == {"retry": 2, "failed": 1}
    processes = _by_name(telemetry.finished(), "process generate")
    assert [p.attributes["chatsvg.job.attempt"] for p in processes] == [1, 2, 3]  # type: ignore[index]
    assert all(p.status.status_code is StatusCode.ERROR for p in processes)
    providers = _by_name(telemetry.finished(), "chatsvg.provider")
    assert len(providers) == 3
    assert all(p.status.status_code is StatusCode.ERROR for p in providers)

    # A dirty SVG: the sanitizer's changes are counted.
    engine.provider = _DirtyProvider()
    job = (await engine.submit("bo", None, {"prompt": "a wasp"})).job
    done = await engine.process(job.id, "w")
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    [(_, removed)] = telemetry.metrics()["chatsvg.sanitizer.removals"]
    assert removed == 2  # the onload attribute and the script element
    await store.aclose()


class _DirtyProvider:
    name = "dirty"

    async def generate(self, request: Any) -> Any:
        from chatsvg_core.generate import ProviderOutput

        svg = f'<svg {NS} onload="alert(1)"><script>alert(1)</script><rect/></svg>'
        return ProviderOutput(text=svg, model="dirty-1", provider=self.name, latency_s=0.0)


async def test_a_refused_submit_is_an_error_span(telemetry: Telemetry) -> None:
    from chatsvg_core.errors import PromptRejected

    store = await open_storage("memory://")
    engine = Engine(store, None, ScriptedProvider(), instrumentation=telemetry.instrumentation())
    with pytest.raises(PromptRejected):
        await engine.submit("cy", None, {"prompt": "   "})
    [send] = telemetry.finished()
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes is not None
    assert send.attributes["error.type"] == "prompt_rejected"
    await store.aclose()


async def test_log_records_of_an_attempt_carry_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await open_storage("memory://")
    await Ledger(store).grant("di", 10)
    engine = Engine(
        store,
        None,
        ScriptedProvider(["transient"]),
        call_policy=RetryPolicy(max_attempts=2, jitter="none", initial_delay=0.0),
    )
    job = (await engine.submit("di", None, {"prompt": "a dog"})).job
    with caplog.at_level(logging.DEBUG, logger="chatsvg_core"):
        await engine.process(job.id, "w")
    retry = [r for r in caplog.records if getattr(r, "chatsvg_event", None) == "retry_scheduled"]
    assert len(retry) == 1
    assert (retry[0].job_id, retry[0].owner, retry[0].attempt) == (job.id, "di", 1)  # type: ignore[attr-defined]
    assert retry[0].getMessage().startswith("Retrying provider after attempt 1 failed with")
    events = [r for r in caplog.records if r.name == "chatsvg_core.engine"]
    assert {r.chatsvg_event for r in events} >= {"claimed", "charged", "generated", "succeeded"}  # type: ignore[attr-defined]
    for record in events:
        message = record.getMessage()
        assert message[0].isupper()
        assert message.endswith(".")
        assert record.job_id == job.id  # type: ignore[attr-defined]
    await store.aclose()


def test_the_library_is_silent_unless_the_host_configures_logging(tmp_path: Path) -> None:
    # A job that retries and fails logs WARNINGs; with no logging configured
    # none may reach stderr (Python's last-resort handler would print them).
    code = (
        "import asyncio\n"
        "from chatsvg_core import Engine, Ledger, open_storage\n"
        "from chatsvg_core.retry import RetryPolicy\n"
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from _support import ScriptedProvider\n"
        "async def main():\n"
        "    store = await open_storage('memory://')\n"
        "    await Ledger(store).grant('x', 10)\n"
        "    e = Engine(store, None, ScriptedProvider(['transient'] * 9),\n"
        "               policy=RetryPolicy(max_attempts=2, initial_delay=0.0, jitter='none'))\n"
        "    job = (await e.submit('x', None, {'prompt': 'p'})).job\n"
        "    await e.process(job.id, 'w'); await e.process(job.id, 'w')\n"
        "    print((await e.get(job.id)).status.value)\n"
        "    print('otel' if any('opentelemetry' in m for m in sys.modules) else 'no otel')\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.split() == ["failed", "no", "otel"]
    assert proc.stderr == ""


async def test_a_version_1_database_migrates_and_keeps_its_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chatsvg_core.storage.sqlite as sqlite_backend
    from chatsvg_core.errors import IncompatibleStorage
    from chatsvg_core.storage._sql import migrations

    path = tmp_path / "v1.sqlite"
    # A database as a deploy of schema version 1 left it, with a job in it.
    monkeypatch.setattr(sqlite_backend, "migrations", lambda dialect: migrations(dialect)[:1])
    store = await open_storage(f"sqlite:///{path}")
    await store.aclose()
    monkeypatch.undo()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO chatsvg_jobs (id, owner, status, attempt, max_attempts, run_at, "
            "request, request_hash, version, created_at, updated_at) "
            "VALUES ('old-job', 'ed', 'queued', 0, 3, 0, '{\"prompt\":\"a\"}', 'h', 0, 0, 0)"
        )
    with pytest.raises(IncompatibleStorage, match="version 1"):
        await open_storage(f"sqlite:///{path}", migrate=False)
    store = await open_storage(f"sqlite:///{path}")
    async with store.transaction() as tx:
        again = await tx.get_job("old-job")
    assert again is not None
    assert again.trace_context is None
    assert again.request == {"prompt": "a"}
    await store.aclose()
