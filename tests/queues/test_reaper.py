"""A killed test run leaves nothing behind (``_reaper.py``).

A pytest run in a subprocess builds what the partition test builds (a
bridge, a namespace, its own PostgreSQL cluster and redis-server) and starts
queue-fleet workers, one inside the namespace and one outside, then waits.
The test kills that pytest:

* with SIGKILL, nothing of the run's own can clean up: every process it
  started must die by the kernel's death signal, and what the kernel keeps
  (the namespace, the veths, the cluster's directory) must be removed by the
  next run's start (:func:`reap_stale`), which must leave a live run's lab
  alone;
* with SIGTERM (``timeout``'s first signal), the run stops as on Ctrl-C and
  removes everything itself.

Needs what the partition test needs (root, ``ip``, PostgreSQL's server
binaries, redis-server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from . import _reaper
from ._fleet import ROOT
from ._partition import Network, require_lab
from ._reaper import RECORDS, _names, _start_time, kill_group, popen, reap_stale

CHILD = """
import asyncio, json, os, sys, time
from pathlib import Path

from tests.queues._fleet import Spec, new_schema, spawn
from tests.queues._partition import BridgeRedis, Network, OwnPostgres, _spawn_in


def test_hold_a_lab(tmp_path):
    net = Network().__enter__()
    pg = OwnPostgres(net.address, net.record)
    pg.start()
    redis = BridgeRedis(net.address, net.record)
    redis.start()
    ns = net.add("a")
    schema = asyncio.run(new_schema(pg.url, procrastinate=False))
    spec = Spec(kind="next", postgres_url=pg.url, schema=schema, queue_name="q", concurrency=4)
    inside = _spawn_in(ns, spec, tmp_path / "inside.log")
    outside = spawn(spec, tmp_path / "outside.log")
    for proc in (inside, outside):
        line = proc.stdout.readline()
        assert "READY" in line, (line, (tmp_path / "inside.log").read_text()[-2000:])
    lab = {
        "tag": net.tag,
        "pids": [pg.proc.pid, redis.proc.pid, inside.pid, outside.pid],
        "dirs": [str(pg.dir)],
    }
    print("LAB " + json.dumps(lab), flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def network_lab() -> None:
    require_lab()


def _group_members(leaders: list[int]) -> list[int]:
    """Every process whose process group one of ``leaders`` leads (a server's own children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in leaders and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def _start_lab(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    (tmp_path / "test_child.py").write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    child = popen(
        [
            *[sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"],
            # Its own base: pytest prunes old numbered temp folders under the default one.
            *["--basetemp", str(tmp_path / "base"), "test_child.py"],
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    out = []
    for line in child.stdout:
        out.append(line)
        if line.startswith("LAB "):
            return child, json.loads(line[4:])
    child.wait()
    raise AssertionError("the child run did not build its lab:\n" + "".join(out[-60:]))


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids if _start_time(p) is not None]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.usefixtures("network_lab")
def test_a_sigkilled_run_leaves_no_process_and_the_next_start_reaps_the_rest(
    tmp_path: Path,
) -> None:
    child, lab = _start_lab(tmp_path)
    try:
        _sigkilled(child, lab)
    finally:
        kill_group(child)
        reap_stale()


def _sigkilled(child: subprocess.Popen[str], lab: dict[str, Any]) -> None:
    tag = lab["tag"]
    # The servers' own children (PostgreSQL's backends) are in their process groups.
    pids = [*lab["pids"], *_group_members(lab["pids"])]
    assert len(pids) > 4
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    # The kernel's death signal: no worker polls on, no server listens on.
    assert _wait_gone(pids) == []
    # What the kernel keeps is still there, and named in the dead run's record...
    namespaces, links = _names(tag)
    assert namespaces == [f"chatsvg-{tag}-a"]
    assert sorted(links) == sorted([f"csb{tag}", f"csv{tag}2"])
    assert all(Path(d).is_dir() for d in lab["dirs"])
    assert (RECORDS / f"{tag}.json").exists()

    # ...until the next start reaps it; a live run's lab (this process's) stays.
    with Network() as live:
        live.add("z")
        removed = reap_stale()
        assert f"netns chatsvg-{tag}-a" in removed
        assert _names(tag) == ([], [])
        assert not any(Path(d).exists() for d in lab["dirs"])
        assert not (RECORDS / f"{tag}.json").exists()
        assert _names(live.tag) == (
            [f"chatsvg-{live.tag}-z"],
            [f"csb{live.tag}", f"csv{live.tag}2"],
        )
        assert (RECORDS / f"{live.tag}.json").exists()
    assert _names(live.tag) == ([], [])
    assert not (RECORDS / f"{live.tag}.json").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("network_lab")
def test_a_sigtermed_run_cleans_up_after_itself(tmp_path: Path) -> None:
    child, lab = _start_lab(tmp_path)
    tag = lab["tag"]
    pids = [*lab["pids"], *_group_members(lab["pids"])]
    try:
        # `timeout`'s first signal: the run stops as on Ctrl-C, teardown and atexit run.
        os.kill(child.pid, signal.SIGTERM)
        child.wait(timeout=60)
        assert _wait_gone(pids) == []
        assert _names(tag) == ([], [])
        assert not any(Path(d).exists() for d in lab["dirs"])
        assert not (RECORDS / f"{tag}.json").exists()
    finally:
        kill_group(child)
        reap_stale()


def test_only_the_records_of_dead_runs_are_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs `ip` (iproute2)")
    monkeypatch.setattr(_reaper, "RECORDS", tmp_path / "records")
    me, born = os.getpid(), _start_time(os.getpid())
    folders = {}
    for name in ("live", "reused", "dead"):
        folders[name] = Path(tempfile.mkdtemp(prefix="chatsvg-pg-", dir=tmp_path))
    outsider = tmp_path / "not-ours"  # a name no harness makes: never removed
    outsider.mkdir()
    records = {
        # This process: alive, its lab is left alone.
        "live": {"pid": me, "start": born},
        # Same pid, another start time: the pid was reused, the run that wrote it is dead.
        "reused": {"pid": me, "start": (born or 0) - 1},
        # A pid no process can have (above Linux's largest pid_max).
        "dead": {"pid": 2**22 + 1, "start": 1},
    }
    (tmp_path / "records").mkdir()
    for name, owner in records.items():
        data = {
            **owner,
            "tag": f"t{name}",
            "processes": [],
            "dirs": [str(folders[name]), str(outsider)],
        }
        (tmp_path / "records" / f"t{name}.json").write_text(json.dumps(data))
    removed = _reaper.reap_stale()
    assert sorted(removed) == sorted(f"dir {folders[n]}" for n in ("reused", "dead"))
    assert folders["live"].is_dir() and outsider.is_dir()
    assert [p.stem for p in (tmp_path / "records").glob("*.json")] == ["tlive"]
