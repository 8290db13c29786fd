"""A large answer is sanitized off the event loop: leases and other jobs go on meanwhile."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

from chatsvg_core.engine import Engine
from chatsvg_core.engine._engine import SANITIZE_INLINE_CHARS
from chatsvg_core.generate import GenerationRequest, ProviderOutput
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.sanitize import SanitizedSVG, Sanitizer
from chatsvg_core.storage.sqlite import SQLiteStore

from ._support import SVG

# A real, large answer: 2000 style rules (slow CSS: the pure-Python tokenizer).
RULES = "".join(f".c{i} > rect{{fill:rgb({i % 255},0,0);stroke:'a'}}" for i in range(2000))
BIG = f'<svg xmlns="http://www.w3.org/2000/svg"><style>{RULES}</style><rect/></svg>'


class PromptProvider:
    """Answers the large SVG to a prompt that says "big", the small one otherwise."""

    name = "prompted"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        text = BIG if "big" in request.prompt else SVG
        return ProviderOutput(text=text, model="m", provider=self.name, latency_s=0.0)


class GatedSanitizer(Sanitizer):
    """The real sanitizer, held at the start of a large document until the test opens it.

    Holding it blocks its thread the way a slow CPU-bound document does: were it
    the event loop's thread, nothing else could run and the gate would time out.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.timed_out = False

    def sanitize(self, data: str | bytes) -> SanitizedSVG:
        if len(data) > SANITIZE_INLINE_CHARS:
            self.entered.set()
            if not self.gate.wait(15):
                self.timed_out = True
        return super().sanitize(data)


async def test_slow_document_leaves_heartbeats_and_other_jobs_running(tmp_path: Path) -> None:
    assert len(BIG) > SANITIZE_INLINE_CHARS
    store = await SQLiteStore.open(tmp_path / "jobs.db", synchronous="normal")
    try:
        engine = Engine(
            store, None, PromptProvider(), lease=timedelta(seconds=2), heartbeat_every=0.05
        )
        sanitizer = GatedSanitizer()
        engine.sanitizer = sanitizer
        await Ledger(store).grant("alice", 10)
        big = (await engine.submit("alice", "k1", {"prompt": "a big picture"})).job
        small = (await engine.submit("alice", "k2", {"prompt": "a cat"})).job
        slow = asyncio.create_task(engine.process(big.id, "w1"))
        assert await asyncio.to_thread(sanitizer.entered.wait, 15)
        async with store.transaction() as tx:
            before = await tx.get_job(big.id)
        # While the large document is held in the sanitizer: another job runs
        # to the end, and the held job's lease is extended by heartbeats.
        other = await asyncio.wait_for(engine.process(small.id, "w2"), 10)
        assert other is not None
        assert other.status is JobStatus.SUCCEEDED
        await asyncio.sleep(0.4)
        async with store.transaction() as tx:
            during = await tx.get_job(big.id)
        assert before is not None and during is not None
        assert during.status is JobStatus.RUNNING
        assert before.lease_expires_at is not None and during.lease_expires_at is not None
        assert during.lease_expires_at > before.lease_expires_at
        sanitizer.gate.set()
        done = await asyncio.wait_for(slow, 30)
        assert not sanitizer.timed_out
        assert done is not None
        assert done.status is JobStatus.SUCCEEDED
        stored = await engine.result(big.id)
        assert stored is not None
        assert ".c1999" in stored.svg
    finally:
        await store.aclose()
