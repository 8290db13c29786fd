"""The README's two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.+?)\n```", text)
    assert match, f"README.md lost its {marker}"
    return match.group(1)


def test_ci_runs_the_readme_test_command() -> None:
    assert _command("test-command") in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_opens_with_the_main_command_then_the_test_command() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("<!-- main-command -->") < text.index("<!-- test-command -->")
