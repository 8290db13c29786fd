"""Library errors as HTTP answers: RFC 9457 problem documents, statuses and headers.

Framework-free: :func:`problem_details` returns plain data (status, headers,
body) that any web framework can send. Only fields known to be safe for the
caller are copied into the document; internal values (the idempotency scope,
database hosts and SQLSTATEs, another owner's id, fencing tokens) never are,
and a server-side error says nothing beyond its code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from chatsvg_core.errors import ChatSVGError, DailyCapExceeded, TransientError

__all__ = [
    "PROBLEM_JSON",
    "REPLAY_HEADER",
    "ProblemDetails",
    "problem_details",
    "submit_headers",
]

PROBLEM_JSON: Final = "application/problem+json"
"""The media type of a problem document (RFC 9457)."""

REPLAY_HEADER: Final = "Idempotent-Replayed"
"""Set to ``true`` on an answer that replays an earlier submit (Stripe's header name)."""

TYPE_PREFIX: Final = "urn:chatsvg:problem:"
"""Problem ``type`` URIs are ``urn:chatsvg:problem:<code>``: stable, and no pretend web page."""

# Fields a caller may see: they describe the caller's own request or account.
_SAFE: Final = frozenset(
    {
        "field",
        "errors",
        "rule",
        "reason",
        "limit",
        "job_id",
        "action",
        "owner",
        "balance",
        "amount",
        "cap",
        "used",
        "resets_at",
        "retry_after",
        "in_flight",
        "key",
        "path",
        "what",
    }
)
# A field named like a member of the problem document itself is renamed.
_RENAMED: Final = {"status": "job_status"}


@dataclass(frozen=True, slots=True)
class ProblemDetails:
    """An HTTP answer for an error: send ``status``, ``headers`` and ``body`` (or ``content``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> bytes:
        """The body as UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":")).encode()


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _retry_after(exc: ChatSVGError, now: datetime) -> int | None:
    wait = exc.fields.get("retry_after")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and math.isfinite(wait):
        return max(0, math.ceil(wait))
    if isinstance(exc, DailyCapExceeded):
        resets = exc.fields.get("resets_at")
        try:
            at = datetime.fromisoformat(str(resets))
        except ValueError:
            return None
        return max(0, math.ceil((at - now).total_seconds()))
    if isinstance(exc, TransientError):
        return 1  # the work may succeed if tried again; say when, not "never"
    return None


def problem_details(
    exc: BaseException,
    *,
    instance: str | None = None,
    now: datetime | None = None,
) -> ProblemDetails:
    """The RFC 9457 answer for any exception.

    A :class:`~chatsvg_core.errors.ChatSVGError` keeps its suggested status,
    its ``code`` (also in ``type``), its message as ``detail`` (4xx only) and
    the fields safe for the caller. Any other exception is a bare 500 that
    reveals nothing. ``Retry-After`` (seconds) is set from a ``retry_after``
    field, from a daily cap's ``resets_at``, and to 1 for other transient
    errors.

    >>> from chatsvg_core.errors import InsufficientCredits
    >>> p = problem_details(InsufficientCredits("no", owner="ann", balance=0, amount=2))
    >>> p.status, p.body["code"], p.body["balance"], p.headers["Content-Type"]
    (402, 'insufficient_credits', 0, 'application/problem+json')
    """
    now = now or datetime.now(UTC)
    headers = {"Content-Type": PROBLEM_JSON}
    if not isinstance(exc, ChatSVGError):
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + "internal_error",
            "title": "Internal error",
            "status": 500,
            "code": "internal_error",
        }
        if instance is not None:
            body["instance"] = instance
        return ProblemDetails(500, headers, body)
    status = int(exc.http_status)
    body = {
        "type": TYPE_PREFIX + exc.code,
        "title": _title(exc.code),
        "status": status,
        "code": exc.code,
        "transient": exc.transient,
    }
    if status < 500:
        # A client error's message describes the client's own input; a server
        # error's may name hosts, schemas or SQL, so only its code is shown.
        body["detail"] = exc.message
        safe: Mapping[str, Any] = exc.to_dict()
        for name, value in safe.items():
            if name in _SAFE or name in _RENAMED:
                body[_RENAMED.get(name, name)] = value
    elif "retry_after" in exc.fields:
        body["retry_after"] = exc.fields["retry_after"]
    if instance is not None:
        body["instance"] = instance
    wait = _retry_after(exc, now)
    if wait is not None:
        headers["Retry-After"] = str(wait)
    return ProblemDetails(status, headers, body)


def submit_headers(replayed: bool, *, location: str | None = None) -> dict[str, str]:
    """Headers for a submit's answer: ``Location`` of the job, and the replay marker."""
    headers: dict[str, str] = {}
    if location is not None:
        headers["Location"] = location
    if replayed:
        headers[REPLAY_HEADER] = "true"
    return headers
