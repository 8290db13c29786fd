"""The engine's fast submit is the reference submit (issue 15).

For a plain request the engine skips the request model, builds the job
without validation (``plain_new_job``), hashes the request with the C JSON
encoder (vouched flat) and, on the SQL stores, claims the key and inserts the
job in one store call. A subclass that overrides ``prepare`` and a
transaction without that call take the reference path: validation, the
dump, ``new_job``, ``claim_idempotency`` then ``insert_job``. On SQLite, for
any request (invalid ones included), owner and key, the two must return and
store the same job, bind keys that replay and refuse across the two paths,
and fingerprint as :func:`~chatsvg_core.idempotency.request_hash` does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatsvg_core import Engine, GenerationRequest
from chatsvg_core.errors import ChatSVGError
from chatsvg_core.idempotency import idempotency_scope, request_hash
from chatsvg_core.jobs import Job
from chatsvg_core.storage import Store, StoreTransaction
from chatsvg_core.storage._sql import LIVE_KEY, SQLTransaction
from chatsvg_core.storage.sqlite import SQLiteStore
from chatsvg_core.testing import FakeClock

from ._support import ScriptedProvider

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _Fine:
    """A SQL transaction seen without its one-call claim and insert."""

    _insert_keyed_job = None

    def __init__(self, tx: StoreTransaction) -> None:
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class _FineStore:
    """The store, handing out :class:`_Fine` transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self._store.transaction() as tx:
            yield _Fine(tx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _Reference(Engine):
    """An engine whose overridden ``prepare`` turns the plain-request path off."""

    def prepare(self, request: GenerationRequest | Any) -> GenerationRequest:
        return super().prepare(request)


def _ids(prefix: str) -> Callable[[], str]:
    count = itertools.count()
    return lambda: f"{prefix}-{next(count)}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    opened = loop.run_until_complete(SQLiteStore.open(tmp_path / "store.db", synchronous="normal"))
    yield opened
    loop.run_until_complete(opened.aclose())
    loop.close()
    asyncio.set_event_loop(None)


_REQUESTS = st.fixed_dictionaries(
    {"prompt": st.text(max_size=30) | st.sampled_from(["a cat", ' a "cat"\n', "é\x7f😀", ""])},
    optional={
        "style": st.none() | st.sampled_from(["flat", "line-art", "Flat"]),
        "width": st.integers(15, 4097),
        "height": st.sampled_from([16, 512, 4096]),
        "detail": st.sampled_from(["simple", "standard", "detailed", "medium"]),
        "model": st.none() | st.sampled_from(["gpt-4o", "m\n"]),
    },
)
_OWNERS = st.text(min_size=1, max_size=12) | st.sampled_from(["alice", "ü", "a:b/1:c"])
_COUNTER = itertools.count()


class _Str(str):
    """A host's own string type: the validators pass it through."""


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", asyncio.get_event_loop().run_until_complete(run())
    except ChatSVGError as exc:
        return "error", (type(exc), exc.fields)


def _same_but_id(a: Job, b: Job) -> None:
    ignore = {"id", "idempotency_key"}
    assert {k: v for k, v in a.__dict__.items() if k not in ignore} == {
        k: v for k, v in b.__dict__.items() if k not in ignore
    }
    assert [(k, type(v)) for k, v in a.__dict__.items()] == [
        (k, type(v)) for k, v in b.__dict__.items()
    ]


@given(request=_REQUESTS, owner=_OWNERS, other=_REQUESTS)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(request={"prompt": "a cat"}, owner="alice", other={"prompt": "a dog"})
@example(request={"prompt": "a cat"}, owner=_Str("alice"), other={"prompt": "a dog"})
def test_the_fast_submit_is_the_reference_submit(
    store: Store, request: dict[str, Any], owner: str, other: dict[str, Any]
) -> None:
    clock = FakeClock(T0)
    provider = ScriptedProvider([])
    n = next(_COUNTER)
    fast = Engine(store, None, provider, clock=clock, new_id=_ids(f"f{n}"))
    fine: Any = _FineStore(store)
    ref = _Reference(fine, None, provider, clock=clock, new_id=_ids(f"r{n}"))
    key_f, key_r = f"kf-{n}", f"kr-{n}"
    owner = type(owner)(f"{owner}{n}")
    if type(owner) is not str:  # the host's type for the key too
        key_f, key_r = _Str(key_f), _Str(key_r)

    got = _outcome(lambda: fast.submit(owner, key_f, request))
    want = _outcome(lambda: ref.submit(owner, key_r, request))
    assert got[0] == want[0]
    if got[0] == "error":
        assert got == want
        return
    made, expected = got[1], want[1]
    assert not made.replayed and not expected.replayed
    _same_but_id(made.job, expected.job)
    assert made.job.idempotency_key == key_f
    assert made.job.request_hash == request_hash(
        made.job.request, scope=idempotency_scope(owner, "generate")
    )

    async def stored(job_id: str) -> Job | None:
        async with store.transaction() as tx:
            assert isinstance(tx, SQLTransaction)
            return await tx.get_job(job_id)

    async def record(key: str) -> tuple[Any, ...] | None:
        async with store.transaction() as tx:
            assert isinstance(tx, SQLTransaction)
            return await tx._one(LIVE_KEY, (idempotency_scope(owner, "generate"), key))

    loop = asyncio.get_event_loop()
    assert loop.run_until_complete(stored(made.job.id)) == made.job
    assert loop.run_until_complete(stored(expected.job.id)) == expected.job
    bound = loop.run_until_complete(record(key_f))
    reference = loop.run_until_complete(record(key_r))
    assert bound is not None and reference is not None
    assert (bound[3], bound[:1] + bound[2:3] + bound[4:]) == (
        made.job.id,
        reference[:1] + reference[2:3] + reference[4:],
    )

    # Each path replays and refuses the keys the other bound.
    for engine, key, job in ((fast, key_r, expected.job), (ref, key_f, made.job)):
        again = _outcome(lambda e=engine, k=key: e.submit(owner, k, request))  # type: ignore[misc]
        assert again[0] == "ok" and again[1].replayed and again[1].job == job
        refused = _outcome(lambda e=engine, k=key: e.submit(owner, k, other))  # type: ignore[misc]
        if refused[0] == "ok":  # the same request after validation, or the other one invalid
            assert refused[1].replayed and refused[1].job == job
        else:
            fresh = _outcome(lambda e=engine: e.submit(owner, None, other))  # type: ignore[misc]
            assert fresh[0] == "error" or refused[1][0].__name__ == "IdempotencyConflict"
