"""The namespace repairs on recorded model answers: they only ever turn refusals into pictures.

``measure_repairs.py`` prints the counts; here every answer is checked one by one.
``tests/data/llama_answers`` holds answers of a real llama.cpp server (SmolLM2-135M),
captured by ``capture_llama_answers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .measure_repairs import DEFAULT_DIRS, answers, outcome

ANSWERS = answers(DEFAULT_DIRS)


@pytest.mark.parametrize("path", ANSWERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_repair_never_loses_an_answer(path: Path) -> None:
    answer = path.read_text(encoding="utf-8")
    without, with_repair = outcome(answer, repair=False), outcome(answer, repair=True)
    if without in {"ok", "blank"}:
        assert with_repair == without
    elif with_repair != without:
        # What the repair changes: a missing namespace, nothing else.
        assert without in {"svg_rejected:not_svg_root", "svg_rejected:not_well_formed"}
        assert with_repair in {"ok", "blank"}


def test_the_corpora_are_there() -> None:
    # Recorded answers, including a real llama.cpp server's; the counts are in the changelog.
    assert len([p for p in ANSWERS if p.parent.name == "model_answers"]) >= 40
    assert len([p for p in ANSWERS if p.parent.name == "llama_answers"]) >= 8
