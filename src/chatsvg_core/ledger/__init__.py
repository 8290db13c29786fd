"""The credit ledger: append-only entries, exactly-once charges and refunds, daily caps.

Two layers, one set of rules:

* functions over an open transaction (``charge(tx, ...)``, ``refund(tx, ...)``,
  ...), for the engine to combine with job changes in one atomic step;
* :class:`Ledger`, which opens a transaction per call and reads time from an
  injected clock, for everything else.

See ``docs/ledger.md`` for the guarantees.
"""

from __future__ import annotations

from chatsvg_core.ledger._errors import (
    InvalidOwner,
    InvalidReference,
    LedgerConflict,
    NoReservation,
)
from chatsvg_core.ledger._ledger import DailyUsage, Ledger, Statement
from chatsvg_core.ledger._ops import (
    IdFactory,
    adjust,
    balance,
    capture,
    charge,
    grant,
    refund,
    release,
    reserve,
)
from chatsvg_core.ledger._policy import DayBoundary, LedgerPolicy
from chatsvg_core.ledger._sync import SyncLedger

__all__ = [
    "DailyUsage",
    "DayBoundary",
    "IdFactory",
    "InvalidOwner",
    "InvalidReference",
    "Ledger",
    "LedgerConflict",
    "LedgerPolicy",
    "NoReservation",
    "Statement",
    "SyncLedger",
    "adjust",
    "balance",
    "capture",
    "charge",
    "grant",
    "refund",
    "release",
    "reserve",
]
