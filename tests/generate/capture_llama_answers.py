"""Record answers of a real llama.cpp server (SmolLM2-135M) in ``tests/data/llama_answers``.

Run ``PYTHONPATH=src:tests python -m generate.capture_llama_answers`` from the worktree root
(needs the ``[llm-server]`` extra). Each answer is what the provider returned (streamed,
closed at the end of the first complete SVG), so the files show what a host really receives
from a small local model; ``measure_repairs.py`` counts what becomes of them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from chatsvg_core.errors import ChatSVGError
from chatsvg_core.generate import GenerationRequest, OpenAICompatibleProvider

from ._llama import LLAMA_KEY, llama_server

OUT = Path(__file__).parent.parent / "data" / "llama_answers"
PROMPTS = [
    "a red circle",
    "a yellow sun over a blue sea",
    "a green tree",
    "a house with a red roof",
    "a smiling face",
    "a black cat",
    "a star",
    "a lighthouse at dusk",
    "a coffee cup",
    "a blue square inside a red square",
    "a mountain with snow",
]


async def capture() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with llama_server("--n_threads", "2") as server:
        async with OpenAICompatibleProvider(
            base_url=server.base_url,
            model=str(server.model),
            api_key=LLAMA_KEY,
            temperature=0.7,
            max_tokens=250,
        ) as provider:
            for i, prompt in enumerate(PROMPTS):
                request = GenerationRequest(prompt=prompt, width=256, height=256)
                try:
                    output = await provider.generate(request)
                except ChatSVGError as exc:
                    print(f"{prompt!r}: {exc}")
                    continue
                slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")
                (OUT / f"{i:02d}_{slug}.txt").write_text(output.text, encoding="utf-8")
                print(f"{prompt!r}: {output.finish_reason}, {len(output.text)} chars")


if __name__ == "__main__":
    asyncio.run(capture())
