"""Storage errors that belong to this package (subclasses of the one hierarchy)."""

from __future__ import annotations

from chatsvg_core.errors import PermanentError, StorageError

__all__ = ["StoreClosed"]


class StoreClosed(StorageError, PermanentError):
    """The store was closed with ``aclose()``, or a finished transaction was used again.

    A programming error in the host, not a database fault: retrying cannot
    help. Fields: ``store`` (the backend's name), ``what`` (``"store"`` or
    ``"transaction"``).
    """

    code = "store_closed"
    http_status = 500
