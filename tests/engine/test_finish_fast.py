"""The finish's metadata shortcut stores what the reference path stores (issue 15).

The engine writes its result metadata's JSON itself and gives the dict up to
the result (``hand_over_json``): the text must be ``_dump``'s, byte for byte,
for every metadata a provider's output can give, and the result and the
stored row must be those of the reference path (a copy, then ``_dump``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core._construct import hand_over_json, handed_json, take_json
from chatsvg_core.engine import _engine as engine_module
from chatsvg_core.engine._engine import _metadata_json, _usage
from chatsvg_core.engine._events import EventKind, wanted
from chatsvg_core.generate import TokenUsage
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import MemoryStore, SQLiteStore
from chatsvg_core.storage._jobs import _result
from chatsvg_core.storage._sql import _dump

from ._support import SVG

_TEXT = st.text(max_size=20)
_COUNT = st.none() | st.integers(min_value=0, max_value=10**20)


def _metadata(
    model: str, provider: str, latency: float, usage: TokenUsage, reason: str | None, changed: bool
) -> dict[str, Any]:
    # The dict as Engine._generate builds it (same keys, same order).
    return {
        "model": model,
        "provider": provider,
        "latency_s": latency,
        "usage": _usage(usage),
        "finish_reason": reason,
        "sanitizer_changed": changed,
    }


@given(
    _TEXT,
    _TEXT,
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.builds(TokenUsage, prompt_tokens=_COUNT, completion_tokens=_COUNT, total_tokens=_COUNT),
    st.none() | _TEXT,
    st.booleans(),
)
@example("m", "p", 0.0, TokenUsage(), None, False)
@example('"\\\x00\u00e9\U0001f600\u2028', "p", 1e-300, TokenUsage(prompt_tokens=1), "stop", True)
@example("m", "p", 1e300, TokenUsage(total_tokens=10**30), "", True)
def test_the_written_metadata_is_dumps(
    model: str, provider: str, latency: float, usage: TokenUsage, reason: str | None, changed: bool
) -> None:
    metadata = _metadata(model, provider, latency, usage, reason, changed)
    assert _metadata_json(metadata) == _dump(metadata)


class _Str(str):
    pass


@pytest.mark.parametrize(
    "change",
    [
        {"latency_s": math.inf},
        {"latency_s": -math.inf},
        {"latency_s": math.nan},
        {"usage": {"prompt_tokens": 1, "completion_tokens": None, "total_tokens": "3"}},
        {"latency_s": 1},
        {"model": _Str("m")},
        {"finish_reason": 3},
        {"sanitizer_changed": 1},
        {"usage": {"prompt_tokens": 1, "completion_tokens": 2}},
        {"usage": {"prompt_tokens": True, "completion_tokens": 2, "total_tokens": 3}},
        {"usage": {"prompt_tokens": 1.0, "completion_tokens": 2, "total_tokens": 3}},
        {"usage": {"a": 1, "completion_tokens": 2, "total_tokens": 3}},
        {"extra": 1},
    ],
)
def test_anything_else_is_left_to_the_store(change: dict[str, Any]) -> None:
    metadata = {**_metadata("m", "p", 0.5, TokenUsage(), "stop", False), **change}
    assert _metadata_json(metadata) is None


def test_a_handed_dict_becomes_the_result_and_its_text_is_taken_once() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    metadata = _metadata("m", "p", 0.5, TokenUsage(prompt_tokens=3), "stop", True)
    reference = _result("j", "<svg/>", dict(metadata), now)
    text = _metadata_json(metadata)
    assert text is not None
    hand_over_json(metadata, text)
    fast = _result("j", "<svg/>", metadata, now)
    assert fast == reference
    assert fast.model_dump() == reference.model_dump()
    assert fast.metadata is metadata and handed_json(metadata)
    assert take_json(dict(metadata)) is None  # by identity, not equality
    assert take_json(metadata) == text
    assert take_json(metadata) is None and not handed_json(metadata)


class _Provider:
    name = "p\u00e9"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        return ProviderOutput(
            text=SVG,
            model='m\u2028"x',
            provider=self.name,
            latency_s=0.125,
            usage=TokenUsage(prompt_tokens=2, completion_tokens=None, total_tokens=7),
            finish_reason="stop",
        )


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_the_engine_stores_what_the_reference_path_stores(
    backend: str, tmp_path: Path
) -> None:
    store = MemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "db.sqlite")
    if isinstance(store, SQLiteStore):
        await store.migrate()
    try:
        engine = Engine(store, None, _Provider())
        await Ledger(store).grant("o", 10)
        job = (await engine.submit("o", None, {"prompt": "a cat"})).job
        done = await engine.process_next("w")
        assert done is not None and done.id == job.id
        async with store.transaction() as tx:
            stored = await tx.get_result(job.id)
        assert stored is not None
        expected = {
            "model": 'm\u2028"x',
            "provider": "p\u00e9",
            "latency_s": 0.125,
            "usage": {"prompt_tokens": 2, "completion_tokens": None, "total_tokens": 7},
            "finish_reason": "stop",
            "sanitizer_changed": stored.metadata["sanitizer_changed"],
        }
        assert stored.metadata == expected
        if isinstance(store, SQLiteStore):
            assert not handed_json(stored.metadata)  # taken by the insert
            conn = await store._connection()
            (raw,) = conn.execute(
                "SELECT metadata FROM chatsvg_results WHERE job_id = ?", (job.id,)
            ).fetchone()
            assert raw == _dump(expected)
            assert json.loads(raw) == expected
    finally:
        await store.aclose()


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
@pytest.mark.parametrize("kind", list(EventKind))
def test_an_event_is_built_exactly_when_wanted_says_so(
    kind: EventKind, level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Engine._emit inlines _events.wanted for an engine without hook or instrumentation.
    built: list[EventKind] = []
    monkeypatch.setattr(engine_module, "emit", lambda hook, event: built.append(event.kind))
    engine = Engine(MemoryStore(), None, _Provider())
    job = new_job(
        job_id="j1",
        owner="o",
        request={"prompt": "a cat"},
        request_hash="h",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    logger = logging.getLogger("chatsvg_core.engine")
    old = logger.level
    logger.setLevel(level)
    try:
        engine._emit(kind, job)
        assert (built == [kind]) == wanted(None, kind)
    finally:
        logger.setLevel(old)


async def test_alone_reads_the_current_task_as_asyncio_does() -> None:
    # storage.sqlite._alone (and the engine's attempt) read asyncio's registry
    # of current tasks directly where current_task is the Python function reading it.
    from chatsvg_core._tasks import CURRENT_TASKS
    from chatsvg_core.storage import sqlite as sqlite_module

    tasks = CURRENT_TASKS
    if tasks is not None:
        assert tasks.get(asyncio.get_running_loop()) is asyncio.current_task() is not None
    assert sqlite_module._alone() in (True, False)

    async def other() -> bool:
        return sqlite_module._alone()

    # With a second task alive, the answer is False (this task is not alone).
    blocker = asyncio.create_task(asyncio.sleep(1))
    try:
        assert await asyncio.create_task(other()) is False
    finally:
        blocker.cancel()
