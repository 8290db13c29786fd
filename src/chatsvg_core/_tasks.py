"""asyncio's map of each loop's running task, where reading it is what ``current_task`` does."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Final

CURRENT_TASKS: Final[Any] = (
    getattr(asyncio.tasks, "_current_tasks", None)
    if inspect.isfunction(asyncio.current_task)
    else None
)
"""``asyncio.tasks._current_tasks`` when ``current_task`` is the Python function reading it (3.11).

``CURRENT_TASKS.get(loop)`` is then ``current_task(loop)`` without its Python
frame (~0.5 k instructions, on the engine's and the SQLite store's per-job
paths). ``None`` where ``current_task`` is C or keeps its tasks elsewhere:
callers ask ``asyncio.current_task`` itself.
"""
