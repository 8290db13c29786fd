"""No user mistake shows a traceback: every command, driven with bad values.

Each case must exit 1 (a failure the user can act on) or 2 (a usage error),
print exactly one line on stderr, and never an "internal error" (which is how
:func:`chatsvg_core.cli.main` reports a bug). A hypothesis test then throws
argument lists built from the real vocabulary plus arbitrary text at it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.cli import COMMANDS, main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATSVG_HOME", str(tmp_path / "data"))
    for var in ("CHATSVG_OPENAI_BASE_URL", "CHATSVG_OPENAI_API_KEY", "CHATSVG_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "a.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "b.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    return tmp_path


BAD: list[tuple[list[str], int, str]] = [
    (["generate", "x", "--width", "-5"], 2, "--width"),
    (["generate", "x", "--width", "100000"], 2, "--width"),
    (["generate", "x", "--height", "abc"], 2, "--height"),
    (["generate", "x", "--style", "Not A Slug"], 2, "--style"),
    (["generate", "x", "--detail", "ultra"], 2, "--detail"),
    (["generate", "x", "--provider", "nope"], 2, "--provider"),
    (["generate", "x", "--bogus"], 2, "chatsvg generate: error: No such option '--bogus'"),
    (["generate"], 2, "PROMPT"),
    (["generate", "x", "-o", "no/such/dir/x.svg"], 2, "does not exist"),
    (["generate", "x", "-o", "."], 2, "is a directory"),
    (["generate", "   ", "-q"], 1, "prompt_rejected"),
    (["generate", "a\u202ebidi", "-q"], 1, "prompt_rejected"),
    (["generate", "x" * 9000, "-q"], 1, "prompt_rejected"),
    (["generate", "x", "--database-url", "nosuch://x", "-q"], 1, "configuration_error"),
    (["generate", "x", "--database-url", "not a url", "-q"], 1, "configuration_error"),
    (["jobs", "--limit", "0"], 2, "--limit"),
    (["jobs", "--status", "sleeping"], 2, "--status"),
    (["jobs", "extra"], 2, "unexpected extra argument"),
    (["jobs"], 1, "no database yet"),
    (["balance", "--limit", "-1"], 2, "--limit"),
    (["balance", "--json", "--json=3"], 2, "--json"),
    (["grant"], 2, "AMOUNT"),
    (["grant", "0"], 2, "AMOUNT"),
    (["grant", "-5"], 2, ""),
    (["grant", "ten"], 2, "AMOUNT"),
    (["grant", "99999999999"], 2, "AMOUNT"),
    (["job"], 2, "ID"),
    (["job", "x", "-o", "no/such/dir/x.svg"], 2, "does not exist"),
    (["worker", "--concurrency", "0"], 2, "--concurrency"),
    (["worker", "--poll", "never"], 2, "--poll"),
    (["migrate", "--database-url", "memory"], 1, "configuration_error"),
    (["migrate", "--owner", "x"], 2, "--owner"),
    (["sanitize"], 2, "FILE"),
    (["sanitize", "a.svg", "b.svg"], 2, "several inputs"),
    (["sanitize", "a.svg", "b.svg", "-o", "one.svg"], 2, "existing directory"),
    (["sanitize", "-", "--in-place"], 2, "stdin"),
    (["sanitize", "a.svg", "--policy", "lax"], 2, "--policy"),
    (["sanitize", "a.svg", "-o", "x", "--in-place"], 2, "cannot be used together"),
    (["sanitize", "missing.svg"], 1, "cannot read"),
    (["frobnicate"], 2, "No such command"),
    (["--frobnicate"], 2, "No such option"),
]


def _check(status: int, err: str) -> None:
    assert "Traceback" not in err
    assert "internal error" not in err
    if status == 2:
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("argv", "status", "says"), BAD, ids=lambda v: repr(v)[:50])
def test_bad_values_exit_with_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, says: str
) -> None:
    assert main(argv) == status
    err = capsys.readouterr().err
    _check(status, err)
    assert len(err.strip().splitlines()) == 1, err
    assert says in err
    assert not (home / "one.svg").exists()  # sanitize never turns -o into a directory


def test_bad_settings_in_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATSVG_CONCURRENCY", "lots")
    assert main(["jobs"]) == 1
    err = capsys.readouterr().err
    _check(1, err)
    assert "bad setting" in err
    assert "concurrency" in err


def test_every_command_and_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from chatsvg_core.cli import cli

    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        assert command.help, name
        assert command.get_short_help_str(), name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"
        assert main([name, "--help"]) == 0
        assert "Usage: chatsvg " + name in capsys.readouterr().out
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in COMMANDS), listing


_WORDS = [
    *COMMANDS,
    "--width", "--height", "--limit", "--status", "--json", "--owner", "--database-url",
    "--key", "--style", "--detail", "--provider", "--no-wait", "-q", "-o", "--help",
    "--external-id", "--concurrency", "--poll", "--check", "--policy", "--report", "--in-place",
    "-5", "0", "1", "100000", "queued", "strict", "offline", "json", "a.svg", "b.svg", "-",
    "sqlite:///x.db", "memory://", "--", "=",
]  # fmt: skip

_ARGS = st.lists(
    st.one_of(st.sampled_from(_WORDS), st.text(max_size=12)),
    max_size=6,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=st.sampled_from(sorted(COMMANDS)), args=_ARGS)
def test_arbitrary_argument_lists_never_show_a_traceback(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    args: list[str],
) -> None:
    if command == "worker":
        # A worker without --once serves forever; first, so no option takes it as its value.
        args = ["--once", *args]
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)
        monkeypatch.setenv("CHATSVG_HOME", str(Path(tmp) / "data"))
        for var in ("CHATSVG_OPENAI_BASE_URL", "CHATSVG_OPENAI_API_KEY", "CHATSVG_DATABASE_URL"):
            monkeypatch.delenv(var, raising=False)
        Path(tmp, "a.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        status = main([command, *args])
        err = capsys.readouterr().err
    assert status in (0, 1, 2), (status, err)
    _check(status, err)
