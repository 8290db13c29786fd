"""Test kit for hosts: strategies, a fake clock, conformance suites, fake servers.

Importing :mod:`chatsvg_core` never imports this package; it needs the
``testing`` extra (hypothesis, pytest) for the parts that use them.
"""

from __future__ import annotations

from chatsvg_core.testing._clock import FakeClock
from chatsvg_core.testing._fake_openai import (
    ChatReply,
    DisconnectReply,
    ErrorReply,
    FakeOpenAIServer,
    FakeReply,
    RawReply,
    RecordedRequest,
)

__all__ = [
    "ChatReply",
    "DisconnectReply",
    "ErrorReply",
    "FakeClock",
    "FakeOpenAIServer",
    "FakeReply",
    "RawReply",
    "RecordedRequest",
]
