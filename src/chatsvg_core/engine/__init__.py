"""The engine: submit, process and recover, tying every part together."""

from __future__ import annotations

from chatsvg_core.engine._engine import (
    OPERATION,
    Checkpoint,
    Engine,
    ProcessOutcome,
    PurgeReport,
    RecoveryReport,
    SubmitResult,
)
from chatsvg_core.engine._events import EngineEvent, EventHook, EventKind
from chatsvg_core.engine._facade import SyncEngine
from chatsvg_core.engine._instrument import (
    NO_INSTRUMENTATION,
    AttemptScope,
    Instrumentation,
    Step,
    SubmitScope,
)
from chatsvg_core.engine._quick import agenerate_svg, generate_svg
from chatsvg_core.engine._wait import JobChangeFeed, JobUpdate

__all__ = [
    "NO_INSTRUMENTATION",
    "OPERATION",
    "AttemptScope",
    "Checkpoint",
    "Engine",
    "EngineEvent",
    "EventHook",
    "EventKind",
    "Instrumentation",
    "JobChangeFeed",
    "JobUpdate",
    "ProcessOutcome",
    "PurgeReport",
    "RecoveryReport",
    "Step",
    "SubmitResult",
    "SubmitScope",
    "SyncEngine",
    "agenerate_svg",
    "generate_svg",
]
