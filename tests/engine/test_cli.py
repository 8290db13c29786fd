"""``chatsvg generate | jobs | balance | grant | worker`` on the embedded SQLite default."""

from __future__ import annotations

import json
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
    assert main(["grant", "5", "--owner", "bob", "--external-id", "pay-1"]) == 0
    capsys.readouterr()
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
    assert json.loads(capsys.readouterr().out)["balance"] == 0  # from-env has no account yet
    assert main(["balance", "--owner", "from-file", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["owner"] == "from-file"
