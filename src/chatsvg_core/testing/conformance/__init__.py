"""The storage contract as a test suite a host runs against its own backend.

Subclass :class:`StoreConformance` in a ``Test*`` class and implement
``open_store()`` (an async context manager giving a store on a new, empty
database)::

    from contextlib import asynccontextmanager
    from chatsvg_core.testing.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        @asynccontextmanager
        async def open_store(self):
            store = await MyStore.connect(fresh_database_url())
            try:
                yield store
            finally:
                await store.aclose()

Needs the ``testing`` extra (pytest, hypothesis). The parts can also be used
one by one: :class:`PrimitiveConformance` (one promise of each primitive per
test), and the ledger, job and concurrency suites.

Queue adapters have their own suite, :class:`QueueConformance`: implement
``open_queue()`` and ``run_worker(queue, engine)`` (see its docstring and
docs/queues/custom-adapter.md).
"""

from __future__ import annotations

from chatsvg_core.testing.conformance._base import Capability, ConformanceBase
from chatsvg_core.testing.conformance._concurrency import ConcurrencyConformance
from chatsvg_core.testing.conformance._jobs import JobConformance
from chatsvg_core.testing.conformance._ledger import LedgerConformance, check_ledger_invariants
from chatsvg_core.testing.conformance._primitives import PrimitiveConformance
from chatsvg_core.testing.conformance._queue import QueueConformance, QueueProbe

__all__ = [
    "Capability",
    "ConcurrencyConformance",
    "ConformanceBase",
    "JobConformance",
    "LedgerConformance",
    "PrimitiveConformance",
    "QueueConformance",
    "QueueProbe",
    "StoreConformance",
    "check_ledger_invariants",
]


class StoreConformance(
    PrimitiveConformance, LedgerConformance, JobConformance, ConcurrencyConformance
):
    """Every conformance test of the storage contract, in one class to subclass."""
