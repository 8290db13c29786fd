"""Storage backends and the protocol they implement (jobs, idempotency, ledger, results).

Backends: :class:`chatsvg_core.storage.sqlite.SQLiteStore` (embedded default),
:class:`chatsvg_core.storage.postgres.PostgresStore` (the ``postgres`` extra)
and :class:`chatsvg_core.storage.memory.MemoryStore`; :func:`open_storage`
picks one from a URL. :class:`SQLiteStore` needs only the standard library
and is exported here; the PostgreSQL backend is imported from its module (or
through ``open_storage``) so its driver is never needed unless used.
"""

from __future__ import annotations

from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._jobs import (
    HeldJobFinisher,
    JobClaimer,
    JobFinisher,
    LeaseExtender,
    cancel_job,
    claim_job,
    claim_next,
    claim_next_reference,
    complete_job,
    complete_job_reference,
    expire_leases,
    fail_job,
    heartbeat_job,
    heartbeat_jobs,
    heartbeat_jobs_reference,
    retry_job,
)
from chatsvg_core.storage._open import ENTRY_POINT_GROUP, SCHEMES, open_storage
from chatsvg_core.storage._protocol import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    LedgerEntry,
    Store,
    StoreTransaction,
)
from chatsvg_core.storage._purge import JobPurger
from chatsvg_core.storage._sync import SyncStore, SyncTransaction
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.storage.sqlite import SQLiteStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "SCHEMES",
    "EntryKind",
    "HeldJobFinisher",
    "IdempotencyRecord",
    "JobClaimer",
    "JobFinisher",
    "JobPurger",
    "JobResult",
    "LeaseExtender",
    "LedgerEntry",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoreClosed",
    "StoreTransaction",
    "SyncStore",
    "SyncTransaction",
    "cancel_job",
    "claim_job",
    "claim_next",
    "claim_next_reference",
    "complete_job",
    "complete_job_reference",
    "expire_leases",
    "fail_job",
    "heartbeat_job",
    "heartbeat_jobs",
    "heartbeat_jobs_reference",
    "open_storage",
    "retry_job",
]
