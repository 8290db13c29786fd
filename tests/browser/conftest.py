"""Fixtures for the browser proofs: one Chromium and one loopback server per session."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browserkit import BrowserPortal, LoopbackServer


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    """An in-memory HTTP server on 127.0.0.1 (free port) for the cases' pages."""
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def browser_portal(chromium_path: str) -> Iterator[BrowserPortal]:
    """One headless Chromium for the whole session, driven by Playwright."""
    portal = BrowserPortal(chromium_path)
    yield portal
    if portal.crashes:
        # Cases were retried on a fresh browser; say so rather than hide it.
        warnings.warn(f"Chromium crashed and was relaunched: {portal.crashes}", stacklevel=1)
    portal.close()
