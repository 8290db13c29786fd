"""Queue adapters: the ``JobQueue`` protocol, the in-process default, and real queue engines.

The adapters for queue engines load on first use, so importing this package
needs none of them: ``ArqQueue``, ``arq_worker_settings`` and
``run_arq_worker`` need the ``arq`` extra; ``ProcrastinateQueue``,
``procrastinate_app`` and ``run_procrastinate_worker`` the ``procrastinate``
extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chatsvg_core.queues._inprocess import InProcessQueue
from chatsvg_core.queues._protocol import JobQueue

if TYPE_CHECKING:
    from chatsvg_core.queues._arq import ArqQueue, arq_worker_settings, run_arq_worker

__all__ = [
    "ArqQueue",
    "InProcessQueue",
    "JobQueue",
    "arq_worker_settings",
    "run_arq_worker",
]

_LAZY = {
    "ArqQueue": ("_arq", "arq"),
    "arq_worker_settings": ("_arq", "arq"),
    "run_arq_worker": ("_arq", "arq"),
}


def __getattr__(name: str) -> Any:
    try:
        module, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        loaded = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the {extra!r} extra: pip install 'chatsvg-core[{extra}]' ({exc})"
        ) from exc
    value = getattr(loaded, name)
    globals()[name] = value
    return value
