"""The engine: submit, process and recover, written once against the protocols."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

from chatsvg_core._clock import Clock, SystemClock, utc
from chatsvg_core._construct import hand_over_json
from chatsvg_core._logctx import JOB_FIELDS as _JOB_FIELDS
from chatsvg_core._logctx import job_log_context
from chatsvg_core._owner import validate_owner
from chatsvg_core._tasks import CURRENT_TASKS
from chatsvg_core.engine._events import (
    EVENT_LEVELS,
    EngineEvent,
    EventHook,
    EventKind,
    emit,
)
from chatsvg_core.engine._instrument import (
    NO_INSTRUMENTATION,
    NO_SCOPE,
    AttemptScope,
    Instrumentation,
    SubmitScope,
)
from chatsvg_core.engine._leases import LeaseKeeper
from chatsvg_core.engine._money import (
    capture_if_reserved,
    count_in_flight,
    give_back,
    unsettled_kinds,
)
from chatsvg_core.engine._validate import (
    check_job_id,
    parse_request,
    plain_jcs,
    plain_payload,
    stored_request,
)
from chatsvg_core.engine._wait import (
    FEED_SAFETY,
    POLL_FIRST,
    POLL_MAX,
    JobChangeFeed,
    JobUpdate,
    update_for,
)
from chatsvg_core.errors import (
    ConfigurationError,
    DailyCapExceeded,
    InFlightLimitExceeded,
    InsufficientCredits,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    SVGRejected,
    TransientError,
    UnknownAccount,
)
from chatsvg_core.generate import (
    Detail,
    GenerationRequest,
    Pricing,
    PromptPolicy,
    Provider,
    ProviderOutput,
    TokenUsage,
    extract_answer,
)
from chatsvg_core.generate._provider import PROGRESS_HOOK
from chatsvg_core.idempotency import validate_idempotency_key
from chatsvg_core.idempotency._canonical import hash_and_json_of_jcs, request_hash_and_json
from chatsvg_core.idempotency._semantics import bind_key, record, replay_or_refuse
from chatsvg_core.jobs import CANCELLED, Job, JobErrorInfo, JobStatus, claim, new_job
from chatsvg_core.jobs._transitions import plain_new_job
from chatsvg_core.ledger import DayBoundary, LedgerConflict, reserve
from chatsvg_core.ledger._ops import charge_for_job
from chatsvg_core.queues import JobQueue
from chatsvg_core.retry import GiveUp, RetryPolicy, get_on_retry_hooks
from chatsvg_core.sanitize import SanitizedSVG, SanitizePolicy, Sanitizer, is_blank
from chatsvg_core.storage import (
    EntryKind,
    IdempotencyRecord,
    JobPurger,
    JobResult,
    Store,
    StoreTransaction,
    cancel_job,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    retry_job,
)
from chatsvg_core.storage._sql import remember_request_json

__all__ = [
    "Checkpoint",
    "Engine",
    "OutcomeKind",
    "ProcessOutcome",
    "PurgeReport",
    "RecoveryReport",
    "SubmitResult",
]

log = logging.getLogger("chatsvg_core.engine")

Checkpoint = Callable[[str, str], Awaitable[None]]
"""``await checkpoint(step, job_id)`` at each named step of :meth:`Engine.process`.

Steps: ``claimed`` (claim + charge committed), ``generated`` (the model
answered and the SVG is sanitized, nothing written yet), ``finished`` (the
final transition committed). Crash tests pause or kill a worker here.
"""

OPERATION = "generate"
"""The idempotency operation name submits are scoped by."""
_SCOPE_TAIL: Final = f"/{len(OPERATION)}:{OPERATION}"
"""What ``idempotency_scope`` appends to an owner's part for :data:`OPERATION`."""

SANITIZE_INLINE_CHARS = 16 * 1024
"""Answers up to this length are sanitized on the event loop (a few ms); longer ones
on a worker thread, so one slow document cannot stall heartbeats and other jobs."""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What :meth:`Engine.submit` returns: the job, and whether the key replayed it."""

    job: Job
    replayed: bool


# SubmitResult's slots, set as its frozen __init__ sets them (see _submit).
_new = object.__new__
_SET_RESULT_JOB: Final = vars(SubmitResult)["job"].__set__
_SET_RESULT_REPLAYED: Final = vars(SubmitResult)["replayed"].__set__


@dataclass(slots=True)
class PurgeReport:
    """What one :meth:`Engine.purge` run deleted."""

    jobs: int = 0
    """Terminal jobs deleted, each with its result (if any)."""
    idempotency_records: int = 0
    """Expired idempotency records deleted."""
    batches: int = 0


@dataclass(slots=True)
class RecoveryReport:
    """What one :meth:`Engine.recover` pass did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)


class SubmitRateLimiter(Protocol):
    """What ``Engine(rate_limit=...)`` takes: ``SubmitRateLimit`` or a host's own."""

    async def check(self, owner: str, key: str | None = None) -> None:
        """Count one submit; raise ``RateLimited`` when over the limit."""
        ...


OutcomeKind = Literal[
    "succeeded",
    "retry_scheduled",
    "failed",
    "unknown",
    "taken",
    "not_due",
    "exhausted",
    "idle",
    "lease_lost",
]


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """What :meth:`Engine.run_once` did: ``kind`` (see there) and the job, if any."""

    kind: OutcomeKind
    job: Job | None


_REASON: ContextVar[list[str] | None] = ContextVar("chatsvg_process_reason", default=None)


def _note(reason: str) -> None:
    # Tells run_once why an attempt returned None; process() callers ignore it.
    box = _REASON.get()
    if box is not None:
        box.append(reason)


# Enum members read on every claim, as module constants: on Python 3.11 a
# member read through its class (JobStatus.FAILED) runs a descriptor written
# in Python, about a thousand instructions.
_CLAIMED: Final = EventKind.CLAIMED
_CHARGED: Final = EventKind.CHARGED
_GENERATED: Final = EventKind.GENERATED
_PROGRESS: Final = EventKind.PROGRESS
_SUCCEEDED: Final = EventKind.SUCCEEDED
_SUBMITTED: Final = EventKind.SUBMITTED
_FAILED: Final = JobStatus.FAILED
_RUNNING: Final = JobStatus.RUNNING


class _Reserved(Exception):
    """The claimed job was paid by a reservation at submit: nothing to charge."""


class _LeaseLost(Exception):
    """Raised inside a worker when its heartbeat learns the lease is gone."""


_UUID_KEEP: Final = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET: Final = (0x4 << 76) | (0x2 << 62)
_urandom = os.urandom


def _proposed(
    scope: str, key: str, job: Job, now: datetime, expires_at: datetime
) -> IdempotencyRecord:
    """The record a submit offers for its key: bound when it wins the key,
    compared with the live one when not."""
    return record(
        scope=scope,
        key=key,
        request_hash=job.request_hash,
        job_id=job.id,
        created_at=now,
        expires_at=expires_at,
    )


def _uuid() -> str:
    # uuid4().hex without the UUID object: 122 random bits, version 4 (the
    # high nibble of byte 6) and the RFC 4122 variant (the top two bits of
    # byte 8), as 32 hex digits, in one integer expression.
    # "%032x" % n: 1.2 k instructions fewer than the f-string's format spec.
    return "%032x" % (int.from_bytes(_urandom(16)) & _UUID_KEEP | _UUID_SET)


def _usage(usage: TokenUsage) -> dict[str, Any]:
    """``usage.model_dump(mode="json")``, without pydantic's serializer for the plain model."""
    if type(usage) is TokenUsage:
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    return usage.model_dump(mode="json")


_text = json.encoder.encode_basestring_ascii  # the C function _sql._dump's encoder calls
_float = float.__repr__  # how json writes a finite float
_int = int.__repr__  # and an int (not a subclass's __repr__)


def _metadata_json(metadata: dict[str, Any]) -> str | None:
    """``_sql._dump(metadata)`` for the metadata :meth:`Engine._generate` builds, or ``None``.

    Written directly (keys in sorted order, as ``_dump`` sorts them): the
    generic encoder cost a fifth of the finish's Python. Only for exact
    ``str``/``int``/``bool``/``None`` and finite ``float`` values, which is what
    ``plain_json`` vouches for; anything else (a host's provider returning a
    subclass, an infinite latency) is ``None``, and the store encodes it.
    tests/engine/test_finish_fast.py holds it equal to ``_dump``.
    """
    reason, latency = metadata["finish_reason"], metadata["latency_s"]
    model, provider = metadata["model"], metadata["provider"]
    changed, usage = metadata["sanitizer_changed"], metadata["usage"]
    if not (
        type(model) is str
        and type(provider) is str
        and type(latency) is float
        and latency - latency == 0.0  # finite (inf - inf and nan - nan are nan): no call
        and type(changed) is bool
        and (reason is None or type(reason) is str)
        and type(usage) is dict
        and len(usage) == 3
        and len(metadata) == 6
    ):
        return None
    # A missing key gives the dict itself: not int, not None. The three
    # counts read and checked in line (a loop building a list cost ~1.5 k).
    done = usage.get("completion_tokens", usage)
    asked = usage.get("prompt_tokens", usage)
    total = usage.get("total_tokens", usage)
    if not (
        (done is None or type(done) is int)
        and (asked is None or type(asked) is int)
        and (total is None or type(total) is int)
    ):
        return None
    return (
        f'{{"finish_reason":{"null" if reason is None else _text(reason)},'
        f'"latency_s":{_float(latency)},"model":{_text(model)},"provider":{_text(provider)},'
        f'"sanitizer_changed":{"true" if changed else "false"},'
        f'"usage":{{"completion_tokens":{"null" if done is None else _int(done)},'
        f'"prompt_tokens":{"null" if asked is None else _int(asked)},'
        f'"total_tokens":{"null" if total is None else _int(total)}}}}}'
    )


_REQUEST_FIELDS = tuple(GenerationRequest.model_fields)


def _payload(request: GenerationRequest) -> dict[str, Any]:
    """``request.model_dump(mode="json")``, without pydantic's serializer for the plain
    model, whose fields are text, integers, ``None`` and one enum (property test)."""
    if type(request) is not GenerationRequest:
        return request.model_dump(mode="json")
    values = request.__dict__
    out: dict[str, Any] = {}
    for name in _REQUEST_FIELDS:
        value = values[name]
        kind = type(value)
        if kind is str or kind is int or value is None:
            out[name] = value
        elif kind is Detail:
            out[name] = value.value
        else:
            return request.model_dump(mode="json")
    return out


@contextlib.asynccontextmanager
async def _no_feed() -> AsyncIterator[asyncio.Event | None]:
    yield None


@functools.cache
def _takes_attempt(queue_type: type[JobQueue]) -> bool:
    """Whether ``queue_type.enqueue`` accepts ``attempt`` (adapters older than it do not)."""
    try:
        params = inspect.signature(queue_type.enqueue).parameters
    except (TypeError, ValueError):
        return False
    return "attempt" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class Engine:
    """Ties the state machine, idempotency, ledger, retries, provider and sanitizer together.

    Args:
        store: the storage backend (jobs, idempotency records, ledger, results).
        queue: where due job ids are announced; ``None`` for hosts that only
            poll (``process_next``) or drive ``process`` themselves.
        provider: the model provider.
        policy: the job-level retry policy (re-enqueue delays, attempts); its
            ``max_attempts`` becomes each new job's ``max_attempts``.
        call_policy: the in-process retry policy around one provider call;
            default: the same rules with at most 2 tries, so short blips are
            absorbed without spending a job attempt.
        sanitizer_policy: how the model's SVG is sanitized (default preset).
        pricing: what a request costs.
        prompt_policy: prompt validation and normalisation rules.
        clock: the time source (inject a ``FakeClock`` in tests).
        lease: how long a claim lasts before recovery may take the job back.
        heartbeat_every: seconds between lease extensions while generating
            (default: a third of the lease). One keeper per process extends
            every lease it holds with one statement per interval.
        idempotency_ttl: how long a client key stays bound to its job.
        daily_cap: credits one owner may spend per day (``None``: no cap), or
            a callable ``owner -> cap``.
        day: where a day begins for caps (UTC midnight by default).
        on_event: one hook that sees every transition, charge and refund.
        new_id: job id factory. ``rng``: randomness for retry jitter.
        checkpoint: test hook awaited at named steps (see :data:`Checkpoint`).
        instrumentation: traces and metrics (see :class:`Instrumentation`;
            ``chatsvg_core.otel.OpenTelemetryInstrumentation`` with the
            ``otel`` extra); default: none, at no cost.
        charge_at: when credits are taken. ``"claim"`` (the default): a
            worker charges when it claims the job, and a job without credits
            fails then. ``"submit"``: ``submit`` reserves the price in the
            transaction that creates the job and binds its key, refusing with
            ``InsufficientCredits`` or ``DailyCapExceeded`` (nothing written);
            success captures the reservation, a final failure or a cancel
            releases it.
        max_in_flight: the most jobs one owner may have QUEUED or RUNNING at
            once (``None``: no limit), or a callable ``owner -> limit``; a
            submit past it raises ``InFlightLimitExceeded`` (nothing written).
        rate_limit: checked at each submit before anything is written, e.g. a
            :class:`chatsvg_core.ratelimit.SubmitRateLimit` (``RateLimited``, 429).
        refuse_blank: fail (and refund) a job whose sanitized SVG draws nothing
            visible (:func:`~chatsvg_core.sanitize.is_blank`); ``False`` accepts it.
    """

    def __init__(
        self,
        store: Store,
        queue: JobQueue | None,
        provider: Provider,
        *,
        policy: RetryPolicy | None = None,
        call_policy: RetryPolicy | None = None,
        sanitizer_policy: SanitizePolicy | None = None,
        pricing: Pricing | None = None,
        prompt_policy: PromptPolicy | None = None,
        clock: Clock | None = None,
        lease: timedelta = timedelta(seconds=120),
        heartbeat_every: float | None = None,
        idempotency_ttl: timedelta = timedelta(hours=24),
        daily_cap: int | Callable[[str], int | None] | None = None,
        day: DayBoundary | None = None,
        on_event: EventHook | None = None,
        new_id: Callable[[], str] = _uuid,
        rng: random.Random | None = None,
        checkpoint: Checkpoint | None = None,
        instrumentation: Instrumentation | None = None,
        charge_at: Literal["claim", "submit"] = "claim",
        max_in_flight: int | Callable[[str], int | None] | None = None,
        refuse_blank: bool = True,
        rate_limit: SubmitRateLimiter | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        if charge_at not in ("claim", "submit"):
            raise ConfigurationError(
                "charge_at is 'claim' or 'submit'", option="charge_at", value=repr(charge_at)
            )
        self.charge_at = charge_at
        self._max_in_flight = max_in_flight
        self.rate_limit = rate_limit
        self.store = store
        self.queue = queue
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.call_policy = call_policy or self.policy.model_copy(update={"max_attempts": 2})
        self.sanitizer = Sanitizer.prepared(sanitizer_policy)
        self.pricing = pricing or Pricing()
        self.prompt_policy = prompt_policy or PromptPolicy()
        self.clock = clock or SystemClock()
        self.lease = lease
        self.heartbeat_every = heartbeat_every or lease.total_seconds() / 3
        self.idempotency_ttl = idempotency_ttl  # checked by the property's setter
        self._daily_cap = daily_cap
        self.day = day or DayBoundary()
        self.on_event = on_event
        self.new_id = new_id
        self.rng = rng or random.Random()
        self.checkpoint = checkpoint
        self.instrumentation = instrumentation or NO_INSTRUMENTATION
        self._keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeaseKeeper] = (
            weakref.WeakKeyDictionary()
        )
        self._last_keeper: tuple[weakref.ref[asyncio.AbstractEventLoop], LeaseKeeper] | None = None
        self.refuse_blank = refuse_blank
        # What each running attempt's claim learned, for the rest of the attempt:
        # (job id, lease token) -> the parsed request, and whether a charge pays it.
        self._claims: dict[tuple[str, int | None], tuple[GenerationRequest, bool]] = {}

    @property
    def idempotency_ttl(self) -> timedelta:
        """How long a client key stays bound to its job (positive)."""
        return self._idempotency_ttl

    @idempotency_ttl.setter
    def idempotency_ttl(self, ttl: timedelta) -> None:
        # Checked here once rather than by each submit (create_or_replay checks it).
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        self._idempotency_ttl = ttl

    # --- helpers ------------------------------------------------------------

    def _heard(self, kind: EventKind) -> bool:
        """Whether anyone would see a ``kind`` event: a hook, instrumentation, or its log level.

        ``_events.wanted`` for this engine. Callers whose event fields cost
        something to make ask first (``_generate``, ``_finish_success``).
        """
        return (
            self.instrumentation is not NO_INSTRUMENTATION
            or self.on_event is not None
            or log.isEnabledFor(EVENT_LEVELS.get(kind, logging.DEBUG))
        )

    def _emit(self, kind: EventKind, job: Job, **fields: Any) -> None:
        if not self._heard(kind):
            # Nobody would see it: four events a job with nobody listening.
            return
        event = EngineEvent(
            kind=kind,
            job_id=job.id,
            owner=job.owner,
            at=self.clock.now(),
            attempt=job.attempt,
            fields=fields,
        )
        emit(self.on_event, event)
        self.instrumentation.event(event)

    def daily_cap(self, owner: str) -> int | None:
        """The cap that applies to ``owner`` (``None``: none)."""
        cap = self._daily_cap
        return cap(owner) if callable(cap) else cap

    def max_in_flight(self, owner: str) -> int | None:
        """The in-flight limit that applies to ``owner`` (``None``: none)."""
        limit = self._max_in_flight
        return limit(owner) if callable(limit) else limit

    async def _admit(self, tx: StoreTransaction, job: Job, now: datetime) -> int | None:
        """Check the owner's limits and reserve the price, under the account lock.

        Runs in the submit's transaction after the job is inserted, so a
        refusal rolls back the job and the key together. Returns the amount
        reserved (``None`` in claim mode).
        """
        limit = self.max_in_flight(job.owner)
        if limit is not None:
            # The lock serializes one owner's submits, so two cannot both see
            # room for one more job (create: an owner without an account).
            await tx.lock_account(job.owner, create=True)
            in_flight = await count_in_flight(tx, job.owner, up_to=limit)
            if in_flight > limit:  # the count includes the job being submitted
                raise InFlightLimitExceeded(
                    f"owner {job.owner!r} already has {limit} jobs queued or running",
                    owner=job.owner,
                    limit=limit,
                    in_flight=in_flight - 1,
                )
        if self.charge_at != "submit":
            return None
        cost = self.pricing.cost(GenerationRequest.model_validate(job.request))
        await reserve(
            tx,
            job.owner,
            cost,
            ref=job.id,
            now=now,
            daily_cap=self.daily_cap(job.owner),
            day=self.day,
        )
        return cost

    async def _announce(self, job: Job, delay: float = 0.0) -> None:
        # Queues that deduplicate by message id need the attempt (see JobQueue).
        assert self.queue is not None
        if _takes_attempt(type(self.queue)):
            await self.queue.enqueue(job.id, delay=delay, attempt=job.attempt)
        else:
            await self.queue.enqueue(job.id, delay=delay)

    async def _step(self, name: str, job_id: str) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(name, job_id)

    # --- submit -------------------------------------------------------------

    def prepare(self, request: GenerationRequest | Mapping[str, Any]) -> GenerationRequest:
        """Validate and normalise a request.

        Raises:
            InvalidRequest: not a mapping, an unknown field, a wrong type or an
                out-of-range value (no lax coercion: ``"512"`` is not a width).
            PromptRejected: the prompt breaks a prompt rule.
        """
        if not isinstance(request, GenerationRequest):
            request = parse_request(request)
        return self.prompt_policy.check(request)

    async def submit(
        self,
        owner: str,
        idempotency_key: str | None,
        request: GenerationRequest | Mapping[str, Any],
        *,
        rate_key: str | None = None,
    ) -> SubmitResult:
        """Create a QUEUED job for ``request`` (or return the one this key already made).

        The prompt is validated first (``PromptRejected``). With a key, the
        job and the key's record are written in one transaction: a retry with
        the same key and payload returns the original job (``replayed=True``);
        the same key with another payload raises ``IdempotencyConflict``.

        With ``charge_at="claim"`` nothing is charged here: credits are taken
        when a worker claims the job. With ``charge_at="submit"`` the price is
        reserved in the same transaction; ``InsufficientCredits`` or
        ``DailyCapExceeded`` then means no job was created and the key is not
        bound, so the same key works once the owner has credits. A replay
        reserves nothing again. ``InFlightLimitExceeded`` likewise.

        ``rate_key`` is the host's own key for the ``rate_limit`` (a client
        IP, an API key); over the limit, ``RateLimited`` (429) with
        ``retry_after``, and nothing is written.
        """
        instrumentation = self.instrumentation
        if instrumentation is NO_INSTRUMENTATION:
            # Nobody observes: no scope to enter, no carrier, nothing done.
            return await self._submit(owner, idempotency_key, request, None, rate_key)
        with instrumentation.submit(owner) as observed:
            result = await self._submit(owner, idempotency_key, request, observed, rate_key)
            observed.done(result.job, replayed=result.replayed)
        return result

    async def _submit(
        self,
        owner: str,
        idempotency_key: str | None,
        request: GenerationRequest | Mapping[str, Any],
        observed: SubmitScope | None,
        rate_key: str | None = None,
    ) -> SubmitResult:
        owner = validate_owner(owner)
        if idempotency_key is not None:
            idempotency_key = validate_idempotency_key(idempotency_key)
        payload = None
        if type(self).prepare is _PREPARE and type(self.prompt_policy).check is _CHECK:
            # prepare() then _payload() for a plain dict, without the model in
            # between; the prompt rules run as check() runs them.
            payload = plain_payload(request)
        if payload is not None:
            prompt = payload["prompt"] = self.prompt_policy.validate_prompt(payload["prompt"])
            plain = type(prompt) is str  # a host's validate_prompt may return a str subclass
        else:
            payload = _payload(self.prepare(request))
            plain = False
        if self.rate_limit is not None:
            # Counted before the transaction: a refused submit writes nothing.
            await self.rate_limit.check(owner, rate_key)
        # idempotency_scope(owner, operation=OPERATION) without its checks:
        # validate_owner refused what they refuse (a non-str, 0 or more than
        # 255 characters, a lone surrogate).
        scope = f"{len(owner)}:{owner}{_SCOPE_TAIL}"
        now = self.clock.now()
        if now.tzinfo is not UTC:  # utc() only where it has work
            now = utc(now)
        # The fingerprint's JCS text is the stored JSON for a flat request:
        # encoded once, handed to the insert below (the job's own dict). A
        # plain payload's text is written by plain_jcs (its six fields, each
        # as plain_payload let it through); anything else, or a text that
        # cannot be hashed (a lone surrogate), by request_hash_and_json.
        hashed = hash_and_json_of_jcs(plain_jcs(payload), scope) if plain else None
        fingerprint, request_json = hashed or request_hash_and_json(payload, scope=scope)
        job_id = self.new_id()
        max_attempts = self.policy.max_attempts
        trace = None if observed is None else observed.carrier()
        if (
            plain
            and trace is None
            and type(owner) is str  # the validators pass a str subclass through
            and (idempotency_key is None or type(idempotency_key) is str)
            and (self.new_id is _uuid or (type(job_id) is str and 0 < len(job_id) <= 128))
            and type(max_attempts) is int
            and max_attempts > 0
        ):
            # plain_payload made a fresh dict of str keys and JSON scalars,
            # and every other value was checked above: new_job's checks would
            # pass, and its copy of the request is not needed.
            job = plain_new_job(
                job_id, owner, payload, fingerprint, idempotency_key, now, max_attempts
            )
        else:
            job = new_job(
                job_id=job_id,
                owner=owner,
                request=payload,
                request_hash=fingerprint,
                idempotency_key=idempotency_key,
                now=now,
                max_attempts=max_attempts,
                trace_context=trace,
            )
        # Nothing to admit (no in-flight limit, charged at claim): no call.
        admits = (
            self._max_in_flight is not None
            or self.charge_at == "submit"
            or type(self).max_in_flight is not _MAX_IN_FLIGHT
        )
        reserved = None
        async with self.store.transaction() as tx:
            if idempotency_key is None:
                if request_json is not None:
                    remember_request_json(job.__dict__["request"], request_json)
                await tx.insert_job(job)
                replayed = False
                if admits:
                    reserved = await self._admit(tx, job, now)
            else:
                ttl = self._idempotency_ttl
                expires_at = now + ttl
                keyed = getattr(tx, "_insert_keyed_job", None)
                if keyed is not None:
                    # The SQL stores: the claim and the insert in one call.
                    live = await keyed(
                        job,
                        scope=scope,
                        now=now,
                        expires_at=expires_at,
                        request_json=request_json,
                        ttl=ttl,
                    )
                    created = live is None
                    if live is not None:
                        job = await replay_or_refuse(
                            tx, live, _proposed(scope, idempotency_key, job, now, expires_at)
                        )
                else:
                    # create_or_replay's steps without its argument checks (done
                    # above and at construction) or its outcome models.
                    if request_json is not None:
                        remember_request_json(job.__dict__["request"], request_json)
                    job, _, created = await bind_key(
                        tx, job, _proposed(scope, idempotency_key, job, now, expires_at), now=now
                    )
                replayed = not created
                if created and admits:
                    reserved = await self._admit(tx, job, now)
        if replayed:
            self._emit(EventKind.REPLAYED, job)
        else:
            self._emit(_SUBMITTED, job)
            if reserved is not None:
                self._emit(EventKind.CHARGED, job, amount=reserved, mode="reserve")
            if self.queue is not None:
                # After commit: a crash here leaves a QUEUED job that sweep() finds.
                await self._announce(job)
        # SubmitResult(job=job, replayed=replayed) without its frozen __init__'s
        # two object.__setattr__ calls (5.5 k -> 2.4 k instructions; the
        # fields are its slots: tests/engine/test_submit_paths.py).
        result = _new(SubmitResult)
        _SET_RESULT_JOB(result, job)
        _SET_RESULT_REPLAYED(result, replayed)
        return result

    # --- process ------------------------------------------------------------

    async def process(self, job_id: str, worker_id: str) -> Job | None:
        """Run one attempt of ``job_id``; return the job as this attempt left it.

        Returns ``None`` when there was nothing to do: the job is unknown,
        not QUEUED (a duplicate delivery), or not yet due (re-announced for
        its ``run_at``). Every expected failure becomes a transition; only
        storage faults propagate (and leave the job to recovery).
        """
        return await self._attempt(job_id, worker_id)

    async def run_once(self, job_id: str | None, worker_id: str) -> ProcessOutcome:
        """:meth:`process` (or, with ``job_id=None``, :meth:`process_next`), saying what happened.

        ``outcome.kind`` is ``succeeded``, ``retry_scheduled`` or ``failed``
        when an attempt ran (``job`` as it left it); otherwise why nothing
        ran: ``unknown`` (no such job), ``taken`` (not QUEUED: a duplicate
        delivery), ``not_due`` (re-announced for its ``run_at``),
        ``exhausted`` (no attempts left), ``idle`` (``job_id=None`` and nothing
        due), or ``lease_lost`` (the attempt ran but its lease was lost or the
        job was cancelled, so nothing it produced was written).
        """
        box: list[str] = []
        token = _REASON.set(box)
        try:
            job = await self._attempt(job_id, worker_id)
        finally:
            _REASON.reset(token)
        if box:
            return ProcessOutcome(kind=box[-1], job=job)  # type: ignore[arg-type]
        assert job is not None
        kind: OutcomeKind = (
            "succeeded"
            if job.status is JobStatus.SUCCEEDED
            else "failed"
            if job.status is JobStatus.FAILED
            else "retry_scheduled"
        )
        return ProcessOutcome(kind=kind, job=job)

    async def process_next(self, worker_id: str) -> Job | None:
        """Claim the next due job straight from the store and run one attempt of it.

        For hosts that use the database as the queue (no ``JobQueue``):
        concurrent workers get distinct jobs (``next_due_job`` skips rows
        others hold). Returns ``None`` when nothing is due.
        """
        return await self._attempt(None, worker_id)

    async def _attempt(self, job_id: str | None, worker_id: str) -> Job | None:
        if self.instrumentation is NO_INSTRUMENTATION:
            # Nobody observes: the steps below without the no-op scope's five
            # calls and the clock read made for it (tests/engine/test_otel.py
            # runs the observed path).
            claimed = await self._claim_and_charge(job_id, worker_id)
            if claimed is None or claimed.status is not _RUNNING:
                return claimed
            # job_log_context's variable set here (its scope object cost more).
            fields = _JOB_FIELDS.set(
                {"job_id": claimed.id, "owner": claimed.owner, "attempt": claimed.attempt}
            )
            try:
                return await self._run_charged(claimed, worker_id)
            finally:
                _JOB_FIELDS.reset(fields)
                self._claims.pop((claimed.id, claimed.lease_token), None)
        # One attempt, as the instrumentation and the logs see it: the scope
        # learns the job from the claim, then is current while it runs.
        observed = self.instrumentation.attempt(worker_id)
        started = time.time_ns()
        try:
            claimed = await self._claim_and_charge(job_id, worker_id)
        except BaseException as exc:
            observed.claimed(None, claim_started_ns=started)
            observed.finished(None, exc)
            raise
        observed.claimed(claimed, claim_started_ns=started)
        if claimed is None or claimed.status is not _RUNNING:
            observed.finished(claimed)
            return claimed
        try:
            with observed, job_log_context(claimed.id, claimed.owner, claimed.attempt):
                # The scope is handed down to _generate's steps as an argument
                # (a context variable set and reset per attempt cost more).
                done = await self._run_charged(claimed, worker_id, observed)
        except BaseException as exc:
            observed.finished(None, exc)
            raise
        finally:
            # What the claim learned is for this attempt only.
            self._claims.pop((claimed.id, claimed.lease_token), None)
        observed.finished(done)
        return done

    async def _run_charged(
        self, claimed: Job, worker_id: str, observed: AttemptScope = NO_SCOPE
    ) -> Job | None:
        job_id = claimed.id
        # The checkpoints inline (not _step): a coroutine per step and job
        # costs about 1 k instructions each even when no checkpoint is set.
        if self.checkpoint is not None:
            await self.checkpoint("claimed", job_id)
        try:
            outcome = await self._run_with_heartbeat(claimed, observed)
        except _LeaseLost:
            self._emit(EventKind.LEASE_LOST, claimed, worker_id=worker_id)
            _note("lease_lost")
            return None
        except asyncio.CancelledError:
            # Shutdown: hand the job back now rather than after the lease lapses.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._finish_failure(claimed, TransientError("worker shut down mid-job"))
                )
            raise
        if isinstance(outcome, BaseException):
            return await self._finish_failure(claimed, outcome)
        if self.checkpoint is not None:
            await self.checkpoint("generated", job_id)
        return await self._finish_success(claimed, *outcome)

    async def _claim_and_charge(self, job_id: str | None, worker_id: str) -> Job | None:
        now = self.clock.now()
        async with self.store.transaction() as tx:
            if not isinstance(worker_id, str):  # as claim() refuses it
                raise ValueError(f"worker_id is a string, not {type(worker_id).__name__}")
            # One UPDATE ... RETURNING where the store offers it (JobClaimer).
            claim_due = getattr(tx, "claim_due", None)
            if job_id is None:
                # claim_next's dispatch inline (a coroutine less; the engine's
                # lease is positive and claim_due makes now UTC).
                if claim_due is None:
                    next_job = await claim_next(tx, now=now, worker_id=worker_id, lease=self.lease)
                else:
                    next_job = await claim_due(
                        now, worker_id=worker_id, lease_expires_at=now + self.lease
                    )
                if next_job is None:
                    _note("idle")
                    return None
                job = next_job
            else:
                # The reads below only explain a refusal (a duplicate delivery,
                # a job not yet due), or claim on a store without claim_due.
                fast: Job | None = None
                if claim_due is not None:
                    fast = await claim_due(
                        now, worker_id=worker_id, lease_expires_at=now + self.lease, job_id=job_id
                    )
                if fast is not None:
                    job = fast
                else:
                    current = await tx.get_job(job_id, for_update=True)
                    if current is None:
                        log.warning(
                            "Job %s was delivered but is not in the store; ignored.",
                            job_id,
                            extra={"chatsvg_event": "unknown_job", "job_id": job_id},
                        )
                        _note("unknown")
                        return None
                    if current.status is not JobStatus.QUEUED:
                        _note("taken")  # a duplicate delivery: another worker has or had it
                        return None
                    if current.run_at > now:
                        if self.queue is not None:
                            wait = (current.run_at - now).total_seconds()
                            await self._announce(current, wait)
                        _note("not_due")
                        return None
                    if current.attempt >= current.max_attempts:
                        _note("exhausted")
                        return None
                    # Claim the row this transaction already holds FOR UPDATE
                    # (claim_job would read it again: one statement per delivery).
                    job = claim(current, now=now, worker_id=worker_id, lease=self.lease)
                    if not await tx.update_job(job, expected_version=current.version):
                        raise InvalidTransition(
                            f"job {job_id} changed while claim was being applied",
                            job_id=job_id,
                            status=current.status.value,
                            action="claim",
                            reason="version_conflict",
                        )
            request = stored_request(job.request)
            cost = self.pricing.cost(request)
            paid: bool | None  # by a charge (True), by a reservation (False), or failed
            try:
                if self.charge_at == "submit" and await tx.find_entry(EntryKind.RESERVE, job.id):
                    raise _Reserved
                # charge() with its argument checks folded into one test, also
                # saying whether this call wrote the charge.
                _, charged_now = await charge_for_job(
                    tx,
                    job.owner,
                    cost,
                    ref=job.id,
                    now=now,
                    daily_cap=self.daily_cap(job.owner),
                    day=self.day,
                    new_id=_uuid,
                )
            except _Reserved:
                charged_now = False  # paid at submit: the reservation covers every attempt
                paid = False
            except LedgerConflict as exc:
                if exc.reason != "has_reserve":
                    raise
                charged_now = False  # reserved at submit by an engine in the other mode
                paid = False
            except (InsufficientCredits, DailyCapExceeded, UnknownAccount) as exc:
                paid = None
                job = await fail_job(
                    tx,
                    job.id,
                    now=now,
                    token=job.lease_token,
                    error=JobErrorInfo.from_exception(exc),
                )
                charged_now = False
            else:
                # A later attempt gets the first attempt's entry back (charged_now False).
                # Paid by a charge, so it holds no reservation (the ledger
                # refuses both for one job): its success has nothing to capture.
                paid = True
        if paid is not None:
            self._claims[job.id, job.lease_token] = (request, paid)
        self._emit(_CLAIMED, job, worker_id=worker_id)
        if job.status is _FAILED:
            assert job.last_error is not None
            self._emit(EventKind.FAILED, job, error_code=job.last_error.code, transient=False)
        elif charged_now:
            self._emit(_CHARGED, job, amount=cost)
        return job

    def _keeper(self, loop: asyncio.AbstractEventLoop | None = None) -> LeaseKeeper:
        # One keeper per event loop (``loop``, the running one): its task lives
        # on the loop that runs the jobs (a SyncEngine's portal loop, or the host's own).
        if loop is None:
            loop = asyncio.get_running_loop()
        last = self._last_keeper
        if last is not None and last[0]() is loop:
            return last[1]  # the same loop as the last job's (the weak dict builds a ref per get)
        keeper = self._keepers.get(loop)
        if keeper is None:
            # A keeper's armed timer holds its loop, so a loop closed with one
            # pending would stay a key here: forget those when a new loop comes.
            for closed in [old for old in self._keepers if old.is_closed()]:
                del self._keepers[closed]
            keeper = LeaseKeeper(
                self.store, lease=self.lease, every=self.heartbeat_every, clock=self.clock
            )
            self._keepers[loop] = keeper
        self._last_keeper = (weakref.ref(loop), keeper)
        return keeper

    async def _run_with_heartbeat(
        self, job: Job, observed: AttemptScope = NO_SCOPE
    ) -> tuple[str, dict[str, Any]] | BaseException:
        assert job.lease_token is not None
        # Generation runs in this task (a task of its own per attempt cost two
        # loop turns per job); the lease keeper cancels this task if the lease
        # is lost, and that one cancellation is taken back here as _LeaseLost.
        loop = asyncio.get_running_loop()
        this = asyncio.current_task(loop) if CURRENT_TASKS is None else CURRENT_TASKS.get(loop)
        assert this is not None
        revoked = False

        def on_lost() -> None:
            nonlocal revoked
            revoked = True
            this.cancel()

        keeper = self._keeper(loop)
        keeper._keep(job.id, job.lease_token, None, on_lost)
        delivered = False
        try:
            return await self._generate(job, observed)
        except asyncio.CancelledError:
            delivered = True
            # Ours alone (no shutdown cancel besides it): the lease is lost.
            if revoked and this.uncancel() == 0:
                raise _LeaseLost from None
            raise
        except Exception as exc:
            return exc
        finally:
            # Released before the final write, so a heartbeat round racing with
            # it cannot report this finished job as lost.
            keeper.release(job.id)
            if revoked and not delivered:
                this.uncancel()  # the generation swallowed it: take the request back

    async def _call_provider(
        self, request: GenerationRequest, observed: AttemptScope
    ) -> tuple[ProviderOutput, str]:
        """The provider call and extraction, with ``call_policy``'s in-process retries.

        The first try runs bare: tenacity's machinery (a dozen objects and
        callbacks per call) is built only after it fails, then takes over as
        if it had made that try itself. Its clock is set back to when the
        first try began, so the deadline, the decisions, the hooks' reports
        and the delays are what they would have been (tests/engine holds it).
        """
        started = time.monotonic()
        try:
            if observed is NO_SCOPE:
                # No instrumentation: its steps would be two no-op context
                # managers (six calls in Python); the same try without them.
                output = await self.provider.generate(request)
                return output, extract_answer(output)
            with observed.step("provider"):
                output = await self.provider.generate(request)
            with observed.step("extract"):
                return output, extract_answer(output)
        except BaseException as exc:  # tenacity sees every outcome, cancellation too
            first: BaseException | None = exc
        async for attempt in self.call_policy.async_retrying(rng=self.rng, name="provider"):
            if first is not None:
                attempt.retry_state.start_time = started
            with attempt:
                if first is not None:
                    error, first = first, None
                    raise error
                with observed.step("provider"):
                    output = await self.provider.generate(request)
                with observed.step("extract"):
                    raw = extract_answer(output)
        return output, raw

    def _sanitize(self, raw: str) -> tuple[SanitizedSVG, bool]:
        """The sanitized SVG, and whether it is a blank picture this engine refuses."""
        sanitizer = self.sanitizer
        if type(sanitizer).sanitize is not Sanitizer.sanitize:
            # A host's own sanitize (a subclass) is what runs, and its output is checked.
            clean = sanitizer.sanitize(raw)
            return clean, self.refuse_blank and is_blank(clean.svg)
        # The blank check walks the sanitizer's own tree: parsing the output
        # again cost a third of sanitizing a small answer.
        clean, tree = sanitizer._sanitize_tree(raw)
        return clean, self.refuse_blank and is_blank(tree)

    async def _generate(
        self, job: Job, observed: AttemptScope = NO_SCOPE
    ) -> tuple[str, dict[str, Any]]:
        known = self._claims.get((job.id, job.lease_token))
        request = GenerationRequest.model_validate(job.request) if known is None else known[0]

        def progress(tokens: int, chars: int) -> None:
            self._emit(_PROGRESS, job, tokens=tokens, chars=chars)

        # progress_reporting(progress)'s variable set here (its scope object cost more).
        hooked = PROGRESS_HOOK.set(progress)
        try:
            output, raw = await self._call_provider(request, observed)
        finally:
            PROGRESS_HOOK.reset(hooked)
        if observed is NO_SCOPE and len(raw) <= SANITIZE_INLINE_CHARS:
            clean, blank = self._sanitize(raw)  # as below, without the no-op step
        else:
            with observed.step("sanitize"):
                if len(raw) > SANITIZE_INLINE_CHARS:
                    # Off the event loop, which keeps every lease of this worker alive
                    # and runs its other jobs meanwhile (the sanitizer is thread-safe
                    # and bounded by its policy's ``max_seconds``).
                    clean, blank = await asyncio.to_thread(self._sanitize, raw)
                else:
                    clean, blank = self._sanitize(raw)
        if blank:
            raise SVGRejected(
                "SVG rejected: blank: the picture draws nothing visible",
                reason="blank",
                detail="nothing visible after sanitizing",
                limit=None,
            )
        metadata: dict[str, Any] = {
            "model": output.model,
            "provider": output.provider,
            "latency_s": output.latency_s,
            "usage": _usage(output.usage),
            "finish_reason": output.finish_reason,
            "sanitizer_changed": clean.changed,
        }
        if self._heard(_GENERATED):
            # Asked first: with nobody listening its fields (a keyword dict,
            # the report's length) are not made.
            self._emit(_GENERATED, job, model=output.model, removed=len(clean.report))
        return clean.svg, metadata

    async def _finish_success(self, job: Job, svg: str, metadata: dict[str, Any]) -> Job | None:
        now = self.clock.now()
        assert job.lease_token is not None
        try:
            async with self.store.transaction() as tx:
                # The metadata is this attempt's own (_generate made it): given up
                # to the result with its JSON, which spares a copy and an encoding.
                text = _metadata_json(metadata)
                if text is not None:
                    hand_over_json(metadata, text)
                done, _ = await complete_job(
                    tx, job.id, token=job.lease_token, now=now, svg=svg, metadata=metadata, held=job
                )
                # Only after the fenced transition: a refused result captures nothing.
                known = self._claims.get((job.id, job.lease_token))
                if known is None or not known[1]:
                    await capture_if_reserved(tx, job.id, now)
        except InvalidTransition:
            self._emit(EventKind.LEASE_LOST, job)
            _note("lease_lost")
            return None
        if self._heard(_SUCCEEDED):
            self._emit(_SUCCEEDED, done)  # asked first (see _generate)
        if self.checkpoint is not None:
            await self.checkpoint("finished", job.id)
        return done

    async def _finish_failure(self, job: Job, error: BaseException) -> Job | None:
        now = self.clock.now()
        assert job.lease_token is not None
        info = JobErrorInfo.from_exception(error)
        elapsed = max(0.0, (now - job.created_at).total_seconds())
        decision = self.policy.decide(
            error,
            job.attempt,
            elapsed,
            rng=self.rng,
            now=now,  # an HTTP-date Retry-After is read against the injected clock
            hooks=get_on_retry_hooks(),
            name="job",
        )
        refunded = None
        try:
            async with self.store.transaction() as tx:
                if not isinstance(decision, GiveUp) and job.attempt < job.max_attempts:
                    delay = decision.delay
                    new = await retry_job(
                        tx,
                        job.id,
                        token=job.lease_token,
                        now=now,
                        run_at=now + timedelta(seconds=delay),
                        error=info,
                    )
                else:
                    delay = None
                    new = await fail_job(tx, job.id, now=now, token=job.lease_token, error=info)
                    refunded = await self._refund(tx, job.id, now)
        except InvalidTransition:
            self._emit(EventKind.LEASE_LOST, job)
            _note("lease_lost")
            return None
        if delay is not None:
            self._emit(EventKind.RETRY_SCHEDULED, new, delay=delay, error_code=info.code)
            if self.queue is not None:
                await self._announce(new, delay)
        else:
            reason = decision.reason.value if isinstance(decision, GiveUp) else "attempts_exhausted"
            self._emit(
                EventKind.FAILED, new, error_code=info.code, transient=info.transient, reason=reason
            )
            if refunded is not None:
                self._emit(EventKind.REFUNDED, new, amount=refunded)
        await self._step("finished", job.id)
        return new

    @staticmethod
    async def _refund(tx: StoreTransaction, job_id: str, now: datetime) -> int | None:
        # The charge refunded or the reservation released, whichever the job holds.
        given = await give_back(tx, job_id, now)
        return None if given is None else given[1]

    # --- recovery -----------------------------------------------------------

    async def recover(self, now: datetime | None = None, *, limit: int = 500) -> RecoveryReport:
        """Finish what crashed workers left: expired leases, and unrefunded failures.

        A RUNNING job whose lease ended is put back in the queue (its attempt
        counted as a transient failure) or, with no attempts left, failed and
        refunded in the same transaction. A FAILED job that was charged but
        not refunded (possible only with stores that split the job and the
        ledger across systems) is refunded. Safe to run concurrently and
        repeatedly: every step is a compare-and-set or keyed by job id.
        """
        now = now or self.clock.now()
        report = RecoveryReport()
        delays: dict[str, float] = {}

        def run_at_for(job: Job) -> datetime:
            delays[job.id] = self.policy.delay(max(1, job.attempt), rng=self.rng)
            return now + timedelta(seconds=delays[job.id])

        refunded: dict[str, int] = {}
        async with self.store.transaction() as tx:
            # Expiry and the refund of a job it fails commit together.
            expired = await expire_leases(tx, now=now, run_at_for=run_at_for, limit=limit)
            for job in expired:
                if job.status is JobStatus.FAILED:
                    amount = await self._refund(tx, job.id, now)
                    if amount is not None:
                        refunded[job.id] = amount
        for job in expired:
            self._emit(EventKind.LEASE_EXPIRED, job)
            if job.status is JobStatus.QUEUED:
                report.requeued.append(job.id)
                if self.queue is not None:
                    await self._announce(job, delays.get(job.id, 0.0))
                continue
            report.failed.append(job.id)
            assert job.last_error is not None
            self._emit(EventKind.FAILED, job, error_code=job.last_error.code, transient=True)
            if job.id in refunded:
                report.refunded.append(job.id)
                self._emit(EventKind.REFUNDED, job, amount=refunded[job.id])
        for job_id in await self._unrefunded_failures(limit):
            async with self.store.transaction() as tx:
                failed = await tx.get_job(job_id)
                amount = await self._refund(tx, job_id, now)
            if amount is not None and failed is not None:
                report.refunded.append(job_id)
                self._emit(EventKind.REFUNDED, failed, amount=amount)
        return report

    async def _unrefunded_failures(self, limit: int) -> list[str]:
        async with self.store.transaction() as tx:
            failed = await tx.list_jobs(status=JobStatus.FAILED, limit=limit)
            out = []
            for job in failed:
                for held, back in unsettled_kinds():
                    if await tx.find_entry(held, job.id) is None:
                        continue
                    if await tx.find_entry(back, job.id) is None:
                        out.append(job.id)
        return out

    async def sweep(
        self,
        now: datetime | None = None,
        *,
        limit: int = 1000,
        overdue: float | None = None,
    ) -> int:
        """Re-announce QUEUED jobs to the queue (after a restart or a broker lost messages).

        Without ``overdue``, every QUEUED job is announced with the delay left
        until its ``run_at`` (the in-process queue coalesces repeats). With
        ``overdue=s``, only jobs due at least ``s`` seconds ago are announced:
        the ones whose message was lost, or whose delay was longer than the
        queue engine holds; a job waiting in a healthy queue is left alone, so
        a backlog is not doubled. Pages through every QUEUED job (oldest
        first), announcing at most ``limit``; returns how many it announced.
        """
        if self.queue is None:
            return 0
        now = now or self.clock.now()
        chosen: list[tuple[Job, float]] = []
        async with self.store.transaction() as tx:
            before: datetime | None = None
            before_id: str | None = None
            while True:
                page = await tx.list_jobs(
                    status=JobStatus.QUEUED, limit=500, before=before, before_id=before_id
                )
                for job in page:
                    wait = (job.run_at - now).total_seconds()
                    if overdue is None or -wait >= overdue:
                        chosen.append((job, max(0.0, wait)))
                if len(page) < 500:
                    break
                before, before_id = page[-1].created_at, page[-1].id
        # Newest first from the store: announce the oldest first, up to the limit.
        chosen.reverse()
        for job, wait in chosen[:limit]:
            await self._announce(job, wait)
        return min(len(chosen), limit)

    # --- cancel -------------------------------------------------------------

    async def cancel(self, job_id: str, owner: str, *, reason: str | None = None) -> Job:
        """Cancel ``owner``'s job: it ends FAILED with code ``cancelled``, credits given back.

        A QUEUED job ends at once. A RUNNING job ends too, and the worker
        still generating it is fenced off: its lease token is gone, so its
        result, retry or failure is refused, its lease keeper stops it, and it
        writes nothing more. The job's charge is refunded or its reservation
        released in the same transaction, exactly once.

        Cancelling a job that is already cancelled returns it unchanged (so a
        client may retry the call). Raises ``JobNotFound`` when there is no
        such job *for this owner* (another owner's job is not revealed), and
        ``InvalidTransition`` (409, ``reason="terminal"``) when it already
        succeeded or failed.
        """
        job_id = check_job_id(job_id)
        owner = validate_owner(owner)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
            raise InvalidRequest(
                "a cancel reason is a string of at most 200 characters",
                field="reason",
                errors=[{"field": "reason", "message": "too long or not a string"}],
            )
        now = self.clock.now()
        given = None
        async with self.store.transaction() as tx:
            job = await tx.get_job(job_id, for_update=True)
            if job is None or job.owner != owner:
                raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
            if job.terminal:
                if job.last_error is not None and job.last_error.code == CANCELLED:
                    return job
                raise InvalidTransition(
                    f"job {job_id} already {job.status.value}; it cannot be cancelled",
                    job_id=job_id,
                    status=job.status.value,
                    action="cancel",
                    reason="terminal",
                )
            was = job.status
            job = await cancel_job(tx, job_id, now=now, reason=reason)
            given = await give_back(tx, job_id, now)
        self._emit(EventKind.FAILED, job, error_code=CANCELLED, transient=False, was=was.value)
        if given is not None:
            self._emit(EventKind.REFUNDED, job, amount=given[1], mode=given[0])
        return job

    # --- waiting ------------------------------------------------------------

    async def _changes(
        self,
        job_id: str,
        timeout: float | None,  # noqa: ASYNC109 (ends quietly; asyncio.timeout would raise)
        owner: str | None,
    ) -> AsyncIterator[Job]:
        """The job now, then again each time it may have changed, until terminal or timeout."""
        job_id = check_job_id(job_id)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise InvalidRequest(
                "timeout is a non-negative number of seconds, or None",
                field="timeout",
                errors=[{"field": "timeout", "message": "not a non-negative number"}],
            )
        if owner is not None:
            owner = validate_owner(owner)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        feed = self.store if isinstance(self.store, JobChangeFeed) else None
        async with feed.subscribe(job_id) if feed is not None else _no_feed() as changed:
            pause = POLL_FIRST
            while True:
                job = await self.get(job_id)
                if owner is not None and job.owner != owner:
                    raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
                yield job
                if job.terminal:
                    return
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return
                if changed is not None:
                    step = FEED_SAFETY if left is None else min(left, FEED_SAFETY)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=step)
                    changed.clear()
                else:
                    # No feed: a backoff poll (fast at first, then every POLL_MAX).
                    await asyncio.sleep(pause if left is None else min(pause, left))
                    pause = min(pause * 1.6, POLL_MAX)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (answers the job as it stands)
        owner: str | None = None,
    ) -> Job:
        """Return the job once it is terminal, or as it stands when ``timeout`` seconds pass.

        Check ``job.terminal`` on the answer. Sleeps on the store's change
        feed where it has one (PostgreSQL: LISTEN/NOTIFY, re-reading at least
        every 15 s in case a notification is lost), else re-reads with a
        backoff from 50 ms to 2 s. With ``owner``, another owner's job is
        ``JobNotFound``. Raises ``JobNotFound`` for an unknown job.
        """
        last: Job | None = None
        async for job in self._changes(job_id, timeout, owner):
            last = job
        assert last is not None  # _changes yields at least once or raises
        return last

    async def updates(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the stream ends quietly)
        owner: str | None = None,
    ) -> AsyncIterator[JobUpdate]:
        """The job's updates as they happen, ending after the terminal one (or at ``timeout``).

        The first update describes the job as it is now; then one per change
        of status or attempt seen: ``queued``, ``running``, ``retrying``,
        ``succeeded``, ``failed``, and ``refunded`` after a failure whose
        credits came back. Each has ``to_sse()`` for hosts that stream
        server-sent events. Waits as :meth:`wait` does.
        """
        seen: tuple[JobStatus, int] | None = None
        async for job in self._changes(job_id, timeout, owner):
            if (job.status, job.attempt) == seen:
                continue
            seen = (job.status, job.attempt)
            yield update_for(job)
            if job.status is JobStatus.FAILED:
                async with self.store.transaction() as tx:
                    back = await tx.find_entry(EntryKind.REFUND, job.id) or await tx.find_entry(
                        EntryKind.RELEASE, job.id
                    )
                if back is not None:
                    yield update_for(job).model_copy(
                        update={"kind": "refunded", "amount": back.amount, "at": back.created_at}
                    )

    # --- retention ----------------------------------------------------------

    async def purge(
        self,
        older_than: timedelta,
        *,
        batch_size: int = 500,
        max_batches: int | None = None,
    ) -> PurgeReport:
        """Delete terminal jobs last changed more than ``older_than`` ago, their results,
        and expired idempotency records, in batches of ``batch_size`` (one short
        transaction each). Never a ledger entry.

        A job is kept while an idempotency key still names it (a replay must
        find it) or while its money is unsettled (a FAILED job not yet
        refunded, a reservation neither captured nor released): recovery
        must still be able to give it back. The ledger's ``(kind, ref)``
        uniqueness outlives the job, so a purged job is never charged or
        refunded twice. Safe to run from several processes at once.

        Raises ``ConfigurationError`` when the store has no ``purge_jobs``
        primitive (:class:`~chatsvg_core.storage.JobPurger`).
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidRequest(
                "older_than is a non-negative timedelta",
                field="older_than",
                errors=[{"field": "older_than", "message": "not a non-negative timedelta"}],
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidRequest(
                "batch_size is a positive int",
                field="batch_size",
                errors=[{"field": "batch_size", "message": "not a positive int"}],
            )
        now = self.clock.now()
        report = PurgeReport()
        while max_batches is None or report.batches < max_batches:
            async with self.store.transaction() as tx:
                if not isinstance(tx, JobPurger):
                    raise ConfigurationError(
                        f"{type(self.store).__name__} cannot purge: its transactions have "
                        "no purge_jobs (see chatsvg_core.storage.JobPurger)",
                        store=type(self.store).__name__,
                    )
                records = await tx.prune_idempotency(now, limit=batch_size)
                jobs = await tx.purge_jobs(before=now - older_than, now=now, limit=batch_size)
            report.batches += 1
            report.jobs += jobs
            report.idempotency_records += records
            if jobs < batch_size and records < batch_size:
                break
        return report

    # --- reading ------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job (raises ``JobNotFound``)."""
        job_id = check_job_id(job_id)
        async with self.store.transaction() as tx:
            job = await tx.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        return job

    async def result(self, job_id: str) -> JobResult | None:
        """The sanitized SVG and metadata of a SUCCEEDED job, else ``None``."""
        job_id = check_job_id(job_id)
        async with self.store.transaction() as tx:
            return await tx.get_result(job_id)


_PREPARE: Final = Engine.prepare
_CHECK: Final = PromptPolicy.check
_MAX_IN_FLIGHT: Final = Engine.max_in_flight
