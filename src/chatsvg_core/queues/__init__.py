"""Queue adapters: the ``JobQueue`` protocol, the in-process default, and real queue engines.

The adapters for queue engines load on first use, so importing this package
needs none of them: ``ArqQueue``, ``arq_worker_settings``, ``arq_worker`` and
``run_arq_worker`` need the ``arq`` extra; ``ProcrastinateQueue``,
``procrastinate_app``, ``serve_procrastinate`` and ``run_procrastinate_worker``
the ``procrastinate`` extra. The Celery adapter (``setup_celery``,
``CeleryQueue``) imports Celery only when used, so it is imported eagerly; it
needs the ``celery`` extra at that point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chatsvg_core.queues._celery import (
    DEFAULT_MAX_COUNTDOWN,
    DEFAULT_PER_MESSAGE,
    PROCESS_MANY_TASK,
    PROCESS_TASK,
    RECOVER_TASK,
    SWEEP_TASK,
    CeleryQueue,
    CeleryWorkers,
    setup_celery,
)
from chatsvg_core.queues._inprocess import InProcessQueue
from chatsvg_core.queues._protocol import JobQueue

if TYPE_CHECKING:
    from chatsvg_core.queues._arq import (
        ArqQueue,
        arq_worker,
        arq_worker_settings,
        run_arq_worker,
    )
    from chatsvg_core.queues._procrastinate import (
        ProcrastinateQueue,
        procrastinate_app,
        run_procrastinate_worker,
        serve_procrastinate,
    )

__all__ = [
    "DEFAULT_MAX_COUNTDOWN",
    "DEFAULT_PER_MESSAGE",
    "PROCESS_MANY_TASK",
    "PROCESS_TASK",
    "RECOVER_TASK",
    "SWEEP_TASK",
    "ArqQueue",
    "CeleryQueue",
    "CeleryWorkers",
    "InProcessQueue",
    "JobQueue",
    "ProcrastinateQueue",
    "arq_worker",
    "arq_worker_settings",
    "procrastinate_app",
    "run_arq_worker",
    "run_procrastinate_worker",
    "serve_procrastinate",
    "setup_celery",
]

_LAZY = {
    "ArqQueue": ("_arq", "arq"),
    "arq_worker": ("_arq", "arq"),
    "arq_worker_settings": ("_arq", "arq"),
    "run_arq_worker": ("_arq", "arq"),
    "ProcrastinateQueue": ("_procrastinate", "procrastinate"),
    "procrastinate_app": ("_procrastinate", "procrastinate"),
    "run_procrastinate_worker": ("_procrastinate", "procrastinate"),
    "serve_procrastinate": ("_procrastinate", "procrastinate"),
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
