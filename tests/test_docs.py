"""Docs that are derived from code stay in step with it."""

from __future__ import annotations

from pathlib import Path

from chatsvg_core.jobs import mermaid

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_state_diagram_matches_the_transition_table() -> None:
    assert f"```mermaid\n{mermaid()}\n```" in (DOCS / "jobs.md").read_text()
