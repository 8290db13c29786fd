"""The engine's hot-path shortcuts keep its behaviour (issue 15).

The attempt runs in the caller's task (the lease keeper cancels that task
when the lease is lost, and the engine takes that one cancellation back);
events are built only when someone would see them; what a claim learned is
handed to the rest of its attempt and forgotten after it; ids keep uuid4's form.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core.engine import EngineEvent, EventKind, _events
from chatsvg_core.engine import _engine as engine_module
from chatsvg_core.generate import TokenUsage
from chatsvg_core.jobs import JobStatus
from chatsvg_core.storage import MemoryStore, claim_job, expire_leases

from ._support import SVG, ScriptedProvider


class StubbornProvider:
    """Swallows the first cancellation it gets, then answers (badly written host code)."""

    name = "stubborn"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.swallowed = 0

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.swallowed += 1
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


async def test_a_swallowed_lease_cancel_leaves_no_cancel_request_behind() -> None:
    store = MemoryStore()
    engine = Engine(store, None, StubbornProvider(), lease=timedelta(seconds=0.2))
    provider = engine.provider
    assert isinstance(provider, StubbornProvider)
    await Ledger(store).grant("o", 10)
    job = (await engine.submit("o", None, {"prompt": "a cat"})).job

    async def run() -> tuple[object, int]:
        got = await engine.process(job.id, "w1")
        this = asyncio.current_task()
        assert this is not None
        return got, this.cancelling()

    task = asyncio.create_task(run())
    await asyncio.wait_for(provider.started.wait(), 5)
    far = engine.clock.now() + timedelta(hours=1)
    async with store.transaction() as tx:
        await expire_leases(tx, now=far)
        await claim_job(tx, job.id, now=far, worker_id="w2", lease=timedelta(hours=2))
    got, cancelling = await asyncio.wait_for(task, 5)
    # The answer came too late: fenced off, nothing written; and the task
    # carries no leftover cancellation request into the host's code.
    assert provider.swallowed == 1
    assert got is None
    assert cancelling == 0
    assert engine._claims == {}


async def test_a_shutdown_cancel_still_reaches_the_caller() -> None:
    store = MemoryStore()
    engine = Engine(store, None, StubbornProvider())
    await Ledger(store).grant("o", 10)
    job = (await engine.submit("o", None, {"prompt": "a cat"})).job
    provider = engine.provider
    assert isinstance(provider, StubbornProvider)

    class Refuses(StubbornProvider):
        async def generate(self, request: GenerationRequest) -> ProviderOutput:
            self.started.set()
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    engine.provider = Refuses()
    task = asyncio.create_task(engine.process(job.id, "w1"))
    refusing = engine.provider
    assert isinstance(refusing, Refuses)
    await asyncio.wait_for(refusing.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.transaction() as tx:
        back = await tx.get_job(job.id)
    assert back is not None and back.status is JobStatus.QUEUED  # handed back at once
    assert engine._claims == {}


async def test_events_are_built_only_for_someone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built: list[EventKind] = []
    real = _events.EngineEvent

    def counting(**fields: Any) -> EngineEvent:
        event = real(**fields)
        built.append(event.kind)
        return event

    monkeypatch.setattr(engine_module, "EngineEvent", counting)
    store = MemoryStore()
    await Ledger(store).grant("o", 10)
    quiet = Engine(store, None, ScriptedProvider())
    logging.getLogger("chatsvg_core.engine").setLevel(logging.INFO)
    try:
        await quiet.submit("o", None, {"prompt": "a cat"})
        assert (await quiet.process_next("w")) is not None
        assert built == []  # no hook, no instrumentation, DEBUG off
        seen: list[EngineEvent] = []
        heard = Engine(store, None, ScriptedProvider(), on_event=seen.append)
        await heard.submit("o", None, {"prompt": "a dog"})
        assert (await heard.process_next("w")) is not None
        kinds = [e.kind for e in seen]
        assert kinds == [
            EventKind.SUBMITTED,
            EventKind.CLAIMED,
            EventKind.CHARGED,
            EventKind.GENERATED,
            EventKind.SUCCEEDED,
        ]
        assert built == kinds
        built.clear()
        with caplog.at_level(logging.DEBUG, logger="chatsvg_core.engine"):
            await quiet.submit("o", None, {"prompt": "a bird"})
        assert built == [EventKind.SUBMITTED]
        assert any("was submitted" in r.getMessage() for r in caplog.records)
    finally:
        logging.getLogger("chatsvg_core.engine").setLevel(logging.NOTSET)


def test_ids_have_the_form_of_uuid4_hex() -> None:
    ids = {engine_module._uuid() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_delivered_job_is_claimed_in_one_statement_and_refusals_keep_their_reason(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    from chatsvg_core.testing import FakeClock

    if backend == "sqlite":
        from chatsvg_core.storage.sqlite import SQLiteStore

        store: Any = await SQLiteStore.open(tmp_path / "d.db", synchronous="normal")
    else:
        from tests.storage._sqlhelpers import new_schema_name

        from chatsvg_core.storage.postgres import PostgresStore

        schema = new_schema_name()
        store = await PostgresStore.open(request.getfixturevalue("postgres_url"), schema=schema)
    try:
        clock = FakeClock()
        engine = Engine(store, None, ScriptedProvider(), clock=clock)
        await Ledger(store).grant("o", 10)
        job = (await engine.submit("o", None, {"prompt": "a cat"})).job
        assert (await engine.run_once("nope-" + job.id[:8], "w")).kind == "unknown"
        statements: list[str] = []
        if backend == "sqlite":
            conn = await store._connection()
            conn.set_trace_callback(statements.append)
        got = await engine.run_once(job.id, "w")
        assert got.kind == "succeeded" and got.job is not None and got.job.attempt == 1
        if backend == "sqlite":
            conn.set_trace_callback(None)
            # Claimed by its UPDATE ... RETURNING: no read of the job first.
            assert not [s for s in statements if s.startswith("SELECT") and "chatsvg_jobs" in s]
            assert any(
                s.startswith("UPDATE chatsvg_jobs SET status = 'running'") for s in statements
            )
        assert (await engine.run_once(job.id, "w")).kind == "taken"
        later = await engine.submit("o", None, {"prompt": "a dog"})
        async with store.transaction() as tx:
            queued = await tx.get_job(later.job.id)
            assert queued is not None
            assert await tx.update_job(
                queued.evolve(run_at=clock.now() + timedelta(hours=1), version=queued.version + 1),
                expected_version=queued.version,
            )
        assert (await engine.run_once(later.job.id, "w")).kind == "not_due"
        async with store.transaction() as tx:
            still = await tx.get_job(later.job.id)
        assert still is not None and still.status is JobStatus.QUEUED and still.attempt == 0
    finally:
        await store.aclose()
        if backend == "postgres":
            from tests.storage._sqlhelpers import drop_schema

            drop_schema(request.getfixturevalue("postgres_url"), schema)


@given(
    st.builds(
        TokenUsage,
        prompt_tokens=st.none() | st.integers(0, 2**40),
        completion_tokens=st.none() | st.integers(0, 2**40),
        total_tokens=st.none() | st.integers(0, 2**40),
    )
)
def test_the_usage_in_metadata_is_pydantics_dump(usage: TokenUsage) -> None:
    assert engine_module._usage(usage) == usage.model_dump(mode="json")


def test_a_usage_subclass_is_dumped_by_pydantic() -> None:
    class Extended(TokenUsage):
        cached_tokens: int | None = None

    usage = Extended(prompt_tokens=1, cached_tokens=7)
    assert engine_module._usage(usage) == usage.model_dump(mode="json")
    assert engine_module._usage(usage)["cached_tokens"] == 7


@given(
    prompt=st.text(max_size=10),
    style=st.none() | st.from_regex(r"[a-z0-9][a-z0-9-]{0,5}", fullmatch=True),
    width=st.integers(64, 2048),
    height=st.integers(64, 2048),
    detail=st.sampled_from(["simple", "standard", "detailed"]) | st.none(),
    model=st.none() | st.from_regex(r"[!-~]{1,8}", fullmatch=True),
    prompt_normalised=st.booleans(),
)
def test_the_request_payload_is_pydantics_dump(
    prompt: str,
    style: str | None,
    width: int,
    height: int,
    detail: str | None,
    model: str | None,
    prompt_normalised: bool,
) -> None:
    from pydantic import ValidationError

    data: dict[str, Any] = {"prompt": prompt, "style": style, "width": width, "height": height}
    data["model"] = model
    if detail is not None:
        data["detail"] = detail
    try:
        request = GenerationRequest.model_validate(data)
    except ValidationError:
        return  # a bound this strategy does not know (the dump is only of valid requests)
    if prompt_normalised:  # as PromptPolicy.check returns it
        request = request.model_copy(update={"prompt": prompt.strip() + "!"})
    assert engine_module._payload(request) == request.model_dump(mode="json")
    payload, dumped = engine_module._payload(request), request.model_dump(mode="json")
    assert [(k, type(v)) for k, v in payload.items()] == [(k, type(v)) for k, v in dumped.items()]


def test_a_request_subclass_or_odd_value_is_dumped_by_pydantic() -> None:
    class Extended(GenerationRequest):
        seed: int | None = None

    request = Extended(prompt="x", seed=7)
    assert engine_module._payload(request) == request.model_dump(mode="json")
    odd = GenerationRequest.model_construct(prompt="x", width=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns that 1.5 is not an int, both times
        assert engine_module._payload(odd) == odd.model_dump(mode="json")
