"""Streaming, early stop, deadlines per token, progress and server messages, on the fake server.

The fake server scripts what a real one cannot be made to do on demand: a
stream that stalls between tokens, an error object in the middle of a stream,
a broken event, every shape of error body. The same contract runs against a
real llama.cpp server in ``test_llama_server.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from chatsvg_core.errors import ConfigurationError, ProviderPermanentError, ProviderTransientError
from chatsvg_core.generate import (
    GenerationRequest,
    OpenAICompatibleProvider,
    OpenAICompatibleSettings,
    progress_reporting,
)
from chatsvg_core.testing import FakeOpenAIServer, RawReply, StreamReply

from .conftest import API_KEY

SVG_PIECES = (
    "Here:\n```svg\n",
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">',
    '<rect width="5" height="5" fill="red"/>',
    "</svg>",
    "\n```\nThis square is red because",
    " red is a fine colour.",
)
REQUEST = GenerationRequest(prompt="a red square")


def make(server: FakeOpenAIServer, **overrides: Any) -> OpenAICompatibleProvider:
    fields: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "fake-model",
        "api_key": API_KEY,
        "connect_timeout": 5.0,
        "first_token_timeout": 10.0,
        "read_timeout": 10.0,
    }
    fields.update(overrides)
    return OpenAICompatibleProvider(**fields)


async def test_a_stream_is_assembled_with_the_servers_model_and_finish(
    fake_server: FakeOpenAIServer,
) -> None:
    usage = json.dumps(
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}}
    )
    fake_server.script(StreamReply(SVG_PIECES, model="served-model.gguf", events=(usage,)))
    async with make(fake_server, stop_at_svg_end=False) as provider:
        output = await provider.generate(REQUEST.model_copy(update={"model": "asked-for"}))
    assert output.text == "".join(SVG_PIECES)
    assert output.model == "served-model.gguf"  # what answered, not what was asked for
    assert output.finish_reason == "stop"
    assert (output.usage.prompt_tokens, output.usage.completion_tokens) == (7, 6)
    assert fake_server.requests[0].json()["model"] == "asked-for"


async def test_the_request_is_closed_once_the_svg_is_complete(
    fake_server: FakeOpenAIServer,
) -> None:
    # Two seconds between pieces after the SVG: reading to the end would take 4 s.
    pieces = (*SVG_PIECES[:4], *(["more prose "] * 20))
    fake_server.script(StreamReply(pieces, gap=0.2))
    seen: list[tuple[int, int]] = []
    started = time.monotonic()
    async with make(fake_server) as provider:
        with progress_reporting(lambda tokens, chars: seen.append((tokens, chars))):
            output = await provider.generate(REQUEST)
    took = time.monotonic() - started
    assert output.finish_reason == "svg_complete"
    assert output.text.endswith("</svg>")
    assert output.usage.completion_tokens == 4  # counted from the stream: the server never said
    assert took < 2.5, took
    assert seen and seen[-1] == (4, len("".join(SVG_PIECES[:4])))
    # The server learns that the client hung up when it next writes.
    for _ in range(100):  # polled: the server thread has no event to await
        if fake_server.hangups:
            break
        await anyio.sleep(0.05)
    assert fake_server.hangups == 1


async def test_a_stream_that_stalls_between_tokens_times_out_per_token(
    fake_server: FakeOpenAIServer,
) -> None:
    # 0.4 s between tokens, 1.2 s in all: a deadline per token of 0.25 s fires;
    # a whole-answer deadline of 1 s would not have distinguished it.
    fake_server.script(StreamReply(("<svg", " xmlns", "='x'"), gap=0.4))
    async with make(fake_server, read_timeout=0.25) as provider:
        with pytest.raises(ProviderTransientError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "timeout_read"
    assert "nothing new for 0.25 s (read_timeout)" in str(info.value)


async def test_slow_tokens_within_the_gap_never_time_out(fake_server: FakeOpenAIServer) -> None:
    pieces = tuple(SVG_PIECES[:4])
    fake_server.script(StreamReply(pieces, gap=0.3))
    async with make(fake_server, read_timeout=1.0, first_token_timeout=1.0) as provider:
        output = await provider.generate(REQUEST)  # 1.2 s in all, no gap over 1 s
    assert output.text.endswith("</svg>")


async def test_an_error_event_mid_stream_keeps_its_message(fake_server: FakeOpenAIServer) -> None:
    error = json.dumps({"error": {"message": "model crashed: out of memory", "code": 500}})
    fake_server.script(StreamReply(("<svg",), finish_reason=None, events=(error,)))
    async with make(fake_server) as provider:
        with pytest.raises(ProviderTransientError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "error_body"
    assert "model crashed: out of memory" in str(info.value)


async def test_a_broken_event_is_malformed_json(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(StreamReply(("<svg",), events=("{not json",)))
    async with make(fake_server, stop_at_svg_end=False) as provider:
        with pytest.raises(ProviderTransientError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "malformed_json"


async def test_a_length_cut_stream_reports_length(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(StreamReply(("Let me think about squares",), finish_reason="length"))
    async with make(fake_server) as provider:
        output = await provider.generate(REQUEST)
    assert output.finish_reason == "length"


async def test_stream_off_sends_a_plain_request(fake_server: FakeOpenAIServer) -> None:
    body = {"model": "m", "choices": [{"message": {"content": "<svg/>"}, "finish_reason": "stop"}]}
    fake_server.script(RawReply(json.dumps(body).encode()))
    async with make(fake_server, stream=False, max_tokens=300) as provider:
        output = await provider.generate(REQUEST)
    sent = fake_server.requests[0].json()
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert sent["max_tokens"] == 300
    assert output.text == "<svg/>"


# --- the server's own words -------------------------------------------------------

ERROR_BODIES = [
    (b'{"detail": "Invalid API key"}', "Invalid API key"),
    (
        b'{"detail": [{"loc": ["body", "max_tokens"], "msg": "must be positive"}]}',
        "max_tokens: must be positive",
    ),
    (b'{"error": "model \\"llama9\\" not found, try pulling it"}', 'model "llama9" not found'),
    (b'{"error": {"message": "This model\'s maximum context length is 2048"}}', "2048"),
    (b'{"message": "Bad gateway upstream"}', "Bad gateway upstream"),
    (b"upstream connect error or disconnect/reset", "upstream connect error"),
    (b'{"weird": "shape"}', ""),
]


@pytest.mark.parametrize(("body", "quoted"), ERROR_BODIES)
async def test_every_error_body_shape_reaches_the_typed_error(
    fake_server: FakeOpenAIServer, body: bytes, quoted: str
) -> None:
    fake_server.script(RawReply(body, status=400, content_type="application/json"))
    async with make(fake_server) as provider:
        with pytest.raises(ProviderPermanentError) as info:
            await provider.generate(REQUEST)
    assert quoted in str(info.value)
    assert "(/v1/chat/completions)" in str(info.value)


async def test_a_base_url_without_v1_gets_a_hint(fake_server: FakeOpenAIServer) -> None:
    # What llama-cpp-python answers for /chat/completions without /v1.
    fake_server.script(RawReply(b'{"detail": "Not Found"}', status=404))
    base = fake_server.base_url.removesuffix("/v1")
    async with make(fake_server, base_url=base) as provider:
        with pytest.raises(ProviderPermanentError) as info:
            await provider.generate(REQUEST)
    assert info.value.reason == "not_found"
    assert "HTTP 404 from 127.0.0.1" in str(info.value)
    assert "Not Found" in str(info.value)
    assert "base_url ending in /v1" in str(info.value)


async def test_list_models(fake_server: FakeOpenAIServer) -> None:
    async with make(fake_server) as provider:
        assert await provider.list_models() == ["fake-model"]
    assert fake_server.requests[0].path == "/v1/models"


# --- settings from the environment -------------------------------------------------


def test_every_number_and_switch_comes_from_the_environment() -> None:
    env = {
        "CHATSVG_OPENAI_BASE_URL": "http://127.0.0.1:8080/v1",
        "CHATSVG_OPENAI_MODEL": "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "CHATSVG_OPENAI_MAX_TOKENS": "1024",
        "CHATSVG_OPENAI_CONNECT_TIMEOUT": "3",
        "CHATSVG_OPENAI_FIRST_TOKEN_TIMEOUT": "300",
        "CHATSVG_OPENAI_READ_TIMEOUT": "45.5",
        "CHATSVG_OPENAI_TOTAL_TIMEOUT": "none",
        "CHATSVG_OPENAI_STREAM": "false",
    }
    s = OpenAICompatibleSettings.from_env(env)
    assert s.model == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (s.max_tokens, s.connect_timeout, s.first_token_timeout) == (1024, 3.0, 300.0)
    assert (s.read_timeout, s.total_timeout, s.stream) == (45.5, None, False)
    assert OpenAICompatibleSettings.from_env(env, max_tokens=5).max_tokens == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_TOKENS", "lots"), ("MAX_TOKENS", "0"), ("READ_TIMEOUT", "-1"), ("STREAM", "maybe")],
)
def test_a_bad_environment_value_is_a_configuration_error(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAICompatibleSettings.from_env({f"CHATSVG_OPENAI_{name}": value})
    assert name.lower() in str(info.value)


def test_the_default_sends_no_max_tokens() -> None:
    body = OpenAICompatibleProvider(model="m").request_body(REQUEST)
    assert "max_tokens" not in body  # the server uses what its context has left
