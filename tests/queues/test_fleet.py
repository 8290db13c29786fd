"""Queue adapters in real worker processes: many calls in flight, and chaos.

Small versions of ``benchmarks/bench_inflight.py`` and
``benchmarks/queue_chaos.py`` (numbers recorded in benchmarks/README.md):

* one worker process of each kind holds many slow model calls at once, with
  no lease lost, lease upkeep far below one statement per job, and a small
  share of one core;
* four worker processes of arq or Procrastinate, SIGKILLed at random and
  restarted, through a broker outage (a redis-server of the test's own,
  stopped and restarted empty; or every worker connection cut with
  ``pg_terminate_backend``) and a provider that fails and hangs, finish every
  job with every invariant kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._fleet import chaos, inflight
from ._support import redis_db

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("kind", ["inprocess", "arq", "procrastinate"])
async def test_one_worker_holds_many_calls_in_flight(
    kind: str, postgres_url: str, redis_url: str
) -> None:
    jobs, call = 100, 3.0
    r = await inflight(
        kind,
        postgres_url=postgres_url,
        redis_url=redis_db(redis_url, 5),
        jobs=jobs,
        call_seconds=call,
        lease=6.0,
    )
    print(f"\n{r} statements/job={r.lease_statements_per_job:.3f} cpu={r.cpu_share:.2f}")
    assert r.succeeded == jobs
    assert r.lease_lost == 0
    # Most calls overlapped (claims are the ramp: a loaded CI machine claims slower).
    assert r.peak_in_flight >= jobs * 0.6
    # Lease upkeep: a handful of batched rounds, not one write per job per interval.
    assert 0 < r.keeper_rounds <= r.run_seconds / 2 + 2
    assert r.lease_statements_per_job < 0.2
    assert r.cpu_share < 0.75


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["arq", "procrastinate"])
async def test_workers_survive_kill_9_and_a_broker_outage(
    kind: str, postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    r = await chaos(
        kind,
        postgres_url=postgres_url,
        jobs=60,
        workers=4,
        seed=7,
        kill_every=4.0,
        outage_after=0.25,
        outage_seconds=2.0,
        give_up_after=100,
        workdir=tmp_path,
    )
    print(f"\n{r.row()}")
    assert r.violations == []
    assert r.sigkills > 0 and r.outages == 1
    assert r.statuses["succeeded"] > 0
    assert sum(r.statuses.values()) == 60
    assert r.statuses["queued"] == r.statuses["running"] == 0
