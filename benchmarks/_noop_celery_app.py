"""A Celery app whose one task does nothing: the floor the adapter is compared with.

Same delivery settings as ``setup_celery`` (acks late, prefetch 1), so the
comparison isolates what the chatsvg task body costs.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

from chatsvg_core.queues._celery import (
    _immediate_acks_step,
    _redis_refill_step,
    _resultless_task_base,
)

app = Celery("noop", broker=os.environ["CHATSVG_CELERY_BROKER"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_enable_remote_control=False,
)
# The adapter's consumer steps too: late acks sent when the task ends, and on
# Redis a freed prefetch slot refilled at once.
app.steps["consumer"].add(_immediate_acks_step())
app.steps["consumer"].add(_redis_refill_step())
_counter = redis.Redis.from_url(os.environ["CHATSVG_NOOP_COUNTER"])


# The same task base as the adapter's: one disabled result backend per task
# object (Celery would build one per task greenlet under gevent otherwise).
@app.task(name="noop.run", ignore_result=True, base=_resultless_task_base())
def run(key: str) -> None:
    # One INCR so the benchmark sees completions (an instant provider's job writes too).
    _counter.incr(key)
