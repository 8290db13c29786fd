"""Sanitizer throughput beside the lxml floor, on synthetic SVGs (1 KB - 5 MB) and any corpus.

The floor is what no lxml-based sanitizer can beat: parse with the same
hardened parser options, walk every element and attribute, serialize. The
ratio ``sanitize / floor`` is the number to watch (goal: within 3x), and
``us/KB`` across sizes shows whether the cost is linear in input size.

Times are process CPU time (``time.process_time``), not wall time: the code
is single-threaded, and CPU time stays meaningful on a shared, loaded machine
where wall time swings by 2-5x between runs.

Run:  python benchmarks/bench_sanitize.py [--quick] [--corpus DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chatsvg_core.sanitize import SanitizePolicy, Sanitizer  # noqa: E402

NS = "http://www.w3.org/2000/svg"
SIZES = [1_000, 10_000, 100_000, 1_000_000, 5_000_000]


def synthetic_svg(target_bytes: int, seed: int = 7) -> bytes:
    """A realistic mix: groups, paths, gradients, text, styles, uses, some junk to remove."""
    rng = random.Random(seed)
    head = (
        f'<svg xmlns="{NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" viewBox="0 0 512 512">'
        "<style>.a{fill:#c33;stroke:url(#g0)} #p1 > path:hover{opacity:.5}</style>"
        '<defs><linearGradient id="g0" x1="0" x2="1"><stop offset="0" stop-color="#fff"/>'
        '<stop offset="1" stop-color="#000"/></linearGradient>'
        '<filter id="f0"><feGaussianBlur stdDeviation="2"/></filter></defs>'
    )
    parts = [head]
    size = len(head)
    i = 0
    while size < target_bytes - 200:
        i += 1
        pts = " ".join(f"L{rng.randint(0, 512)} {rng.randint(0, 512)}" for _ in range(8))
        kind = i % 10
        if kind == 0:
            chunk = (
                f'<g id="p{i}" class="a" transform="translate({i % 50} 3)" inkscape:label="l{i}">'
                f'<path d="M0 0{pts}Z" fill="url(#g0)"/><use href="#c{i - 1}" x="2"/></g>'
            )
        elif kind == 1:
            chunk = (
                f'<text x="{i % 400}" y="20" font-family="Arial" style="font-weight:bold">'
                f"label {i} &amp; more</text>"
            )
        elif kind == 2:
            chunk = f'<rect x="1" y="2" width="{i % 99}" height="9" onclick="alert({i})"/>'
        else:
            chunk = (
                f'<circle id="c{i}" cx="{i % 512}" cy="{(i * 7) % 512}" r="4" '
                f'style="fill:#{i % 4096:03x};stroke-width:2" filter="url(#f0)"/>'
                f'<path d="M{i % 512} 0{pts}" stroke="black" stroke-linecap="round"/>'
            )
        parts.append(chunk)
        size += len(chunk)
    parts.append("</svg>")
    return "".join(parts).encode()


def floor(data: bytes) -> int:
    """Parse with the hardened options, touch every node and attribute, serialize."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_comments=True, remove_pis=True, strip_cdata=True,
    )  # fmt: skip
    root = etree.fromstring(data, parser)
    count = 0
    for el in root.iter():
        count += len(el.attrib.items())
    return len(etree.tostring(root)) + count


def forget(sanitizer: Sanitizer) -> None:
    """Clear what ``sanitizer`` remembers of earlier documents (cached CSS and clean values).

    What a service sees when every document is new: the benchmarks repeat documents.
    """
    sanitizer._css_cache.clear()
    sanitizer._clean.clear()


def best_time(fn: Callable[[], object], min_time: float, repeat: int) -> float:
    """Best-of-``repeat`` seconds per call in steady state, each sample at least ``min_time``.

    One untimed call comes first in each sample: the first call after a
    different workload finds the allocator as that workload left it (at 5 MB,
    a sanitize right after a floor run took 7% longer, and a floor run right
    after a sanitize 29% less, than when each followed itself). The samples
    time what a worker doing one job over and over sees.
    """
    samples = []
    for _ in range(repeat):
        fn()
        n = 0
        start = time.process_time()
        while True:
            fn()
            n += 1
            elapsed = time.process_time() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return min(samples)


def corpus_files(base: Path) -> list[bytes]:
    if not base.is_dir():
        return []
    return [p.read_bytes() for p in sorted(base.rglob("*.svg"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter timing (CI smoke run)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    ap.add_argument(
        "--corpus",
        type=Path,
        default=ROOT / "tests" / "data" / "fidelity",
        help="directory of real SVGs (all *.svg below it)",
    )
    args = ap.parse_args()
    min_time, repeat = (0.05, 2) if args.quick else (0.2, 8)

    sanitizers = {
        "default": Sanitizer(SanitizePolicy.default()),
        "strict": Sanitizer(SanitizePolicy.strict()),
    }
    rows: list[dict[str, object]] = []
    print(f"python {platform.python_version()}, lxml {etree.__version__}")
    header = (
        f"{'input':>16} {'files':>6} {'KB':>9} {'floor ms':>9} {'default ms':>11} "
        f"{'ratio':>6} {'MB/s':>7} {'files/s':>8} {'us/KB':>7} {'strict ratio':>12} "
        f"{'cold ratio':>10}"
    )
    print(header)
    print("-" * len(header))

    cold = Sanitizer(SanitizePolicy.default())

    def sanitize_cold(doc: bytes) -> object:
        forget(cold)
        return cold.sanitize(doc)

    def measure(label: str, docs: list[bytes]) -> None:
        total = sum(len(d) for d in docs)
        runs: dict[str, Callable[[], object]] = {
            "floor": lambda: [floor(d) for d in docs],
            "default": lambda: [sanitizers["default"].sanitize(d) for d in docs],
            "strict": lambda: [sanitizers["strict"].sanitize(d) for d in docs],
            "cold": lambda: [sanitize_cold(d) for d in docs],
        }
        # Interleaved rounds, best of each: a slow spell of the machine hits the
        # floor and the sanitizer alike instead of skewing their ratio. The order
        # rotates each round, and best_time() leaves each sample's first call
        # untimed: on megabyte inputs a call is faster or slower by up to a third
        # depending on what ran before it (the allocator's state).
        best = dict.fromkeys(runs, float("inf"))
        names = list(runs)
        # Megabyte inputs run once per sample and swing most: more rounds.
        for round_ in range(repeat if total < 1_000_000 else repeat * 2):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                best[name] = min(best[name], best_time(runs[name], min_time, 1))
        t_floor, t_default, t_strict = best["floor"], best["default"], best["strict"]
        row = {
            "input": label,
            "files": len(docs),
            "bytes": total,
            "floor_s": t_floor,
            "default_s": t_default,
            "strict_s": t_strict,
            "ratio": t_default / t_floor,
            "strict_ratio": t_strict / t_floor,
            "cold_ratio": best["cold"] / t_floor,
            "mb_per_s": total / t_default / 1e6,
            "files_per_s": len(docs) / t_default,
            "us_per_kb": t_default / (total / 1000) * 1e6,
        }
        rows.append(row)
        print(
            f"{label:>16} {len(docs):>6} {total / 1000:>9.1f} {t_floor * 1000:>9.2f} "
            f"{t_default * 1000:>11.2f} {row['ratio']:>6.2f} {row['mb_per_s']:>7.2f} "
            f"{row['files_per_s']:>8.0f} {row['us_per_kb']:>7.1f} {row['strict_ratio']:>12.2f} "
            f"{row['cold_ratio']:>10.2f}"
        )

    for size in SIZES:
        measure(f"synthetic {size // 1000} KB", [synthetic_svg(size)])
    corpus = corpus_files(args.corpus)
    if corpus:
        measure("fidelity corpus", corpus)
    per_kb = [float(r["us_per_kb"]) for r in rows if str(r["input"]).startswith("synthetic")]
    print(
        f"\nlinearity: us/KB from 10 KB to 5 MB spans {min(per_kb[1:]):.1f}..{max(per_kb[1:]):.1f}"
        f" (median {statistics.median(per_kb[1:]):.1f})"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
