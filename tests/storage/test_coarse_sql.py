"""The coarse job statements are the state machine's transitions, written as SQL.

``claim_due`` (one ``UPDATE ... RETURNING``), ``succeed_job`` and
``succeed_held`` (one statement each on PostgreSQL) carry the guard of ``claim`` and ``succeed`` in
their ``WHERE`` and the effect in their ``SET``. The rules are written once,
in :mod:`chatsvg_core.jobs`; these properties run the statements on every
job shape the state machine reaches, on the real databases, and check each
answer and each stored row against the pure transition function: the same
job where the transition allows it, nothing written where it refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import InvalidTransition
from chatsvg_core.jobs import Job, claim, succeed
from chatsvg_core.storage import JobResult, Store, claim_next, claim_next_reference
from chatsvg_core.storage._sql import SQLTransaction, _loads
from chatsvg_core.testing.strategies import reachable_jobs

from ._sqlhelpers import fresh_postgres, fresh_sqlite

LEASE = timedelta(seconds=30)
OFFSETS = st.tuples(
    st.sampled_from(["updated_at", "run_at", "lease_expires_at"]),
    st.sampled_from([-3600, -1, 0, 1, 29, 30, 31, 120, 3600]),
)
"""When the statement runs: seconds from one of the job's times (edges included)."""


def _at(job: Job, offset: tuple[str, int]) -> datetime:
    base = getattr(job, offset[0]) or job.updated_at
    assert isinstance(base, datetime)
    return base + timedelta(seconds=offset[1])


class _Undo(Exception):
    """Raised at the end of each example: its transaction rolls back, the table stays empty."""


@asynccontextmanager
async def _store(kind: str, url: str | None) -> AsyncIterator[Store]:
    if kind == "sqlite":
        async with fresh_sqlite(synchronous="normal") as store:
            yield store
    else:
        assert url is not None
        async with fresh_postgres(url, max_size=1) as store:
            yield store


def _in_rollback(store: Store, body: Callable[[SQLTransaction], Awaitable[None]]) -> None:
    async def run() -> None:
        try:
            async with store.transaction() as tx:
                assert isinstance(tx, SQLTransaction)
                await body(tx)
                raise _Undo
        except _Undo:
            pass

    asyncio.get_event_loop().run_until_complete(run())


def _expected(action: Callable[[], Job]) -> Job | None:
    try:
        return action()
    except InvalidTransition:
        return None


def _check_claim(store: Store, job: Job, offset: tuple[str, int], by_id: bool) -> None:
    now = _at(job, offset)
    want = _expected(lambda: claim(job, now=now, worker_id="w9", lease=LEASE))

    async def body(tx: SQLTransaction) -> None:
        await tx.insert_job(job)
        got = await tx.claim_due(
            now, worker_id="w9", lease_expires_at=now + LEASE, job_id=job.id if by_id else None
        )
        assert got == want
        assert await tx.get_job(job.id) == (want or job)

    _in_rollback(store, body)


def _check_succeed(store: Store, job: Job, offset: tuple[str, int], token: int) -> None:
    now = _at(job, offset)
    want = _expected(lambda: succeed(job, now=now, token=token, result_ref=job.id))
    result = JobResult(job_id=job.id, svg="<svg/>", metadata={"m": [1, "x"]}, created_at=now)

    async def body(tx: SQLTransaction) -> None:
        await tx.insert_job(job)
        got = await tx.succeed_job(job.id, token=token, now=now, result=result)
        if want is None:
            assert got is None
            assert await tx.get_result(job.id) is None
        else:
            assert got == (want, result)
            assert await tx.get_result(job.id) == result
        assert await tx.get_job(job.id) == (want or job)

    async def by_version(tx: SQLTransaction) -> None:
        await tx.insert_job(job)
        got = await tx.succeed_held(job.id, token=token, now=now, result=result)
        if want is None:
            assert got is None
            assert await tx.get_result(job.id) is None
        else:
            assert got == (want.version, result)
            assert await tx.get_result(job.id) == result
        assert await tx.get_job(job.id) == (want or job)

    _in_rollback(store, body)
    _in_rollback(store, by_version)


_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_PG_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def sqlite_store() -> Iterator[Store]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    context = _store("sqlite", None)
    store = loop.run_until_complete(context.__aenter__())
    yield store
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    context = _store("postgres", postgres_url)
    store = loop.run_until_complete(context.__aenter__())
    yield store
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()
    asyncio.set_event_loop(None)


@_SETTINGS
@given(job=reachable_jobs(), offset=OFFSETS, by_id=st.booleans())
def test_claim_statement_is_the_claim_transition_sqlite(
    sqlite_store: Store, job: Job, offset: tuple[str, int], by_id: bool
) -> None:
    _check_claim(sqlite_store, job, offset, by_id)


@_SETTINGS
@given(job=reachable_jobs(), offset=OFFSETS)
def test_succeed_statement_is_the_succeed_transition_sqlite(
    sqlite_store: Store, job: Job, offset: tuple[str, int]
) -> None:
    current = job.lease_token or job.attempt or 1
    for token in sorted({max(1, current - 1), current, current + 1}):
        _check_succeed(sqlite_store, job, offset, token)


@pytest.mark.postgres
@_PG_SETTINGS
@given(job=reachable_jobs(), offset=OFFSETS, by_id=st.booleans())
def test_claim_statement_is_the_claim_transition_postgres(
    postgres_store: Store, job: Job, offset: tuple[str, int], by_id: bool
) -> None:
    _check_claim(postgres_store, job, offset, by_id)


@pytest.mark.postgres
@_PG_SETTINGS
@given(job=reachable_jobs(), offset=OFFSETS)
def test_succeed_statement_is_the_succeed_transition_postgres(
    postgres_store: Store, job: Job, offset: tuple[str, int]
) -> None:
    current = job.lease_token or job.attempt or 1
    for token in sorted({max(1, current - 1), current, current + 1}):
        _check_succeed(postgres_store, job, offset, token)


@pytest.mark.parametrize("by_id", [False, True])
def test_a_claimed_row_no_transition_could_write_is_refused(
    sqlite_store: Store, by_id: bool
) -> None:
    # A QUEUED row holding a result (written behind the library's back): the
    # claim's decode refuses it, as the full row decode does.
    from chatsvg_core.testing.conformance._base import T0
    from chatsvg_core.testing.conformance._base import job as a_job

    async def body(tx: SQLTransaction) -> None:
        await tx.insert_job(a_job("bad", now=T0))
        await tx._exec("UPDATE chatsvg_jobs SET result_ref = 'bad' WHERE id = 'bad'")
        with pytest.raises(ValueError, match="result_ref is set exactly when SUCCEEDED"):
            await tx.claim_due(
                T0, worker_id="w", lease_expires_at=T0 + LEASE, job_id="bad" if by_id else None
            )

    _in_rollback(sqlite_store, body)


def test_claim_next_takes_the_reference_order(sqlite_store: Store) -> None:
    # Several due jobs: the statement picks the one next_due_job would.
    from chatsvg_core.testing.conformance._base import T0
    from chatsvg_core.testing.conformance._base import job as a_job

    async def body(tx: SQLTransaction) -> None:
        for i, delay in enumerate([5, 0, 0, 60]):
            await tx.insert_job(a_job(f"j{i}", now=T0, run_at=T0 + timedelta(seconds=delay)))
        now = T0 + timedelta(seconds=10)
        order = []
        while (got := await claim_next(tx, now=now, worker_id="w", lease=LEASE)) is not None:
            order.append(got.id)
        assert order == ["j1", "j2", "j0"]

    _in_rollback(sqlite_store, body)
    _ = claim_next_reference  # the specification it follows (conformance compares both)


class _Decoder:
    """A transaction's time decoding, for calling ``SQLTransaction._claimed`` on a row."""

    def _dt(self, value: object) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))  # type: ignore[call-overload]


_JSON_TEXTS = st.one_of(
    st.builds(
        lambda value: json.dumps(value, sort_keys=True, separators=(",", ":")),
        st.dictionaries(st.text(max_size=4), st.none() | st.integers() | st.text(max_size=6)),
    ),
    st.builds(
        lambda value, pad: pad + json.dumps(value) + pad,
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
        st.sampled_from(["", " ", "\n"]),
    ),
    st.text(max_size=12),
    st.sampled_from(['{"a":1}x', '{"a":1} ', "", "{", "[1]", '"s"', "null", "NaN", '{"a":NaN}']),
    st.sampled_from([b'{"a":1}', None, 5]),
)


@given(_JSON_TEXTS)
@settings(max_examples=300)
def test_a_claimed_rows_request_is_decoded_as_loads_decodes_it(text: object) -> None:
    # The claim decodes the request's JSON as _loads does: the same value,
    # or the same error.
    row = ("j1", "o", 1, 3, 5, text, "h", None, None, None, 1, 5, None)
    now = datetime(2026, 1, 1, 1, tzinfo=UTC)

    def claimed() -> Job:
        return SQLTransaction._claimed(_Decoder(), row, "w", now, now)  # type: ignore[arg-type]

    try:
        want = _loads(text)
    except Exception as exc:
        with pytest.raises(type(exc)):
            claimed()
        return
    try:
        got = claimed().request
    except Exception:
        # _loads accepted a value the Job's request cannot hold: built() does
        # not check it, so only a dict comes back here.
        assert not isinstance(want, dict)
        return
    assert repr(got) == repr(want)  # repr: NaN is not equal to itself
    assert type(got) is type(want)
