"""What instrumentation costs the engine: jobs/s with none, OpenTelemetry API only, and the SDK.

One run, rounds interleaved (none, api, sdk, none, api, sdk, ...) so the load
of a shared machine hits each configuration alike. Each round seeds ``n`` jobs
into a fresh store and drains them with ``Engine.process_next`` and a provider
that answers at once (so the engine's own cost is as large a share as it gets):

* **none**: ``Engine(...)`` without instrumentation (the default no-op hooks);
* **otel api**: ``OpenTelemetryInstrumentation()`` with no SDK installed as
  the global provider: the API's no-op tracer and meter (a host that has
  the extra but has not configured OpenTelemetry);
* **otel sdk**: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` to a
  discarding exporter and a ``MeterProvider`` with an in-memory reader: every
  span and metric really recorded.

Jobs/s are per second of this process's CPU time (``time.process_time``), so
the other tenants of a shared machine do not count. Ratios are *none* over
each. The memory store shows the worst case (no I/O); SQLite shows a real
embedded deployment.

    python benchmarks/bench_instrumentation.py [--n 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_engine import InstantProvider, seed
from chatsvg_core import Engine
from chatsvg_core.storage import Store, open_storage


def _sdk() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from chatsvg_core.otel import OpenTelemetryInstrumentation

    class Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def _api() -> Any:
    from chatsvg_core.otel import OpenTelemetryInstrumentation

    return OpenTelemetryInstrumentation()


CONFIGS: dict[str, Callable[[], Any]] = {"none": lambda: None, "otel api": _api, "otel sdk": _sdk}


async def one_round(open_store: Callable[[], Awaitable[Store]], n: int, config: str) -> float:
    store = await open_store()
    await seed(store, n, 1)
    engine = Engine(store, None, InstantProvider(), instrumentation=CONFIGS[config]())
    # CPU time of this process, not wall time: on a shared, loaded machine the
    # wall clock mostly measures the other tenants.
    start = time.process_time()
    done = 0
    while await engine.process_next("w") is not None:
        done += 1
    elapsed = time.process_time() - start
    await store.aclose()
    assert done == n
    return n / elapsed


def noop_hooks_per_job() -> float:
    """Seconds the default no-op hooks cost one successful job (the calls the engine makes)."""
    import timeit

    from chatsvg_core.engine import NO_INSTRUMENTATION

    inst = NO_INSTRUMENTATION

    def job() -> None:
        with inst.submit("o") as s:
            s.carrier()
            s.done(None, replayed=False)  # type: ignore[arg-type]
        a = inst.attempt("w")
        a.claimed(None, claim_started_ns=0)
        with a:
            for step in ("provider", "extract", "sanitize"):
                with a.step(step):  # type: ignore[arg-type]
                    pass
        a.finished(None)
        for _ in range(5):  # submitted, claimed, charged, generated, succeeded
            inst.event(None)  # type: ignore[arg-type]

    number = 20_000
    return min(timeit.repeat(job, number=number, repeat=5)) / number


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, n={args.n}, rounds={args.rounds}, "
        f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    tmp = Path(tempfile.mkdtemp())
    counter = iter(range(10**6))

    async def memory() -> Store:
        return await open_storage("memory://")

    async def sqlite() -> Store:
        return await open_storage(f"sqlite:///{tmp / f'{next(counter)}.db'}")

    print(f"default no-op hooks: {noop_hooks_per_job() * 1e6:.2f} us per job")
    print("| store | none jobs/s | otel api jobs/s | ratio | otel sdk jobs/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, opener in (("memory", memory), ("sqlite", sqlite)):
        results: dict[str, list[float]] = {c: [] for c in CONFIGS}
        await one_round(opener, min(args.n, 50), "otel sdk")  # warm imports and caches
        order = list(CONFIGS)
        for _ in range(args.rounds):
            for config in order:
                results[config].append(await one_round(opener, args.n, config))
            order = order[1:] + order[:1]  # no configuration always runs first
        med = {c: statistics.median(v) for c, v in results.items()}
        print(
            f"| {name} | {med['none']:.0f} | {med['otel api']:.0f} | "
            f"{med['none'] / med['otel api']:.2f}x | {med['otel sdk']:.0f} | "
            f"{med['none'] / med['otel sdk']:.2f}x |"
        )


if __name__ == "__main__":
    asyncio.run(main())
