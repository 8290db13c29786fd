"""The engine on answers real models give: blank pictures, missing xmlns, cut-off prose,
``finish_reason`` kept, progress events, and errors that keep their class in ``generate_svg``."""

from __future__ import annotations

from collections import deque

import pytest

from chatsvg_core.engine import Engine, EngineEvent, EventKind, agenerate_svg, generate_svg
from chatsvg_core.errors import (
    InvalidRequest,
    NoSVGFound,
    ProviderPermanentError,
    SVGRejected,
    TruncatedSVG,
)
from chatsvg_core.generate import GenerationRequest, ProviderOutput, report_progress
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import check_invariants

POLICY = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01, jitter=Jitter.NONE)
ONE_TRY = POLICY.model_copy(update={"max_attempts": 1})


class AnswerProvider:
    """Answers with scripted ``(text, finish_reason)`` pairs, reporting progress as it goes."""

    name = "answers"

    def __init__(self, *answers: tuple[str, str | None]) -> None:
        self.answers = deque(answers)

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        text, finish = self.answers.popleft() if len(self.answers) > 1 else self.answers[0]
        for i in range(1, 4):
            report_progress(i, len(text) * i // 3)
        return ProviderOutput(
            text=text, model="served.gguf", provider=self.name, latency_s=0.1, finish_reason=finish
        )


async def run(
    provider: AnswerProvider, **engine_options: object
) -> tuple[Engine, MemoryStore, str, list[EngineEvent]]:
    store = MemoryStore()
    events: list[EngineEvent] = []
    engine = Engine(
        store,
        None,
        provider,
        policy=ONE_TRY,
        call_policy=ONE_TRY,
        clock=FakeClock(),
        heartbeat_every=3600,
        on_event=events.append,
        **engine_options,  # type: ignore[arg-type]
    )
    await Ledger(store, clock=engine.clock).grant("alice", 10)
    job = (await engine.submit("alice", None, {"prompt": "a red square"})).job
    await engine.process(job.id, "w")
    return engine, store, job.id, events


BLANK = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"></svg>'
NO_XMLNS = '<svg viewBox="0 0 9 9"><rect width="5" height="5" fill="red"/></svg>'


async def test_a_blank_picture_fails_and_is_refunded() -> None:
    engine, store, job_id, events = await run(AnswerProvider((BLANK, "stop")))
    job = await engine.get(job_id)
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None
    assert (job.last_error.code, job.last_error.fields["reason"]) == ("svg_rejected", "blank")
    assert EventKind.REFUNDED in [e.kind for e in events]
    async with store.transaction() as tx:
        assert await tx.balance("alice") == 10
    await check_invariants(store, ["alice"], recovered=True)


async def test_hosts_may_accept_blank_pictures() -> None:
    engine, _, job_id, _ = await run(AnswerProvider((BLANK, "stop")), refuse_blank=False)
    assert (await engine.get(job_id)).status is JobStatus.SUCCEEDED


async def test_an_svg_without_xmlns_succeeds_and_keeps_finish_reason_and_model() -> None:
    engine, _, job_id, events = await run(AnswerProvider((NO_XMLNS, "svg_complete")))
    result = await engine.result(job_id)
    assert result is not None
    assert result.svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert result.metadata["finish_reason"] == "svg_complete"
    assert result.metadata["model"] == "served.gguf"
    progress = [e.fields for e in events if e.kind is EventKind.PROGRESS]
    assert [p["tokens"] for p in progress] == [1, 2, 3]
    assert progress[-1]["chars"] == len(NO_XMLNS)


async def test_prose_cut_off_before_the_svg_is_truncation_and_retried() -> None:
    provider = AnswerProvider(("Let me think step by step about squares", "length"))
    store = MemoryStore()
    engine = Engine(store, None, provider, policy=POLICY, call_policy=ONE_TRY, clock=FakeClock())
    await Ledger(store, clock=engine.clock).grant("alice", 10)
    job = (await engine.submit("alice", None, {"prompt": "a red square"})).job
    after = await engine.process(job.id, "w")
    assert after is not None
    assert after.status is JobStatus.QUEUED  # transient: another attempt may draw
    assert after.last_error is not None
    assert after.last_error.code == "truncated_svg"
    assert after.last_error.fields["reason"] == "cut_before_svg"


async def test_prose_that_stopped_normally_is_still_no_svg() -> None:
    engine, _, job_id, _ = await run(AnswerProvider(("I cannot draw that.", "stop")))
    job = await engine.get(job_id)
    assert job.last_error is not None
    assert job.last_error.code == "no_svg_found"


# --- generate_svg keeps the class ---------------------------------------------------


class FailingProvider:
    name = "failing"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        raise ProviderPermanentError(
            "HTTP 401 from x: Invalid API key",
            provider=self.name,
            status=401,
            reason="unauthorized",
        )


@pytest.mark.parametrize(
    ("provider", "kind", "reason"),
    [
        (AnswerProvider((BLANK, "stop")), SVGRejected, "blank"),
        (AnswerProvider(("I cannot draw that.", "stop")), NoSVGFound, "no_svg"),
        (AnswerProvider(("<svg><rect", "length")), TruncatedSVG, None),
        (FailingProvider(), ProviderPermanentError, "unauthorized"),
    ],
)
async def test_agenerate_svg_raises_the_jobs_own_error_class(
    provider: object, kind: type[Exception], reason: str | None
) -> None:
    with pytest.raises(kind) as info:
        await agenerate_svg("a red square", provider=provider, policy=ONE_TRY)  # type: ignore[arg-type]
    assert info.value.fields["job_id"]  # type: ignore[attr-defined]
    if reason is not None:
        assert info.value.fields["reason"] == reason  # type: ignore[attr-defined]


def test_generate_svg_raises_the_class_from_sync_code() -> None:
    with pytest.raises(ProviderPermanentError) as info:
        generate_svg("a red square", provider=FailingProvider(), policy=ONE_TRY)
    assert "Invalid API key" in str(info.value)
    assert info.value.status == 401


async def test_a_bad_field_is_a_typed_refusal_at_submit() -> None:
    engine = Engine(MemoryStore(), None, AnswerProvider((NO_XMLNS, "stop")))
    with pytest.raises(InvalidRequest) as info:
        await engine.submit("alice", None, {"prompt": "a cat", "model": "has blanks"})
    assert info.value.field == "model"
