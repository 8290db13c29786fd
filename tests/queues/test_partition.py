"""A partition in the spirit of Jepsen: a worker cut off mid-job, its late writes refused.

Two worker processes run in network namespaces of the test's own, joined by
veth pairs to a bridge on which the test runs its own PostgreSQL cluster and
redis-server (``tests/queues/_partition.py``), with arq, Procrastinate, or the
database as the queue (``process_next``). The worker holding the job is
cut off (its link taken down: packets dropped, connections stalled) until its
lease lapses and the other worker, in the other namespace, takes the job and
finishes it; then the link heals and the first worker's late writes arrive
with a stale fencing token. ``benchmarks/partition.py`` runs many jobs
through several cuts (figures in benchmarks/README.md).

Needs root, ``ip`` (iproute2), PostgreSQL's server binaries and
redis-server: skipped with the reason otherwise, a failure under
``CHATSVG_REQUIRE_SERVICES=1`` (CI runs as root).
"""

from __future__ import annotations

import pytest

from ._partition import partition, require_lab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def network_lab() -> None:
    require_lab()


@pytest.mark.usefixtures("network_lab")
@pytest.mark.parametrize("kind", ["arq", "procrastinate", "next"])
async def test_a_cut_off_worker_loses_its_job_and_its_late_write_is_refused(kind: str) -> None:
    # arq on the test's Redis; Procrastinate on the test's PostgreSQL (its only
    # service); "next": the database as the queue (process_next), with recovery
    # run from the test's side as a host's periodic job would. arq's and
    # Procrastinate's workers run recovery as their own periodic task.
    r = await partition(kind, jobs=1, workers=2, cuts=1, lease=2.0, call_seconds=1.0)
    print(f"\n{r}\n{r.cut_log}")
    assert r.violations == []
    assert r.cuts == 1
    (cut,) = r.cut_log
    (job_id,) = [j for j, _ in cut["held"]]
    # The other worker took the job over while the first was cut off...
    assert cut["taken_over"] == [job_id]
    assert r.taken_over == 1
    # ...and completed it exactly once: the job is its attempt (2), one
    # SUCCEEDED event in all (checked by partition()), one charge, no refund.
    assert r.statuses == {"succeeded": 1}
    assert (r.charges, r.refunds) == (1, 0)
    # The cut-off worker's attempt came back as refused (LEASE_LOST) once healed.
    assert r.stale_writes_refused == 1
    assert r.completed_by.get(cut["worker"], 0) == 0
    assert sum(r.completed_by.values()) == 1
    if kind == "procrastinate":
        # Procrastinate never reclaims the cut-off worker's own job row (`doing`):
        # the engine's recovery announced the job again as a new row. Once healed,
        # the cut-off worker finished its spent row (deleted), so none is left.
        assert r.queue_rows_left.get("doing", 0) == 0, r.queue_rows_left
