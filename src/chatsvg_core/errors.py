"""One exception hierarchy for everything the library raises on purpose.

``ChatSVGError`` is the root. Every concrete error is either a
:class:`TransientError` (the same work may succeed if tried again later) or a
:class:`PermanentError` (trying again cannot help), so a worker decides
retry-or-fail from the class alone, never from the message.

Each error carries structured fields (``error.fields``), a stable machine code
(``error.code``) and a suggested HTTP status for hosts that serve an API
(``error.http_status``). ``error.to_dict()`` gives a JSON-ready body.

Subsystems may define finer subclasses in their own packages; they must derive
from one of the classes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ChatSVGError",
    "ConfigurationError",
    "DailyCapExceeded",
    "ExtractionError",
    "IdempotencyConflict",
    "IdempotencyError",
    "InFlightLimitExceeded",
    "IncompatibleStorage",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidIdempotencyKey",
    "InvalidOwner",
    "InvalidRequest",
    "InvalidTransition",
    "JobNotFound",
    "LedgerError",
    "NoSVGFound",
    "PermanentError",
    "PromptRejected",
    "ProviderError",
    "ProviderPermanentError",
    "ProviderTransientError",
    "RateLimited",
    "RefundWithoutCharge",
    "SVGRejected",
    "StaleLease",
    "StorageError",
    "StorageUnavailable",
    "TransientError",
    "TruncatedSVG",
    "UnhashablePayload",
    "UnknownAccount",
]


class ChatSVGError(Exception):
    """Root of every error the library raises on purpose.

    Attributes:
        code: a stable, machine-readable name (``snake_case``), one per class.
        http_status: the status a host API should answer with, as a suggestion.
        transient: ``True`` when retrying the same work later may succeed.
        fields: structured details; safe to show to the caller (no secrets).
    """

    code: ClassVar[str] = "chatsvg_error"
    http_status: ClassVar[int] = 500
    transient: ClassVar[bool] = False

    def __init__(self, message: str, /, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: Mapping[str, Any] = dict(fields)

    def __getattr__(self, name: str) -> Any:
        # Structured fields read as attributes (``err.owner``) without every
        # subclass repeating an ``__init__``; only called for missing names.
        fields = self.__dict__.get("fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: code, message, transient flag and fields."""
        return {
            "code": self.code,
            "message": self.message,
            "transient": self.transient,
            **{k: _jsonable(v) for k, v in self.fields.items()},
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps fields across pickling (multiprocessing workers, Celery).
        return (_rebuild, (type(self), self.message, dict(self.fields)))

    def __repr__(self) -> str:
        parts = [repr(self.message), *(f"{k}={v!r}" for k, v in self.fields.items())]
        return f"{type(self).__name__}({', '.join(parts)})"


def _rebuild(cls: type[ChatSVGError], message: str, fields: dict[str, Any]) -> ChatSVGError:
    return cls(message, **fields)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class TransientError(ChatSVGError):
    """The work may succeed if tried again later (timeouts, 429, 5xx, lost connections)."""

    code = "transient_error"
    http_status = 503
    transient = True


class PermanentError(ChatSVGError):
    """Trying the same work again cannot succeed (bad input, refused content, policy)."""

    code = "permanent_error"
    http_status = 400
    transient = False


class ConfigurationError(PermanentError):
    """The library is set up wrongly: a missing optional extra, a bad setting or URL."""

    code = "configuration_error"
    http_status = 500


# --- jobs -----------------------------------------------------------------


class InvalidRequest(PermanentError):
    """A submitted request that is not a valid generation request.

    Raised for a payload that is not a mapping, an unknown field, or a field
    of the wrong type or out of range. Fields: ``errors``, a list of
    ``{"field": "width", "message": "...", "type": "int_type"}`` (pydantic's
    details, without the rejected values), and ``field``, the first one's name.
    """

    code = "invalid_request"
    http_status = 422


class InvalidOwner(PermanentError):
    """An owner id that breaks the rules every entry point and backend share.

    An owner is a ``str`` of 1 to 255 characters with no control character
    (U+0000-U+001F, U+007F-U+009F) and no lone surrogate, so every backend
    can store it (PostgreSQL refuses NUL). Fields: ``owner`` (a bounded
    ``repr``), ``reason`` (``not_a_string``, ``length``, ``control_character``,
    ``surrogate``).
    """

    code = "invalid_owner"
    http_status = 400


class JobNotFound(PermanentError):
    """No job has this id (fields: ``job_id``)."""

    code = "job_not_found"
    http_status = 404


class InvalidTransition(PermanentError):
    """A state change the state machine does not allow.

    Fields: ``job_id``, ``status`` (current), ``action``, ``reason``.
    """

    code = "invalid_transition"
    http_status = 409


class StaleLease(InvalidTransition):
    """A write made with a fencing token that is no longer the job's current one.

    The writer's lease was lost (expired and recovered, or the job moved on);
    it must abandon the job without writing. Fields: ``job_id``, ``token``,
    ``current_token``.
    """

    code = "stale_lease"
    http_status = 409


# --- idempotency ----------------------------------------------------------


class IdempotencyError(PermanentError):
    """Base for idempotency-key errors."""

    code = "idempotency_error"


class InvalidIdempotencyKey(IdempotencyError):
    """The client's key breaks a rule (fields: ``rule``, ``key`` shown truncated)."""

    code = "invalid_idempotency_key"
    http_status = 400


class IdempotencyConflict(IdempotencyError):
    """The key was used before for a different request (fields: ``scope``, ``key``).

    Hosts usually answer 422, as Stripe does.
    """

    code = "idempotency_conflict"
    http_status = 422


class UnhashablePayload(PermanentError):
    """The request cannot be canonicalised (NaN, infinities, non-string keys, bytes...).

    Fields: ``path`` (a JSON pointer to the bad value), ``reason``.
    """

    code = "unhashable_payload"
    http_status = 400


# --- ledger ---------------------------------------------------------------


class LedgerError(PermanentError):
    """Base for credit-ledger errors."""

    code = "ledger_error"


class InsufficientCredits(LedgerError):
    """A charge would take the balance below zero; nothing was written.

    Fields: ``owner``, ``balance``, ``amount``.
    """

    code = "insufficient_credits"
    http_status = 402


class DailyCapExceeded(LedgerError):
    """A charge would exceed the owner's daily usage cap; nothing was written.

    Fields: ``owner``, ``cap``, ``used``, ``amount``, ``resets_at``.
    """

    code = "daily_cap_exceeded"
    http_status = 429


class InFlightLimitExceeded(TransientError):
    """The owner already has as many jobs queued or running as the host allows.

    Raised by a submit; nothing was written and the idempotency key is not
    bound. Trying again once one of those jobs has finished can succeed.
    Fields: ``owner``, ``limit``, ``in_flight``.
    """

    code = "in_flight_limit_exceeded"
    http_status = 429


class RateLimited(TransientError):
    """Too many submits in the current window; nothing was written.

    Fields: ``scope`` (``owner``, or ``key`` for the host's own key such as
    an IP), ``limit`` (e.g. ``10 per 1 minute``), ``retry_after`` (seconds
    until the window resets; hosts send it as ``Retry-After``).
    """

    code = "rate_limited"
    http_status = 429


class InvalidAmount(LedgerError):
    """An amount that is zero, negative where it must be positive, or not an integer."""

    code = "invalid_amount"
    http_status = 400


class UnknownAccount(LedgerError):
    """The owner has no account (fields: ``owner``)."""

    code = "unknown_account"
    http_status = 404


class RefundWithoutCharge(LedgerError):
    """A refund for a job that was never charged (fields: ``ref``)."""

    code = "refund_without_charge"
    http_status = 409


# --- storage --------------------------------------------------------------


class StorageError(ChatSVGError):
    """Base for storage-backend faults (not for the domain errors a store reports)."""

    code = "storage_error"


class StorageUnavailable(StorageError, TransientError):
    """The database could not be reached or the connection was lost mid-transaction.

    The transaction was rolled back; nothing was half-written.
    """

    code = "storage_unavailable"
    http_status = 503


class IncompatibleStorage(StorageError, PermanentError):
    """The database is not ours, or its schema is newer than this library knows."""

    code = "incompatible_storage"
    http_status = 500


# --- generation -----------------------------------------------------------


class PromptRejected(PermanentError):
    """The prompt breaks a validation rule (fields: ``rule``, ``detail``)."""

    code = "prompt_rejected"
    http_status = 422


class ProviderError(ChatSVGError):
    """Base for faults of the model provider (never carries the API key).

    Fields: ``provider``, ``status`` (HTTP status or ``None``), ``retry_after``
    (seconds or ``None``).
    """

    code = "provider_error"
    http_status = 502


class ProviderTransientError(ProviderError, TransientError):
    """A provider fault worth retrying: timeouts, resets, 408/425/429/5xx, garbled bodies."""

    code = "provider_transient"
    http_status = 503


class ProviderPermanentError(ProviderError, PermanentError):
    """A provider fault that retrying cannot fix: 400/401/403/404/422, content refusals."""

    code = "provider_permanent"
    http_status = 502


class ExtractionError(ChatSVGError):
    """Base for failures to find an SVG in a model's answer."""

    code = "extraction_error"
    http_status = 502


class NoSVGFound(ExtractionError, PermanentError):
    """The model's answer holds no SVG at all."""

    code = "no_svg_found"


class TruncatedSVG(ExtractionError, TransientError):
    """The answer starts an SVG but never closes it; a new attempt may finish it."""

    code = "truncated_svg"


# --- sanitizer ------------------------------------------------------------


class SVGRejected(PermanentError):
    """The SVG cannot be made safe (fields: ``reason`` code, ``detail``, ``limit``)."""

    code = "svg_rejected"
    http_status = 422
