"""Linear time on hostile shapes: the input doubles, the cost must at most (about) double.

Each shape of issue 20 (and the slow-but-linear CSS ones) is built at sizes
n, 2n, 4n, 8n; every (shape, size) is sanitized in interleaved rounds and the
least CPU time (``time.process_time``: a loaded machine steals wall time, not
CPU time) is kept. The growth per doubling is ``t(2n) / t(n)``: about 2 is
linear, about 4 quadratic. The floor column is lxml's bare parse + write of the
same bytes (``bench_floor.py``), so the ratio shows what the sanitizer adds.

Run:  python benchmarks/bench_sanitize_hostile.py [--rounds 5] [--scale 1.0]
Exits 1 when a shape's mean growth per doubling (geometric, n to 8n) is over
``--limit`` (2.2 by default).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import sys
import time
from collections.abc import Callable

from lxml import etree

from chatsvg_core.errors import SVGRejected
from chatsvg_core.generate import extract_svg
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer

NS = 'xmlns="http://www.w3.org/2000/svg"'
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'


def use_cycles(n: int) -> str:
    """n uses, each inside the group it references (was one search pass per cycle)."""
    uses = '<use href="#p"/>' * n
    return f'<svg {NS}><use href="#c"/><g id="p"><g id="c"><rect width="1"/>{uses}</g></g></svg>'


def use_chain(n: int) -> str:
    """A chain of n groups and n uses back to its top (was a path copy per back edge)."""
    top = f'<use href="#g{n - 1}"/>' * n
    chain = "".join(f'<g id="g{i}"><use href="#g{i - 1}"/></g>' for i in range(1, n))
    return f'<svg {NS}><g id="g0">{top}<rect width="1"/></g>{chain}</svg>'


def use_fan(n: int) -> str:
    """n uses of a shared subtree, no cycle (the common case of a sprite sheet)."""
    uses = '<use href="#s"/>' * n
    return f'<svg {NS}><defs><g id="s"><rect/><circle r="1"/></g></defs>{uses}</svg>'


def namespaces_refused(n: int) -> str:
    """n unused declarations on the root and n elements (was O(D*E) in cleanup)."""
    decls = " ".join(f'xmlns:p{i}="urn:x:{i}"' for i in range(n))
    uses = '<use xlink:href="#a "/>' * n
    return f"<svg {NS} {decls} {XLINK}>{uses}</svg>"


def namespaces_at_limit(n: int) -> str:
    """255 unused declarations (the most allowed) and n elements."""
    decls = " ".join(f'xmlns:p{i}="urn:x:{i}"' for i in range(254))
    uses = '<use xlink:href="#a "/>' * n
    return f"<svg {NS} {decls} {XLINK}>{uses}</svg>"


def style_rules(n: int) -> str:
    """A <style> of n rules with functions and strings (the tokenizer path)."""
    rules = "".join(
        f".c{i} > rect:hover, #g{i}{{fill:rgb({i % 255},0,0);stroke:'a';opacity:.5}}"
        for i in range(n)
    )
    return f"<svg {NS}><style>{rules}</style><rect/></svg>"


def style_plain(n: int) -> str:
    """A <style> of n plain rules (the tokenizer-free path)."""
    rules = "".join(f".c{i} rect{{fill:red;stroke-width:2px}}" for i in range(n))
    return f"<svg {NS}><style>{rules}</style><rect/></svg>"


def style_urls(n: int) -> str:
    """n rules with a forbidden url()."""
    rules = "".join(f".c{i}{{fill:url(http://evil.example/{i})}}" for i in range(n))
    return f"<svg {NS}><style>{rules}</style><rect/></svg>"


def attr_urls(n: int) -> str:
    """n presentation attributes with a forbidden url()."""
    rects = "".join(f'<rect fill="url(http://e.example/{i})"/>' for i in range(n))
    return f"<svg {NS}>{rects}</svg>"


def css_escapes(n: int) -> str:
    """n values with escapes to XML-forbidden characters and trailing whitespace."""
    rects = "".join(f'<rect fill="\\{i % 30 + 1:x} a\\20 "/>' for i in range(n))
    return f"<svg {NS}>{rects}</svg>"


def fenced_answer(n: int) -> str:
    """An answer of n fence-like lines inside one SVG (extract_svg, not the sanitizer)."""
    return "<svg>" + "\n```x>\n<g>a</g>" * n + "</svg>"


SHAPES: dict[str, tuple[Callable[[int], str], int]] = {
    "use cycles": (use_cycles, 2000),
    "use chain + back refs": (use_chain, 2000),
    "use fan-out (no cycle)": (use_fan, 4000),
    "namespaces (refused)": (namespaces_refused, 4000),
    "namespaces at the limit": (namespaces_at_limit, 4000),
    "<style> rules (tokenizer)": (style_rules, 500),
    "<style> plain rules": (style_plain, 2000),
    "<style> forbidden url()": (style_urls, 1000),
    "fill=url() forbidden": (attr_urls, 2000),
    "CSS escapes": (css_escapes, 2000),
    "extract_svg fences": (fenced_answer, 5000),
}


def floor(doc: bytes) -> None:
    """lxml's bare parse + write: what any lxml-based sanitizer pays at least."""
    etree.tostring(etree.fromstring(doc), encoding="unicode")


def measure(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every base size")
    parser.add_argument("--limit", type=float, default=2.2)
    args = parser.parse_args()
    # A cold sanitizer per call would also measure the caches' warm-up; a fresh
    # one per shape, with no budget, measures the shape itself.
    policy = SanitizePolicy.default().extend(max_seconds=None)
    steps = (1, 2, 4, 8)
    docs = {
        (name, k): make(int(base * args.scale) * k)
        for name, (make, base) in SHAPES.items()
        for k in steps
    }
    best: dict[tuple[str, int], float] = {}
    best_floor: dict[tuple[str, int], float] = {}
    for _ in range(args.rounds):
        for (name, k), doc in docs.items():
            if name.startswith("extract"):
                t = measure(lambda doc=doc: extract_svg(doc))
            else:
                sanitizer = Sanitizer(policy)

                def run(doc: str = doc, s: Sanitizer = sanitizer) -> None:
                    with contextlib.suppress(SVGRejected):
                        s.sanitize(doc)

                t = measure(run)
                try:
                    f = measure(lambda doc=doc: floor(doc.encode()))
                except etree.XMLSyntaxError:
                    f = float("nan")
                best_floor[name, k] = min(best_floor.get((name, k), f), f)
            best[name, k] = min(best.get((name, k), t), t)
    print(f"load: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs; rounds: {args.rounds}")
    print(
        f"{'shape':28} {'bytes (8n)':>10} {'ms at n, 2n, 4n, 8n':>28} "
        f"{'each doubling':>16} {'mean':>5} {'x floor':>8}"
    )
    worst = 0.0
    for name in SHAPES:
        times = [best[name, k] for k in steps]
        growth = [b / a if a > 0 else float("nan") for a, b in itertools.pairwise(times)]
        # The geometric mean over the three doublings: one noisy round on a
        # shared machine moves it a third as much as it moves a single step.
        mean = (times[-1] / times[0]) ** (1 / 3) if times[0] > 0 else float("nan")
        worst = max(worst, mean)
        ms = " ".join(f"{t * 1000:6.1f}" for t in times)
        floor8 = best_floor.get((name, 8))
        ratio = f"{times[-1] / floor8:8.1f}" if floor8 else f"{'-':>8}"
        print(
            f"{name:28} {len(docs[name, 8]):>10} {ms:>28} "
            f"{' '.join(f'{g:4.2f}' for g in growth):>16} {mean:5.2f} {ratio}"
        )
    print(f"worst mean growth per doubling: {worst:.2f} (limit {args.limit})")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
