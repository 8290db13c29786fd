"""The state diagram in the docs is the transition table, edge for edge.

``mermaid()`` lives in ``jobs/_transitions.py`` beside the table it draws, so
its tests live here too (the mutation target of that module runs
``tests/jobs`` only): the page must show exactly what the function renders,
and what it renders must be exactly the table.
"""

from __future__ import annotations

import re
from pathlib import Path

from chatsvg_core.jobs import TRANSITIONS, JobStatus, mermaid

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_jobs_page_shows_the_diagram_the_code_renders() -> None:
    assert f"```mermaid\n{mermaid()}\n```" in (DOCS / "jobs.md").read_text()


def test_the_diagram_draws_each_transition_once_and_nothing_else() -> None:
    # Parsed back rather than re-rendered: the edges read off the diagram are the table's.
    lines = mermaid().split("\n")
    assert lines[0] == "stateDiagram-v2"
    edge = re.compile(r"    (\S+) --> (\S+)(?:: (\S+)(?: \((.*)\))?)?")
    edges = [edge.fullmatch(line) for line in lines[1:]]
    assert all(edges), lines
    drawn = [m.groups() for m in edges if m is not None]
    table = [(t.source.value, t.target.value, t.action, t.guard) for t in TRANSITIONS]
    assert [d for d in drawn if "[*]" not in d] == table
    assert [d[:2] for d in drawn if "[*]" in d] == [
        ("[*]", JobStatus.QUEUED.value),
        *((s.value, "[*]") for s in (JobStatus.SUCCEEDED, JobStatus.FAILED)),
    ]
