"""A provider for the chat-completions API shape, over httpx.

OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio and OpenRouter all serve
``POST {base_url}/chat/completions``. httpx is used only in this module, behind
the :class:`~chatsvg_core.generate.Provider` protocol, so moving to httpx's
successor is a change of import here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Annotated, Any, Literal, NoReturn, Self
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core._logctx import job_fields
from chatsvg_core.errors import ProviderError, ProviderPermanentError, ProviderTransientError
from chatsvg_core.generate._provider import ProviderOutput, TokenUsage
from chatsvg_core.generate._request import GenerationRequest
from chatsvg_core.retry import parse_retry_after

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
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
    read_timeout: Seconds = Field(default=120.0, description="Longest wait for any bytes.")
    write_timeout: Seconds = 30.0
    total_timeout: Seconds = Field(default=180.0, description="Whole request, end to end.")
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.4
    max_tokens: Annotated[int, Field(ge=1)] = 8192
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
        (default ``gpt-4o-mini``), ``CHATSVG_OPENAI_API_KEY``. ``OPENAI_API_KEY``
        is used as a fallback **only when the base URL is OpenAI's**, so an
        OpenAI key is never sent to a local or third-party server by accident.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "base_url": env.get("CHATSVG_OPENAI_BASE_URL") or OPENAI_BASE_URL,
            "model": env.get("CHATSVG_OPENAI_MODEL") or "gpt-4o-mini",
        }
        values.update(overrides)
        if "api_key" not in overrides:
            key = env.get("CHATSVG_OPENAI_API_KEY")
            if not key and str(values["base_url"]).rstrip("/") == OPENAI_BASE_URL:
                key = env.get("OPENAI_API_KEY")
            values["api_key"] = key or None
        return cls(**values)


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
        return {
            "model": request.model or s.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": request.prompt},
            ],
            "temperature": s.temperature,
            s.max_tokens_field: s.max_tokens,
            "stream": False,
        }

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        """Send one chat-completions request; return the model's raw answer."""
        s = self.settings
        body = self.request_body(request)
        headers = {"Accept": "application/json", **s.extra_headers}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        timeout = httpx.Timeout(
            connect=s.connect_timeout,
            read=s.read_timeout,
            write=s.write_timeout,
            pool=s.connect_timeout,
        )
        url = f"{s.base_url}/chat/completions"
        started = self._timer()
        logger.debug(
            "Provider %s is asking %s for model %s.",
            s.name,
            _host(s.base_url),
            body["model"],
            extra={**job_fields(), "chatsvg_event": "provider_request", "chatsvg_provider": s.name},
        )
        try:
            with anyio.fail_after(s.total_timeout):
                status, response_headers, content = await self._post(url, body, headers, timeout)
        except TimeoutError as exc:
            self._fail(
                ProviderTransientError,
                f"no complete answer within the total timeout of {s.total_timeout} s",
                reason="timeout_total",
                cause=exc,
            )
        except httpx.TimeoutException as exc:
            kind = _TIMEOUT_KINDS.get(type(exc), "network")
            self._fail(
                ProviderTransientError,
                f"{kind} timeout: {exc}",
                reason=f"timeout_{kind}",
                cause=exc,
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            reason = "connect_error" if isinstance(exc, httpx.ConnectError) else "disconnected"
            self._fail(ProviderTransientError, f"{reason}: {exc}", reason=reason, cause=exc)
        except httpx.TransportError as exc:
            self._fail(
                ProviderTransientError, f"network error: {exc}", reason="network_error", cause=exc
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
        latency = max(0.0, self._timer() - started)
        logger.debug(
            "Provider %s got HTTP %d in %.3f s.",
            s.name,
            status,
            latency,
            extra={
                **job_fields(),
                "chatsvg_event": "provider_response",
                "chatsvg_provider": s.name,
                "chatsvg_status": status,
                "chatsvg_latency_s": round(latency, 4),
            },
        )
        if not 200 <= status < 300:
            self._status_error(status, response_headers, content)
        return self._parse(content, status, latency, str(body["model"]))

    async def _post(
        self, url: str, body: dict[str, Any], headers: dict[str, str], timeouts: httpx.Timeout
    ) -> tuple[int, httpx.Headers, bytes]:
        limit = self.settings.max_response_bytes
        async with self._http().stream(
            "POST", url, json=body, headers=headers, timeout=timeouts
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    self._fail(
                        ProviderPermanentError,
                        f"response larger than {limit} bytes",
                        reason="response_too_large",
                        status=response.status_code,
                    )
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

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

    def _status_error(self, status: int, headers: httpx.Headers, content: bytes) -> NoReturn:
        message, code = _error_details(content)
        text = f"HTTP {status} from {_host(self.settings.base_url)}"
        if message:
            text += f": {self._excerpt(message)}"
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
    """The server's error message and code, from the usual ``{"error": {...}}`` shape."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return content[:4000].decode("utf-8", "replace").strip(), ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code") or error.get("type")
        return (str(message) if message else "", str(code) if code else "")
    if isinstance(error, str):
        return error, ""
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
