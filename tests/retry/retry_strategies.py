"""Hypothesis strategies for the retry tests (imported by name from this folder)."""

from __future__ import annotations

from hypothesis import strategies as st

from chatsvg_core.retry import ErrorClass, Jitter, RetryPolicy

delays = st.floats(min_value=0, max_value=600, allow_nan=False, allow_infinity=False)
verdicts = st.sampled_from(list(ErrorClass))
# Built from parts rather than ``from_regex``, which is several times slower to draw.
_parts = st.sampled_from(["httpx", "builtins", "ReadTimeout", "errors", "_x", "A1", "mod_2"])
dotted = st.lists(_parts, min_size=1, max_size=4).map(".".join)


@st.composite
def policies(
    draw: st.DrawFn, *, jitter: Jitter | None = None, overrides: bool = False
) -> RetryPolicy:
    """Any valid policy without a classifier (so it round-trips).

    Overrides are drawn only when asked: they matter for serialisation, not for
    delays, and drawing them dominates the cost of the strategy.
    """
    initial = draw(delays)
    max_delay = draw(st.floats(min_value=initial, max_value=max(initial, 3600), allow_nan=False))
    return RetryPolicy(
        max_attempts=draw(st.integers(1, 100)),
        initial_delay=initial,
        multiplier=draw(st.floats(min_value=1, max_value=10, allow_nan=False)),
        max_delay=max_delay,
        jitter=jitter if jitter is not None else draw(st.sampled_from(list(Jitter))),
        deadline=draw(st.none() | st.floats(min_value=0.001, max_value=7 * 86400)),
        honour_retry_after=draw(st.booleans()),
        retry_after_cap=draw(st.floats(min_value=0, max_value=86400)),
        status_overrides=draw(st.dictionaries(st.integers(100, 599), verdicts, max_size=4))
        if overrides
        else {},
        type_overrides=draw(st.dictionaries(dotted, verdicts, max_size=4)) if overrides else {},
    )
