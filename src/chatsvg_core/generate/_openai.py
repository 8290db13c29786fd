"""A provider for the chat-completions API shape, over httpx.

OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio and OpenRouter all serve
``POST {base_url}/chat/completions``. httpx is used only in this module, behind
the :class:`~chatsvg_core.generate.Provider` protocol, so moving to httpx's
successor is a change of import here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Annotated, Any, Literal, NoReturn, Self, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core._logctx import job_fields
from chatsvg_core.errors import (
    ConfigurationError,
    NoSVGFound,
    ProviderError,
    ProviderPermanentError,
    ProviderTransientError,
    TruncatedSVG,
)
from chatsvg_core.generate._extract import extract_svg
from chatsvg_core.generate._provider import ProviderOutput, TokenUsage, report_progress
from chatsvg_core.generate._request import GenerationRequest
from chatsvg_core.retry import parse_retry_after

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_FIELDS",
    "OPENAI_BASE_URL",
    "OpenAICompatibleProvider",
    "OpenAICompatibleSettings",
]

logger = logging.getLogger("chatsvg_core.generate")

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 86_400.0

DEFAULT_SYSTEM_PROMPT = (
    "You are an illustrator who draws with SVG. Answer with exactly one complete, "
    "self-contained SVG document and nothing else: no explanation, no Markdown. "
    'Start with <svg and end with </svg>. Use xmlns="http://www.w3.org/2000/svg", '
    'viewBox="0 0 {width} {height}", width="{width}" and height="{height}" '
    "(aspect ratio {aspect_ratio}). Do not use scripts, event handlers, <foreignObject>, "
    "external images, fonts, stylesheets or links; gradients, patterns, <use> and CSS in "
    "<style> are fine. Level of detail: {detail}. Style: {style}."
)
_TEMPLATE_FIELDS = {
    "width": 512,
    "height": 512,
    "aspect_ratio": "1:1",
    "detail": "standard",
    "style": "any",
}

Seconds = Annotated[float, Field(gt=0, le=3600)]
T = TypeVar("T")

# Progress reports while streaming: at most this often (seconds), plus one at the end.
_PROGRESS_EVERY_S = 0.5
# Delta fields where reasoning models (DeepSeek-R1 on vLLM, Ollama...) stream their thoughts.
_REASONING_FIELDS = ("reasoning_content", "reasoning")
_CLOSE_TAG = re.compile(r"</svg[ \t\r\n]*>", re.IGNORECASE)


class _StreamState:
    """What a streamed answer has delivered so far."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.answered_model = ""
        self.parts: list[str] = []
        self.chars = 0
        self.tokens = 0
        self.finish_reason: str | None = None
        self.refusal = ""
        self.usage = TokenUsage()
        self.done = False
        self._tail = ""
        self._closed = False

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.chars += len(text)
        self.tokens += 1
        self._closed = _CLOSE_TAG.search(self._tail + text) is not None
        self._tail = (self._tail + text)[-16:]

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def svg_complete(self) -> bool:
        """Whether the answer so far holds a complete SVG (checked only after a ``</svg>``)."""
        if not self._closed:
            return False
        try:
            extract_svg(self.text())
        except (NoSVGFound, TruncatedSVG):
            return False
        return True


# Statuses the OpenAI SDKs also retry: timeouts, conflicts, rate limits, server faults.
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
_TIMEOUT_KINDS: dict[type[Exception], str] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}
_PERMANENT_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    422: "unprocessable",
}


class OpenAICompatibleSettings(BaseModel):
    """Configuration of an :class:`OpenAICompatibleProvider`.

    ``repr`` and errors never show the API key (it is a ``SecretStr``). Use
    :meth:`from_env` to read the documented environment variables.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="openai-compatible", description="Used in errors and logs.")
    base_url: str = Field(default=OPENAI_BASE_URL, description="Up to and including ``/v1``.")
    model: str = Field(min_length=1, description="e.g. ``gpt-4o-mini``, ``qwen2.5-coder:7b``.")
    api_key: SecretStr | None = Field(
        default=None, description="Sent as ``Authorization: Bearer``; ``None`` sends none."
    )
    connect_timeout: Seconds = 10.0
    first_token_timeout: Seconds = Field(
        default=120.0,
        description="From sending the request to the answer's first token (prompt "
        "processing, a model being loaded); with ``stream=False`` it covers the whole answer.",
    )
    read_timeout: Seconds = Field(
        default=60.0,
        description="Longest gap between two tokens of a streamed answer (or two reads "
        "of a body), not a whole generation.",
    )
    write_timeout: Seconds = 30.0
    total_timeout: Seconds | None = Field(
        default=None,
        description="An optional cap on a whole call; ``None``: none (the per-token "
        "deadlines and ``max_tokens`` bound it).",
    )
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.4
    max_tokens: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="The answer's token budget; ``None`` sends none, so the server uses what "
        "its context has left (fits any context size).",
    )
    stream: bool = Field(
        default=True,
        description="Stream the answer (SSE) and close the request once the SVG is complete; "
        "a server that answers with plain JSON still works.",
    )
    stream_usage: bool = Field(
        default=True,
        description="Ask for token usage at the end of a stream (``stream_options``).",
    )
    stop_at_svg_end: bool = Field(
        default=True,
        description="Stop reading (the server stops generating) as soon as the streamed "
        "answer holds a complete SVG; ``finish_reason`` is then ``svg_complete``.",
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="OpenAI's reasoning models want ``max_completion_tokens``.",
    )
    system_prompt: str = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        description="A ``str.format`` template; fields: " + ", ".join(_TEMPLATE_FIELDS),
    )
    extra_headers: dict[str, str] = Field(
        default_factory=dict, description="e.g. OpenRouter's ``HTTP-Referer`` and ``X-Title``."
    )
    max_response_bytes: Annotated[int, Field(ge=1024)] = 4_000_000

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("base_url must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials; use api_key")
        return value.rstrip("/")

    @field_validator("system_prompt")
    @classmethod
    def _template_fields_known(cls, value: str) -> str:
        try:
            value.format_map(_TEMPLATE_FIELDS)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"system_prompt template is invalid: {exc!r}") from None
        return value

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> OpenAICompatibleSettings:
        """Settings from environment variables; keyword arguments win over them.

        ``CHATSVG_OPENAI_BASE_URL`` (default: OpenAI), ``CHATSVG_OPENAI_MODEL``
        (default ``gpt-4o-mini``), ``CHATSVG_OPENAI_API_KEY``, and
        ``CHATSVG_OPENAI_<FIELD>`` for every number and switch (see
        :data:`ENV_FIELDS`): ``..._MAX_TOKENS``, ``..._CONNECT_TIMEOUT``,
        ``..._FIRST_TOKEN_TIMEOUT``, ``..._READ_TIMEOUT``, ``..._TOTAL_TIMEOUT``...
        ``OPENAI_API_KEY`` is used as a fallback **only when the base URL is
        OpenAI's**, so an OpenAI key is never sent to a local or third-party
        server by accident. A bad value raises ``ConfigurationError`` naming it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "base_url": env.get("CHATSVG_OPENAI_BASE_URL") or OPENAI_BASE_URL,
            "model": env.get("CHATSVG_OPENAI_MODEL") or "gpt-4o-mini",
        }
        for name in ENV_FIELDS:
            raw = env.get(f"CHATSVG_OPENAI_{name.upper()}")
            if raw is not None and raw.strip():
                values[name] = None if raw.strip().lower() in {"none", "off"} else raw.strip()
        values.update(overrides)
        if "api_key" not in overrides:
            key = env.get("CHATSVG_OPENAI_API_KEY")
            if not key and str(values["base_url"]).rstrip("/") == OPENAI_BASE_URL:
                key = env.get("OPENAI_API_KEY")
            values["api_key"] = key or None
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(
                f"provider settings from the environment are invalid: {problems}"
            ) from None


ENV_FIELDS = (
    "name",
    "connect_timeout",
    "first_token_timeout",
    "read_timeout",
    "write_timeout",
    "total_timeout",
    "temperature",
    "max_tokens",
    "max_tokens_field",
    "stream",
    "stream_usage",
    "stop_at_svg_end",
)
"""Settings :meth:`OpenAICompatibleSettings.from_env` reads as ``CHATSVG_OPENAI_<NAME>``."""


class OpenAICompatibleProvider:
    """A :class:`~chatsvg_core.generate.Provider` for chat-completions servers.

    One call to :meth:`generate` is one HTTP request (no retries here: the retry
    policy decides). Faults become ``ProviderTransientError`` or
    ``ProviderPermanentError`` with fields ``provider``, ``status``,
    ``retry_after`` and ``reason``; see the classification table in
    ``docs/providers.md``. Messages quote the server's error text with the
    API key replaced by ``[redacted]``.

    Pass ``client`` to reuse a host's ``httpx.AsyncClient`` (its pool, proxies,
    certificates): the provider then never closes it. Without one it creates a
    client on first use and closes it in :meth:`aclose` / ``async with``.

    >>> provider = OpenAICompatibleProvider(model="llama3.2", base_url="http://127.0.0.1:11434/v1")
    >>> provider
    OpenAICompatibleProvider(name='openai-compatible', base_url='http://127.0.0.1:11434/v1', \
model='llama3.2')
    """

    def __init__(
        self,
        settings: OpenAICompatibleSettings | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        timer: Callable[[], float] = time.perf_counter,
        **fields: Any,
    ) -> None:
        if settings is not None and fields:
            raise TypeError("pass either settings or setting fields, not both")
        self.settings = settings if settings is not None else OpenAICompatibleSettings(**fields)
        self.name = self.settings.name
        self._client = client
        self._owns_client = client is None
        self._clock: Clock = clock or SystemClock()
        self._timer = timer
        key = self.settings.api_key
        self._secret = key.get_secret_value() if key is not None else ""

    def __repr__(self) -> str:
        s = self.settings
        return f"{type(self).__name__}(name={s.name!r}, base_url={s.base_url!r}, model={s.model!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it (an injected one is left open)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (the user's prompt is never templated)."""
        s = self.settings
        system = s.system_prompt.format_map(
            {
                "width": request.width,
                "height": request.height,
                "aspect_ratio": request.aspect_ratio,
                "detail": request.detail.value,
                "style": request.style or "whatever suits the subject best",
            }
        )
        body: dict[str, Any] = {
            "model": request.model or s.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": request.prompt},
            ],
            "temperature": s.temperature,
            "stream": s.stream,
        }
        if s.max_tokens is not None:
            body[s.max_tokens_field] = s.max_tokens
        if s.stream and s.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, **self.settings.extra_headers}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        return headers

    def _timeouts(self) -> httpx.Timeout:
        s = self.settings
        # The read deadlines are kept by ``_next`` (first token, then between
        # tokens); httpx's own read timeout is only a backstop behind them.
        return httpx.Timeout(
            connect=s.connect_timeout,
            read=max(s.first_token_timeout, s.read_timeout) + 5.0,
            write=s.write_timeout,
            pool=s.connect_timeout,
        )

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        """Send one chat-completions request; return the model's raw answer.

        A streamed answer is read token by token: the request is closed as soon
        as the answer holds a complete SVG (``stop_at_svg_end``), so the server
        stops generating; progress goes to :func:`report_progress`.
        """
        s = self.settings
        body = self.request_body(request)
        accept = "text/event-stream, application/json" if s.stream else "application/json"
        url = f"{s.base_url}/chat/completions"
        started = self._timer()
        logger.debug(
            "Provider %s is asking %s for model %s.",
            s.name,
            _host(s.base_url),
            body["model"],
            extra={**job_fields(), "chatsvg_event": "provider_request", "chatsvg_provider": s.name},
        )
        output = await self._call(
            lambda: self._exchange(url, body, self._headers(accept), started),
            str(body["model"]),
        )
        logger.debug(
            "Provider %s got an answer (%s) in %.3f s.",
            s.name,
            output.finish_reason or "no finish reason",
            output.latency_s,
            extra={
                **job_fields(),
                "chatsvg_event": "provider_response",
                "chatsvg_provider": s.name,
                "chatsvg_finish_reason": output.finish_reason,
                "chatsvg_latency_s": round(output.latency_s, 4),
            },
        )
        return output

    async def list_models(self) -> list[str]:
        """The model ids the server lists (``GET {base_url}/models``), as it names them.

        Raises the same typed errors as :meth:`generate` (a server without the
        endpoint gives ``ProviderPermanentError`` with reason ``not_found``).
        """
        url = f"{self.settings.base_url}/models"

        async def fetch() -> list[str]:
            async with self._http().stream(
                "GET", url, headers=self._headers("application/json"), timeout=self._timeouts()
            ) as response:
                content = await self._read_body(response, anyio.current_time() + self._first_wait())
                if not 200 <= response.status_code < 300:
                    self._status_error(response.status_code, response.headers, content, url)
            try:
                data = json.loads(content)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                self._fail(
                    ProviderTransientError,
                    "malformed JSON in the model list",
                    reason="malformed_json",
                    cause=exc,
                )
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                items = data.get("models") if isinstance(data, dict) else None  # Ollama's /api/tags
            return [
                str(item.get("id") or item.get("name"))
                for item in items or []
                if isinstance(item, dict) and (item.get("id") or item.get("name"))
            ]

        return await self._call(fetch, "")

    def _first_wait(self) -> float:
        return self.settings.first_token_timeout

    async def _call(self, exchange: Callable[[], Awaitable[T]], model: str) -> T:
        """Run one exchange, turning every transport fault into a typed error."""
        s = self.settings
        try:
            if s.total_timeout is None:
                return await exchange()
            with anyio.fail_after(s.total_timeout):
                return await exchange()
        except TimeoutError as exc:
            self._fail(
                ProviderTransientError,
                f"total timeout: no complete answer after {s.total_timeout} s (total_timeout)",
                reason="timeout_total",
                cause=exc,
            )
        except httpx.TimeoutException as exc:
            kind = _TIMEOUT_KINDS.get(type(exc), "network")
            limit = {
                "connect": s.connect_timeout,
                "write": s.write_timeout,
                "pool": s.connect_timeout,
                "read": max(s.first_token_timeout, s.read_timeout) + 5.0,
            }.get(kind)
            after = f" after {limit} s" if limit is not None else ""
            setting = {"connect": "connect_timeout", "write": "write_timeout"}.get(kind)
            named = f" ({setting})" if setting else ""
            self._fail(
                ProviderTransientError,
                f"{kind} timeout{after}{named}: {type(exc).__name__} {exc}".rstrip(": "),
                reason=f"timeout_{kind}",
                cause=exc,
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            reason = "connect_error" if isinstance(exc, httpx.ConnectError) else "disconnected"
            detail = str(exc) or type(exc).__name__
            self._fail(ProviderTransientError, f"{reason}: {detail}", reason=reason, cause=exc)
        except httpx.TransportError as exc:
            self._fail(
                ProviderTransientError,
                f"network error: {exc or type(exc).__name__}",
                reason="network_error",
                cause=exc,
            )
        except httpx.DecodingError as exc:
            # A body whose content encoding (gzip, br...) is broken: garbled in transit.
            self._fail(
                ProviderTransientError,
                f"undecodable body: {exc}",
                reason="malformed_body",
                cause=exc,
            )
        except httpx.HTTPError as exc:
            self._fail(ProviderPermanentError, f"HTTP error: {exc}", reason="http_error", cause=exc)

    async def _next(self, iterator: AsyncIterator[T], deadline: float, stage: str) -> T | None:
        """The iterator's next item (``None`` at its end), or a timeout error naming ``stage``."""
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                return await anext(iterator, None)
        except TimeoutError:
            s = self.settings
            if stage == "first_token":
                text = (
                    f"first-token timeout: no answer within {s.first_token_timeout} s "
                    "(first_token_timeout)"
                )
            else:
                text = f"read timeout: nothing new for {s.read_timeout} s (read_timeout)"
            self._fail(ProviderTransientError, text, reason=f"timeout_{stage}")

    async def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        """A whole (bounded) body; ``deadline`` for the first read, ``read_timeout`` after."""
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        iterator = response.aiter_bytes()
        stage = "first_token"
        while (chunk := await self._next(iterator, deadline, stage)) is not None:
            size += len(chunk)
            if size > limit:
                self._fail(
                    ProviderPermanentError,
                    f"response larger than {limit} bytes",
                    reason="response_too_large",
                    status=response.status_code,
                )
            chunks.append(chunk)
            stage, deadline = "read", anyio.current_time() + self.settings.read_timeout
        return b"".join(chunks)

    async def _exchange(
        self, url: str, body: dict[str, Any], headers: dict[str, str], started: float
    ) -> ProviderOutput:
        model = str(body["model"])
        deadline = anyio.current_time() + self.settings.first_token_timeout
        stack = contextlib.AsyncExitStack()
        try:
            sending = self._http().stream(
                "POST", url, json=body, headers=headers, timeout=self._timeouts()
            )
            opening = stack.enter_async_context(sending)
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    response = await opening
            except TimeoutError:
                s = self.settings
                self._fail(
                    ProviderTransientError,
                    f"first-token timeout: no answer within {s.first_token_timeout} s "
                    "(first_token_timeout)",
                    reason="timeout_first_token",
                )
            status = response.status_code
            if not 200 <= status < 300:
                content = await self._read_body(response, deadline)
                self._status_error(status, response.headers, content, url)
            if "text/event-stream" in response.headers.get("content-type", ""):
                return await self._read_stream(response, deadline, started, model)
            content = await self._read_body(response, deadline)
        finally:
            # Shielded: a cancelled caller (a job cancelled, a worker shutting down) must
            # still close the connection, or the server keeps generating for nobody.
            with anyio.CancelScope(shield=True):
                await stack.aclose()
        latency = max(0.0, self._timer() - started)
        return self._parse(content, status, latency, model)

    async def _read_stream(
        self, response: httpx.Response, deadline: float, started: float, model: str
    ) -> ProviderOutput:
        """Read server-sent events until ``[DONE]``, a complete SVG, or a fault."""
        s = self.settings
        stream = _StreamState(model)
        size = 0
        data: list[str] = []
        lines = response.aiter_lines()
        stage = "first_token"
        last_report = self._timer()
        while True:
            line = await self._next(lines, deadline, stage)
            if line is not None:
                size += len(line) + 1
                if size > s.max_response_bytes:
                    self._fail(
                        ProviderPermanentError,
                        f"response larger than {s.max_response_bytes} bytes",
                        reason="response_too_large",
                        status=response.status_code,
                    )
                if line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
                    continue
                if line.strip():
                    continue  # ``event:``, ``id:``, ``retry:`` fields and ``:`` keep-alives
            if data:  # a blank line (or the end) dispatches the event
                payload, data = "\n".join(data), []
                if payload.strip() == "[DONE]":
                    stream.done = True
                    break
                before = stream.tokens
                self._event(stream, payload, response.status_code)
                if stream.tokens != before:
                    stage, deadline = "read", anyio.current_time() + s.read_timeout
                    now = self._timer()
                    if now - last_report >= _PROGRESS_EVERY_S:
                        last_report = now
                        report_progress(stream.tokens, stream.chars)
                    if s.stop_at_svg_end and stream.svg_complete():
                        stream.finish_reason = "svg_complete"
                        break
            if line is None:
                break
        report_progress(stream.tokens, stream.chars)
        latency = max(0.0, self._timer() - started)
        return self._stream_output(stream, response.status_code, latency)

    def _event(self, stream: _StreamState, payload: str, status: int) -> None:
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self._fail(
                ProviderTransientError,
                f"malformed JSON in a streamed event ({len(payload)} characters)",
                reason="malformed_json",
                status=status,
                cause=exc,
            )
        if not isinstance(event, dict):
            return
        if event.get("error"):
            detail, code = _error_details(payload.encode())
            text = f"error event in a streamed answer: {self._excerpt(detail)}"
            if _is_content_policy(code, detail):
                self._fail(ProviderPermanentError, text, reason="content_policy", status=status)
            self._fail(ProviderTransientError, text, reason="error_body", status=status)
        answered = event.get("model")
        if isinstance(answered, str) and answered and not stream.answered_model:
            stream.answered_model = answered
        if isinstance(event.get("usage"), dict):
            stream.usage = _usage(event["usage"])
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice: dict[str, Any] = choices[0]
        raw_delta = choice.get("delta")
        if not isinstance(raw_delta, dict):
            raw_delta = choice.get("message")  # some servers send whole messages
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        text = _message_text(delta.get("content"))
        if text:
            stream.add(text)
        elif any(isinstance(delta.get(k), str) and delta[k] for k in _REASONING_FIELDS):
            stream.tokens += 1  # a reasoning token: the model is alive, no answer text yet
        refusal = delta.get("refusal")
        if isinstance(refusal, str):
            stream.refusal += refusal
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            stream.finish_reason = finish

    def _stream_output(self, stream: _StreamState, status: int, latency: float) -> ProviderOutput:
        if stream.finish_reason == "content_filter":
            self._fail(
                ProviderPermanentError,
                "the provider's content filter stopped the answer",
                reason="content_filter",
                status=status,
            )
        if stream.refusal.strip():
            self._fail(
                ProviderPermanentError,
                f"the model refused: {self._excerpt(stream.refusal)}",
                reason="refusal",
                status=status,
            )
        text = stream.text()
        if not text.strip():
            message = f"answer has no content (finish_reason={stream.finish_reason})"
            if not stream.done and stream.finish_reason is None and not stream.tokens:
                # llama-cpp-python, for one, checks a prompt only after it began the
                # stream: an error (a context overflow) then ends it without a word.
                message = (
                    "the stream ended before any answer event and without [DONE]: the server "
                    "failed after it began answering (its log says why)"
                )
            self._fail(ProviderTransientError, message, reason="empty_content", status=status)
        usage = stream.usage
        if usage.completion_tokens is None:
            # Closed early (or no usage sent): each streamed delta is one token
            # on llama.cpp, vLLM and OpenAI, so the count is the server's own.
            usage = usage.model_copy(update={"completion_tokens": stream.tokens})
        return ProviderOutput(
            text=text,
            model=stream.answered_model or stream.model,
            provider=self.name,
            usage=usage,
            latency_s=latency,
            finish_reason=stream.finish_reason,
        )

    # --- classification ----------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _excerpt(self, text: str, limit: int = 300) -> str:
        # Redact before cutting: a cut through the key would leave a piece of it.
        text = self._redact(text)
        return text if len(text) <= limit else text[:limit] + "..."

    def _fail(
        self,
        kind: type[ProviderError],
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
        cause: BaseException | None = None,
    ) -> NoReturn:
        error = kind(
            self._redact(f"{self.name}: {message}"),
            provider=self.name,
            status=status,
            retry_after=retry_after,
            reason=reason,
        )
        logger.info(
            "Provider %s failed with %s (status %s, reason %s).",
            self.name,
            kind.__name__,
            status,
            reason,
            extra={
                **job_fields(),
                "chatsvg_event": "provider_error",
                "chatsvg_provider": self.name,
                "chatsvg_status": status,
                "chatsvg_reason": reason,
            },
        )
        # Keep the transport error as the cause for debugging, unless its text
        # would carry the key (it never should: httpx does not put headers in
        # messages, and masks Authorization in reprs).
        if cause is not None and not (self._secret and self._secret in _chain_text(cause)):
            raise error from cause
        raise error from None

    def _status_error(
        self, status: int, headers: httpx.Headers, content: bytes, url: str = ""
    ) -> NoReturn:
        message, code = _error_details(content)
        text = f"HTTP {status} from {_host(self.settings.base_url)}"
        if url:
            text += f" ({urlsplit(url).path})"
        if message:
            text += f": {self._excerpt(message)}"
        if status == 404 and not urlsplit(self.settings.base_url).path.rstrip("/"):
            text += " (most servers want a base_url ending in /v1)"
        if code in {"insufficient_quota", "billing_hard_limit_reached"}:
            # A 429 that no waiting cures: the account is out of money.
            self._fail(ProviderPermanentError, text, reason="insufficient_quota", status=status)
        if _is_content_policy(code, message):
            self._fail(ProviderPermanentError, text, reason="content_policy", status=status)
        if status in _TRANSIENT_STATUSES or status >= 500:
            retry_after = _retry_after(headers, self._clock.now())
            reason = (
                "rate_limited"
                if status == 429
                else f"http_{status}"
                if status < 500
                else "server_error"
            )
            self._fail(
                ProviderTransientError, text, reason=reason, status=status, retry_after=retry_after
            )
        reason = _PERMANENT_REASONS.get(status, f"http_{status}")
        self._fail(ProviderPermanentError, text, reason=reason, status=status)

    def _parse(self, content: bytes, status: int, latency: float, model: str) -> ProviderOutput:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self._fail(
                ProviderTransientError,
                f"malformed JSON in a {status} answer ({len(content)} bytes)",
                reason="malformed_json",
                status=status,
                cause=exc,
            )
        if not isinstance(data, dict):
            self._fail(
                ProviderTransientError,
                "answer is not a JSON object",
                reason="malformed_json",
                status=status,
            )
        if data.get("error"):
            detail, code = _error_details(content)
            text = f"error object in a {status} answer: {self._excerpt(detail)}"
            if _is_content_policy(code, detail):
                self._fail(ProviderPermanentError, text, reason="content_policy", status=status)
            self._fail(ProviderTransientError, text, reason="error_body", status=status)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            self._fail(
                ProviderTransientError, "answer has no choices", reason="no_choices", status=status
            )
        choice: dict[str, Any] = choices[0]
        finish = choice.get("finish_reason")
        finish_reason = finish if isinstance(finish, str) else None
        raw_message = choice.get("message")
        reply: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        if finish_reason == "content_filter":
            self._fail(
                ProviderPermanentError,
                "the provider's content filter stopped the answer",
                reason="content_filter",
                status=status,
            )
        refusal = reply.get("refusal")
        if isinstance(refusal, str) and refusal.strip():
            self._fail(
                ProviderPermanentError,
                f"the model refused: {self._excerpt(refusal)}",
                reason="refusal",
                status=status,
            )
        text = _message_text(reply.get("content"))
        if not text.strip():
            self._fail(
                ProviderTransientError,
                "answer has no content",
                reason="empty_content",
                status=status,
            )
        answered_model = data.get("model")
        return ProviderOutput(
            text=text,
            model=answered_model if isinstance(answered_model, str) and answered_model else model,
            provider=self.name,
            usage=_usage(data.get("usage")),
            latency_s=latency,
            finish_reason=finish_reason,
        )


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _error_details(content: bytes) -> tuple[str, str]:
    """The server's error message and code, from every common body shape.

    ``{"error": {"message", "code"|"type"}}`` (OpenAI, vLLM, llama.cpp),
    ``{"error": "text"}`` (Ollama), ``{"detail": "text"}`` and FastAPI's
    ``{"detail": [{"loc", "msg"}]}`` (llama-cpp-python), ``{"message": "text"}``,
    and plain text; any other JSON is quoted as it came.
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return content[:4000].decode("utf-8", "replace").strip(), ""
    if not isinstance(data, dict):
        return content[:4000].decode("utf-8", "replace").strip(), ""
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("detail")
        code = error.get("code") or error.get("type")
        return (str(message) if message else "", str(code) if code else "")
    if isinstance(error, str) and error:
        return error, str(data.get("code") or data.get("type") or "")
    detail = data.get("detail")
    if isinstance(detail, str) and detail:
        return detail, ""
    if isinstance(detail, list) and detail:
        notes = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
                notes.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
            else:
                notes.append(str(item))
        return "; ".join(notes), ""
    message = data.get("message")
    if isinstance(message, str) and message:
        return message, str(data.get("code") or "")
    if data.get("error") or data.get("detail"):
        return content[:4000].decode("utf-8", "replace").strip(), ""
    return "", ""


def _is_content_policy(code: str, message: str) -> bool:
    lowered = f"{code} {message}".lower()
    return any(
        marker in lowered
        for marker in ("content_policy", "content_filter", "content policy", "safety system")
    )


def _retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = -1.0
        if 0 <= value < float("inf"):
            return min(value, MAX_RETRY_AFTER_S)
    # The header itself is read by the retry policy's parser (both forms, length-capped).
    return parse_retry_after(headers.get("retry-after"), now=now, cap=MAX_RETRY_AFTER_S)


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Some servers answer with content parts: [{"type": "text", "text": "..."}].
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _usage(raw: object) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()

    def count(key: str) -> int | None:
        value = raw.get(key)
        return (
            value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
        )

    return TokenUsage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
    )
