"""Throughput of chatsvg_core.sanitize beside its peers, on the same files in the same run.

    python benchmarks/bench_sanitize_peers.py [--repeat 3] [--quick]

Peers:

- DOMPurify under jsdom in node (``benchmarks/sanitize_peers``: run ``npm ci`` there
  first), with its SVG profile ``{USE_PROFILES: {svg: true, svgFilters: true}}``;
- py-svg-hush (Python binding of Cloudflare's svg-hush; ``pip install .[bench]``).

Files: the fidelity corpus (tests/data/fidelity, real icons) and synthetic SVGs
of 1 KB to 5 MB (paths, gradients, ``<style>``, text, ``<use>``). Every file is
sanitized ``--repeat`` times per implementation and the best time is kept; the
table gives MB/s and files/s per implementation and the ratio
``peer time / chatsvg time`` (above 1: chatsvg is faster). Times are process
CPU time (``time.process_time`` here, ``process.cpuUsage`` in node), because the
benchmark machine is shared and wall time swings with other jobs; DOMPurify is
timed inside node, so process start-up is not counted against it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chatsvg_core.errors import SVGRejected  # noqa: E402
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer  # noqa: E402

PEERS_DIR = Path(__file__).parent / "sanitize_peers"
CORPUS = ROOT / "tests" / "data" / "fidelity"
SIZES = {"1KB": 1_000, "10KB": 10_000, "100KB": 100_000, "1MB": 1_000_000, "5MB": 5_000_000}


def synthetic_svg(target: int, seed: int = 7) -> str:
    """A deterministic, realistic-looking SVG of about ``target`` bytes."""
    rng = random.Random(seed + target)
    head = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' viewBox="0 0 1000 1000" width="1000" height="1000">'
        "<style>.a{fill:#e74c3c;stroke:#222;stroke-width:2}.b{fill:url(#g0);opacity:.8}"
        "text{font:12px sans-serif}</style><defs>"
    )
    defs = "".join(
        f'<linearGradient id="g{i}" x1="0" y1="0" x2="1" y2="1"><stop offset="0" '
        f'stop-color="#{rng.randrange(16**6):06x}"/><stop offset="1" '
        f'stop-color="#{rng.randrange(16**6):06x}"/></linearGradient>'
        for i in range(8)
    )
    symbol = '<symbol id="s" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></symbol></defs>'
    parts = [head, defs, symbol]
    size = sum(map(len, parts))
    i = 0
    while size < target - 10:
        pts = " ".join(f"L{rng.randrange(1000)} {rng.randrange(1000)}" for _ in range(12))
        block = (
            f'<g transform="translate({rng.randrange(50)} {rng.randrange(50)})">'
            f'<path class="a" d="M{rng.randrange(1000)} {rng.randrange(1000)} {pts}Z"'
            f' fill="url(#g{i % 8})"/>'
            f'<rect class="b" x="{rng.randrange(900)}" y="{rng.randrange(900)}" width="40"'
            f' height="20" rx="3" style="stroke:#333;stroke-width:1"/>'
            f'<use href="#s" x="{rng.randrange(990)}" y="{rng.randrange(990)}"'
            ' width="10" height="10"/>'
            f'<text x="{rng.randrange(900)}" y="{rng.randrange(900)}">label {i}</text></g>'
        )
        parts.append(block)
        size += len(block)
        i += 1
    parts.append("</svg>")
    return "".join(parts)


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def time_chatsvg(texts: list[bytes], repeat: int) -> tuple[list[float], int]:
    """Per-file best CPU time over ``repeat`` passes, a fresh ``Sanitizer`` per pass.

    A ``Sanitizer`` caches checked CSS declarations; a fresh one per pass keeps a
    file from hitting its own cached results, while files later in a pass still
    profit from earlier ones, as in a long-running service.
    """
    policy = SanitizePolicy.preset("default")
    best = [float("inf")] * len(texts)
    rejected = 0
    for n in range(repeat):
        sanitizer = Sanitizer(policy)
        for i, data in enumerate(texts):
            t0 = time.process_time()
            try:
                sanitizer.sanitize(data)
            except SVGRejected:
                rejected += int(n == 0)
            best[i] = min(best[i], time.process_time() - t0)
    return best, rejected


def time_svg_hush(texts: list[bytes], repeat: int) -> list[float] | str:
    try:
        from py_svg_hush import filter_svg
    except ImportError:
        return "py-svg-hush not installed (pip install .[bench])"
    times = []
    for data in texts:

        def run(data: bytes = data) -> None:
            # A peer's own refusals count as work done, as ours do.
            with contextlib.suppress(Exception):
                filter_svg(data)

        times.append(best_time(run, repeat))
    return times


def time_dompurify(paths: list[Path], repeat: int) -> tuple[list[float], str] | str:
    if not (PEERS_DIR / "node_modules" / "dompurify").exists():
        return "DOMPurify not installed (cd benchmarks/sanitize_peers && npm ci)"
    proc = subprocess.run(
        ["node", str(PEERS_DIR / "purify_bench.mjs"), str(repeat)],
        input="\n".join(str(p) for p in paths),
        capture_output=True,
        text=True,
        check=True,
        cwd=PEERS_DIR,
    )
    data = json.loads(proc.stdout)
    return [float(t) for t in data["per_file_seconds"]], str(data["version"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 1MB and 5MB files")
    args = parser.parse_args()

    groups: dict[str, list[Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        groups["fidelity corpus"] = sorted(CORPUS.glob("*/*.svg"))
        for label, size in SIZES.items():
            if args.quick and size >= 1_000_000:
                continue
            path = Path(tmp) / f"synthetic-{label}.svg"
            path.write_text(synthetic_svg(size))
            groups[f"synthetic {label}"] = [path]

        all_paths = [p for ps in groups.values() for p in ps]
        texts = [p.read_bytes() for p in all_paths]
        chatsvg, rejected = time_chatsvg(texts, args.repeat)
        hush = time_svg_hush(texts, args.repeat)
        purify = time_dompurify(all_paths, args.repeat)

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"# {time.strftime('%Y-%m-%d')}  nproc={os.cpu_count()}  cpu={cpu}  "
        f"python={platform.python_version()}  repeat={args.repeat} (best of)"
    )
    purify_version = purify[1] if isinstance(purify, tuple) else "-"
    print(
        f"# DOMPurify {purify_version} + jsdom under node {_node_version()}; py-svg-hush "
        f"{_hush_version()}; chatsvg rejected {rejected} file(s) (timed all the same)"
    )
    header = (
        "| files | MB | chatsvg MB/s | chatsvg files/s | DOMPurify MB/s | "
        "DOMPurify / chatsvg | svg-hush MB/s | svg-hush / chatsvg |"
    )
    print(header)
    print("|" + "---|" * 8)
    start = 0
    purify_times: list[float] | str = purify[0] if isinstance(purify, tuple) else purify
    peers: tuple[list[float] | str, ...] = (purify_times, hush)
    for name, paths in groups.items():
        n = len(paths)
        mb = sum(len(t) for t in texts[start : start + n]) / 1e6
        t_c = sum(chatsvg[start : start + n])
        row = [name + f" ({n})", f"{mb:.2f}", f"{mb / t_c:.2f}", f"{n / t_c:.0f}"]
        for peer in peers:
            if isinstance(peer, str):
                row += ["n/a", "n/a"]
            else:
                t_p = sum(peer[start : start + n])
                row += [f"{mb / t_p:.2f}", f"{t_p / t_c:.2f}x"]
        print("| " + " | ".join(row) + " |")
        start += n
    for note in peers:
        if isinstance(note, str):
            print(f"# {note}")
    return 0


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(no node)"


def _hush_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("py-svg-hush")
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    raise SystemExit(main())
