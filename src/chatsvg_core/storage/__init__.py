"""Storage backends and the protocol they implement (jobs, idempotency, ledger, results)."""

from __future__ import annotations

from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._jobs import (
    claim_job,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
    retry_job,
)
from chatsvg_core.storage._protocol import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    LedgerEntry,
    Store,
    StoreTransaction,
)
from chatsvg_core.storage._sync import SyncStore, SyncTransaction
from chatsvg_core.storage.memory import MemoryStore

__all__ = [
    "EntryKind",
    "IdempotencyRecord",
    "JobResult",
    "LedgerEntry",
    "MemoryStore",
    "Store",
    "StoreClosed",
    "StoreTransaction",
    "SyncStore",
    "SyncTransaction",
    "claim_job",
    "claim_next",
    "complete_job",
    "expire_leases",
    "fail_job",
    "heartbeat_job",
    "retry_job",
]
