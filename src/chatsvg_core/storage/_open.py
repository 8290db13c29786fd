"""``open_storage(url)``: a backend from a URL, over an explicit scheme table.

Passing a store instance is the main API; this is the convenience for
configuration files and the CLI. Built-in schemes come from the table below
and win over plug-ins; other schemes are looked up in the
``chatsvg_core.storage`` entry-point group, whose entries name a callable
``factory(url, **options)`` returning a :class:`~chatsvg_core.storage.Store`
(or an awaitable of one). Drivers are imported only when their scheme is
opened, so a missing optional extra surfaces here as a
:class:`~chatsvg_core.errors.ConfigurationError` naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from chatsvg_core.errors import ConfigurationError
from chatsvg_core.storage._protocol import Store

__all__ = ["ENTRY_POINT_GROUP", "SCHEMES", "open_storage"]

ENTRY_POINT_GROUP = "chatsvg_core.storage"
"""Third-party backends register ``scheme = "package.module:factory"`` here."""

Factory = Callable[..., Store | Awaitable[Store]]


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


_SQLITE_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "busy_timeout": float,
    "synchronous": str.lower,
    "auto_migrate": _bool,
}
_POSTGRES_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "schema": str,
    "min_size": int,
    "max_size": int,
    "pool_timeout": float,
    "check_connection": _bool,
    "auto_migrate": _bool,
}


def _split_options(
    url: str, known: Mapping[str, Callable[[str], Any]]
) -> tuple[str, dict[str, Any]]:
    """Take our own options out of the URL's query; the rest stays in the URL."""
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in known:
            try:
                ours[name] = known[name](value)
            except ValueError as exc:
                raise ConfigurationError(
                    f"bad value for storage option {name}: {value!r}", option=name
                ) from exc
        else:
            rest.append((name, value))
    # Rebuilt by hand: urlunsplit would drop the empty host of sqlite:////abs.
    base = url.split("?", 1)[0]
    return (f"{base}?{urlencode(rest)}" if rest else base), ours


async def _open_memory(url: str, **options: Any) -> Store:
    from chatsvg_core.storage.memory import MemoryStore

    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/") or parts.query or options:
        raise ConfigurationError("the memory URL is just memory://, with no options", url=url)
    store: Store = MemoryStore()
    return store


async def _open_sqlite(url: str, **options: Any) -> Store:
    from chatsvg_core.storage.sqlite import SQLiteStore

    bare, ours = _split_options(url, _SQLITE_OPTIONS)
    parts = urlsplit(bare)
    if parts.query:
        raise ConfigurationError(
            f"unknown SQLite URL options: {parts.query}", url=url, known=sorted(_SQLITE_OPTIONS)
        )
    # SQLAlchemy's convention: sqlite:///relative.db and sqlite:////absolute.db.
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ConfigurationError(
            "a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db",
            url=url,
        )
    return await SQLiteStore.open(parts.path[1:], **{**ours, **options})


async def _open_postgres(url: str, **options: Any) -> Store:
    try:
        from chatsvg_core.storage.postgres import PostgresStore
    except ImportError as exc:  # pragma: no cover - the module raises ConfigurationError
        raise ConfigurationError(
            "the PostgreSQL backend needs the 'postgres' extra: "
            "pip install 'chatsvg-core[postgres]'",
            extra="postgres",
        ) from exc
    bare, ours = _split_options(url, _POSTGRES_OPTIONS)
    return await PostgresStore.open(bare, **{**ours, **options})


SCHEMES: Mapping[str, Callable[..., Awaitable[Store]]] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}
"""Built-in URL schemes and the coroutine that opens each."""


def _plugin(scheme: str) -> Factory | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            try:
                loaded: Factory = ep.load()
            except ImportError as exc:
                raise ConfigurationError(
                    f"the storage plug-in for {scheme}:// failed to import: {exc}",
                    scheme=scheme,
                    entry_point=ep.value,
                ) from exc
            return loaded
    return None


async def open_storage(url: str, *, migrate: bool = True, **options: Any) -> Store:
    """Open the store a URL names; ``options`` override the URL's query options.

    With ``migrate=False`` the schema is only checked, never written: a
    database that is empty or behind raises
    :class:`~chatsvg_core.errors.IncompatibleStorage` (its ``version`` and
    ``latest`` fields say how far behind), so read-only tools and deploys
    that migrate as a separate step (``chatsvg migrate``) never change it.
    The memory store has no schema and ignores it.

    URLs:

    * ``memory://`` — :class:`~chatsvg_core.storage.memory.MemoryStore`.
    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with
      optional ``?busy_timeout=10&synchronous=full&auto_migrate=true``.
    * ``postgresql://user@host:5432/db`` (or ``postgres://``), with optional
      ``?schema=chatsvg&min_size=1&max_size=10&pool_timeout=30`` plus any libpq
      parameter (``sslmode=require``...), which is passed to the driver.
    * ``<scheme>://...`` of a plug-in registered in the ``chatsvg_core.storage``
      entry-point group.

    Raises:
        ConfigurationError: unknown scheme, bad option, or a missing extra
            (the message names the extra to install).
        StorageUnavailable: the database cannot be reached.
        IncompatibleStorage: the database is not ours or its schema is newer.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError("a storage URL looks like scheme://...", url=url)
    scheme = scheme.lower()
    if not migrate and scheme != "memory":
        # Plug-ins only see the option when it differs from the default.
        options = {**options, "auto_migrate": False}
    builtin = SCHEMES.get(scheme)
    if builtin is not None:
        return await builtin(url, **options)
    factory = _plugin(scheme)
    if factory is None:
        raise ConfigurationError(
            f"no storage backend for {scheme}://",
            scheme=scheme,
            known=sorted(SCHEMES),
            entry_point_group=ENTRY_POINT_GROUP,
        )
    result = factory(url, **options)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, Store):
        raise ConfigurationError(
            f"the storage plug-in for {scheme}:// returned {type(result).__name__}, not a Store",
            scheme=scheme,
        )
    return result
