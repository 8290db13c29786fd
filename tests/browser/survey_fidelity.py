"""Per-family fidelity of ``default``, ``strict`` and py-svg-hush, in one run (a maintainer's tool).

Run from the worktree root (needs ``pip install -e '.[test,bench]'``):

    python tests/browser/survey_fidelity.py [--mode inline|img] [--chromium /usr/bin/chromium]

Renders every file of ``tests/data/fidelity/`` before and after each sanitizer
in Chromium exactly as ``test_sanitizer_fidelity.py`` does (the originals once
per batch for all three), and prints a Markdown table per family: identical,
near (at most 1% of pixels differ) and different (a refusal counts as
different), plus every file that is not identical. docs/sanitizer-fidelity.md
shows its output.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from browserkit import BrowserPortal, LoopbackServer
from test_sanitizer_fidelity import FILES, Cleaner, Outcome, _compare, default_cleaner

from chatsvg_core.sanitize import SanitizePolicy, sanitize_svg


def _strict(raw: str) -> str:
    return sanitize_svg(raw, policy=SanitizePolicy.preset("strict")).svg


def _cleaners() -> dict[str, Cleaner]:
    cleaners: dict[str, Cleaner] = {"default": default_cleaner, "strict": _strict}
    try:
        from py_svg_hush import filter_svg
    except ImportError:
        print("py-svg-hush not installed (pip install .[bench]): left out", file=sys.stderr)
        return cleaners

    def hush(raw: str) -> str:
        out = filter_svg(raw.encode())
        return out.decode() if isinstance(out, bytes) else str(out)

    cleaners["py-svg-hush"] = hush
    return cleaners


def table(outcomes: dict[str, list[Outcome]]) -> str:
    families = sorted({o.family for o in next(iter(outcomes.values()))})
    names = list(outcomes)
    head = "| family | files | " + " | ".join(f"{n} (identical / near / different)" for n in names)
    lines = [head + " |", "|---|---|" + "---|" * len(names)]
    for family in [*families, None]:
        cells = []
        count = 0
        for name in names:
            chosen = [o for o in outcomes[name] if family is None or o.family == family]
            count = len(chosen)
            c = Counter(o.verdict for o in chosen)
            cells.append(f"{c['identical']} / {c['near']} / {c['different']}")
        label = "**all**" if family is None else f"`{family}/`"
        lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    for name in names:
        share = sum(o.identical for o in outcomes[name]) / len(outcomes[name])
        lines.append(f"\n{name}: {share:.1%} pixel-identical")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("inline", "img"), default="inline")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    started = time.monotonic()
    server = LoopbackServer()
    portal = BrowserPortal(args.chromium)
    try:
        outcomes = _compare(portal, server, args.mode, _cleaners(), FILES)
        version = portal.version
    finally:
        portal.close()
        server.close()
    compared = len(next(iter(outcomes.values())))
    print(f"Chromium {version}, mode {args.mode}, {compared} files\n")
    print(table(outcomes))
    for name, results in outcomes.items():
        for o in results:
            if not o.identical:
                print(f"  {name}: {o.name}: {o.verdict}: {o.detail}")
    print(f"{time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
