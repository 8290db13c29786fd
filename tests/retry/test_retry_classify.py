"""Classification rules and ``Retry-After`` parsing."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core import errors
from chatsvg_core.retry import (
    MAX_RETRY_AFTER_HEADER,
    Classification,
    ErrorClass,
    RetryPolicy,
    classify,
    dotted_name,
    parse_retry_after,
)

T, P = ErrorClass.TRANSIENT, ErrorClass.PERMANENT
REQUEST = httpx.Request("POST", "https://provider.invalid/v1/chat/completions")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError(f"status {status}", request=REQUEST, response=response)


@pytest.mark.parametrize(
    ("error", "kind", "rule"),
    [
        (errors.ProviderTransientError("busy", status=503), T, "status"),
        (errors.ProviderPermanentError("bad key", status=401), P, "status"),
        (errors.TruncatedSVG("cut"), T, "hierarchy"),
        (errors.NoSVGFound("none"), P, "hierarchy"),
        (errors.StorageUnavailable("db down"), T, "hierarchy"),
        (errors.InsufficientCredits("poor", owner="o", balance=0, amount=1), P, "hierarchy"),
        (httpx.ConnectTimeout("t", request=REQUEST), T, "httpx:httpx.ConnectTimeout"),
        (httpx.ReadTimeout("t", request=REQUEST), T, "httpx:httpx.ReadTimeout"),
        (httpx.WriteTimeout("t", request=REQUEST), T, "httpx:httpx.WriteTimeout"),
        (httpx.PoolTimeout("t", request=REQUEST), T, "httpx:httpx.PoolTimeout"),
        (httpx.ConnectError("refused", request=REQUEST), T, "httpx:httpx.ConnectError"),
        (httpx.ReadError("reset", request=REQUEST), T, "httpx:httpx.ReadError"),
        (httpx.WriteError("pipe", request=REQUEST), T, "httpx:httpx.WriteError"),
        (httpx.RemoteProtocolError("eof", request=REQUEST), T, "httpx:httpx.RemoteProtocolError"),
        (httpx.LocalProtocolError("ours", request=REQUEST), P, "httpx:httpx.LocalProtocolError"),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), P, "httpx:httpx.UnsupportedProtocol"),
        (httpx.TooManyRedirects("loop", request=REQUEST), P, "httpx:httpx.TooManyRedirects"),
        (httpx.DecodingError("gz", request=REQUEST), P, "httpx:httpx.DecodingError"),
        (httpx.InvalidURL("bad"), P, "httpx:httpx.InvalidURL"),
        (TimeoutError(), T, "stdlib:builtins.TimeoutError"),
        (ConnectionResetError(), T, "stdlib:builtins.ConnectionResetError"),
        (ValueError("bug"), P, "unknown"),
        (KeyError("bug"), P, "unknown"),
        (KeyboardInterrupt(), P, "not_an_exception"),
        (asyncio.CancelledError(), P, "not_an_exception"),
        (SystemExit(1), P, "not_an_exception"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classification_table(error: BaseException, kind: ErrorClass, rule: str) -> None:
    verdict = classify(error)
    assert verdict.kind is kind
    assert verdict.rule == rule or (rule == "status" and verdict.rule == "hierarchy")
    assert verdict.error_type == dotted_name(type(error))


@pytest.mark.parametrize("status", range(100, 600))
def test_http_status_table(status: int) -> None:
    verdict = classify(status_error(status))
    expected = status in {408, 425, 429, 500, 502, 503, 504}
    assert verdict.transient is expected
    assert verdict.rule == f"status:{status}"
    assert verdict.status == status
    assert verdict.code == f"http_{status}"


def test_library_fields_are_read() -> None:
    verdict = classify(errors.ProviderTransientError("slow down", status=429, retry_after=7.5))
    assert verdict == Classification(
        T, "hierarchy", "chatsvg_core.errors.ProviderTransientError", "provider_transient", 429, 7.5
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3.0),
        (0, 0.0),
        ("12", 12.0),
        (-1, None),
        (float("nan"), None),
        (True, None),
        ("soon", None),
        (None, None),
        (float("inf"), None),
        (object(), None),
    ],
)
def test_retry_after_field_forms(raw: Any, expected: float | None) -> None:
    error = errors.ProviderTransientError("busy", retry_after=raw)
    assert classify(error).retry_after == expected


def test_retry_after_http_date_in_a_field_needs_now() -> None:
    error = errors.ProviderTransientError(
        "busy", retry_after=format_datetime(NOW + timedelta(seconds=40), usegmt=True)
    )
    assert classify(error).retry_after is None
    assert classify(error, now=NOW).retry_after == 40.0


def test_retry_after_from_an_httpx_response_uses_its_date_header() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    error = status_error(503, {"Retry-After": later, "Date": format_datetime(NOW, usegmt=True)})
    # The response's own Date wins over a skewed local clock.
    assert classify(error, now=NOW + timedelta(hours=5)).retry_after == 90.0
    assert classify(status_error(429, {"Retry-After": "5"})).retry_after == 5.0


def test_status_overrides_beat_defaults_and_the_hierarchy() -> None:
    policy = RetryPolicy(status_overrides={404: "transient", 503: "permanent"})
    assert policy.classify(status_error(404)).kind is T
    assert policy.classify(status_error(503)).kind is P
    assert policy.classify(errors.ProviderTransientError("x", status=503)).kind is P
    assert policy.classify(status_error(503)).rule == "status_override:503"
    assert policy.classify(status_error(502)).kind is T


def test_type_overrides_match_the_class_or_a_base_most_specific_first() -> None:
    policy = RetryPolicy(
        type_overrides={
            "httpx.TimeoutException": "permanent",
            "httpx.ReadTimeout": "transient",
            "builtins.KeyError": "transient",
            "LookupError": "permanent",
            "chatsvg_core.errors.TruncatedSVG": "permanent",
        }
    )
    assert policy.classify(httpx.ReadTimeout("t")).kind is T
    assert policy.classify(httpx.ConnectTimeout("t")).kind is P
    assert policy.classify(KeyError("k")).rule == "type_override:builtins.KeyError"
    assert policy.classify(IndexError("i")).kind is P
    assert policy.classify(IndexError("i")).rule == "type_override:builtins.LookupError"
    assert policy.classify(errors.TruncatedSVG("cut")).kind is P


def test_the_classifier_hook_is_asked_first_and_may_abstain() -> None:
    def hook(exc: BaseException) -> bool | None:
        return True if isinstance(exc, ValueError) else None

    policy = RetryPolicy(classifier=hook, status_overrides={500: "permanent"})
    assert policy.classify(ValueError()).rule == "classifier"
    assert policy.classify(ValueError()).kind is T
    assert policy.classify(status_error(500)).kind is P  # abstained: overrides apply


def test_cancellation_is_never_retried_even_with_overrides() -> None:
    policy = RetryPolicy(
        classifier=lambda exc: True, type_overrides={"asyncio.exceptions.CancelledError": T}
    )
    assert policy.classify(asyncio.CancelledError()).kind is P
    assert policy.classify(KeyboardInterrupt()).kind is P


def test_the_classifier_is_not_serialised() -> None:
    policy = RetryPolicy(classifier=lambda exc: None)
    dumped = policy.model_dump(mode="json")
    assert "classifier" not in dumped
    assert RetryPolicy.model_validate(dumped).classifier is None
    assert "classifier" not in repr(policy)
    schema = RetryPolicy.model_json_schema()
    assert set(schema["properties"]) == set(dumped)


class Hostile(Exception):
    """An exception whose every attribute read raises."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"__class__", "__dict__", "__traceback__"}:
            return object.__getattribute__(self, name)
        raise RuntimeError(f"no {name} for you")


class HostileMapping(dict[str, Any]):
    def get(self, *args: Any) -> Any:  # type: ignore[override]
        raise RuntimeError("boom")

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")


def hostile_chatsvg() -> errors.ProviderTransientError:
    exc = errors.ProviderTransientError("x")
    exc.fields = HostileMapping(status=503)
    return exc


class WeirdResponse(httpx.HTTPStatusError):
    @property
    def response(self) -> Any:  # type: ignore[override]
        raise RuntimeError("gone")

    @response.setter
    def response(self, value: Any) -> None:
        pass


def test_hostile_exceptions_are_classified_without_raising() -> None:
    assert classify(Hostile()).kind is P
    assert classify(hostile_chatsvg()).kind is T
    weird = WeirdResponse("x", request=REQUEST, response=httpx.Response(503))
    assert classify(weird).kind is P
    assert classify(weird).rule == "status:unknown"


field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=80),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
)
bases = st.sampled_from(
    [
        Exception,
        ValueError,
        OSError,
        TimeoutError,
        ConnectionError,
        errors.ChatSVGError,
        errors.TransientError,
        errors.PermanentError,
        errors.ProviderTransientError,
        errors.ProviderPermanentError,
        httpx.HTTPError,
        httpx.TransportError,
        httpx.TimeoutException,
        BaseException,
        KeyboardInterrupt,
        GeneratorExit,
        ArithmeticError,
    ]
)


@st.composite
def arbitrary_exceptions(draw: st.DrawFn) -> BaseException:
    base = draw(bases)
    name = draw(st.from_regex(r"[A-Z][a-zA-Z]{0,10}", fullmatch=True))
    module = draw(st.text(max_size=20))
    cls = type(name, (base,), {"__module__": module})
    fields = draw(st.dictionaries(st.sampled_from(["status", "retry_after", "x"]), field_values))
    if issubclass(cls, errors.ChatSVGError):
        return cls("m", **fields)
    if issubclass(cls, httpx.HTTPError):
        return cls("m")
    exc = cls()
    for key, value in fields.items():
        with contextlib.suppress(Exception):
            setattr(exc, key, value)
    return exc


@settings(max_examples=150)
@given(
    arbitrary_exceptions(),
    st.dictionaries(st.integers(100, 599), st.sampled_from(list(ErrorClass)), max_size=3),
    st.dictionaries(
        st.sampled_from(["builtins.ValueError", "builtins.OSError", "x.Y"]),
        st.sampled_from(list(ErrorClass)),
        max_size=2,
    ),
)
def test_classification_is_total_on_arbitrary_exceptions(
    exc: BaseException, statuses: dict[int, ErrorClass], types: dict[str, ErrorClass]
) -> None:
    verdict = RetryPolicy(status_overrides=statuses, type_overrides=types).classify(exc, now=NOW)
    assert verdict.kind in (T, P)
    if not isinstance(exc, Exception):
        assert verdict.kind is P
    if verdict.retry_after is not None:
        assert verdict.retry_after >= 0
    # classifying after pickling (how errors reach other processes) agrees
    if isinstance(exc, errors.ChatSVGError) and type(exc).__module__ == __name__:
        assert classify(pickle.loads(pickle.dumps(exc))).kind is classify(exc).kind


@given(st.integers(0, 10**12))
def test_parse_retry_after_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)
    assert parse_retry_after(f"  {seconds} ") == float(seconds)
    assert parse_retry_after(str(seconds), cap=60) == min(seconds, 60)


@given(st.integers(-(10**6), 10**8), st.sampled_from(["imf", "rfc850", "asctime"]))
def test_parse_retry_after_http_date_forms(offset: int, form: str) -> None:
    when = NOW + timedelta(seconds=offset)
    if form == "imf":
        text = format_datetime(when, usegmt=True)
    elif form == "rfc850":
        text = when.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    else:
        text = when.strftime("%a %b %d %H:%M:%S %Y").replace(" 0", "  ", 1)
    parsed = parse_retry_after(text, now=NOW)
    if form == "rfc850" and not 1970 <= when.year < 2070:
        return  # two-digit years are ambiguous outside that window
    assert parsed == max(0.0, float(offset))


@given(st.text(max_size=120))
def test_parse_retry_after_never_raises(text: str) -> None:
    parsed = parse_retry_after(text, now=NOW, cap=100)
    assert parsed is None or 0 <= parsed <= 100


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "-1",
        "1e3",
        "0x10",
        "1,5",
        "Wed, 99 Foo 2015 07:28:00 GMT",
        "9" * 16,
        "1" * (MAX_RETRY_AFTER_HEADER + 1),
        "inf",
        "nan",
        "12 seconds",
    ],
)
def test_parse_retry_after_refuses_malformed_values(text: str) -> None:
    assert parse_retry_after(text, now=NOW) is None


def test_parse_retry_after_needs_a_now_for_dates() -> None:
    text = format_datetime(NOW + timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(text) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": text}), now=NOW) == 5.0
    assert parse_retry_after(httpx.Response(503)) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("1.5") == 1.5
