"""Capture corpus answers by scripting the fake server and reading them back over HTTP.

Run ``python -m tests.generate.capture_answers`` from the worktree root (with
``PYTHONPATH=src``) to (re)write the ``captured_*`` files of
``tests/data/model_answers``; ``test_fake_server.py`` checks they are reproducible.
Each capture goes through the real provider, so the files hold what a host
really receives for wire shapes that differ from a plain string: content parts,
JSON escapes of every non-ASCII and markup character, a ``length`` cut-off, and
the offline provider's own output.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from chatsvg_core.generate import GenerationRequest, OfflineSketchProvider, OpenAICompatibleProvider
from chatsvg_core.testing import ChatReply, FakeOpenAIServer, FakeReply, RawReply

CORPUS = Path(__file__).parent.parent / "data" / "model_answers"

_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<circle cx="32" cy="32" r="24" fill="#ffd93b"/>'
    '<text x="32" y="60" text-anchor="middle">☀ sol</text></svg>'
)


def _completion(message: dict[str, object], finish: str = "stop") -> bytes:
    body = {
        "model": "captured",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    return (
        json.dumps(body, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e").encode()
    )


# name -> (reply, expected outcome, expected SVG or None)
SCRIPTS: dict[str, tuple[FakeReply, str, str | None]] = {
    "captured_content_parts": (
        RawReply(
            _completion(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Here is the sun:\n```svg\n" + _SVG[:40]},
                        {"type": "text", "text": _SVG[40:] + "\n```"},
                    ],
                }
            )
        ),
        "svg",
        _SVG,
    ),
    "captured_json_escapes": (
        RawReply(_completion({"role": "assistant", "content": f"Voilà ! {_SVG} — fini."})),
        "svg",
        _SVG,
    ),
    "captured_length_cutoff": (
        ChatReply("```svg\n" + _SVG[:70], finish_reason="length"),
        "truncated",
        None,
    ),
}


async def capture() -> dict[str, tuple[str, str, str | None]]:
    """Fetch every scripted answer through the provider; add the offline provider's output."""
    results: dict[str, tuple[str, str, str | None]] = {}
    with FakeOpenAIServer() as server:
        async with OpenAICompatibleProvider(base_url=server.base_url, model="m") as provider:
            for name, (reply, outcome, expected) in SCRIPTS.items():
                server.script(reply)
                output = await provider.generate(GenerationRequest(prompt=name))
                results[name] = (output.text, outcome, expected)
    offline = await OfflineSketchProvider().generate(
        GenerationRequest(prompt="a lighthouse at dusk with waves", width=800, height=600)
    )
    results["captured_offline_sketch"] = (offline.text, "svg", offline.text)
    return results


def main() -> None:
    """Write the captured answers and their manifest entries."""
    manifest = json.loads((CORPUS / "manifest.json").read_text("utf-8"))
    for name, (text, outcome, expected) in asyncio.run(capture()).items():
        (CORPUS / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
        entry: dict[str, str] = {
            "outcome": outcome,
            "note": "captured over HTTP; see capture_answers.py",
        }
        if expected is not None:
            (CORPUS / f"{name}.expected.svg").write_text(expected, encoding="utf-8", newline="")
            entry["expected"] = f"{name}.expected.svg"
        manifest[f"{name}.txt"] = entry
    (CORPUS / "manifest.json").write_text(
        json.dumps(dict(sorted(manifest.items())), indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


if __name__ == "__main__":
    main()
