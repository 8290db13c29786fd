"""HTTP answers: RFC 9457 problem documents; the FastAPI example host over httpx's ASGI."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core import (
    REPLAY_HEADER,
    Ledger,
    errors,
    open_storage,
    problem_details,
    submit_headers,
)
from chatsvg_core.ledger import LedgerConflict

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def test_a_client_error_keeps_its_status_code_and_safe_fields() -> None:
    exc = errors.DailyCapExceeded(
        "cap",
        owner="ann",
        cap=10,
        used=10,
        amount=2,
        resets_at=(NOW + timedelta(hours=2)).isoformat(),
    )
    p = problem_details(exc, instance="/drawings", now=NOW)
    assert p.status == 429
    assert p.headers == {"Content-Type": "application/problem+json", "Retry-After": "7200"}
    assert p.body["type"] == "urn:chatsvg:problem:daily_cap_exceeded"
    assert p.body["status"] == 429 and p.body["code"] == "daily_cap_exceeded"
    assert (p.body["cap"], p.body["used"], p.body["instance"]) == (10, 10, "/drawings")
    assert json.loads(p.content) == p.body


def test_internal_values_never_leave() -> None:
    conflict = errors.IdempotencyConflict("used", scope="3:ann/8:generate", key="k-1")
    body = problem_details(conflict).body
    assert "scope" not in body and "3:ann" not in json.dumps(body)
    assert (body["status"], body["key"]) == (422, "k-1")
    other = LedgerConflict(
        "x", kind="charge", ref="j", reason="replay_mismatch", expected_owner="bob"
    )
    assert "bob" not in json.dumps(problem_details(other).body)
    stale = errors.StaleLease("stale", job_id="j", status="running", token=1, current_token=2)
    assert "token" not in problem_details(stale).body
    assert problem_details(stale).body["job_status"] == "running"
    down = errors.StorageUnavailable("PostgreSQL at db.internal:5432: gone", host="db.internal")
    p = problem_details(down)
    assert p.status == 503 and p.headers["Retry-After"] == "1"
    assert "db.internal" not in p.content.decode() and "detail" not in p.body
    boom = problem_details(RuntimeError("secret-token-123"))
    assert boom.status == 500 and "secret" not in boom.content.decode()


def test_retry_after_comes_from_the_error() -> None:
    exc = errors.ProviderTransientError("429", provider="openai", status=429, retry_after=2.2)
    assert problem_details(exc).headers["Retry-After"] == "3"
    assert "Retry-After" not in problem_details(errors.JobNotFound("no", job_id="x")).headers


def test_submit_headers_mark_replays() -> None:
    assert submit_headers(True, location="/d/1") == {"Location": "/d/1", REPLAY_HEADER: "true"}
    assert submit_headers(False) == {}


codes = st.sampled_from([getattr(errors, n) for n in errors.__all__])


@settings(max_examples=100, deadline=None)
@given(cls=codes, fields=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4))
def test_every_error_becomes_a_valid_problem_document(
    cls: type[errors.ChatSVGError], fields: dict[str, str]
) -> None:
    p = problem_details(cls("message", **fields))
    assert 400 <= p.status <= 599
    assert p.body["status"] == p.status and p.body["code"] == cls.code
    assert p.body["type"].startswith("urn:chatsvg:problem:")
    json.loads(p.content)
    leaked = set(fields) - {
        "field", "errors", "rule", "reason", "limit", "job_id", "action", "owner", "balance",
        "amount", "cap", "used", "resets_at", "retry_after", "in_flight", "key", "path", "what",
        "status",
    }  # fmt: skip
    assert not leaked & set(p.body) - {"type", "title", "status", "detail", "code", "transient"}


# --- the FastAPI example host, over httpx's ASGI transport --------------------------


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_fastapi_example_host(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = await open_storage(url)
    await Ledger(store).grant("ann", 4)  # two standard drawings
    await store.aclose()
    app = _load().create_app(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            ann = {"X-User": "ann"}
            first = await client.post(
                "/drawings",
                json={"prompt": "a lighthouse"},
                headers={**ann, "Idempotency-Key": "k1"},
            )
            assert first.status_code == 202, first.text
            job_id = first.json()["id"]
            assert first.headers["location"] == f"/drawings/{job_id}"
            assert REPLAY_HEADER.lower() not in first.headers
            again = await client.post(
                "/drawings",
                json={"prompt": "a lighthouse"},
                headers={**ann, "Idempotency-Key": "k1"},
            )
            assert again.json()["id"] == job_id
            assert again.headers[REPLAY_HEADER] == "true"
            done = await client.get(f"/drawings/{job_id}/wait", params={"timeout": 20}, headers=ann)
            assert done.json()["status"] == "succeeded", done.text
            assert (await client.get("/balance", headers=ann)).json()["balance"] == 2
            # A second job, cancelled at once (a stalled queue would leave it queued).
            second = await client.post("/drawings", json={"prompt": "a fox"}, headers=ann)
            assert second.status_code == 202
            gone = await client.post(f"/drawings/{second.json()['id']}/cancel", headers=ann)
            if gone.status_code == 200:  # else the in-process worker finished it first (409)
                assert gone.json()["error"] == "cancelled"
                assert (await client.get("/balance", headers=ann)).json()["balance"] == 2
            else:
                assert gone.status_code == 409
            # No credits left for a third: 402 at the door, a problem document.
            await client.post("/drawings", json={"prompt": "a cat"}, headers=ann)
            broke = await client.post(
                "/drawings", json={"prompt": "an owl"}, headers={**ann, "Idempotency-Key": "k9"}
            )
            assert broke.status_code == 402
            assert broke.headers["content-type"] == "application/problem+json"
            assert broke.json()["code"] == "insufficient_credits"
            bad = await client.post("/drawings", json={"prompt": "x", "width": "512"}, headers=ann)
            assert (bad.status_code, bad.json()["field"]) == (422, "width")
            junk = await client.post("/drawings", content=b"{nope", headers=ann)
            assert junk.status_code == 422 and junk.json()["code"] == "invalid_request"
            other = await client.get(f"/drawings/{job_id}/wait", headers={"X-User": "bob"})
            assert other.status_code == 404
            assert (await client.get("/balance", headers={"X-User": "bob"})).json()["balance"] == 0
            finished = await client.post(f"/drawings/{job_id}/cancel", headers=ann)
            assert finished.status_code == 409
            assert finished.json()["job_status"] == "succeeded"
            async with client.stream("GET", f"/drawings/{job_id}/events", headers=ann) as sse:
                text = "".join([chunk async for chunk in sse.aiter_text()])
            assert "event: succeeded" in text
        await asyncio.sleep(0)
