"""Equal policies share one prepared sanitizer: no entry point rebuilds tables per call."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chatsvg_core.sanitize import SanitizePolicy, Sanitizer, _sanitizer, sanitize_svg

DOC = '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[SanitizePolicy]:
    built: list[SanitizePolicy] = []
    original = Sanitizer.__init__

    def counting(self: Sanitizer, policy: SanitizePolicy | None = None) -> None:
        built.append(policy or SanitizePolicy.default())
        original(self, policy)

    monkeypatch.setattr(Sanitizer, "__init__", counting)
    return built


def test_sanitize_svg_with_a_policy_builds_once_per_equal_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _count_builds(monkeypatch)
    policy = SanitizePolicy.default().extend(id_prefix="prep1")
    for _ in range(20):
        sanitize_svg(DOC, policy=policy)
        # An equal policy built separately (another request, another config load).
        sanitize_svg(DOC, policy=SanitizePolicy.default().extend(id_prefix="prep1"))
    assert built.count(policy) <= 1


def test_equal_policies_share_one_sanitizer_and_unequal_ones_do_not() -> None:
    a = Sanitizer.prepared(SanitizePolicy.strict().extend(max_depth=50))
    b = Sanitizer.prepared(SanitizePolicy.strict().extend(max_depth=50))
    c = Sanitizer.prepared(SanitizePolicy.strict().extend(max_depth=51))
    assert a is b
    assert a is not c
    assert c.policy.max_depth == 51
    assert Sanitizer.prepared() is Sanitizer.prepared(SanitizePolicy.default())


def test_the_cache_is_bounded() -> None:
    for depth in range(2, 2 + 3 * _sanitizer.PREPARED_CACHE_SIZE):
        Sanitizer.prepared(SanitizePolicy.default().extend(max_depth=depth))
    assert len(_sanitizer._PREPARED) <= _sanitizer.PREPARED_CACHE_SIZE
    # Still correct after evictions.
    s = Sanitizer.prepared(SanitizePolicy.default().extend(max_depth=7))
    assert s.policy.max_depth == 7
    assert s.sanitize(DOC).svg == DOC


def test_threads_get_one_working_sanitizer() -> None:
    policy_args: dict[str, Any] = {"id_prefix": "thr"}
    got: list[Sanitizer] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        s = Sanitizer.prepared(SanitizePolicy.default().extend(**policy_args))
        got.append(s)
        assert s.sanitize(DOC).svg == DOC

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8
    assert len({id(s) for s in got}) == 1
