"""chatsvg-core: the reusable generation core of an AI SVG service.

Everything public is importable from this module and listed in ``__all__``;
every other module is private and may change without notice.
"""

from __future__ import annotations

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core.errors import (
    ChatSVGError,
    ConfigurationError,
    DailyCapExceeded,
    ExtractionError,
    IdempotencyConflict,
    IdempotencyError,
    IncompatibleStorage,
    InsufficientCredits,
    InvalidAmount,
    InvalidIdempotencyKey,
    InvalidTransition,
    JobNotFound,
    LedgerError,
    NoSVGFound,
    PermanentError,
    PromptRejected,
    ProviderError,
    ProviderPermanentError,
    ProviderTransientError,
    RefundWithoutCharge,
    StaleLease,
    StorageError,
    StorageUnavailable,
    SVGRejected,
    TransientError,
    TruncatedSVG,
    UnhashablePayload,
    UnknownAccount,
)
from chatsvg_core.jobs import (
    TRANSITIONS,
    Job,
    JobErrorInfo,
    JobStatus,
    Transition,
)
from chatsvg_core.storage import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    LedgerEntry,
    Store,
    StoreTransaction,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "TRANSITIONS",
    "ChatSVGError",
    "Clock",
    "ConfigurationError",
    "DailyCapExceeded",
    "EntryKind",
    "ExtractionError",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyRecord",
    "IncompatibleStorage",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidIdempotencyKey",
    "InvalidTransition",
    "Job",
    "JobErrorInfo",
    "JobNotFound",
    "JobResult",
    "JobStatus",
    "LedgerEntry",
    "LedgerError",
    "NoSVGFound",
    "PermanentError",
    "PromptRejected",
    "ProviderError",
    "ProviderPermanentError",
    "ProviderTransientError",
    "RefundWithoutCharge",
    "SVGRejected",
    "StaleLease",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "StoreTransaction",
    "SystemClock",
    "TransientError",
    "Transition",
    "TruncatedSVG",
    "UnhashablePayload",
    "UnknownAccount",
    "__version__",
]
