"""``chatsvg sanitize``: files, stdin/stdout, directories, in-place, reports, exit status."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatsvg_core.cli import COMMANDS, main

NS = 'xmlns="http://www.w3.org/2000/svg"'
DIRTY = f'<svg {NS} onload="alert(1)"><script>alert(1)</script><rect/></svg>'
CLEAN = f"<svg {NS}><rect/></svg>"
BAD = "<html/>"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"dirty": tmp_path / "dirty.svg", "clean": tmp_path / "clean.svg",
             "bad": tmp_path / "bad.svg"}  # fmt: skip
    paths["dirty"].write_text(DIRTY)
    paths["clean"].write_text(CLEAN)
    paths["bad"].write_text(BAD)
    return paths


def test_registry_loads_sanitize_without_the_engine() -> None:
    import click

    from chatsvg_core.cli import cli

    assert "sanitize" in COMMANDS
    command = cli.get_command(click.Context(cli), "sanitize")
    assert isinstance(command, click.Command)
    ctx = command.make_context("sanitize", ["x.svg", "--policy", "strict"])
    assert ctx.params["policy"] == "strict"


def test_too_many_bytes_states_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.svg"
    big.write_bytes(f"<svg {NS}>".encode() + b" " * (10 * 1024 * 1024) + b"</svg>")
    assert main(["sanitize", str(big)]) == 1
    assert "rejected (too_many_bytes)" in (err := capsys.readouterr().err)
    assert "(limit " in err


def test_several_inputs_never_create_the_output_directory(
    files: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "one.svg"
    assert main(["sanitize", str(files["dirty"]), str(files["clean"]), "-o", str(target)]) == 2
    assert not target.exists()


def test_one_file_to_stdout(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sanitize", str(files["dirty"])]) == 0
    assert capsys.readouterr().out == CLEAN + "\n"


def test_one_file_to_output_file(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.svg"
    assert main(["sanitize", str(files["dirty"]), "-o", str(out)]) == 0
    assert out.read_text() == CLEAN


def test_many_files_to_a_directory_with_json_report(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    status = main(["sanitize", str(files["dirty"]), str(files["clean"]), str(files["bad"]),
                   "-o", str(outdir), "--report", "json"])  # fmt: skip
    assert status == 1  # one file was rejected
    assert (outdir / "dirty.svg").read_text() == CLEAN
    assert (outdir / "clean.svg").read_text() == CLEAN
    assert not (outdir / "bad.svg").exists()
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok", "rejected"]
    assert records[0]["changed"] is True
    assert records[1]["changed"] is False
    assert {e["reason"] for e in records[0]["report"]} == {"event_handler", "element_not_allowed"}
    assert records[2]["error"]["reason"] == "not_svg_root"
    assert "3 files: 2 sanitized (1 changed), 1 failed" in captured.err


def test_in_place(files: dict[str, Path]) -> None:
    assert main(["sanitize", "--in-place", str(files["dirty"]), str(files["clean"])]) == 0
    assert files["dirty"].read_text() == CLEAN
    assert not list(files["dirty"].parent.glob(".*tmp"))


def test_stdin_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(DIRTY.encode())))
    assert main(["sanitize", "-", "--policy", "strict", "--report", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == CLEAN + "\n"
    assert json.loads(captured.err)["status"] == "ok"  # report goes to stderr here


def test_rejected_file_exits_non_zero(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sanitize", str(files["bad"])]) == 1
    assert "rejected (not_svg_root)" in capsys.readouterr().err


def test_missing_file_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sanitize", str(tmp_path / "nope.svg")]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["sanitize"],
        ["sanitize", "a.svg", "b.svg"],
        ["sanitize", "-", "--in-place"],
        ["sanitize", "a.svg", "--policy", "lax"],
        ["sanitize", "a.svg", "-o", "x", "--in-place"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2


def test_plain_progress_fallback(capsys: pytest.CaptureFixture[str]) -> None:
    from chatsvg_core.cli._sanitize import _PlainProgress

    progress = _PlainProgress(20)
    for _ in range(20):
        progress.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "sanitized 2/20"
    assert lines[-1] == "sanitized 20/20"


def test_real_subprocess(files: dict[str, Path]) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, "-m", "chatsvg_core.cli", "sanitize", "-"],
        input=DIRTY.encode(), capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == CLEAN + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "chatsvg_core.cli", "sanitize", str(files["bad"])],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
