"""Ledger errors that the shared hierarchy does not have yet (subclasses of ``LedgerError``)."""

from __future__ import annotations

from chatsvg_core.errors import InvalidOwner, LedgerError

__all__ = ["InvalidOwner", "InvalidReference", "LedgerConflict", "NoReservation"]


class LedgerConflict(LedgerError):
    """A repeated call does not match the entry already written for its reference.

    Raised instead of returning the original when the replay names another
    owner or amount (a bug or a reused id in the host), or when a two-phase
    step contradicts an earlier one (capture after release, a charge for a
    reserved job). Nothing was written. Fields: ``kind``, ``ref``, ``reason``,
    and where relevant ``owner``/``expected_owner``, ``amount``/``expected_amount``.
    """

    code = "ledger_conflict"
    http_status = 409


class NoReservation(LedgerError):
    """A capture or release for a reference with no reservation (fields: ``ref``)."""

    code = "no_reservation"
    http_status = 409


class InvalidReference(LedgerError):
    """A job id or external id that is not a string of 1 to 255 characters.

    Fields: ``what`` (``"ref"``, ``"external_id"``), ``reason``.
    """

    code = "invalid_reference"
    http_status = 400
