"""The OpenAI-compatible provider against a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import (
    ChatSVGError,
    ProviderError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chatsvg_core.generate import (
    GenerationRequest,
    OpenAICompatibleProvider,
    OpenAICompatibleSettings,
    Provider,
    extract_svg,
    generate_sync,
)
from chatsvg_core.testing import (
    ChatReply,
    DisconnectReply,
    ErrorReply,
    FakeClock,
    FakeOpenAIServer,
    RawReply,
)

from .conftest import API_KEY

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="5" height="5"/></svg>'
)
REQUEST = GenerationRequest(prompt="a red square", width=640, height=480, style="flat")


def make(server: FakeOpenAIServer, **overrides: Any) -> OpenAICompatibleProvider:
    fields: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "fake-model",
        "api_key": API_KEY,
        # Generous: the machine may be loaded; timeout tests set their own.
        "connect_timeout": 5.0,
        "first_token_timeout": 10.0,
        "read_timeout": 10.0,
        "total_timeout": 20.0,
    }
    fields.update(overrides)
    return OpenAICompatibleProvider(**fields)


async def fails(
    server: FakeOpenAIServer, reply: Any, kind: type[ProviderError], **overrides: Any
) -> ProviderError:
    server.script(reply)
    async with make(server, **overrides) as provider:
        with pytest.raises(kind) as info:
            await provider.generate(REQUEST)
    return info.value


# --- success ----------------------------------------------------------------


async def test_success_returns_text_model_usage_latency(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(f"Here you go:\n```svg\n{SVG}\n```", model="fake-model-2024"))
    async with make(fake_server) as provider:
        assert isinstance(provider, Provider)
        output = await provider.generate(REQUEST)
    assert output.text.startswith("Here you go:")
    assert extract_svg(output.text) == SVG
    assert output.model == "fake-model-2024"
    assert output.provider == "openai-compatible"
    assert output.usage.prompt_tokens == 12
    assert output.usage.completion_tokens == 34
    assert output.usage.total_tokens == 46
    assert output.latency_s >= 0
    assert output.finish_reason == "stop"


async def test_request_shape_headers_and_system_prompt(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(SVG))
    async with make(fake_server, temperature=0.2, max_tokens=1234) as provider:
        await provider.generate(REQUEST)
    (recorded,) = fake_server.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    body = recorded.json()
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 1234
    assert body["stream"] is True  # streamed, so the request can be closed early
    assert body["stream_options"] == {"include_usage": True}
    system, user = body["messages"]
    assert system["role"] == "system"
    assert 'viewBox="0 0 640 480"' in system["content"]
    assert "4:3" in system["content"]
    assert "Style: flat." in system["content"]
    assert user == {"role": "user", "content": "a red square"}


async def test_prompt_is_never_formatted_into_the_template(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(SVG))
    request = GenerationRequest(prompt="{width} {__class__} {0}", model="other-model")
    async with make(fake_server) as provider:
        await provider.generate(request)
    body = fake_server.requests[0].json()
    assert body["messages"][1]["content"] == "{width} {__class__} {0}"
    assert body["model"] == "other-model"


async def test_no_key_sends_no_authorization_and_custom_token_field(
    fake_server: FakeOpenAIServer,
) -> None:
    fake_server.script(ChatReply(SVG))
    async with make(
        fake_server,
        api_key=None,
        max_tokens_field="max_completion_tokens",
        max_tokens=8192,
        extra_headers={"X-Title": "chatsvg"},
    ) as provider:
        await provider.generate(REQUEST)
    recorded = fake_server.requests[0]
    assert "authorization" not in recorded.headers
    assert recorded.headers["x-title"] == "chatsvg"
    body = recorded.json()
    assert "max_tokens" not in body
    assert body["max_completion_tokens"] == 8192


async def test_content_parts_and_missing_usage(fake_server: FakeOpenAIServer) -> None:
    body = (
        b'{"model": "m", "choices": [{"finish_reason": "length", "message": {"content": '
        b'[{"type": "text", "text": "<svg>"}, {"type": "text", "text": "</svg>"}]}}], '
        b'"usage": {"prompt_tokens": "many", "completion_tokens": -1}}'
    )
    fake_server.script(RawReply(body))
    async with make(fake_server) as provider:
        output = await provider.generate(REQUEST)
    assert output.text == "<svg></svg>"
    assert output.finish_reason == "length"
    assert output.usage.prompt_tokens is None
    assert output.usage.completion_tokens is None


# --- transient faults --------------------------------------------------------


async def test_429_with_retry_after_seconds(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server, ErrorReply(429, "Rate limit reached", retry_after=7), ProviderTransientError
    )
    assert err.status == 429
    assert err.retry_after == 7.0
    assert err.reason == "rate_limited"
    assert err.provider == "openai-compatible"
    assert "Rate limit reached" in str(err)


async def test_429_with_retry_after_http_date_uses_the_injected_clock(
    fake_server: FakeOpenAIServer,
) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    when = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    fake_server.script(ErrorReply(429, retry_after=when))
    async with OpenAICompatibleProvider(
        base_url=fake_server.base_url, model="m", clock=clock
    ) as provider:
        with pytest.raises(ProviderTransientError) as info:
            await provider.generate(REQUEST)
    assert info.value.retry_after == 90.0


async def test_retry_after_ms_wins(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server,
        ErrorReply(429, retry_after=30, headers={"retry-after-ms": "1500"}),
        ProviderTransientError,
    )
    assert err.retry_after == 1.5


async def test_429_insufficient_quota_is_permanent(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server,
        ErrorReply(429, "You exceeded your current quota", code="insufficient_quota"),
        ProviderPermanentError,
    )
    assert err.reason == "insufficient_quota"
    assert err.status == 429


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502, 503, 504, 529])
async def test_transient_statuses(fake_server: FakeOpenAIServer, status: int) -> None:
    err = await fails(fake_server, ErrorReply(status), ProviderTransientError)
    assert err.status == status
    assert err.retry_after is None


async def test_503_with_retry_after(fake_server: FakeOpenAIServer) -> None:
    err = await fails(fake_server, ErrorReply(503, retry_after=3), ProviderTransientError)
    assert (err.status, err.retry_after, err.reason) == (503, 3.0, "server_error")


async def test_first_token_timeout_names_itself_and_its_limit(
    fake_server: FakeOpenAIServer,
) -> None:
    err = await fails(
        fake_server, ChatReply(SVG, delay=5.0), ProviderTransientError, first_token_timeout=0.3
    )
    assert err.reason == "timeout_first_token"
    assert err.status is None
    assert "no answer within 0.3 s (first_token_timeout)" in str(err)


async def test_read_timeout_between_chunks_names_itself_and_its_limit(
    fake_server: FakeOpenAIServer,
) -> None:
    stalled = RawReply(json.dumps(ChatReply(SVG).body()).encode(), chunks=2, chunk_delay=5.0)
    err = await fails(fake_server, stalled, ProviderTransientError, read_timeout=0.3)
    assert err.reason == "timeout_read"
    assert "nothing new for 0.3 s (read_timeout)" in str(err)


async def test_total_timeout_fires_while_bytes_trickle_in(fake_server: FakeOpenAIServer) -> None:
    # 40 pieces 0.1 s apart: no single read waits 5 s, but the whole takes 4 s.
    trickle = RawReply(json.dumps(ChatReply(SVG).body()).encode(), chunks=40, chunk_delay=0.1)
    err = await fails(
        fake_server, trickle, ProviderTransientError, read_timeout=5.0, total_timeout=0.5
    )
    assert err.reason == "timeout_total"
    assert err.status is None


async def test_connect_error_is_transient() -> None:
    # A port bound but not listening refuses connections for as long as we hold it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        async with OpenAICompatibleProvider(base_url=url, model="m", api_key=API_KEY) as provider:
            with pytest.raises(ProviderTransientError) as info:
                await provider.generate(REQUEST)
    assert info.value.reason == "connect_error"
    assert info.value.status is None


@pytest.mark.parametrize("partial", [False, True])
async def test_disconnects_are_transient(fake_server: FakeOpenAIServer, partial: bool) -> None:
    err = await fails(fake_server, DisconnectReply(partial_body=partial), ProviderTransientError)
    assert err.reason == "disconnected"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"<html>502 Bad Gateway</html>", b"[1, 2]", b"\xff\xfe", b"[" * 100_000],
)
async def test_malformed_json_is_transient(fake_server: FakeOpenAIServer, body: bytes) -> None:
    err = await fails(fake_server, RawReply(body), ProviderTransientError)
    assert err.reason == "malformed_json"
    assert err.status == 200


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"choices": []}', b'{"choices": null}', b'{"choices": ["x"]}'],
)
async def test_no_choices_is_transient(fake_server: FakeOpenAIServer, body: bytes) -> None:
    err = await fails(fake_server, RawReply(body), ProviderTransientError)
    assert err.reason == "no_choices"


async def test_empty_content_is_transient(fake_server: FakeOpenAIServer) -> None:
    err = await fails(fake_server, ChatReply(None), ProviderTransientError)
    assert err.reason == "empty_content"


async def test_error_object_in_a_200_is_transient(fake_server: FakeOpenAIServer) -> None:
    body = b'{"error": {"message": "upstream overloaded", "code": 502}}'
    err = await fails(fake_server, RawReply(body), ProviderTransientError)
    assert err.reason == "error_body"


# --- permanent faults --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (422, "unprocessable"),
        (413, "http_413"),
    ],
)
async def test_permanent_statuses(fake_server: FakeOpenAIServer, status: int, reason: str) -> None:
    err = await fails(fake_server, ErrorReply(status, "nope"), ProviderPermanentError)
    assert (err.status, err.reason, err.retry_after) == (status, reason, None)


async def test_content_filter_finish_reason(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server, ChatReply("", finish_reason="content_filter"), ProviderPermanentError
    )
    assert err.reason == "content_filter"


async def test_refusal_field(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server, ChatReply(None, refusal="I can't help with that."), ProviderPermanentError
    )
    assert err.reason == "refusal"
    assert "can't help" in str(err)


async def test_content_policy_400(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server,
        ErrorReply(
            400, "Your request was rejected by our safety system", code="content_policy_violation"
        ),
        ProviderPermanentError,
    )
    assert err.reason == "content_policy"


async def test_response_too_large_is_refused_while_reading(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server, RawReply(b" " * 50_000), ProviderPermanentError, max_response_bytes=10_000
    )
    assert err.reason == "response_too_large"


# --- the API key never leaks ------------------------------------------------


def _everything_said_about(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current), repr(getattr(current, "args", ()))]
        if isinstance(current, ChatSVGError):
            parts += [repr(dict(current.fields)), repr(current.to_dict())]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def leaks(text: str) -> bool:
    """Whether any 8-character piece of the key shows (a cut key leaks too)."""
    return any(API_KEY[i : i + 8] in text for i in range(len(API_KEY) - 7))


LEAKY_REPLIES = [
    ErrorReply(401, f"Incorrect API key provided: {API_KEY}"),
    ErrorReply(429, f"limit for key {API_KEY}", retry_after=1),
    ErrorReply(500, f"boom {API_KEY}"),
    ErrorReply(400, "x" * 290 + API_KEY),  # the key straddles the excerpt's cut
    RawReply(b"y" * 3990 + API_KEY.encode(), status=503, content_type="text/plain"),
    RawReply(f'{{"error": {{"message": "bad key {API_KEY}"}}}}'.encode()),
    RawReply(f"not json {API_KEY}".encode(), status=502, content_type="text/plain"),
    ChatReply(None, refusal=f"refused {API_KEY}"),
    DisconnectReply(),
    DisconnectReply(partial_body=True),
    ChatReply(SVG, delay=5.0),  # a read timeout
]


@pytest.mark.parametrize("reply", LEAKY_REPLIES)
async def test_api_key_never_in_errors_or_logs(
    fake_server: FakeOpenAIServer, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script(reply)
    caplog.set_level(logging.DEBUG)
    first_token_timeout = 1.0 if getattr(reply, "delay", 0) else 5.0
    async with make(
        fake_server, first_token_timeout=first_token_timeout, total_timeout=10.0
    ) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.generate(REQUEST)
        assert API_KEY not in repr(provider)
        assert API_KEY not in repr(provider.settings)
    said = _everything_said_about(info.value)
    assert not leaks(said)
    assert not leaks(caplog.text)
    assert all(API_KEY not in str(r.args) for r in caplog.records)
    # The server did receive the key: the test is not vacuous.
    for _ in range(100):  # the handler thread may still be catching up
        if fake_server.requests:
            break
        await anyio.sleep(0.05)
    assert fake_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_redaction_shows_where_the_key_was(fake_server: FakeOpenAIServer) -> None:
    err = await fails(
        fake_server,
        ErrorReply(401, f"Incorrect API key provided: {API_KEY}"),
        ProviderPermanentError,
    )
    assert "[redacted]" in str(err)


# --- client ownership --------------------------------------------------------


async def test_injected_client_is_used_and_never_closed(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(SVG), ChatReply(SVG))
    async with httpx.AsyncClient(headers={"X-Host": "mine"}) as client:
        async with make(fake_server, client=client) as provider:
            await provider.generate(REQUEST)
        assert not client.is_closed
        provider2 = make(fake_server, client=client)
        await provider2.generate(REQUEST)
        await provider2.aclose()
        assert not client.is_closed
    assert fake_server.requests[0].headers["x-host"] == "mine"


async def test_owned_client_is_created_lazily_and_closed(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(SVG))
    provider = make(fake_server)
    assert provider._client is None
    await provider.generate(REQUEST)
    client = provider._client
    assert client is not None
    assert not client.is_closed
    await provider.aclose()
    assert client.is_closed
    await provider.aclose()  # idempotent


# --- settings ------------------------------------------------------------------


def test_settings_refuse_bad_urls_and_templates() -> None:
    from pydantic import ValidationError

    for url in ["ftp://x/v1", "not a url", "https://user:pw@host/v1"]:
        with pytest.raises(ValidationError):
            OpenAICompatibleSettings(base_url=url, model="m")
    with pytest.raises(ValidationError):
        OpenAICompatibleSettings(model="m", system_prompt="draw {unknown}")
    assert (
        OpenAICompatibleSettings(base_url="http://h:1/v1/", model="m").base_url == "http://h:1/v1"
    )


def test_from_env_reads_documented_variables_and_guards_the_openai_key() -> None:
    env = {"OPENAI_API_KEY": "sk-openai", "CHATSVG_OPENAI_MODEL": "gpt-x"}
    s = OpenAICompatibleSettings.from_env(env)
    assert (s.base_url, s.model) == ("https://api.openai.com/v1", "gpt-x")
    assert s.api_key is not None
    assert s.api_key.get_secret_value() == "sk-openai"
    # A local server never receives the OpenAI key by accident.
    local = OpenAICompatibleSettings.from_env(
        {**env, "CHATSVG_OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
    )
    assert local.api_key is None
    explicit = OpenAICompatibleSettings.from_env(
        {
            **env,
            "CHATSVG_OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
            "CHATSVG_OPENAI_API_KEY": "k",
        }
    )
    assert explicit.api_key is not None
    assert explicit.api_key.get_secret_value() == "k"
    assert OpenAICompatibleSettings.from_env({}, model="m").model == "m"
    assert "sk-openai" not in repr(s)


def test_settings_and_fields_are_exclusive() -> None:
    with pytest.raises(TypeError):
        OpenAICompatibleProvider(OpenAICompatibleSettings(model="m"), model="n")


# --- the sync facade ---------------------------------------------------------


def test_generate_sync_runs_on_the_portal_thread(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(ChatReply(SVG), ErrorReply(429, retry_after=2))
    provider = make(fake_server)
    output = generate_sync(provider, REQUEST)
    assert extract_svg(output.text) == SVG
    with pytest.raises(ProviderTransientError) as info:
        generate_sync(provider, REQUEST)
    assert info.value.retry_after == 2.0
    from chatsvg_core._sync import run_sync

    run_sync(provider.aclose)


# --- properties ------------------------------------------------------------------

_TRANSIENT = {408, 409, 425, 429}


@given(
    status=st.integers(400, 599),
    message=st.text(max_size=30),
    code=st.none() | st.sampled_from(["rate_limit_exceeded", "invalid_request", "x"]),
)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_every_error_status_gets_the_documented_class(
    fake_server: FakeOpenAIServer, status: int, message: str, code: str | None
) -> None:
    assume(not any(m in message.lower() for m in ("content", "safety")))
    fake_server.script(ErrorReply(status, message, code=code))
    async with make(fake_server) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.generate(REQUEST)
    err = info.value
    expected = (
        ProviderTransientError if status in _TRANSIENT or status >= 500 else ProviderPermanentError
    )
    assert type(err) is expected
    assert err.status == status
    assert err.provider == "openai-compatible"


async def test_latency_comes_from_the_injected_timer(fake_server: FakeOpenAIServer) -> None:
    ticks = iter([100.0, 102.5])
    fake_server.script(ChatReply(SVG))
    async with make(fake_server, timer=lambda: next(ticks)) as provider:
        output = await provider.generate(REQUEST)
    assert output.latency_s == 2.5


async def test_broken_gzip_body_is_transient(fake_server: FakeOpenAIServer) -> None:
    reply = RawReply(b"definitely not gzip", headers={"Content-Encoding": "gzip"})
    err = await fails(fake_server, reply, ProviderTransientError)
    assert err.reason == "malformed_body"


async def test_redirects_are_not_followed(fake_server: FakeOpenAIServer) -> None:
    reply = ErrorReply(301, "moved", headers={"Location": "http://127.0.0.1:9/v1/chat/completions"})
    err = await fails(fake_server, reply, ProviderPermanentError)
    assert (err.status, err.reason) == (301, "http_301")
    assert len(fake_server.requests) == 1
