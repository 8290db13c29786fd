"""Replay/conflict semantics: the pure decision, create_or_replay on the memory store,
a stateful model of keys over time, and proof that the conformance checks catch broken stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chatsvg_core.errors import IdempotencyConflict, InvalidIdempotencyKey, JobNotFound
from chatsvg_core.idempotency import (
    DEFAULT_TTL,
    Created,
    Replayed,
    create_or_replay,
    decide,
    idempotency_scope,
    prune_expired,
    request_hash,
)
from chatsvg_core.jobs import Job, JobErrorInfo, claim, fail, new_job
from chatsvg_core.storage import IdempotencyRecord, MemoryStore, Store
from chatsvg_core.testing import (
    check_concurrent_conflicting_submits,
    check_concurrent_same_submits,
    check_expired_key_reusable,
    check_rollback_frees_key,
    check_sequential_semantics,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(job_id: str = "j1", request_hash: str = "v1:aa", **changes: Any) -> IdempotencyRecord:
    fields: dict[str, Any] = {
        "scope": "5:alice",
        "key": "k",
        "request_hash": request_hash,
        "job_id": job_id,
        "created_at": T0,
        "expires_at": T0 + DEFAULT_TTL,
    }
    fields.update(changes)
    return IdempotencyRecord(**fields)


def make_job(job_id: str, payload: dict[str, Any], *, scope: str, key: str = "k") -> Job:
    return new_job(
        job_id=job_id,
        owner="alice",
        request=payload,
        request_hash=request_hash(payload, scope=scope),
        now=T0,
        idempotency_key=key,
    )


# --- decide ------------------------------------------------------------------------


def test_decide_created_when_our_record_won() -> None:
    mine = record("j1")
    outcome = decide(mine, mine)
    assert isinstance(outcome, Created)
    assert outcome.job_id == "j1"
    assert outcome.job is None


def test_decide_replayed_on_same_fingerprint() -> None:
    outcome = decide(record("j1"), record("j2", created_at=T0 + timedelta(hours=1)))
    assert isinstance(outcome, Replayed)
    assert outcome.job_id == "j1"
    assert outcome.record == record("j1")


def test_decide_conflict_on_other_fingerprint() -> None:
    with pytest.raises(IdempotencyConflict) as info:
        decide(record("j1", "v1:aa"), record("j2", "v1:bb"))
    assert info.value.fields == {"scope": "5:alice", "key": "k"}
    assert info.value.http_status == 422


def test_decide_refuses_records_of_two_keys_and_broken_stores() -> None:
    with pytest.raises(ValueError, match="one \\(scope, key\\)"):
        decide(record("j1"), record("j2", key="other"))
    with pytest.raises(ValueError, match="one \\(scope, key\\)"):
        decide(record("j1"), record("j2", scope="3:bob"))
    with pytest.raises(ValueError, match="fingerprint"):
        decide(record("j1", "v1:aa"), record("j1", "v1:bb"))


@given(
    existing_job=st.sampled_from(["j1", "j2"]),
    existing_hash=st.sampled_from(["v1:aa", "v1:bb"]),
    proposed_hash=st.sampled_from(["v1:aa", "v1:bb"]),
)
def test_decide_outcome_is_determined_by_job_id_and_hash(
    existing_job: str, existing_hash: str, proposed_hash: str
) -> None:
    existing, proposed = record(existing_job, existing_hash), record("j1", proposed_hash)
    if existing_job == "j1" and existing_hash != proposed_hash:
        with pytest.raises(ValueError, match="fingerprint"):
            decide(existing, proposed)
    elif existing_job == "j1":
        assert decide(existing, proposed) == Created(job_id="j1", record=existing)
    elif existing_hash == proposed_hash:
        assert decide(existing, proposed) == Replayed(job_id=existing_job, record=existing)
    else:
        with pytest.raises(IdempotencyConflict):
            decide(existing, proposed)


# --- create_or_replay on the reference store ------------------------------------------


async def test_created_then_replayed_whatever_the_jobs_state() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    payload = {"prompt": "fox"}
    async with store.transaction() as tx:
        first = await create_or_replay(
            tx, job=make_job("j1", payload, scope=scope), scope=scope, key="k", now=T0
        )
    assert isinstance(first, Created)
    assert first.job is not None
    assert first.job.id == "j1"
    assert first.record.expires_at == T0 + timedelta(hours=24)

    # The job runs and fails for good; a retry of the submit still gets it back.
    async with store.transaction() as tx:
        job = await tx.get_job("j1", for_update=True)
        assert job is not None
        running = claim(job, now=T0, worker_id="w", lease=timedelta(minutes=1))
        assert await tx.update_job(running, expected_version=job.version)
        failed = fail(
            running, now=T0, token=1, error=JobErrorInfo.from_exception(RuntimeError("boom"))
        )
        assert await tx.update_job(failed, expected_version=running.version)
    async with store.transaction() as tx:
        again = await create_or_replay(
            tx,
            job=make_job("j2", {"prompt": "fox"}, scope=scope),
            scope=scope,
            key="k",
            now=T0 + timedelta(hours=2),
        )
    assert isinstance(again, Replayed)
    assert again.job is not None
    assert again.job.id == "j1"
    assert again.job.status.value == "failed"
    async with store.transaction() as tx:
        assert await tx.get_job("j2") is None


async def test_invalid_key_is_refused_before_the_store_is_touched() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    async with store.transaction() as tx:
        with pytest.raises(InvalidIdempotencyKey):
            await create_or_replay(
                tx, job=make_job("j1", {}, scope=scope, key=" k"), scope=scope, key=" k", now=T0
            )
        assert await tx.prune_idempotency(T0 + timedelta(days=9), limit=10) == 0


async def test_argument_checks() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="ttl"):
            await create_or_replay(
                tx,
                job=make_job("j1", {}, scope=scope),
                scope=scope,
                key="k",
                now=T0,
                ttl=-DEFAULT_TTL,
            )
        with pytest.raises(ValueError, match="idempotency_key"):
            await create_or_replay(
                tx, job=make_job("j1", {}, scope=scope, key="a"), scope=scope, key="b", now=T0
            )
    with pytest.raises(ValueError, match="batch_size"):
        await prune_expired(store, now=T0, batch_size=0)


async def test_replay_of_a_vanished_job_is_job_not_found() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    job = make_job("j2", {"p": 1}, scope=scope)
    async with store.transaction() as tx:
        # A record whose job was deleted (e.g. by a host's retention job).
        await tx.claim_idempotency(record("gone", job.request_hash, scope=scope), now=T0)
    async with store.transaction() as tx:
        with pytest.raises(JobNotFound) as info:
            await create_or_replay(tx, job=job, scope=scope, key="k", now=T0)
    assert info.value.fields == {"job_id": "gone"}


async def test_custom_ttl_and_pruning_in_batches() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    ttl = timedelta(minutes=5)
    for i in range(7):
        async with store.transaction() as tx:
            await create_or_replay(
                tx,
                job=make_job(f"j{i}", {"i": i}, scope=scope, key=f"k{i}"),
                scope=scope,
                key=f"k{i}",
                now=T0,
                ttl=ttl,
            )
    assert await prune_expired(store, now=T0 + ttl - timedelta(seconds=1)) == 0
    assert await prune_expired(store, now=T0 + ttl, batch_size=3, max_batches=2) == 6
    assert await prune_expired(store, now=T0 + ttl, batch_size=3) == 1
    async with store.transaction() as tx:
        reused = await create_or_replay(
            tx,
            job=make_job("new", {"other": True}, scope=scope, key="k0"),
            scope=scope,
            key="k0",
            now=T0 + ttl,
            ttl=ttl,
        )
    assert isinstance(reused, Created)


# --- a stateful model: keys, scopes, time, pruning ---------------------------------------


class KeysOverTime(RuleBasedStateMachine):
    """MemoryStore + create_or_replay against a dict model of live keys."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = MemoryStore()
        self.now = T0
        self.ttl = timedelta(minutes=10)
        self.model: dict[tuple[str, str], tuple[str, str, datetime]] = {}
        self.jobs: set[str] = set()
        self.counter = 0

    def run(self, coro: Awaitable[Any]) -> Any:
        async def wrap() -> Any:
            return await coro

        return self.loop.run_until_complete(wrap())

    @rule(
        owner=st.sampled_from(["alice", "bob"]),
        operation=st.sampled_from([None, "generate"]),
        key=st.sampled_from(["k1", "k2"]),
        payload=st.sampled_from([{"p": 1}, {"p": 2}, {"p": 1.0}]),
    )
    def submit(self, owner: str, operation: str | None, key: str, payload: dict[str, Any]) -> None:
        scope = idempotency_scope(owner, operation)
        self.counter += 1
        job = new_job(
            job_id=f"job-{self.counter}",
            owner=owner,
            request=payload,
            request_hash=request_hash(payload, scope=scope),
            now=self.now,
            idempotency_key=key,
        )

        async def go() -> Created | Replayed:
            async with self.store.transaction() as tx:
                return await create_or_replay(
                    tx, job=job, scope=scope, key=key, now=self.now, ttl=self.ttl
                )

        live = self.model.get((scope, key))
        if live is not None and live[2] <= self.now:
            live = None
        if live is None:
            outcome = self.run(go())
            assert isinstance(outcome, Created)
            assert outcome.job_id == job.id
            self.model[(scope, key)] = (job.request_hash, job.id, self.now + self.ttl)
            self.jobs.add(job.id)
        elif live[0] == job.request_hash:
            outcome = self.run(go())
            assert isinstance(outcome, Replayed)
            assert outcome.job_id == live[1]
        else:
            with pytest.raises(IdempotencyConflict):
                self.run(go())

    @rule(minutes=st.integers(min_value=1, max_value=12))
    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @precondition(lambda self: bool(self.model))
    @rule()
    def prune(self) -> None:
        expired = {k for k, v in self.model.items() if v[2] <= self.now}
        assert self.run(prune_expired(self.store, now=self.now, batch_size=2)) == len(expired)
        for k in expired:
            del self.model[k]

    @invariant()
    def jobs_are_exactly_the_created_ones(self) -> None:
        async def stored() -> set[str]:
            async with self.store.transaction() as tx:
                found: set[str] = set()
                for owner in ("alice", "bob"):
                    found |= {j.id for j in await tx.list_jobs(owner=owner, limit=1000)}
                return found

        assert self.run(stored()) == self.jobs

    def teardown(self) -> None:
        self.run(self.store.aclose())
        self.loop.close()


TestKeysOverTime = KeysOverTime.TestCase
TestKeysOverTime.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)


# --- the conformance checks catch broken stores ------------------------------------------


@dataclass
class BrokenStore:
    """A deliberately wrong store: each flag turns one promise off (never use this)."""

    atomic_claim: bool = True
    rollback: bool = True
    honour_expiry: bool = True

    def __post_init__(self) -> None:
        self.records: dict[tuple[str, str], IdempotencyRecord] = {}
        self.jobs: dict[str, Job] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BrokenStore]:
        records, jobs = dict(self.records), dict(self.jobs)
        try:
            yield self
        except BaseException:
            if self.rollback:
                self.records, self.jobs = records, jobs
            raise

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, now: datetime
    ) -> IdempotencyRecord:
        existing = self.records.get((record.scope, record.key))
        if not self.atomic_claim:
            await anyio.lowlevel.checkpoint()  # check-then-act with a gap
        live = existing is not None and (existing.expires_at > now or not self.honour_expiry)
        if existing is not None and live:
            return existing
        self.records[(record.scope, record.key)] = record
        return record

    async def insert_job(self, job: Job) -> None:
        self.jobs[job.id] = job

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        return self.jobs.get(job_id)

    async def list_jobs(self, *, owner: str | None = None, limit: int = 100) -> Sequence[Job]:
        return [j for j in self.jobs.values() if owner is None or j.owner == owner][:limit]

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        dead = [k for k, r in self.records.items() if r.expires_at <= now][:limit]
        for k in dead:
            del self.records[k]
        return len(dead)

    async def aclose(self) -> None:
        pass


def factory(**flags: bool) -> Callable[[], Awaitable[Store]]:
    async def make() -> Store:
        return BrokenStore(**flags)  # type: ignore[return-value]

    return make


async def test_the_broken_store_double_passes_when_nothing_is_broken() -> None:
    for check in (check_sequential_semantics, check_rollback_frees_key, check_expired_key_reusable):
        await check(factory())
    await check_concurrent_same_submits(factory())
    await check_concurrent_conflicting_submits(factory())


async def test_checks_catch_a_racy_claim() -> None:
    with pytest.raises(AssertionError, match="expected 1 Created"):
        await check_concurrent_same_submits(factory(atomic_claim=False))
    with pytest.raises(AssertionError, match="expected 1 Created"):
        await check_concurrent_conflicting_submits(factory(atomic_claim=False))


async def test_checks_catch_a_claim_that_survives_rollback() -> None:
    with pytest.raises(AssertionError, match="rolled-back claim"):
        await check_rollback_frees_key(factory(rollback=False))


async def test_checks_catch_keys_that_never_expire() -> None:
    with pytest.raises(AssertionError, match="expired key was not reusable"):
        await check_expired_key_reusable(factory(honour_expiry=False))


# --- the unvalidated constructions of a submit ---------------------------------------


def _built_or_refused(make: Any) -> tuple[str, Any]:
    try:
        model = make()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return "error", type(exc).__name__
    return "model", (model, model.model_dump(), type(model))


_WHEN = st.sampled_from(
    [
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 1),
        datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=1))),
    ]
)


_RECORD_SPOILS: list[tuple[str, Any]] = [
    *(("scope", v) for v in ["", "s" * 512, "s" * 513, 7]),
    *(("key", v) for v in ["", "k" * 255, "k" * 256, None]),
    *(("request_hash", v) for v in [None, b"h", ""]),
    *(("job_id", v) for v in [None, 3, ""]),
    *(("created_at", v) for v in [datetime(2026, 3, 1), "2026-03-01T00:00:00Z"]),
    *(
        ("expires_at", v)
        for v in [datetime(2026, 3, 1), datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=1)))]
    ),
]


@pytest.mark.parametrize("spoil", [None, *_RECORD_SPOILS], ids=repr)
@settings(max_examples=30)
@given(
    scope=st.text(min_size=1, max_size=8),
    key=st.text(min_size=1, max_size=8),
    request_hash=st.text(max_size=4),
    job_id=st.text(max_size=4),
    created_at=_WHEN,
    expires_at=_WHEN,
)
def test_record_equals_validation(
    spoil: tuple[str, Any] | None,
    scope: Any,
    key: Any,
    request_hash: Any,
    job_id: Any,
    created_at: Any,
    expires_at: Any,
) -> None:
    from chatsvg_core.idempotency._semantics import record

    fields = {
        "scope": scope,
        "key": key,
        "request_hash": request_hash,
        "job_id": job_id,
        "created_at": created_at,
        "expires_at": expires_at,
    }
    if spoil is not None:
        fields[spoil[0]] = spoil[1]
    assert _built_or_refused(lambda: record(**fields)) == _built_or_refused(
        lambda: IdempotencyRecord(**fields)
    )


@given(st.sampled_from(["same", "replay", "conflict"]), st.text(min_size=1, max_size=4))
def test_outcomes_equal_the_validated_models(case: str, job_id: str) -> None:
    from chatsvg_core.idempotency._semantics import _outcome

    now = datetime(2026, 3, 1, tzinfo=UTC)
    mine = IdempotencyRecord(
        scope="s", key="k", request_hash="h", job_id=job_id, created_at=now, expires_at=now
    )
    theirs = mine.model_copy(update={"job_id": job_id + "x"})
    if case == "conflict":
        theirs = theirs.model_copy(update={"request_hash": "other"})
    existing = mine if case == "same" else theirs
    try:
        outcome = decide(existing, mine)
    except IdempotencyConflict:
        assert case == "conflict"
        return
    expected = (
        Created(job_id=job_id, record=mine)
        if case == "same"
        else Replayed(job_id=existing.job_id, record=existing)
    )
    assert outcome == expected and type(outcome) is type(expected)
    assert outcome.model_dump() == expected.model_dump()
    job = new_job(job_id=job_id, owner="o", request={}, request_hash="h", now=now)
    with_job = _outcome(type(outcome), outcome.outcome, outcome.job_id, outcome.record, job)
    assert with_job == expected.model_copy(update={"job": job})
    assert with_job.model_dump() == expected.model_copy(update={"job": job}).model_dump()


class _HostRecord(IdempotencyRecord):
    """A record subclass, as a host's own store might hand back."""


class _HostJob(Job):
    """A job subclass, as a host's own store might hand back."""


def _sample_record(cls: type[IdempotencyRecord] = IdempotencyRecord) -> IdempotencyRecord:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return cls(
        scope="alice",
        key="k-1",
        request_hash="h",
        job_id="job-1",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )


@pytest.mark.parametrize("outcome_cls", ["created", "replayed"])
@pytest.mark.parametrize("record_cls", [IdempotencyRecord, _HostRecord])
def test_outcomes_equal_their_models_and_plain_ones_skip_validation(
    monkeypatch: pytest.MonkeyPatch, outcome_cls: str, record_cls: type[IdempotencyRecord]
) -> None:
    # _outcome builds without validation for the library's own exact
    # types and fall back to the model for anything else (a host store's subclass):
    # both ways must make what the model makes, and the plain way must not validate.
    from chatsvg_core.idempotency import _semantics as sem

    cls = sem.Created if outcome_cls == "created" else sem.Replayed
    existing = _sample_record(record_cls)
    want = cls(job_id="job-1", record=existing)
    job_cls = Job if record_cls is IdempotencyRecord else _HostJob
    job = job_cls.model_validate(
        new_job(
            job_id="job-1",
            owner="alice",
            request={"prompt": "p"},
            request_hash="h",
            now=existing.created_at,
        ).model_dump()
    )
    with monkeypatch.context() as patch:
        if record_cls is IdempotencyRecord:

            def refuse(*args: object, **kwargs: object) -> None:
                raise AssertionError("a plain outcome went through validation")

            patch.setattr(cls, "__init__", refuse)
            patch.setattr(cls, "model_copy", refuse)
        got = sem._outcome(cls, outcome_cls, "job-1", existing)
        with_job = sem._outcome(cls, outcome_cls, "job-1", existing, job)
    assert got == want
    assert got.record is existing and got.job_id == "job-1" and got.job is None
    assert with_job == want.model_copy(update={"job": job})
    assert with_job.job is job and with_job.record is existing


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"scope": "s"},
        {"scope": "s" * 512},
        {"key": "k"},
        {"key": "k" * 255},
        {"request_hash": ""},
        {"job_id": "j"},
    ],
    ids=repr,
)
def test_plain_records_skip_validation_and_equal_the_model(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, object]
) -> None:
    # record() builds the library's own plain values without validation (every
    # submit makes one); at the edges of each range too, and equal to the model.
    from chatsvg_core.idempotency import _semantics as sem

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    fields: dict[str, Any] = {
        "scope": "alice",
        "key": "k-1",
        "request_hash": "h",
        "job_id": "job-1",
        "created_at": now,
        "expires_at": now + timedelta(hours=1),
        **change,
    }
    want = IdempotencyRecord(**fields)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a plain record went through validation")

    with monkeypatch.context() as patch:
        patch.setattr(IdempotencyRecord, "__init__", refuse)
        got = sem.record(**fields)
    assert got == want
    assert got.model_dump() == want.model_dump()


@pytest.mark.parametrize("outcome_cls", ["created", "replayed"])
def test_an_outcome_of_a_record_given_as_a_mapping_is_validated(outcome_cls: str) -> None:
    # Only the library's exact record skips validation: anything else (here a
    # mapping, as a loosely typed host store might hand back) becomes the model.
    from chatsvg_core.idempotency import _semantics as sem

    cls = sem.Created if outcome_cls == "created" else sem.Replayed
    existing = _sample_record()
    got = sem._outcome(cls, outcome_cls, "job-1", existing.model_dump())  # type: ignore[arg-type]
    assert type(got.record) is IdempotencyRecord
    assert got == cls(job_id="job-1", record=existing)
