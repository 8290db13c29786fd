"""Submit rate limits (the ``ratelimit`` extra): :class:`SubmitRateLimit` on the `limits` library.

Imported on use: ``from chatsvg_core.ratelimit import SubmitRateLimit``.
"""

from __future__ import annotations

from chatsvg_core.ratelimit._limiter import SubmitRateLimit
from chatsvg_core.ratelimit._sql import SQLRateStorage

__all__ = ["SQLRateStorage", "SubmitRateLimit"]
