"""The wall-clock budget of one sanitizing run (``SanitizePolicy.max_seconds``)."""

from __future__ import annotations

import math
import time

from chatsvg_core.sanitize._parse import reject
from chatsvg_core.sanitize._reasons import ReasonCode

__all__ = ["Budget"]

_EVERY = 256
"""Work units between two reads of the clock (a read costs about as much as a unit)."""


class Budget:
    """A deadline, checked every ``_EVERY`` units of work and at each stage boundary.

    Every loop of the sanitizer is linear in the input, so the budget is a
    second line of defence: against a slow machine, and against a shape that
    is linear but slow (a large stylesheet goes through a pure-Python CSS
    tokenizer). One call into a C or tokenizer routine is not interrupted; the
    check comes after it.
    """

    __slots__ = ("countdown", "deadline", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = math.inf if seconds is None else time.monotonic() + seconds
        self.countdown = _EVERY

    def check(self) -> None:
        """Raise ``SVGRejected(time_budget_exceeded)`` once the deadline has passed."""
        self.countdown = _EVERY
        if time.monotonic() > self.deadline:
            raise reject(ReasonCode.TIME_BUDGET_EXCEEDED,
                         f"sanitizing took more than {self.seconds} s")  # fmt: skip

    def tick(self) -> None:
        """Count one unit of work; read the clock every ``_EVERY`` units."""
        self.countdown -= 1
        if self.countdown <= 0:
            self.check()
