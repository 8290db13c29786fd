"""request_hash() per call against the floor: sha256 of json.dumps(sort_keys=True, compact).

The floor is what a non-canonical fingerprint costs in CPython (the C JSON
encoder plus SHA-256). request_hash() adds RFC 8785 rules the C encoder does
not have (ECMAScript number layout, UTF-16 key order, type and range checks,
exclusions), so it walks the data in Python. Run:

    python benchmarks/bench_idempotency.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatsvg_core.idempotency import canonical_json, request_hash


def floor(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def small_request() -> dict[str, Any]:
    return {
        "prompt": "A minimalist fox logo, orange to red gradient, flat style, centred on a"
        " transparent background, no text",
        "model": "gpt-4o-mini",
        "options": {"width": 512, "height": 512, "temperature": 0.7, "seed": None},
        "tags": ["logo", "flat"],
        "client_ts": "2026-03-01T12:00:00Z",
    }


def large_structured(rng: random.Random) -> dict[str, Any]:
    # ~600 objects of mixed fields: a batch request or a long conversation.
    words = ["fox", "circle", "gradient", "élan", "naïve", "😀", "stroke", "fill"]
    return {
        "messages": [
            {
                "role": rng.choice(["user", "assistant"]),
                "content": " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))),
                "index": i,
                "score": rng.random(),
                "flags": {"cached": rng.random() < 0.5, "tokens": rng.randint(1, 4000)},
            }
            for i in range(600)
        ],
        "model": "gpt-4o-mini",
    }


def large_prompt(extra: str) -> dict[str, Any]:
    # One long text: the cost is the string escaping and hashing. One emoji
    # makes CPython store the whole string at 4 bytes a character.
    text = (f"Draw a detailed city skyline at dusk with reflections{extra}. " * 1600)[:100_000]
    return {"prompt": text, "model": "gpt-4o-mini", "options": {"width": 1024}}


def numbers_heavy(rng: random.Random) -> dict[str, Any]:
    # Path coordinates as floats: the worst case for ECMAScript number layout.
    return {"points": [[rng.uniform(-1e3, 1e3), rng.uniform(-1e3, 1e3)] for _ in range(2000)]}


def per_call(fns: dict[str, Callable[[], object]], budget: float) -> dict[str, float]:
    """CPU seconds per call of each function, interleaved, best of 7 rounds.

    CPU time (``process_time``) and interleaving keep the ratio honest on a
    machine shared with other work, where wall-clock timings drift.
    """
    first = next(iter(fns.values()))
    number = 1
    while timeit.Timer(first, timer=time.process_time).timeit(number) < budget / 10:
        number *= 2
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(7):
        for name, fn in fns.items():
            elapsed = timeit.Timer(fn, timer=time.process_time).timeit(number)
            best[name] = min(best[name], elapsed / number)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    args = parser.parse_args()
    budget = 0.1 if args.quick else 0.5
    rng = random.Random(20260301)
    cases = {
        "small request": small_request(),
        "large structured (600 objects)": large_structured(rng),
        "large prompt, ASCII (100 kB)": large_prompt(""),
        "large prompt, é and 😀 (100 kB)": large_prompt(", élan 😀"),
        "numbers heavy (4000 floats)": numbers_heavy(rng),
    }
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"python {platform.python_version()}, {cpu}")
    header = f"{'payload':32} {'bytes':>8} {'floor µs':>10} {'request_hash µs':>16} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, payload in cases.items():
        size = len(canonical_json(payload).encode())
        timings = per_call(
            {
                "floor": lambda p=payload: floor(p),
                "ours": lambda p=payload: request_hash(p, scope="7:user-42"),
            },
            budget,
        )
        base, ours = timings["floor"], timings["ours"]
        print(f"{name:32} {size:>8} {base * 1e6:>10.1f} {ours * 1e6:>16.1f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
