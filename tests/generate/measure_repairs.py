"""How many model answers succeed with the sanitizer's namespace repairs, and how many without.

Run ``PYTHONPATH=src python -m tests.generate.measure_repairs [DIR...]`` from the worktree
root. Each ``*.txt`` under the directories (default: ``tests/data/model_answers`` and
``tests/data/llama_answers``) is one raw answer; it goes through ``extract_svg``, the default
sanitizer (with and without ``repair_root``) and the blank-picture rule, and the outcome of
each is counted. ``test_repairs_measured`` keeps the recorded counts honest.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from unittest import mock

from chatsvg_core.errors import ChatSVGError
from chatsvg_core.generate import extract_svg
from chatsvg_core.sanitize import Sanitizer, is_blank
from chatsvg_core.sanitize import _sanitizer as sanitizer_module

DATA = Path(__file__).parent.parent / "data"
DEFAULT_DIRS = (DATA / "model_answers", DATA / "llama_answers")


def outcome(answer: str, *, repair: bool) -> str:
    """``ok``, ``blank``, or the error code (with its reason) of one answer."""
    sanitizer = Sanitizer()
    try:
        raw = extract_svg(answer)
        if repair:
            clean = sanitizer.sanitize(raw)
        else:
            with mock.patch.object(sanitizer_module, "repair_root", lambda data: (data, ())):
                clean = sanitizer.sanitize(raw)
    except ChatSVGError as exc:
        reason = exc.fields.get("reason")
        return f"{exc.code}:{reason}" if reason else exc.code
    return "blank" if is_blank(clean.svg) else "ok"


def measure(paths: Iterable[Path]) -> dict[str, Counter[str]]:
    """Outcome counts per mode (``without repair``, ``with repair``)."""
    counts: dict[str, Counter[str]] = {"without repair": Counter(), "with repair": Counter()}
    for path in paths:
        answer = path.read_text(encoding="utf-8")
        counts["without repair"][outcome(answer, repair=False)] += 1
        counts["with repair"][outcome(answer, repair=True)] += 1
    return counts


def answers(dirs: Iterable[Path]) -> list[Path]:
    """The answer files under ``dirs``."""
    return sorted(p for d in dirs if d.is_dir() for p in d.glob("*.txt"))


def main(argv: list[str]) -> None:
    dirs = [Path(a) for a in argv] or list(DEFAULT_DIRS)
    for directory in dirs:
        files = answers([directory])
        if not files:
            continue
        print(f"{directory} ({len(files)} answers)")
        for mode, counter in measure(files).items():
            print(f"  {mode:<15} " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
