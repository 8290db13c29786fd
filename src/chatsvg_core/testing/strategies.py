"""Public hypothesis strategies for hosts' own test suites (needs the ``testing`` extra).

>>> from chatsvg_core.testing.strategies import jobs
>>> from hypothesis import given
>>> @given(jobs())
... def test_my_store_roundtrips(job): ...
"""

from __future__ import annotations

from chatsvg_core.testing._job_strategies import (
    JobStep,
    apply_step,
    job_errors,
    job_steps,
    jobs,
    queued_jobs,
    walk,
)

__all__ = ["JobStep", "apply_step", "job_errors", "job_steps", "jobs", "queued_jobs", "walk"]
