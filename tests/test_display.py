"""Notebook display: pictures for results, escaped tables for jobs and statements."""

from __future__ import annotations

from datetime import UTC, datetime

from chatsvg_core import JobResult, LedgerEntry, Statement
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import EntryKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_result_displays_as_its_svg() -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg"/>'
    assert JobResult(job_id="j", svg=svg, created_at=NOW)._repr_svg_() == svg


def test_job_table_escapes_user_text() -> None:
    job = new_job(
        job_id="j1",
        owner="<b>eve</b>",
        request={"prompt": "<script>alert(1)</script>"},
        request_hash="v1:0",
        now=NOW,
    )
    html = job._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "queued" in html


def test_statement_table_lists_entries() -> None:
    entry = LedgerEntry(
        id="e1", owner="ann", kind=EntryKind.GRANT, amount=5, ref="pay-1", created_at=NOW
    )
    html = Statement(owner="ann", balance=5, entries=(entry,))._repr_html_()
    assert "ann: 5 credits" in html
    assert "+5" in html
    assert "pay-1" in html
