"""Test kit for hosts: strategies, a fake clock, conformance suites, fake servers.

Importing :mod:`chatsvg_core` never imports this package; it needs the
``testing`` extra (hypothesis, pytest) for the parts that use them.
"""

from __future__ import annotations

from chatsvg_core.testing._clock import FakeClock
from chatsvg_core.testing._fake_openai import (
    ChatReply,
    DisconnectReply,
    ErrorReply,
    FakeOpenAIServer,
    FakeReply,
    RawReply,
    RecordedRequest,
    StreamReply,
)
from chatsvg_core.testing._idempotency_strategies import (
    idempotency_keys,
    invalid_idempotency_keys,
    json_objects,
    json_reorderings,
    json_scalars,
    json_text,
    json_values,
    unhashable_payloads,
)
from chatsvg_core.testing._idempotency_suite import (
    IDEMPOTENCY_CHECKS,
    IdempotencyConformance,
    check_concurrent_conflicting_submits,
    check_concurrent_same_submits,
    check_expired_key_reusable,
    check_rollback_frees_key,
    check_scopes_isolated,
    check_sequential_semantics,
    run_idempotency_suite,
)
from chatsvg_core.testing._strategies import (
    JobStep,
    LedgerOperation,
    amounts,
    apply_job_step,
    apply_job_step_in_store,
    apply_ledger_operation,
    bad_amounts,
    job_steps,
    jobs,
    ledger_operations,
    owner_ids,
    transition_sequences,
)

__all__ = [
    "IDEMPOTENCY_CHECKS",
    "ChatReply",
    "DisconnectReply",
    "ErrorReply",
    "FakeClock",
    "FakeOpenAIServer",
    "FakeReply",
    "IdempotencyConformance",
    "JobStep",
    "LedgerOperation",
    "RawReply",
    "RecordedRequest",
    "StreamReply",
    "amounts",
    "apply_job_step",
    "apply_job_step_in_store",
    "apply_ledger_operation",
    "bad_amounts",
    "check_concurrent_conflicting_submits",
    "check_concurrent_same_submits",
    "check_expired_key_reusable",
    "check_rollback_frees_key",
    "check_scopes_isolated",
    "check_sequential_semantics",
    "idempotency_keys",
    "invalid_idempotency_keys",
    "job_steps",
    "jobs",
    "json_objects",
    "json_reorderings",
    "json_scalars",
    "json_text",
    "json_values",
    "ledger_operations",
    "owner_ids",
    "run_idempotency_suite",
    "transition_sequences",
    "unhashable_payloads",
]
