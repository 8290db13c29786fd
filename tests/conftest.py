"""Shared fixtures: service addresses, and the rule that CI never skips a service test.

Tests that need an outside service (PostgreSQL, Redis, Chromium, node) ask for
one of the fixtures below. Where the service is not configured or not
reachable the test is skipped with the reason, unless
``CHATSVG_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns that skip
into a failure so CI can never pass by skipping the real-database tests.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REQUIRE_SERVICES = os.environ.get("CHATSVG_REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    """Skip the current test, or fail it when services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (CHATSVG_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        with socket.create_connection((host, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _server_url(var: str, default_port: int, what: str) -> str:
    url = os.environ.get(var)
    if not url:
        service_missing(f"{what} tests need {var} (e.g. set by .ci/run); not set")
    assert url is not None
    if not _reachable(url, default_port):
        service_missing(f"{what} at {var}={url} is not reachable")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for tests (``CHATSVG_TEST_POSTGRES_URL``)."""
    return _server_url("CHATSVG_TEST_POSTGRES_URL", 5432, "PostgreSQL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server for tests (``CHATSVG_TEST_REDIS_URL``)."""
    return _server_url("CHATSVG_TEST_REDIS_URL", 6379, "Redis")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The RabbitMQ server for tests (``CHATSVG_TEST_AMQP_URL``); tests use queues of their own."""
    return _server_url("CHATSVG_TEST_AMQP_URL", 5672, "RabbitMQ")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """A headless-capable Chromium binary (``CHATSVG_TEST_CHROMIUM`` or /usr/bin/chromium)."""
    path = os.environ.get("CHATSVG_TEST_CHROMIUM") or shutil.which("chromium")
    if not path or not os.path.exists(path):
        service_missing("browser tests need Chromium (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def node_path() -> str:
    """The ``node`` binary, for cross-checks against JavaScript implementations."""
    path = os.environ.get("CHATSVG_TEST_NODE") or shutil.which("node")
    if not path:
        service_missing("cross-language tests need node on PATH")
    assert path is not None
    return path
