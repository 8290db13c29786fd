"""The sanitizer beside lxml's floor and py-svg-hush, per family of real SVG, rounds interleaved.

    python benchmarks/bench_sanitize_families.py [--rounds 7] [--no-hush]

``bench_sanitize_hush.py`` reports the whole fidelity corpus as one group,
which hides the families where chatsvg does worse. Here each family of
``tests/data/fidelity/`` is a group of its own, and so are the SVGs the
extractor takes out of the captured model answers
(``tests/data/model_answers/*.expected.svg``: what the sanitizer is handed in
production). Per group, in the same rounds:

* **floor**: lxml's hardened parse, a visit of every element and attribute,
  and a write (``bench_sanitize.floor``): the least any lxml-based sanitizer
  does;
* **chatsvg**: ``sanitize_svg(data)``, warm (the group was sanitized before,
  so its CSS and clean values are remembered, as in a long-lived worker);
* **cold**: the default ``Sanitizer`` with its caches cleared before every
  document (every value new, as for a document nobody has seen);
* **svg-hush**: ``py_svg_hush.filter_svg`` (left out with ``--no-hush``).

Times are process CPU time (the machine is shared; CPU time is disturbed far
less than wall time). Each round runs every group in a shuffled order and, per
group, the implementations in an order that alternates between rounds; each
timing repeats the group until it took at least about 20 ms and starts with
one untimed pass. Ratios are taken per round (both sides of a ratio share that
round's load) and reported as the median and range over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_sanitize import floor, forget  # noqa: E402
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer, sanitize_svg  # noqa: E402

FIDELITY = ROOT / "tests" / "data" / "fidelity"
ANSWERS = ROOT / "tests" / "data" / "model_answers"
MIN_SECONDS = 0.02


def groups() -> dict[str, list[bytes]]:
    out = {
        d.name: [p.read_bytes() for p in sorted(d.glob("*.svg"))]
        for d in sorted(FIDELITY.iterdir())
        if d.is_dir() and any(d.glob("*.svg"))
    }
    out["model answers"] = [p.read_bytes() for p in sorted(ANSWERS.glob("*.expected.svg"))]
    return out


def _pass(fn: Callable[[bytes], object], docs: list[bytes], reps: int) -> float:
    for data in docs:  # untimed: leaves the allocator (and the warm caches) in steady state
        with contextlib.suppress(Exception):
            fn(data)
    t0 = time.process_time()
    for _ in range(reps):
        for data in docs:
            with contextlib.suppress(Exception):  # a refusal is work done, on either side
                fn(data)
    return (time.process_time() - t0) / reps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-hush", action="store_true", help="lxml's floor only")
    args = parser.parse_args()
    from chatsvg_core.sanitize import _sanitizer

    walk = "compiled" if _sanitizer._ACCELERATOR is not None else "PURE PYTHON"
    cold_sanitizer = Sanitizer(SanitizePolicy.default())

    def cold(data: bytes) -> object:
        forget(cold_sanitizer)
        return cold_sanitizer.sanitize(data)

    impls: dict[str, Callable[[bytes], object]] = {
        "floor": floor,
        "chatsvg": sanitize_svg,
        "cold": cold,
    }
    if not args.no_hush:
        from py_svg_hush import filter_svg

        impls["svg-hush"] = filter_svg
    data = groups()
    reps: dict[str, int] = {}
    for name, docs in data.items():  # repeats so that one timing takes about MIN_SECONDS
        one = _pass(sanitize_svg, docs, 1)
        reps[name] = max(1, round(MIN_SECONDS / max(one, 1e-6)))
    times: dict[str, dict[str, list[float]]] = {g: {i: [] for i in impls} for g in data}
    rng = random.Random(17)
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = list(data)
        rng.shuffle(order)
        for group in order:
            names = list(impls) if r % 2 == 0 else list(reversed(impls))
            for name in names:
                times[group][name].append(_pass(impls[name], data[group], reps[group]))
        load.append(os.getloadavg()[0])

    def ratio(group: str, top: str, bottom: str) -> str:
        t = times[group]
        rs = [a / b for a, b in zip(t[top], t[bottom], strict=True)]
        return f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})"

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {stamp}  nproc={os.cpu_count()}  rounds={args.rounds}  "
          f"load average {min(load):.1f}-{max(load):.1f}  walk: {walk}")  # fmt: skip
    head = "| family | files | KB | floor ms | chatsvg ms | chatsvg / floor | cold / floor |"
    if "svg-hush" in impls:
        head += " svg-hush ms | svg-hush / chatsvg | svg-hush / cold |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    totals = dict.fromkeys(impls, 0.0)
    for group, docs in data.items():
        t = times[group]
        med = {i: statistics.median(t[i]) for i in impls}
        for i in impls:
            totals[i] += med[i]
        line = (
            f"| {group} | {len(docs)} | {sum(map(len, docs)) / 1000:.0f} | "
            f"{med['floor'] * 1000:.2f} | {med['chatsvg'] * 1000:.2f} | "
            f"{ratio(group, 'chatsvg', 'floor')} | {ratio(group, 'cold', 'floor')} |"
        )
        if "svg-hush" in impls:
            line += (
                f" {med['svg-hush'] * 1000:.2f} | {ratio(group, 'svg-hush', 'chatsvg')} | "
                f"{ratio(group, 'svg-hush', 'cold')} |"
            )
        print(line)
    summary = (
        f"sum of medians: floor {totals['floor'] * 1000:.1f} ms, chatsvg "
        f"{totals['chatsvg'] * 1000:.1f} ms ({totals['chatsvg'] / totals['floor']:.2f}x), "
        f"cold {totals['cold'] * 1000:.1f} ms ({totals['cold'] / totals['floor']:.2f}x)"
    )
    if "svg-hush" in impls:
        summary += (
            f", svg-hush {totals['svg-hush'] * 1000:.1f} ms "
            f"(svg-hush / chatsvg {totals['svg-hush'] / totals['chatsvg']:.2f}x, "
            f"/ cold {totals['svg-hush'] / totals['cold']:.2f}x)"
        )
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
