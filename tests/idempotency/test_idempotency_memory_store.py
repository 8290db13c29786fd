"""The idempotency conformance checks, run on the in-memory reference store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from chatsvg_core.storage import MemoryStore, Store
from chatsvg_core.testing import IDEMPOTENCY_CHECKS


async def memory_store() -> Store:
    return MemoryStore()


@pytest.mark.parametrize("check", IDEMPOTENCY_CHECKS, ids=lambda c: c.__name__)
async def test_idempotency_check_on_memory_store(
    check: Callable[[Callable[[], Awaitable[Store]]], Awaitable[None]],
) -> None:
    await check(memory_store)
