"""A submitter or settler PROCESS for the admission concurrency tests (run as a script).

    python _proc.py <mode> <json-config>

It opens its own PostgreSQL store, prints ``READY``, waits for a line on
stdin (a start barrier, so the processes really overlap), works, and prints
one JSON line with what it did. Modes:

* ``submit``: submit ``rounds`` jobs for each owner in turn, with credits
  reserved at submit, counting what was admitted and what refused;
* ``settle``: capture or release every reference given, in the given order
  (the operation alternating with the position and the seed), counting what
  each call answered.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from chatsvg_core import Engine, OfflineSketchProvider
from chatsvg_core.errors import (
    DailyCapExceeded,
    InFlightLimitExceeded,
    InsufficientCredits,
)
from chatsvg_core.ledger import LedgerConflict, capture, release
from chatsvg_core.storage.postgres import PostgresStore


async def submit(store: PostgresStore, cfg: dict[str, Any]) -> dict[str, Any]:
    caps: dict[str, int] = cfg["caps"]
    limits: dict[str, int] = cfg["limits"]
    engine = Engine(
        store,
        None,
        OfflineSketchProvider(),
        charge_at="submit",
        daily_cap=lambda owner: caps.get(owner),
        max_in_flight=lambda owner: limits.get(owner),
    )
    out: dict[str, dict[str, int]] = {o: {} for o in cfg["owners"]}
    for i in range(cfg["rounds"]):
        for owner in cfg["owners"]:
            try:
                await engine.submit(owner, f"{cfg['name']}-{i}", {"prompt": "a red circle"})
                code = "admitted"
            except (InsufficientCredits, DailyCapExceeded, InFlightLimitExceeded) as exc:
                code = exc.code
            out[owner][code] = out[owner].get(code, 0) + 1
    return out


async def ratelimit(store: PostgresStore, cfg: dict[str, Any]) -> dict[str, Any]:
    from chatsvg_core.errors import RateLimited
    from chatsvg_core.ratelimit import SubmitRateLimit

    options = {"per_owner": cfg["per_owner"], "namespace": cfg["namespace"]}
    if cfg["counters"] == "sql":
        limit = SubmitRateLimit.in_store(store, **options)
    else:
        limit = SubmitRateLimit.from_url(cfg["counters"], **options)
    engine = Engine(store, None, OfflineSketchProvider(), rate_limit=limit)
    out: dict[str, int] = {}
    for i in range(cfg["rounds"]):
        try:
            await engine.submit("ann", None, {"prompt": f"a red circle {i}"})
            code = "admitted"
        except RateLimited as exc:
            code = exc.code if 1 <= exc.retry_after <= 60 else "bad_retry_after"
        out[code] = out.get(code, 0) + 1
    return out


async def settle(store: PostgresStore, cfg: dict[str, Any]) -> dict[str, Any]:
    # Every process walks the references in the same order, so that they meet
    # on each one, and neighbours (seeds 0, 1, ...) choose opposite operations,
    # so that a capture and a release race for every reference. (In a random
    # order they seldom met: a settle without the account lock slipped through
    # six runs in ten; docs/mutation.md.)
    done: dict[str, int] = {}
    for position, ref in enumerate(cfg["refs"]):
        op = capture if (position + cfg["seed"]) % 2 == 0 else release
        try:
            async with store.transaction() as tx:
                entry = await op(tx, ref, now=store._clock.now())
            code = entry.kind.value
        except LedgerConflict:
            code = "conflict"
        done[code] = done.get(code, 0) + 1
    return done


async def main(mode: str, cfg: dict[str, Any]) -> None:
    store = await PostgresStore.open(cfg["url"], schema=cfg["schema"], min_size=1, max_size=2)
    try:
        print("READY", flush=True)
        sys.stdin.readline()
        work = {"submit": submit, "settle": settle, "ratelimit": ratelimit}[mode]
        result = await work(store, cfg)
        print(json.dumps(result), flush=True)
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
