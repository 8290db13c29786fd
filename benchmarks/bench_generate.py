"""Extraction speed: extract_svg against a floor and a naive peer, on the same inputs.

- floor: ``str.find`` of ``<svg`` and ``</svg>`` (finds a span, understands nothing);
- naive peer: ``re.search(r"<svg[\\s>].*?</svg>", DOTALL | IGNORECASE)``, the usual
  hand-written extractor (no fences, no nesting, no quotes, no truncation rule).

Run: ``PYTHONPATH=src python benchmarks/bench_generate.py``. Prints MB/s and ratios, in
process CPU time, best of interleaved rounds.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from chatsvg_core.errors import NoSVGFound, TruncatedSVG
from chatsvg_core.generate import extract_svg

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "model_answers"
NAIVE = re.compile(r"<svg[\s>].*?</svg>", re.DOTALL | re.IGNORECASE)


def floor(text: str) -> object:
    start = text.find("<svg")
    end = text.find("</svg>", start)
    return text[start : end + 6] if start >= 0 and end >= 0 else None


def naive(text: str) -> object:
    match = NAIVE.search(text)
    return match.group(0) if match else None


def ours(text: str) -> object:
    try:
        return extract_svg(text, max_chars=len(text))
    except (TruncatedSVG, NoSVGFound):
        return None


def per_call(func: Callable[[str], object], text: str, budget_s: float = 0.1) -> float:
    """CPU seconds per call, best of the batches that fit in ``budget_s``.

    Process CPU time, not wall time: the machine is shared, and another
    tenant's load steals wall time from a single-threaded loop far more than
    CPU time. Calls are timed in batches of at least ~2 ms, so the clock's
    own cost and resolution do not count for the microsecond-scale floor.
    """
    batch = 1
    while True:
        started = time.process_time()
        for _ in range(batch):
            func(text)
        if time.process_time() - started >= 0.002 or batch >= 1 << 20:
            break
        batch *= 2
    best = float("inf")
    deadline = time.process_time() + budget_s
    while True:
        started = time.process_time()
        for _ in range(batch):
            func(text)
        best = min(best, (time.process_time() - started) / batch)
        if time.process_time() >= deadline:
            return best


def inputs() -> dict[str, str]:
    corpus = "\n\n".join(p.read_text("utf-8") for p in sorted(CORPUS.glob("*.txt")))
    body = "".join(
        f'<path d="M{i} {i} L{i + 5} {i + 9} Z" fill="#{i % 999:03d}"/>\n' for i in range(20_000)
    )
    big = f"Here you go:\n```svg\n<svg xmlns='http://www.w3.org/2000/svg'>\n{body}</svg>\n```\n"
    return {
        "corpus answers, concatenated": corpus,
        "1 MB fenced SVG (20k paths)": big,
        # An answer that is one SVG alone takes the lone-<svg> path (one possessive match).
        "1 MB lone SVG, no fence": f"<svg xmlns='http://www.w3.org/2000/svg'>\n{body}</svg>\n",
        "adversarial '<svg ' x 4000": "<svg " * 4000,
    }


def main() -> None:
    rounds = 5
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, CPU time, best of {rounds} interleaved rounds")  # fmt: skip
    print(
        f"{'input':34} {'KB':>6} {'floor ms':>9} {'naive ms':>9} {'ours ms':>8}"
        f" {'ours MB/s':>9} {'ours/floor':>10} {'ours/naive':>10}"
    )
    funcs = (floor, naive, ours)
    for name, text in inputs().items():
        size_mb = len(text.encode()) / 1e6
        # Rounds interleaved, the order rotating: a slow spell hits all three.
        best = [float("inf")] * len(funcs)
        for r in range(rounds):
            for k in range(len(funcs)):
                i = (k + r) % len(funcs)
                best[i] = min(best[i], per_call(funcs[i], text))
        t_floor, t_naive, t_ours = best
        print(
            f"{name:34} {len(text) / 1000:6.0f} {t_floor * 1e3:9.4f} {t_naive * 1e3:9.3f}"
            f" {t_ours * 1e3:8.3f} {size_mb / t_ours:9.1f} {t_ours / t_floor:9.0f}x"
            f" {t_ours / t_naive:9.3f}x"
        )


if __name__ == "__main__":
    main()
