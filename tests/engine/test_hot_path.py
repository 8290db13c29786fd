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
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core._logctx import job_fields
from chatsvg_core.engine import EngineEvent, EventKind, _events
from chatsvg_core.engine import _engine as engine_module
from chatsvg_core.generate import TokenUsage, progress_reporting, report_progress
from chatsvg_core.jobs import JobStatus
from chatsvg_core.storage import MemoryStore, claim_job, expire_leases
from chatsvg_core.storage.sqlite import _CLAIM_PICK_ONE

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
        # Logged at its level alone (no hook): each event is built, the
        # attempt's too (GENERATED and SUCCEEDED test for a listener in line).
        built.clear()
        with caplog.at_level(logging.DEBUG, logger="chatsvg_core.engine"):
            assert (await quiet.process_next("w")) is not None
        assert built == kinds[1:]
        # Only GENERATED's level logged: that one alone.
        built.clear()
        logging.getLogger("chatsvg_core.engine").setLevel(logging.WARNING)
        monkeypatch.setitem(_events.EVENT_LEVELS, EventKind.GENERATED, logging.ERROR)
        await quiet.submit("o", None, {"prompt": "a fish"})
        assert (await quiet.process_next("w")) is not None
        assert built == [EventKind.GENERATED]
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
    # And every one of the 122 other bits is random: each is seen both set and clear.
    numbers = [int(value, 16) for value in ids]
    any_set = any_clear = 0
    for n in numbers:
        any_set |= n
        any_clear |= ~n & ((1 << 128) - 1)
    fixed = (0xF << 76) | (0x3 << 62)
    assert any_set & any_clear == ((1 << 128) - 1) & ~fixed


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
            # Claimed by the claim's own pick and UPDATE (SQLite's claim_due
            # reads the row it claims instead of RETURNING it): no other read
            # of the job before it. The finish succeeds it at the version
            # the claim gave it (no heartbeat ran), so it reads nothing back.
            claim = next(
                i for i, s in enumerate(statements)
                if s.startswith("UPDATE chatsvg_jobs SET status = 'running'")
            )  # fmt: skip
            reads = [
                s for s in statements[:claim] if s.startswith("SELECT") and "chatsvg_jobs" in s
            ]
            pick = _CLAIM_PICK_ONE.split(" WHERE ")[0]
            assert len(reads) == 1 and reads[0].startswith(pick + " WHERE id = "), reads
            after = [s for s in statements[claim + 1 :] if "chatsvg_jobs" in s]
            assert len(after) == 1, after
            assert after[0].startswith("UPDATE chatsvg_jobs SET status = 'succeeded'"), after
            assert after[0].endswith(f" AND version = {got.job.version - 1}"), after
            async with store.transaction() as tx:
                assert await tx.get_job(job.id) == got.job
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


# --- a plain dict request: validation and the dump without the model ------------------


class _Str(str):
    pass


class _Int(int):
    pass


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.sampled_from([15, 16, 512, 4096, 4097, 2**63, 1.0, 512.0, "512", b"x", ["a"]]),
    st.text(max_size=6),
    st.sampled_from(["flat", "line-art", "-x", "a" * 32, "a" * 33, "flat\n", "FLAT", "gpt-4o"]),
    st.sampled_from(["a b", "x" * 512, "x" * 513, "m\n", "simple", "standard", "detailed", ""]),
    st.sampled_from(list(engine_module.Detail)),
    st.sampled_from([_Str("flat"), _Str("a cat"), _Int(512)]),
)
_KEYS = st.sampled_from(["prompt", "style", "width", "height", "detail", "model", "seed", 1])
_VALID = st.fixed_dictionaries(
    {"prompt": st.text(max_size=20)},
    optional={
        "style": st.none() | st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
        "width": st.integers(16, 4096),
        "height": st.integers(16, 4096),
        "detail": st.sampled_from(["simple", "standard", "detailed", *engine_module.Detail]),
        "model": st.none() | st.from_regex(r"[!-~]{1,20}", fullmatch=True),
    },
)


@given(
    st.one_of(
        st.dictionaries(_KEYS, _ODD_VALUES, max_size=7),
        # A valid request with one field spoilt (or added): each rule on its own.
        st.builds(lambda valid, key, odd: {**valid, key: odd}, _VALID, _KEYS, _ODD_VALUES),
        _VALID,
    )
)
@settings(max_examples=400)
@example({"prompt": "a", "width": 15})
@example({"prompt": "a", "height": 4097})
@example({"prompt": "a", "width": True})
@example({"prompt": "a", "style": "flat\n"})
@example({"prompt": "a", "style": "Flat"})
@example({"prompt": "a", "model": "m\n"})
@example({"prompt": "a", "model": "a b"})
@example({"prompt": "a", "detail": ["simple"]})
@example({"prompt": "a", "detail": "Simple"})
@example({"prompt": _Str("a")})
@example({"prompt": "a", "seed": 1})
def test_a_plain_request_payload_is_validation_then_the_dump(request: dict[Any, Any]) -> None:
    from pydantic import ValidationError

    from chatsvg_core.engine._validate import plain_payload

    fast = plain_payload(request)
    try:
        slow = GenerationRequest.model_validate(request).model_dump(mode="json")
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        assert fast == slow
        assert [(k, type(v)) for k, v in fast.items()] == [(k, type(v)) for k, v in slow.items()]


@given(_VALID)
def test_plain_valid_requests_take_the_fast_path(request: dict[str, Any]) -> None:
    from chatsvg_core.engine._validate import plain_payload

    assert plain_payload(request) is not None


_PROMPTS = st.text(max_size=20) | st.sampled_from(
    ['a "cat"', "back\\slash", "\x00\x1f\x7f", "caf\u00e9 \u2028", "\U0001f600", "\ud800", ""]
)


@given(
    st.builds(
        lambda valid, prompt: {**valid, "prompt": prompt},
        _VALID,
        _PROMPTS,
    ),
    st.text(max_size=12) | st.sampled_from(["7:owner-0/8:generate", "\ud800", '"\\']),
)
@settings(max_examples=400)
@example({"prompt": "a", "model": '"\\x'}, "s")
@example({"prompt": "a", "style": "a-1", "detail": "detailed", "width": 16}, "s")
def test_a_plain_payloads_jcs_and_hash_are_the_general_encoders(
    request: dict[str, Any], scope: str
) -> None:
    # The submit's plain path (plain_jcs, hash_and_json_of_jcs) against
    # canonical_json and request_hash_and_json, lone surrogates included
    # (then the plain path declines and the general one refuses).
    from chatsvg_core.engine._validate import plain_jcs, plain_payload
    from chatsvg_core.errors import UnhashablePayload
    from chatsvg_core.idempotency._canonical import (
        canonical_json,
        hash_and_json_of_jcs,
        request_hash_and_json,
    )

    payload = plain_payload(request)
    assert payload is not None
    body = plain_jcs(payload)
    assert type(body) is str
    try:
        expected_text = canonical_json(payload)
    except UnhashablePayload:
        expected_text = None
    if expected_text is not None:
        assert body == expected_text
    shared = hash_and_json_of_jcs(body, scope)
    try:
        expected = request_hash_and_json(payload, scope=scope)
    except (UnhashablePayload, ValueError):
        assert shared is None
        return
    assert shared == expected


def test_event_kinds_hash_as_their_values() -> None:
    # EventKind hashes with str's hash (no Python __hash__ per EVENT_LEVELS
    # lookup): members still key dicts as before, and a value finds its member.
    for kind in EventKind:
        assert hash(kind) == hash(kind.value)
        assert {kind: 1}[kind] == 1
        assert {kind: 1}.get(kind.value) == 1
    assert _events.EVENT_LEVELS.get(EventKind.FAILED) == logging.WARNING
    assert _events.EVENT_LEVELS.get(EventKind.SUBMITTED, logging.DEBUG) == logging.DEBUG
    assert len(set(EventKind)) == len(list(EventKind))


def test_a_submit_result_is_its_two_fields() -> None:
    # _submit fills SubmitResult's two slots itself (not through __init__).
    import dataclasses

    assert [f.name for f in dataclasses.fields(engine_module.SubmitResult)] == ["job", "replayed"]
    assert engine_module.SubmitResult.__slots__ == ("job", "replayed")


def test_a_prompt_only_payload_is_a_fresh_dict_each_time() -> None:
    # plain_payload copies its prompt-only template: the engine writes the
    # normalised prompt into the dict it gets, and the job keeps it.
    from chatsvg_core.engine._validate import _PROMPT_ONLY, plain_payload

    first, second = plain_payload({"prompt": "a"}), plain_payload({"prompt": "b"})
    assert first is not None and second is not None and first is not second
    first["prompt"] = "changed"
    assert second["prompt"] == "b" and _PROMPT_ONLY["prompt"] is None
    assert plain_payload({"prompt": "c"}) == {**_PROMPT_ONLY, "prompt": "c"}


def test_the_fast_path_knows_every_request_field() -> None:
    # A field added to GenerationRequest turns plain_payload off (every request
    # then goes through validation) until it is taught the field.
    from chatsvg_core.engine import _validate

    assert _validate._KNOWN


async def test_a_host_prompt_policy_or_prepare_still_runs() -> None:
    from chatsvg_core.generate import PromptPolicy

    class Shouting(PromptPolicy):
        def check(self, request: GenerationRequest) -> GenerationRequest:
            checked = super().check(request)
            return checked.model_copy(update={"prompt": checked.prompt.upper()})

    class Prefixing(Engine):
        def prepare(self, request: Any) -> GenerationRequest:
            got = super().prepare(request)
            return got.model_copy(update={"prompt": "p: " + got.prompt})

    store = MemoryStore()
    loud = Engine(store, None, ScriptedProvider([]), prompt_policy=Shouting())
    assert (await loud.submit("o", "k1", {"prompt": " a cat "})).job.request["prompt"] == "A CAT"
    pre = Prefixing(store, None, ScriptedProvider([]))
    assert (await pre.submit("o", "k2", {"prompt": " a cat "})).job.request["prompt"] == "p: a cat"
    plain = Engine(store, None, ScriptedProvider([]))
    job = (await plain.submit("o", "k3", {"prompt": " a cat ", "detail": "simple"})).job
    assert job.request == {
        "prompt": "a cat",
        "style": None,
        "width": 512,
        "height": 512,
        "detail": "simple",
        "model": None,
    }


class _Watching:
    """Records what a provider sees of the attempt's context: the job's log fields
    and whether its progress reports reach the engine."""

    name = "watching"

    def __init__(self) -> None:
        self.fields: list[dict[str, object]] = []

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.fields.append(job_fields())
        report_progress(3, 30)
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


@pytest.mark.parametrize("observed", [False, True])
async def test_an_attempt_sets_the_job_fields_and_progress_hook_and_resets_them(
    observed: bool,
) -> None:
    # The default engine sets the log context and progress hook itself, not
    # through job_log_context / progress_reporting: the same values, reset after.
    from chatsvg_core.engine._instrument import NO_INSTRUMENTATION

    class Counting:
        def __init__(self) -> None:
            self.events: list[EngineEvent] = []

        def submit(self, owner: str) -> Any:
            return NO_INSTRUMENTATION.submit(owner)

        def attempt(self, worker_id: str) -> Any:
            return NO_INSTRUMENTATION.attempt(worker_id)

        def event(self, event: EngineEvent) -> None:
            self.events.append(event)

    store = MemoryStore()
    await Ledger(store).grant("o", 10)
    provider = _Watching()
    seen: list[EngineEvent] = []
    instrumentation = Counting() if observed else None
    engine = Engine(store, None, provider, on_event=seen.append, instrumentation=instrumentation)
    job = (await engine.submit("o", None, {"prompt": "a cat"})).job
    done = await engine.process_next("w")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert provider.fields == [{"job_id": job.id, "owner": "o", "attempt": 1}]
    assert [e.fields for e in seen if e.kind is EventKind.PROGRESS] == [{"tokens": 3, "chars": 30}]
    assert job_fields() == {}
    assert engine._claims == {}
    heard: list[tuple[int, int]] = []
    with progress_reporting(lambda tokens, chars: heard.append((tokens, chars))):
        report_progress(1, 2)  # the engine's hook is gone: the caller's own is back
    assert heard == [(1, 2)]
