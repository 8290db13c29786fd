"""A state machine over the fake server, the provider and the sync facade.

Random sequences of scripting replies, calling the provider (through
``generate_sync``, on the library's one loop thread) and closing it: every call
consumes exactly the next scripted reply (or the default), every outcome has
the documented class, and a closed provider opens a fresh client on next use.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chatsvg_core._sync import run_sync
from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError, TruncatedSVG
from chatsvg_core.generate import (
    GenerationRequest,
    OpenAICompatibleProvider,
    extract_svg,
    generate_sync,
)
from chatsvg_core.testing import (
    ChatReply,
    DisconnectReply,
    ErrorReply,
    FakeOpenAIServer,
    FakeReply,
    RawReply,
)

SVG = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'

# reply -> expected outcome: "svg", "truncated", or an error class with a reason.
CASES: list[tuple[FakeReply, Any]] = [
    (ChatReply(SVG), "svg"),
    (ChatReply(f"Here:\n```svg\n{SVG}\n```\nEnjoy."), "svg"),
    (ChatReply(SVG[:30], finish_reason="length"), "truncated"),
    (ErrorReply(429, retry_after=4), (ProviderTransientError, "rate_limited")),
    (ErrorReply(500), (ProviderTransientError, "server_error")),
    (ErrorReply(401), (ProviderPermanentError, "unauthorized")),
    (RawReply(b"{bad"), (ProviderTransientError, "malformed_json")),
    (RawReply(b'{"choices": []}'), (ProviderTransientError, "no_choices")),
    (ChatReply("", finish_reason="content_filter"), (ProviderPermanentError, "content_filter")),
    (DisconnectReply(), (ProviderTransientError, "disconnected")),
]
DEFAULT_OUTCOME = (ProviderTransientError, "server_error")


class ProviderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = FakeOpenAIServer().start()
        self.provider = OpenAICompatibleProvider(base_url=self.server.base_url, model="m")
        self.expected: deque[Any] = deque()
        self.calls = 0

    @rule(case=st.sampled_from(CASES))
    def script(self, case: tuple[FakeReply, Any]) -> None:
        reply, outcome = case
        self.server.script(reply)
        self.expected.append(outcome)

    @rule(case=st.sampled_from(CASES))
    def script_and_call(self, case: tuple[FakeReply, Any]) -> None:
        self.script(case)
        self.call()

    @rule()
    def call(self) -> None:
        outcome = self.expected.popleft() if self.expected else DEFAULT_OUTCOME
        self.calls += 1
        request = GenerationRequest(prompt="a dot")
        if isinstance(outcome, tuple):
            kind, reason = outcome
            with pytest.raises((ProviderTransientError, ProviderPermanentError)) as info:
                generate_sync(self.provider, request)
            assert type(info.value) is kind
            assert info.value.reason == reason
            return
        output = generate_sync(self.provider, request)
        if outcome == "svg":
            assert extract_svg(output.text) == SVG
        else:
            assert output.finish_reason == "length"
            with pytest.raises(TruncatedSVG):
                extract_svg(output.text)

    @rule()
    def close(self) -> None:
        run_sync(self.provider.aclose)
        assert self.provider._client is None

    @invariant()
    def script_and_requests_match_the_model(self) -> None:
        assert self.server.pending == len(self.expected)
        assert len(self.server.requests) == self.calls

    def teardown(self) -> None:
        run_sync(self.provider.aclose)
        self.server.stop()


ProviderMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=12, deadline=None)
test_provider_state_machine = ProviderMachine.TestCase
