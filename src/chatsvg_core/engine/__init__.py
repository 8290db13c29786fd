"""The engine: submit, process and recover, tying every part together."""

from __future__ import annotations

from chatsvg_core.engine._engine import (
    OPERATION,
    Checkpoint,
    Engine,
    RecoveryReport,
    SubmitResult,
)
from chatsvg_core.engine._events import EngineEvent, EventHook, EventKind
from chatsvg_core.engine._facade import SyncEngine

__all__ = [
    "OPERATION",
    "Checkpoint",
    "Engine",
    "EngineEvent",
    "EventHook",
    "EventKind",
    "RecoveryReport",
    "SubmitResult",
    "SyncEngine",
]
