"""Retries: one declarative policy for in-process retries and job-level re-enqueue.

* :class:`RetryPolicy` is pure data (frozen, JSON round-trip): backoff, jitter,
  limits, ``Retry-After`` handling and classification overrides.
* :meth:`RetryPolicy.decide` is the single decision: ``Retry(delay)`` or
  ``GiveUp(reason)``. The engine calls it after a failed job attempt; the
  tenacity objects from :meth:`RetryPolicy.retrying` /
  :meth:`RetryPolicy.async_retrying` call it inside one process.
* :func:`classify` says transient or permanent by documented rules.
* :class:`RetryBudget` stops retry storms across calls; :class:`RetryHook` and
  :class:`LoggingHook` observe decisions; :func:`retry_testing` turns waits off.
"""

from __future__ import annotations

from chatsvg_core.retry._budget import RetryBudget
from chatsvg_core.retry._classify import (
    DEFAULT_TRANSIENT_STATUSES,
    Classification,
    Classifier,
    ErrorClass,
    classify,
    dotted_name,
)
from chatsvg_core.retry._decision import Decision, GiveUp, GiveUpReason, Retry
from chatsvg_core.retry._hooks import (
    LoggingHook,
    RetryEvent,
    RetryHook,
    TestingMode,
    get_on_retry_hooks,
    get_testing,
    retry_testing,
    set_on_retry_hooks,
    set_testing,
)
from chatsvg_core.retry._policy import DECORRELATED_FACTOR, Jitter, RetryPolicy
from chatsvg_core.retry._retry_after import MAX_RETRY_AFTER_HEADER, parse_retry_after
from chatsvg_core.retry._tenacity import async_retrying, retrying

__all__ = [
    "DECORRELATED_FACTOR",
    "DEFAULT_TRANSIENT_STATUSES",
    "MAX_RETRY_AFTER_HEADER",
    "Classification",
    "Classifier",
    "Decision",
    "ErrorClass",
    "GiveUp",
    "GiveUpReason",
    "Jitter",
    "LoggingHook",
    "Retry",
    "RetryBudget",
    "RetryEvent",
    "RetryHook",
    "RetryPolicy",
    "TestingMode",
    "async_retrying",
    "classify",
    "dotted_name",
    "get_on_retry_hooks",
    "get_testing",
    "parse_retry_after",
    "retry_testing",
    "retrying",
    "set_on_retry_hooks",
    "set_testing",
]
