"""A wrong PostgreSQL URL fails at once, permanently, saying why (not a 30 s transient hang)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from chatsvg_core import ConfigurationError, open_storage

pytestmark = pytest.mark.postgres


def _with(url: str, *, netloc: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, path=path or parts.path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cases(url: str) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return [
        ("missing_database", _with(url, path="/chatsvg_no_such_database")),
        ("connection_refused", _with(url, netloc=f"postgres@{host}:{_free_port()}")),
        ("bad_credentials", _with(url, netloc=f"chatsvg_no_such_role:pw@{host}:{parts.port}")),
    ]


@pytest.mark.parametrize("cause", ["missing_database", "connection_refused", "bad_credentials"])
async def test_a_wrong_url_fails_fast_with_a_permanent_typed_cause(
    postgres_url: str, cause: str
) -> None:
    url = dict(_cases(postgres_url))[cause]
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as err:
        await open_storage(url)
    assert time.monotonic() - started < 5
    assert err.value.cause == cause
    assert not err.value.transient
    assert "pw" not in str(err.value) and "pw" not in repr(err.value.to_dict())
