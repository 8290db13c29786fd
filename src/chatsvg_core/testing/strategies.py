"""Every public hypothesis strategy of the library, for hosts' own test suites.

Needs the ``testing`` extra. Compose them with your own:

>>> from hypothesis import given
>>> from chatsvg_core.testing.strategies import reachable_jobs
>>> @given(reachable_jobs())
... def test_my_store_roundtrips(job): ...
"""

from __future__ import annotations

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
    reachable_jobs,
    transition_sequences,
    walk,
)
from chatsvg_core.testing._svg_checks import assert_svg_safe, svg_safety_violations
from chatsvg_core.testing._svg_strategies import svg_documents, svg_trees

__all__ = [
    "JobStep",
    "LedgerOperation",
    "amounts",
    "apply_job_step",
    "apply_job_step_in_store",
    "apply_ledger_operation",
    "assert_svg_safe",
    "bad_amounts",
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
    "reachable_jobs",
    "svg_documents",
    "svg_safety_violations",
    "svg_trees",
    "transition_sequences",
    "unhashable_payloads",
    "walk",
]
