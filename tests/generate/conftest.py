"""Fixtures for the generation tests: a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatsvg_core.testing import FakeOpenAIServer

API_KEY = "sk-test-SECRET-0123456789abcdef"
"""A key that must never appear in any error, repr or log line."""


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fresh scripted server per test (cheap: one thread, one socket)."""
    with FakeOpenAIServer() as server:
        yield server
