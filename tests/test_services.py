"""The service-availability mechanism itself, exercised against real servers."""

from __future__ import annotations

import psycopg


def test_postgres_select_one(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        row = conn.execute("select 1").fetchone()
    assert row == (1,)
