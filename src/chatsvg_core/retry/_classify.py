"""Transient or permanent: the documented rules that decide what is worth retrying.

The order of the rules (first match wins):

1. not an :class:`Exception` (``KeyboardInterrupt``, ``SystemExit``,
   ``asyncio.CancelledError``...): permanent, always; cancellation is never
   retried, whatever a host override says;
2. the host's programmatic ``classifier`` hook, when it returns a verdict;
3. the host's exception-type overrides (the class or any base, most specific
   first);
4. the host's status overrides (for any error that carries an HTTP status);
5. the library's hierarchy: :class:`~chatsvg_core.errors.TransientError` /
   :class:`~chatsvg_core.errors.PermanentError`;
6. httpx transport errors: timeouts, connect errors and connection resets are
   transient; other httpx transport errors are permanent;
7. ``httpx.HTTPStatusError`` by status: 408, 425, 429, 500, 502, 503, 504
   transient, every other status permanent;
8. the standard library's ``TimeoutError`` and ``ConnectionError`` (and their
   subclasses): transient;
9. anything else: permanent. An unknown failure is more likely a bug than a
   passing fault, and retrying a bug only multiplies its cost.

Classification never raises: a hostile exception whose attributes raise is
classified from what can be read, and unknown otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import httpx

from chatsvg_core.errors import ChatSVGError, PermanentError, TransientError
from chatsvg_core.retry._retry_after import parse_retry_after

__all__ = [
    "DEFAULT_TRANSIENT_STATUSES",
    "Classification",
    "Classifier",
    "ErrorClass",
    "classify",
    "dotted_name",
]


class ErrorClass(StrEnum):
    """The two kinds of failure."""

    TRANSIENT = "transient"
    """The same work may succeed if tried again later."""
    PERMANENT = "permanent"
    """Trying again cannot help."""


#: HTTP statuses that are transient by default; every other status is permanent.
DEFAULT_TRANSIENT_STATUSES: Final[frozenset[int]] = frozenset({408, 425, 429, 500, 502, 503, 504})

#: A host's programmatic rule: ``True`` transient, ``False`` permanent, ``None``
#: "no opinion, use the other rules".
Classifier = Callable[[BaseException], bool | None]

# Transport faults where the request may not have reached the server, or the
# answer was lost on the way back: trying again is the usual cure.
_HTTPX_TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    httpx.TimeoutException,  # ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
    httpx.ConnectError,
    httpx.RemoteProtocolError,  # the server closed the connection mid-answer
    httpx.ReadError,  # connection reset while reading
    httpx.WriteError,  # connection reset (broken pipe) while sending
)


@dataclass(frozen=True, slots=True)
class Classification:
    """What the rules concluded about one error, and why.

    Attributes:
        kind: transient or permanent.
        rule: which rule decided, e.g. ``"hierarchy"``, ``"status:503"``,
            ``"httpx:httpx.ConnectTimeout"``, ``"type_override:builtins.KeyError"``,
            ``"status_override:404"``, ``"classifier"``, ``"stdlib:builtins.TimeoutError"``,
            ``"not_an_exception"``, ``"unknown"``.
        error_type: the error's dotted class name.
        code: the library's machine code (``ChatSVGError.code``), or
            ``"http_<status>"`` for an HTTP status error, else ``None``.
        status: the HTTP status the error carries, if any.
        retry_after: the server's ``Retry-After`` hint in seconds, uncapped, if any.
    """

    kind: ErrorClass
    rule: str
    error_type: str
    code: str | None = None
    status: int | None = None
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """``True`` when the error is worth retrying."""
        return self.kind is ErrorClass.TRANSIENT


def dotted_name(cls: type[BaseException]) -> str:
    """The name type overrides are written with: ``module.QualName``.

    httpx's public classes report module ``httpx`` (``"httpx.ConnectTimeout"``);
    built-ins report ``builtins`` (``"builtins.TimeoutError"``).
    """
    module = getattr(cls, "__module__", None) or "<unknown>"
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "<unnamed>")
    return f"{module}.{qualname}"


def _safe(read: Callable[[], Any]) -> Any:
    # Exceptions come from arbitrary code; reading one must never raise.
    try:
        return read()
    except Exception:
        return None


def _status_of(exc: BaseException) -> int | None:
    status: Any = None
    if isinstance(exc, ChatSVGError):
        fields = _safe(lambda: exc.__dict__.get("fields"))
        if isinstance(fields, Mapping):
            status = _safe(lambda: fields.get("status"))
    elif isinstance(exc, httpx.HTTPStatusError):
        status = _safe(lambda: exc.response.status_code)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def _retry_after_of(exc: BaseException, now: datetime | None) -> float | None:
    raw: Any = None
    if isinstance(exc, ChatSVGError):
        fields = _safe(lambda: exc.__dict__.get("fields"))
        if isinstance(fields, Mapping):
            raw = _safe(lambda: fields.get("retry_after"))
    elif isinstance(exc, httpx.HTTPStatusError):
        response = _safe(lambda: exc.response)
        if isinstance(response, httpx.Response):
            parsed = _safe(lambda: parse_retry_after(response, now=now))
            return parsed if isinstance(parsed, float) else None
        return None
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    if isinstance(raw, str):
        parsed = _safe(lambda: parse_retry_after(raw, now=now))
        return parsed if isinstance(parsed, float) else None
    return None


def _code_of(exc: BaseException, status: int | None) -> str | None:
    if isinstance(exc, ChatSVGError):
        code = _safe(lambda: type(exc).code)
        return code if isinstance(code, str) else None
    if status is not None:
        return f"http_{status}"
    return None


def _kind(transient: bool) -> ErrorClass:
    return ErrorClass.TRANSIENT if transient else ErrorClass.PERMANENT


def classify(
    exc: BaseException,
    *,
    status_overrides: Mapping[int, ErrorClass] | None = None,
    type_overrides: Mapping[str, ErrorClass] | None = None,
    classifier: Classifier | None = None,
    now: datetime | None = None,
) -> Classification:
    """Classify ``exc`` as transient or permanent by the documented rules.

    ``now`` is used only to read an HTTP-date ``Retry-After``; without it (and
    without a ``Date`` header on the response) that hint is ignored.
    :meth:`RetryPolicy.classify <chatsvg_core.retry.RetryPolicy.classify>` calls
    this with the policy's overrides.

    Examples:
        >>> from chatsvg_core.errors import ProviderTransientError
        >>> c = classify(ProviderTransientError("busy", status=429, retry_after=3))
        >>> c.kind, c.retry_after, c.code
        (<ErrorClass.TRANSIENT: 'transient'>, 3.0, 'provider_transient')
    """
    cls = type(exc)
    error_type = dotted_name(cls)
    status = _status_of(exc)
    retry_after = _retry_after_of(exc, now)
    code = _code_of(exc, status)

    def verdict(kind: ErrorClass, rule: str) -> Classification:
        return Classification(kind, rule, error_type, code, status, retry_after)

    if not isinstance(exc, Exception):
        return verdict(ErrorClass.PERMANENT, "not_an_exception")

    if classifier is not None:
        # A host hook that raises is a bug in the host; it is reported, not hidden.
        opinion = classifier(exc)
        if opinion is not None:
            return verdict(_kind(bool(opinion)), "classifier")

    if type_overrides:
        for base in cls.__mro__:
            name = dotted_name(base)
            kind = type_overrides.get(name)
            if kind is None and getattr(base, "__module__", None) == "builtins":
                kind = type_overrides.get(base.__qualname__)
            if kind is not None:
                return verdict(ErrorClass(kind), f"type_override:{name}")

    if status is not None and status_overrides:
        kind = status_overrides.get(status)
        if kind is not None:
            return verdict(ErrorClass(kind), f"status_override:{status}")

    if isinstance(exc, TransientError):
        return verdict(ErrorClass.TRANSIENT, "hierarchy")
    if isinstance(exc, PermanentError):
        return verdict(ErrorClass.PERMANENT, "hierarchy")
    if isinstance(exc, ChatSVGError):
        # A ChatSVGError outside both branches is a bug in a subclass; its
        # class-level flag is still the best evidence there is.
        return verdict(_kind(bool(_safe(lambda: exc.transient))), "hierarchy")

    if isinstance(exc, httpx.HTTPStatusError):
        if status is None:
            return verdict(ErrorClass.PERMANENT, "status:unknown")
        return verdict(_kind(status in DEFAULT_TRANSIENT_STATUSES), f"status:{status}")
    if isinstance(exc, _HTTPX_TRANSIENT):
        return verdict(ErrorClass.TRANSIENT, f"httpx:{error_type}")
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL | httpx.CookieConflict):
        return verdict(ErrorClass.PERMANENT, f"httpx:{error_type}")

    if isinstance(exc, TimeoutError | ConnectionError):
        return verdict(ErrorClass.TRANSIENT, f"stdlib:{error_type}")

    return verdict(ErrorClass.PERMANENT, "unknown")
