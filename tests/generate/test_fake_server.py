"""The fake OpenAI-compatible server shipped for hosts, and the corpus through real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from chatsvg_core.errors import NoSVGFound, TruncatedSVG
from chatsvg_core.generate import GenerationRequest, OpenAICompatibleProvider, extract_svg
from chatsvg_core.testing import ChatReply, ErrorReply, FakeOpenAIServer, RawReply

CORPUS = Path(__file__).parent.parent / "data" / "model_answers"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text("utf-8"))


def read(name: str) -> str:
    with open(CORPUS / name, encoding="utf-8", newline="") as f:
        return f.read()


def test_binds_loopback_free_port_and_stops() -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        assert a.port != b.port
        assert a.base_url == f"http://127.0.0.1:{a.port}/v1"
        url = a.base_url
        assert httpx.get(f"{url}/models").json()["data"][0]["id"] == "fake-model"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=1)
    with pytest.raises(RuntimeError):
        _ = FakeOpenAIServer().port


def test_script_is_consumed_in_order_then_default() -> None:
    with FakeOpenAIServer(default=ErrorReply(418, "teapot"), check_requests=False) as server:
        server.script(
            ChatReply("one"), ErrorReply(503), RawReply(b"raw", content_type="text/plain")
        )
        assert server.pending == 3
        url = f"{server.base_url}/chat/completions"
        first = httpx.post(url, json={"n": 1})
        assert first.json()["choices"][0]["message"]["content"] == "one"
        assert httpx.post(url, json={"n": 2}).status_code == 503
        third = httpx.post(url, json={"n": 3})
        assert (third.status_code, third.text, third.headers["content-type"]) == (
            200,
            "raw",
            "text/plain",
        )
        assert httpx.post(url, json={}).status_code == 418
        assert server.pending == 0
        assert [r.json().get("n") for r in server.requests] == [1, 2, 3, None]
        assert httpx.post(f"{server.base_url}/other", json={}).status_code == 404


def test_error_reply_shape_and_retry_after_header() -> None:
    with FakeOpenAIServer(check_requests=False) as server:
        server.script(ErrorReply(429, "slow down", code="rate_limit_exceeded", retry_after=3))
        response = httpx.post(f"{server.base_url}/chat/completions", json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == {
        "message": "slow down",
        "type": "fake_error",
        "code": "rate_limit_exceeded",
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "'model'"),
        (b'{"model": "m", "messages": []}', "'messages'"),
        (b'{"model": "m", "messages": [{"content": "x"}]}', "'role'"),
        (b'{"model": "m", "messages": [{"role": "user"}]}', "'content'"),
    ],
)
def test_malformed_requests_get_a_400_without_using_the_script(body: bytes, problem: str) -> None:
    with FakeOpenAIServer() as server:
        server.script(ChatReply("kept"))
        response = httpx.post(f"{server.base_url}/chat/completions", content=body)
        assert response.status_code == 400
        assert problem in response.json()["error"]["message"]
        assert server.pending == 1
        assert server.requests[0].body == body


@pytest.mark.parametrize("name", sorted(MANIFEST))
async def test_corpus_answers_survive_real_http(fake_server: FakeOpenAIServer, name: str) -> None:
    """Every corpus answer, served by the fake server, extracts as the manifest says."""
    text = read(name)
    fake_server.script(ChatReply(text))
    async with OpenAICompatibleProvider(base_url=fake_server.base_url, model="m") as provider:
        output = await provider.generate(GenerationRequest(prompt="draw"))
    assert output.text == text
    outcome = MANIFEST[name]["outcome"]
    if outcome == "svg":
        assert extract_svg(output.text) == read(MANIFEST[name]["expected"])
    else:
        with pytest.raises(TruncatedSVG if outcome == "truncated" else NoSVGFound):
            extract_svg(output.text)


async def test_captured_answers_are_reproducible() -> None:
    """The captured_* corpus files are exactly what the provider receives today."""
    from .capture_answers import capture

    captured = await capture()
    assert captured
    for name, (text, outcome, expected) in captured.items():
        assert read(f"{name}.txt") == text
        assert MANIFEST[f"{name}.txt"]["outcome"] == outcome
        if expected is not None:
            assert read(MANIFEST[f"{name}.txt"]["expected"]) == expected
