"""Every bad input to a public entry point raises a typed error, and writes nothing.

The inputs are arbitrary JSON values (what an HTTP body can hold) and
arbitrary Python objects (what a host's own code can pass by mistake).
Anything but a success or a :class:`ChatSVGError` fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core import (
    ChatSVGError,
    Engine,
    InvalidIdempotencyKey,
    InvalidOwner,
    InvalidRequest,
    Ledger,
    MemoryStore,
    OfflineSketchProvider,
    Sanitizer,
    sanitize_svg,
)
from chatsvg_core.testing import FakeClock

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
python_objects = st.one_of(
    st.binary(max_size=20),
    st.builds(object),
    st.just(math.nan),
    st.just(...),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.complex_numbers(allow_nan=False),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs"]), min_size=1, max_size=3),
)
anything = json_values | python_objects
# Requests that are nearly right, with one field swapped for anything.
requests = anything | st.fixed_dictionaries(
    {"prompt": st.just("a red circle") | anything},
    optional={
        "width": anything,
        "height": anything,
        "detail": anything,
        "style": anything,
        "model": anything,
        "extra": anything,
    },
)


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await make()
        except ChatSVGError as exc:
            return exc

    return asyncio.run(main())


def engine() -> Engine:
    return Engine(MemoryStore(), None, OfflineSketchProvider(), clock=FakeClock())


async def nothing_written(e: Engine) -> bool:
    async with e.store.transaction() as tx:
        return not await tx.list_jobs(limit=1)


@settings(max_examples=150, deadline=None)
@given(owner=st.just("alice") | anything, key=st.just("k-1") | anything, request=requests)
def test_submit_accepts_only_typed_errors(owner: object, key: object, request: object) -> None:
    e = engine()

    async def submit() -> Any:
        try:
            return await e.submit(owner, key, request)  # type: ignore[arg-type]
        except ChatSVGError:
            assert await nothing_written(e), "a refused submit wrote a job"
            raise

    out = run(submit)
    if isinstance(out, ChatSVGError):
        assert 400 <= out.http_status < 500
        assert out.to_dict()["code"] == out.code


LEDGER_CALLS: list[tuple[str, Callable[[Ledger, object], Awaitable[Any]]]] = [
    ("grant owner", lambda led, x: led.grant(x, 5)),  # type: ignore[arg-type]
    ("grant amount", lambda led, x: led.grant("alice", x)),  # type: ignore[arg-type]
    ("grant external_id", lambda led, x: led.grant("alice", 5, external_id=x)),  # type: ignore[arg-type]
    ("grant memo", lambda led, x: led.grant("alice", 5, memo=x)),  # type: ignore[arg-type]
    ("charge owner", lambda led, x: led.charge(x, 1, ref="j")),  # type: ignore[arg-type]
    ("charge amount", lambda led, x: led.charge("alice", x, ref="j")),  # type: ignore[arg-type]
    ("charge ref", lambda led, x: led.charge("alice", 1, ref=x)),  # type: ignore[arg-type]
    ("charge cap", lambda led, x: led.charge("alice", 1, ref="j", daily_cap=x)),  # type: ignore[arg-type]
    ("reserve amount", lambda led, x: led.reserve("alice", x, ref="j")),  # type: ignore[arg-type]
    ("refund ref", lambda led, x: led.refund(x)),  # type: ignore[arg-type]
    ("capture ref", lambda led, x: led.capture(x)),  # type: ignore[arg-type]
    ("release ref", lambda led, x: led.release(x)),  # type: ignore[arg-type]
    ("adjust amount", lambda led, x: led.adjust("alice", x)),  # type: ignore[arg-type]
    ("balance owner", lambda led, x: led.balance(x)),  # type: ignore[arg-type]
    ("statement limit", lambda led, x: led.statement("alice", limit=x)),  # type: ignore[arg-type]
    ("statement before", lambda led, x: led.statement("alice", before=x)),  # type: ignore[arg-type]
    ("usage at", lambda led, x: led.usage("alice", at=x)),  # type: ignore[arg-type]
]


@settings(max_examples=300, deadline=None)
@given(call=st.sampled_from(LEDGER_CALLS), value=anything)
def test_ledger_accepts_only_typed_errors(
    call: tuple[str, Callable[[Ledger, object], Awaitable[Any]]], value: object
) -> None:
    async def go() -> Any:
        led = Ledger(MemoryStore(), clock=FakeClock())
        await led.grant("alice", 100, external_id="seed")
        return await call[1](led, value)

    run(go)


@settings(max_examples=150, deadline=None)
@given(value=anything)
def test_sanitizer_accepts_only_typed_errors(value: object) -> None:
    for fn in (Sanitizer().sanitize, sanitize_svg):
        with contextlib.suppress(ChatSVGError):
            fn(value)  # type: ignore[arg-type]
    if value is not None:  # None means the default policy
        with contextlib.suppress(ChatSVGError):
            sanitize_svg('<svg xmlns="http://www.w3.org/2000/svg"/>', policy=value)  # type: ignore[arg-type]
        with contextlib.suppress(ChatSVGError):
            Sanitizer(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": b"cat"}, "prompt"),
        ({"prompt": "cat", "width": "big"}, "width"),
        ({"prompt": "cat", "width": "512"}, "width"),
        ({"prompt": "cat", "width": 1.5}, "width"),
        ({"prompt": "cat", "width": 512.0}, "width"),
        ({"prompt": "cat", "width": True}, "width"),
        ({"prompt": "cat", "width": -5}, "width"),
        ({"prompt": "cat", "colour": "red"}, "colour"),
        ({}, "prompt"),
        ("a cat", "(request)"),
        (["a cat"], "(request)"),
        (None, "(request)"),
    ],
)
async def test_the_issue_s_malformed_submissions_name_their_field(
    request_: object, field: str
) -> None:
    e = engine()
    with pytest.raises(InvalidRequest) as err:
        await e.submit("alice", "k", request_)  # type: ignore[arg-type]
    assert err.value.field == field
    assert err.value.http_status == 422
    assert all("input" not in d for d in err.value.errors), "rejected values stay out"
    assert await nothing_written(e)


@pytest.mark.parametrize(
    "owner", ["", "x" * 256, None, 5, "nul\x00inside", "new\nline", "\ud800", b"alice"]
)
async def test_owners_get_one_rule_at_submit_and_in_the_ledger(owner: object) -> None:
    e = engine()
    with pytest.raises(InvalidOwner) as at_submit:
        await e.submit(owner, None, {"prompt": "a cat"})  # type: ignore[arg-type]
    with pytest.raises(InvalidOwner) as at_ledger:
        await Ledger(e.store).grant(owner, 1)  # type: ignore[arg-type]
    assert at_submit.value.reason == at_ledger.value.reason
    assert at_submit.value.http_status == 400


async def test_a_key_that_is_not_a_string_is_a_key_error() -> None:
    with pytest.raises(InvalidIdempotencyKey):
        await engine().submit("alice", 42, {"prompt": "a cat"})  # type: ignore[arg-type]


async def test_owner_of_max_length_is_accepted() -> None:
    sub = await engine().submit("x" * 255, None, {"prompt": "a cat"})
    assert sub.job.owner == "x" * 255
