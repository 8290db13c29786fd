"""Record in which contexts each UNSANITIZED payload is live in this Chromium.

Run from the worktree root when payloads are added or Chromium changes:

    python tests/browser/survey_xss.py [--chromium /usr/bin/chromium] [--only ID ...]

It loads every payload of ``tests/data/xss/manifest.json`` in each context
alone and rewrites the manifest's ``live_in`` (contexts where it had any
effect) and ``observed`` (the effect kinds per context). The browser test
``test_payloads_are_live_unsanitized`` then asserts every ``live_in`` context
still fires, so the corpus cannot silently rot into payloads that prove nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from browserkit import CONTEXTS, BrowserPortal, LoopbackServer

MANIFEST = Path(__file__).parents[1] / "data" / "xss" / "manifest.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    data = json.loads(MANIFEST.read_text())
    server = LoopbackServer()
    started = time.monotonic()
    portal = BrowserPortal(args.chromium)
    try:
        for entry in data["payloads"]:
            if args.only and entry["id"] not in args.only:
                continue
            svg = (MANIFEST.parent / entry["file"]).read_bytes()
            results = portal.run_cases(server, [(svg, (ctx,)) for ctx in CONTEXTS])
            observed = {
                ctx: sorted({str(e) for e in r.effects})
                for ctx, r in zip(CONTEXTS, results, strict=True)
                if r.effects
            }
            entry["live_in"] = [c for c in CONTEXTS if c in observed]
            entry["observed"] = observed
            print(f"{entry['id']:40s} {','.join(entry['live_in']) or '-'}", flush=True)
        data["surveyed_with"] = f"Chromium {portal.version}"
    finally:
        portal.close()
        server.close()
    MANIFEST.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
