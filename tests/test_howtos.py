"""The how-to guides' examples (docs/examples/*.py) run as written, against real parts."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from chatsvg_core import Ledger, open_storage

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"howto_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _database(tmp_path: Path, owners: dict[str, int]) -> str:
    url = f"sqlite:///{tmp_path / 'service.db'}"

    async def prepare() -> None:
        store = await open_storage(url)  # what `chatsvg migrate` does in a deploy
        for owner, credits in owners.items():
            await Ledger(store).grant(owner, credits)
        await store.aclose()

    asyncio.run(prepare())
    return url


def test_fastapi_service(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    url = _database(tmp_path, {"ann": 10})
    app = _load("fastapi_app").create_app(url)
    with TestClient(app) as client:
        ann = {"X-User": "ann", "Idempotency-Key": "k-1"}
        first = client.post("/drawings", json={"prompt": "a lighthouse at dusk"}, headers=ann)
        assert first.status_code == 202, first.text
        again = client.post("/drawings", json={"prompt": "a lighthouse at dusk"}, headers=ann)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["replayed"] is True
        job_id = first.json()["id"]
        deadline = time.monotonic() + 30
        while (state := client.get(f"/drawings/{job_id}", headers=ann).json())[
            "status"
        ] != "succeeded":
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        svg = client.get(f"/drawings/{job_id}.svg", headers=ann)
        assert svg.status_code == 200
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.startswith("<svg")
        assert "default-src 'none'" in svg.headers["content-security-policy"]
        other = client.get(f"/drawings/{job_id}", headers={"X-User": "bob"})
        assert other.status_code == 404
        assert other.json()["code"] == "job_not_found"
        bad = client.post("/drawings", json={"prompt": "   "}, headers={"X-User": "ann"})
        assert bad.status_code == 422
        assert bad.json()["code"] == "prompt_rejected"
        wide = client.post("/drawings", json={"prompt": "x", "width": -5}, headers=ann)
        assert wide.status_code == 422


@pytest.fixture
def django_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    pytest.importorskip("django")
    monkeypatch.setenv("CHATSVG_DATABASE_URL", _database(tmp_path, {"ann": 10}))
    module = _load("django_app")
    yield module
    module.engine().close()
    module.engine.cache_clear()


def test_django_view_and_worker(django_module: ModuleType) -> None:
    from django.test import Client

    client = Client()
    sent = client.post(
        "/drawings",
        data=json.dumps({"prompt": "a red fox"}),
        content_type="application/json",
        headers={"X-User": "ann", "Idempotency-Key": "fox-1"},
    )
    assert sent.status_code == 202, sent.content
    job_id = sent.json()["id"]
    assert client.get(f"/drawings/{job_id}", headers={"X-User": "ann"}).json()["status"] == "queued"

    stop = threading.Event()
    worker = threading.Thread(target=django_module.worker, args=(stop, 0.05))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while (
            client.get(f"/drawings/{job_id}", headers={"X-User": "ann"}).json()["status"]
            != "succeeded"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(30)
    svg = client.get(f"/drawings/{job_id}?format=svg", headers={"X-User": "ann"})
    assert svg["Content-Type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg")
    assert client.get(f"/drawings/{job_id}", headers={"X-User": "eve"}).status_code == 404
    refused = client.post(
        "/drawings", data="{}", content_type="application/json", headers={"X-User": "ann"}
    )
    assert refused.status_code in (400, 422)  # no prompt: a typed error, not a 500
    assert refused.json()["code"]


@pytest.mark.parametrize("example", ["logging_json", "logging_structlog"])
def test_logging_examples_emit_json_with_the_job_fields(example: str) -> None:
    if example == "logging_structlog":
        pytest.importorskip("structlog")
    from chatsvg_core import generate_svg

    stream = io.StringIO()
    library = logging.getLogger("chatsvg_core")
    handlers, level = list(library.handlers), library.level
    try:
        _load(example).configure(stream, logging.DEBUG)
        generate_svg("a small boat")
    finally:
        library.handlers[:] = handlers
        library.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    succeeded = [line for line in lines if line.get("chatsvg_event") == "succeeded"]
    assert len(succeeded) == 1
    record = succeeded[0]
    assert record["job_id"]
    assert record["attempt"] == 1
    assert "owner" in record
    text = record.get("message") or record.get("event")
    assert text.startswith(f"Job {record['job_id']} succeeded")
