"""``chatsvg generate | jobs | balance | grant | worker`` on the embedded SQLite default."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chatsvg_core.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATSVG_HOME", str(tmp_path / "data"))
    for var in ("CHATSVG_OPENAI_BASE_URL", "CHATSVG_OPENAI_API_KEY", "CHATSVG_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_generate_writes_a_sanitized_svg_and_charges(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = home / "lighthouse.svg"
    assert main(["generate", "a lighthouse at dusk", "-o", str(out)]) == 0
    svg = out.read_text()
    assert svg.startswith("<svg")
    assert "lighthouse" in svg
    err = capsys.readouterr().err
    for stage in ("submitted", "claimed", "charged", "succeeded"):
        assert stage in err
    assert (home / "data" / "chatsvg.db").exists()
    assert main(["balance", "--json"]) == 0
    statement = json.loads(capsys.readouterr().out)
    assert statement["balance"] == 50 - 2  # welcome credits minus one standard job


def test_same_key_replays_the_same_job(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "a cat", "--key", "k1", "-q"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", "a cat", "--key", "k1", "-q"]) == 0
    assert capsys.readouterr().out == first
    assert main(["generate", "a dog", "--key", "k1", "-q"]) == 1
    assert "idempotency_conflict" in capsys.readouterr().err
    assert main(["jobs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_bad_prompt_exits_non_zero_with_the_rule(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "   ", "-q"]) == 1
    assert "prompt_rejected" in capsys.readouterr().err


def test_grant_is_idempotent_by_external_id(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grant", "5", "--owner", "bob", "--external-id", "pay-1"]) == 0
    assert capsys.readouterr().out.startswith("granted 5 to bob")
    assert main(["grant", "5", "--owner", "bob", "--external-id", "pay-1"]) == 0
    repeat = capsys.readouterr().out
    assert repeat.startswith("nothing granted: 'pay-1' was already granted")
    assert "balance 5" in repeat
    assert main(["grant", "5", "--owner", "bob", "--external-id", "pay-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["granted"] is False
    assert main(["balance", "--owner", "bob", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"] == 5


def test_worker_once_drains_jobs_submitted_elsewhere(home: Path) -> None:
    # A job left QUEUED (e.g. its submitter died) is found and run by a worker.
    import asyncio

    from chatsvg_core import Engine, Ledger, OfflineSketchProvider, open_storage

    async def submit() -> str:
        (home / "data").mkdir()
        store = await open_storage(f"sqlite:///{home / 'data' / 'chatsvg.db'}")
        await Ledger(store).grant("local", 10)
        job = (
            await Engine(store, None, OfflineSketchProvider()).submit(
                "local", None, {"prompt": "a tree"}
            )
        ).job
        await store.aclose()
        return job.id

    job_id = asyncio.run(submit())
    assert main(["worker", "--once"]) == 0
    out = subprocess.run(
        [sys.executable, "-m", "chatsvg_core.cli", "jobs", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=home,
    ).stdout
    [job] = [j for j in json.loads(out) if j["id"] == job_id]
    assert job["status"] == "succeeded"


def test_settings_come_from_flags_over_env_over_config_file(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "chatsvg.toml").write_text('owner = "from-file"\nwelcome_credits = 7\n')
    assert main(["generate", "a cat", "-q", "-o", str(home / "a.svg")]) == 0
    capsys.readouterr()
    assert main(["balance", "--json"]) == 0
    statement = json.loads(capsys.readouterr().out)
    assert statement["owner"] == "from-file"
    assert statement["balance"] == 7 - 2
    monkeypatch.setenv("CHATSVG_OWNER", "from-env")
    assert main(["balance", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"] == 0  # from-env has none yet
    assert main(["balance", "--owner", "from-file", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["owner"] == "from-file"


def test_read_commands_never_create_or_migrate(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["jobs"], ["balance"], ["job", "x"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "no database yet" in err
        assert "chatsvg migrate" in err
    named = home / "named.db"
    assert main(["jobs", "--database-url", f"sqlite:///{named}"]) == 1
    assert "chatsvg migrate --database-url" in capsys.readouterr().err
    assert not named.exists()
    assert not (home / "data").exists()


def test_migrate_is_the_step_that_writes_the_schema(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    url = f"sqlite:///{home / 'named.db'}"
    sqlite3.connect(home / "named.db").close()  # an empty database, as a deploy creates it
    assert main(["jobs", "--database-url", url]) == 1
    assert "schema version 0" in capsys.readouterr().err
    assert main(["migrate", "--database-url", url, "--check"]) == 1
    assert "run chatsvg migrate" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url]) == 0
    assert "migrated from version 0 to" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True
    assert main(["migrate", "--database-url", url, "--check"]) == 0
    assert "schema up to date" in capsys.readouterr().out
    assert main(["jobs", "--database-url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.postgres
def test_migrate_on_postgres(
    home: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import secrets

    import psycopg

    schema = f"chatsvg_cli_{os.getpid()}_{secrets.token_hex(4)}"
    url = f"{postgres_url}?schema={schema}"
    try:
        assert main(["balance", "--database-url", url]) == 1
        assert "run 'chatsvg migrate --database-url URL' first" in capsys.readouterr().err
        assert main(["migrate", "--database-url", url]) == 0
        assert "migrated from version 0" in capsys.readouterr().out
        assert main(["grant", "3", "--database-url", url, "--owner", "ann"]) == 0
        capsys.readouterr()
        assert main(["balance", "--database-url", url, "--owner", "ann", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["balance"] == 3
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_no_wait_then_job_then_worker(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "a boat", "--no-wait", "-q"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["job", job_id]) == 0
    shown = capsys.readouterr().out
    assert "status    queued" in shown
    assert "credits   0 charged, 0 refunded" in shown
    assert main(["job", job_id, "-o", str(home / "boat.svg")]) == 1
    assert "no SVG yet" in capsys.readouterr().err
    assert main(["worker", "--once", "-q"]) == 0
    assert main(["job", job_id, "--json", "-o", str(home / "boat.svg")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "succeeded"
    assert record["credits"] == {"charged": 2, "refunded": 0}
    assert (home / "boat.svg").read_text().startswith("<svg")
    assert main(["job", "nope"]) == 1
    assert "job_not_found" in capsys.readouterr().err


def test_ctrl_c_says_what_became_of_the_job_and_its_credits(home: Path) -> None:
    """Against a model that never answers: progress names the wait, Ctrl-C hands the job back."""
    import signal
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept and never answer: a hung model server
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    env = {
        **__import__("os").environ,
        "CHATSVG_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "CHATSVG_OPENAI_API_KEY": "test",
        "CHATSVG_HOME": str(home / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatsvg_core.cli", "generate", "a hung model", "-o", "x.svg"],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "waiting for the model" in line or not line:
                break
        assert any("charged 2 credits; waiting for the model" in x for x in lines), lines
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    rest = " ".join(rest.split())
    assert "Traceback" not in rest
    assert re.search(r"is queued again \(attempt 1 of \d+ used\)", rest), rest
    # The library's own log records stay quiet: the host (here the CLI) did not configure logging.
    assert "handler cancelled" not in rest
    assert "Retrying" not in rest
    assert "the 2 credits charged for it stay with the job" in rest
    assert not (home / "x.svg").exists()


async def test_progress_is_never_silent_off_a_terminal() -> None:
    """Piped output gets a 'still waiting' line with state, attempt and wait every `every` s."""
    import asyncio
    import io
    from datetime import UTC, datetime

    from chatsvg_core.cli._progress import Progress
    from chatsvg_core.engine import EngineEvent, EventKind

    out = io.StringIO()
    progress = Progress(out=out, every=0.3, provider="the model (slow)", max_attempts=3)
    progress.watch = "j1"

    def event(kind: EventKind, **fields: object) -> EngineEvent:
        return EngineEvent(
            kind=kind, job_id="j1", owner="o", at=datetime.now(UTC), attempt=1, fields=fields
        )

    progress(event(EventKind.CLAIMED, worker_id="cli"))
    progress(event(EventKind.CHARGED, amount=2))
    progress.start()
    await asyncio.sleep(1.6)
    await progress.stop()
    lines = out.getvalue().splitlines()
    assert "charged 2 credits; waiting for the model (slow)" in lines[1]
    waiting = [line for line in lines if line.strip().startswith("waiting")]
    assert len(waiting) >= 2
    assert "running, attempt 1/3" in waiting[0]
    assert waiting[0].endswith("waiting for the model (slow)")
    progress(event(EventKind.SUCCEEDED))
    assert progress.done.is_set()


def test_show_answer_and_provider_flags_against_a_server(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--show-answer`` prints the raw answer; ``--max-tokens`` and timeouts reach the request."""
    from chatsvg_core.testing import FakeOpenAIServer, StreamReply

    with FakeOpenAIServer() as server:
        server.script(StreamReply(("Sure! <svg viewBox='0 0 9 9'>", "</svg>"), model="m.gguf"))
        server.script(StreamReply(("I would rather describe a lighthouse.",)))
        monkeypatch.setenv("CHATSVG_OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("CHATSVG_OPENAI_MODEL", "m.gguf")
        args = ["generate", "a lighthouse", "--max-tokens", "300", "--show-answer"]
        assert main([*args, "--first-token-timeout", "7", "-q"]) == 1  # blank picture
        failed = capsys.readouterr().err
        assert main([*args, "-q"]) == 1  # no SVG at all
        nothing = capsys.readouterr().err
        sent = server.requests[0].json()
    assert sent["max_tokens"] == 300
    assert "--- answer of m.gguf (finish_reason svg_complete" in failed
    assert "Sure! <svg viewBox='0 0 9 9'></svg>" in failed
    assert "svg_rejected" in failed
    assert "blank" in failed
    assert "I would rather describe a lighthouse." in nothing
    assert "no_svg_found" in nothing


def test_cancel_a_queued_job(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "a kite", "--no-wait", "-q"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["cancel", job_id, "--owner", "someone-else"]) == 1
    assert "job_not_found" in capsys.readouterr().err
    assert main(["cancel", job_id, "--reason", "changed my mind"]) == 0
    assert f"job {job_id} cancelled" in capsys.readouterr().out
    assert main(["cancel", job_id, "--json"]) == 0  # again: unchanged
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "failed"
    assert record["last_error"]["code"] == "cancelled"
    assert main(["worker", "--once", "-q"]) == 0
    assert main(["job", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "failed"


def test_every_provider_timeout_is_a_flag_that_reaches_the_provider(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each timeout of the OpenAI-compatible provider can be set on the command line."""
    from chatsvg_core.cli._common import load_settings, provider_for

    monkeypatch.setenv("CHATSVG_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CHATSVG_OPENAI_MODEL", "m")
    monkeypatch.setenv("CHATSVG_OPENAI_CONNECT_TIMEOUT", "11")
    flags = {
        "connect_timeout": 3.0,
        "write_timeout": 4.0,
        "total_timeout": 50.0,
        "read_timeout": 6.0,
        "first_token_timeout": 7.0,
    }
    provider = provider_for(load_settings(provider="openai"), **flags)
    settings = provider.settings  # type: ignore[attr-defined]
    assert {name: getattr(settings, name) for name in flags} == flags
    # A flag not given leaves the environment's value.
    unset = provider_for(load_settings(provider="openai"), connect_timeout=None)
    assert unset.settings.connect_timeout == 11.0  # type: ignore[attr-defined]
    assert main(["generate", "--help"]) == 0
    shown = capsys.readouterr().out
    for flag in ("--connect-timeout", "--write-timeout", "--total-timeout", "--read-timeout"):
        assert flag in shown
    for flag in ("--connect-timeout", "--write-timeout", "--total-timeout"):
        assert main(["generate", "a lighthouse", flag, "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0]
