"""The provider's contract against a real llama.cpp server (llama-cpp-python, SmolLM2-135M).

What a real server does on its own: model listing (the file path as the id),
usage, finish reasons, streaming, truncation, a bad key, a wrong base URL, a
context overflow, a server killed mid-answer and one that is gone, and the
reason streaming matters: a generation the client abandons stops, so the next
request does not queue behind it. Faults a real server cannot be made to
produce on demand (stalls between tokens, broken events, every error-body
shape) are scripted on the fake server in ``test_openai_streaming.py``.

The server runs with one thread and ``--interrupt_requests False`` (so a new
request never cuts an old one short: only the client's close can stop it).
Skipped on a machine without llama-cpp-python and the model; CI installs both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError, TruncatedSVG
from chatsvg_core.generate import (
    GenerationRequest,
    OpenAICompatibleProvider,
    extract_answer,
    progress_reporting,
)
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import RetryPolicy
from chatsvg_core.storage.memory import MemoryStore

from ._llama import LLAMA_KEY, LlamaServer, llama_server

pytestmark = pytest.mark.timeout(300)

REQUEST = GenerationRequest(prompt="a red circle on a white background", width=64, height=64)
LONG = GenerationRequest(
    prompt="a detailed night skyline: twenty buildings with lit windows, stars, a moon, a river",
    detail="detailed",
)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with llama_server("--interrupt_requests", "False") as server:
        yield server


def make(server: LlamaServer, **overrides: Any) -> OpenAICompatibleProvider:
    fields: dict[str, Any] = {
        "base_url": server.base_url,
        "model": str(server.model),
        "api_key": LLAMA_KEY,
        "temperature": 0.0,
        "max_tokens": 32,
        "first_token_timeout": 120.0,
        "read_timeout": 60.0,
    }
    fields.update(overrides)
    return OpenAICompatibleProvider(**fields)


async def test_model_listing_names_the_file_and_a_request_may_name_it(llama: LlamaServer) -> None:
    async with make(llama) as provider:
        ids = await provider.list_models()
        assert str(llama.model) in ids
        output = await provider.generate(REQUEST.model_copy(update={"model": ids[0]}))
    assert output.model == str(llama.model)


async def test_an_answer_has_usage_latency_the_servers_model_and_a_finish_reason(
    llama: LlamaServer,
) -> None:
    seen: list[tuple[int, int]] = []
    async with make(llama, model="whatever-was-asked", stop_at_svg_end=False) as provider:
        with progress_reporting(lambda tokens, chars: seen.append((tokens, chars))):
            output = await provider.generate(REQUEST)
    # What the server says in its answer: llama-cpp-python echoes the name asked for (only
    # ``list_models`` tells which model is loaded); the provider reports it as given.
    assert output.model == "whatever-was-asked"
    assert output.finish_reason in {"stop", "length"}
    assert output.usage.completion_tokens is not None
    assert 0 < output.usage.completion_tokens <= 32
    assert output.latency_s > 0
    assert output.text.strip()
    assert seen
    assert seen[-1] == (seen[-1][0], len(output.text))
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)


async def test_a_cut_off_answer_is_length_and_truncated(llama: LlamaServer) -> None:
    async with make(llama, max_tokens=3) as provider:
        output = await provider.generate(REQUEST)
    assert output.finish_reason == "length"
    assert output.usage.completion_tokens == 3
    with pytest.raises(TruncatedSVG):
        extract_answer(output)


async def test_plain_json_answers_work_too(llama: LlamaServer) -> None:
    async with make(llama, stream=False, max_tokens=8) as provider:
        output = await provider.generate(REQUEST)
    assert output.finish_reason == "length"
    assert output.usage.prompt_tokens is not None and output.usage.prompt_tokens > 0
    assert output.model == str(llama.model)


async def test_a_bad_key_is_permanent_and_says_so(llama: LlamaServer) -> None:
    async with make(llama, api_key="sk-wrong") as provider:
        with pytest.raises(ProviderPermanentError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "unauthorized"
    assert info.value.status == 401
    assert "Invalid API key" in str(info.value)
    assert "sk-wrong" not in str(info.value)


async def test_a_base_url_without_v1_quotes_the_server_and_hints(llama: LlamaServer) -> None:
    async with make(llama, base_url=llama.base_url.removesuffix("/v1")) as provider:
        with pytest.raises(ProviderPermanentError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "not_found"
    assert "Not Found" in str(info.value)
    assert "/v1" in str(info.value)


async def test_a_context_overflow_is_permanent_with_the_servers_words(llama: LlamaServer) -> None:
    huge = GenerationRequest(prompt="lighthouse " * 3000)
    async with make(llama, stream=False) as provider:
        with pytest.raises(ProviderPermanentError) as info:
            await provider.generate(huge)
    assert info.value.reason == "bad_request"
    assert "maximum context length is 2048 tokens" in str(info.value)


async def test_a_streamed_context_overflow_is_an_empty_stream(llama: LlamaServer) -> None:
    """llama-cpp-python starts the stream before it checks the prompt: no words, no events."""
    huge = GenerationRequest(prompt="lighthouse " * 3000)
    async with make(llama) as provider:
        with pytest.raises(ProviderTransientError) as info:
            await provider.generate(huge)
    assert info.value.reason == "empty_content"
    assert "ended before any answer" in str(info.value)


async def _timed(provider: OpenAICompatibleProvider, request: GenerationRequest) -> float:
    started = time.monotonic()
    await provider.generate(request)
    return time.monotonic() - started


async def test_an_abandoned_generation_does_not_delay_the_next_request(llama: LlamaServer) -> None:
    """Cancelling a streamed call closes it; the server stops, the next request goes at once."""
    budget = 600  # never spent when the close works: only a ghost would run this long
    async with (
        make(llama, max_tokens=8) as small,
        make(llama, max_tokens=budget, stop_at_svg_end=False) as big,
        make(llama, max_tokens=1) as warm,
    ):
        # The baseline follows the long prompt too, as ``after`` does: the server's prompt
        # cache then holds the other prompt, and the small one is processed afresh.
        await warm.generate(LONG)
        idle = await _timed(small, REQUEST)
        reports: list[tuple[float, int]] = []
        going = anyio.Event()

        def progress(tokens: int, chars: int) -> None:
            reports.append((time.monotonic(), tokens))
            if len(reports) >= 2:
                going.set()

        async with anyio.create_task_group() as group:

            async def abandoned() -> None:
                with progress_reporting(progress):
                    await big.generate(LONG)

            group.start_soon(abandoned)
            await going.wait()
            group.cancel_scope.cancel()  # the client gives up (a job cancelled, a shutdown)
        after = await _timed(small, REQUEST)
    (t1, n1), (t2, n2) = reports[0], reports[1]
    ghost = (budget - n2) * (t2 - t1) / max(1, n2 - n1)  # what the rest would have taken
    assert ghost > 2.0, (ghost, reports)  # else the test would prove nothing
    # Behind a ghost the small request would have waited about ``ghost`` more.
    assert after < idle + 0.5 * ghost, (after, idle, ghost)
    assert "Disconnected from client" in llama.output()


async def test_the_engine_gets_progress_and_finish_reason_from_a_real_server(
    llama: LlamaServer,
) -> None:
    store = MemoryStore()
    events: list[EngineEvent] = []
    policy = RetryPolicy(max_attempts=1)
    async with make(llama, max_tokens=200) as provider:
        engine = Engine(
            store, None, provider, policy=policy, call_policy=policy, on_event=events.append
        )
        await Ledger(store).grant("alice", 10)
        job = (await engine.submit("alice", None, REQUEST)).job
        done = await engine.process(job.id, "w")
    assert done is not None
    assert [e for e in events if e.kind is EventKind.PROGRESS]
    if done.status is JobStatus.SUCCEEDED:
        result = await engine.result(job.id)
        assert result is not None
        assert result.metadata["finish_reason"] in {"svg_complete", "stop", "length"}
        assert result.metadata["model"] == str(llama.model)
    else:  # a 135M model draws badly; whatever went wrong is typed and refunded
        assert done.last_error is not None
        assert done.last_error.code in {"svg_rejected", "no_svg_found", "truncated_svg"}
        assert EventKind.REFUNDED in [e.kind for e in events]


async def test_a_killed_server_is_a_disconnect_then_a_connect_error() -> None:
    with llama_server() as server:
        started = anyio.Event()

        def progress(tokens: int, chars: int) -> None:
            started.set()

        async with make(server, max_tokens=160, stop_at_svg_end=False) as provider:
            async with anyio.create_task_group() as group:

                async def kill_when_streaming() -> None:
                    await started.wait()
                    server.kill()

                group.start_soon(kill_when_streaming)
                with progress_reporting(progress), pytest.raises(ProviderTransientError) as info:
                    await provider.generate(LONG)
            assert info.value.reason == "disconnected"
            with pytest.raises(ProviderTransientError) as gone:
                await provider.generate(REQUEST)
            assert gone.value.reason == "connect_error"
