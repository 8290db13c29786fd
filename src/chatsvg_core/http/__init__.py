"""HTTP answers for hosts that serve an API, without a web framework.

:func:`problem_details` turns any exception into an RFC 9457 problem document
with its status and headers; :func:`submit_headers` marks replayed submits.
"""

from __future__ import annotations

from chatsvg_core.http._problem import (
    PROBLEM_JSON,
    REPLAY_HEADER,
    ProblemDetails,
    problem_details,
    submit_headers,
)

__all__ = [
    "PROBLEM_JSON",
    "REPLAY_HEADER",
    "ProblemDetails",
    "problem_details",
    "submit_headers",
]
