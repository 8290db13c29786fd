"""Live progress of one job: its lifecycle lines, and what it is waiting for right now.

Every engine event prints one line on stderr. Between events, a terminal
shows a live status line (rich) with the state, attempt, elapsed time and
what the job waits for; a pipe or log file gets a "still waiting" line every
``every`` seconds instead, so long work is never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from chatsvg_core.engine import EngineEvent, EventKind

__all__ = ["Progress"]


@dataclass
class Progress:
    """Renders engine events for the job being watched (all jobs when ``watch`` is None)."""

    out: TextIO
    quiet: bool = False
    watch: str | None = None
    max_attempts: int | None = None
    every: float = 15.0
    provider: str = "the model"
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "submitting"
    attempt: int = 0
    waiting_for: str = "the store"
    _started: float = field(default_factory=time.monotonic)
    _last_line: float = field(default_factory=time.monotonic)
    _console: Any = None
    _status: Any = None
    _ticker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.quiet:
            return
        try:
            from rich.console import Console
        except ImportError:  # the `cli` extra is optional
            return
        self._console = Console(file=self.out, highlight=False, soft_wrap=True)

    # --- output ----------------------------------------------------------------

    def line(self, text: str) -> None:
        """Print one line (unless quiet)."""
        if self.quiet:
            return
        self._last_line = time.monotonic()
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return time.monotonic() - self._started

    def summary(self) -> str:
        """``running, attempt 1/3, 12s: waiting for the model``."""
        attempt = ""
        if self.attempt:
            of = f"/{self.max_attempts}" if self.max_attempts else ""
            attempt = f", attempt {self.attempt}{of}"
        return f"{self.state}{attempt}, {self.elapsed():.0f}s: waiting for {self.waiting_for}"

    # --- the live part -----------------------------------------------------------

    def start(self) -> None:
        """Start the status line (terminal) or the periodic "still waiting" lines."""
        if self.quiet:
            return
        if self._console is not None and self.out.isatty():
            self._status = self._console.status(self.summary())
            self._status.start()
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5 if self._status is not None else min(1.0, self.every))
            if self._status is not None:
                self._status.update(self.summary())
            elif time.monotonic() - self._last_line >= self.every:
                self.line(f"  {'waiting':<16} {self.summary()}")

    async def stop(self) -> None:
        """Stop the live part."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    # --- events ------------------------------------------------------------------

    def __call__(self, event: EngineEvent) -> None:
        if self.watch is not None and event.job_id != self.watch:
            return
        f = event.fields
        if event.attempt:
            self.attempt = event.attempt
        kind = event.kind
        if kind is EventKind.SUBMITTED:
            self.state, self.waiting_for = "queued", "a worker"
            text = "queued; waiting for a worker"
        elif kind is EventKind.REPLAYED:
            self.state, self.waiting_for = "replayed", "the job this key already made"
            text = "this key already has a job: following it"
        elif kind is EventKind.CLAIMED:
            self.state, self.waiting_for = "running", "the charge"
            text = f"running (attempt {event.attempt}, worker {f.get('worker_id')})"
        elif kind is EventKind.CHARGED:
            self.waiting_for = self.provider
            text = f"charged {f.get('amount')} credits; waiting for {self.provider}"
        elif kind is EventKind.PROGRESS:
            # Many per answer: shown in the status line only, not as lines.
            self.waiting_for = f"{self.provider}: {f.get('tokens')} tokens so far"
            return
        elif kind is EventKind.GENERATED:
            self.waiting_for = "the result to be saved"
            text = f"model {f.get('model')} answered; SVG sanitized"
        elif kind is EventKind.SUCCEEDED:
            self.state, self.waiting_for = "succeeded", "nothing"
            text = "succeeded"
        elif kind is EventKind.RETRY_SCHEDULED:
            delay = f.get("delay")
            seconds = float(delay) if isinstance(delay, int | float) else 0.0
            self.state = "queued"
            self.waiting_for = f"the retry (attempt {event.attempt + 1}, due in {seconds:.1f}s)"
            text = f"transient error ({f.get('error_code')}); retrying in {seconds:.1f}s"
        elif kind is EventKind.FAILED:
            self.state, self.waiting_for = "failed", "nothing"
            text = f"failed ({f.get('error_code')})"
        elif kind is EventKind.REFUNDED:
            text = f"refunded {f.get('amount')} credits"
        elif kind is EventKind.LEASE_EXPIRED:
            text = "lease expired; recovered"
        else:
            text = kind.value.replace("_", " ")
        self.line(f"  {kind.value:<16} {text}")
        if kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            self.done.set()
