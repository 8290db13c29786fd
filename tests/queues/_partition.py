"""A partition test in the spirit of Jepsen: workers in network namespaces of the test's own.

The test builds a small network on this machine: a bridge with an address in
a private /24, and one network namespace per worker joined to it by a veth
pair. It starts its own PostgreSQL cluster (``initdb`` + ``postgres``) and its
own ``redis-server``, both listening on the bridge's address, and runs real
worker processes (arq, Procrastinate, or the database as the queue with
``process_next``) inside the namespaces (``ip netns exec``). To cut a worker off it takes the
host end of its veth down: packets are dropped, nothing is reset, so the
worker's TCP connections stall exactly as they do behind a failed switch.
While it is cut off its lease lapses, recovery hands the job to a worker on
the other side, and that worker finishes it. Then the link comes back and the
cut-off worker's late writes arrive with a stale fencing token.

Procrastinate's workers reach PostgreSQL only (its tables in ``<schema>_pq``).
The cut-off worker's own Procrastinate job stays ``doing`` (Procrastinate
does not take it back, and nothing needs it to: the workers' periodic
``recover()`` announces the chatsvg job again as a new Procrastinate job);
once healed, the worker's late chatsvg writes are refused by the fencing
token and its late finish deletes its spent Procrastinate job, which the run
checks by counting the rows left.

``tests/queues/test_partition.py`` runs one cut in CI; ``benchmarks/partition.py``
runs several cuts over many jobs. Needs root, ``ip`` (iproute2), PostgreSQL's
server binaries (``/usr/lib/postgresql/*/bin``) and ``redis-server``.

Nothing outlives a run, even a killed one (``_reaper.py``): every process it
starts gets a death signal from the kernel when the run dies, and the
namespaces, veths and the cluster's directory are written to a record first,
which the next run's start (:func:`reap_stale`) reads to remove them once
the run that made them is dead.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._fleet import ROOT, Spec, new_schema, parent_queue
from ._reaper import LabRecord, kill_group, popen, reap_stale

# --- what the machine must offer ---------------------------------------------------------


def pg_bindir() -> str | None:
    """The newest PostgreSQL server binaries here (``initdb``, ``postgres``, ``pg_isready``)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(re.findall(r"/(\d+)/bin", p)[0]),
    )
    if found:
        return str(Path(found[-1]).parent)
    pg_ctl = shutil.which("pg_ctl")
    return str(Path(pg_ctl).parent) if pg_ctl else None


def missing() -> str | None:
    """Why the partition test cannot run here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if not shutil.which("ip"):
        return "the partition test needs `ip` (apt-get install iproute2)"
    if not shutil.which("redis-server"):
        return "the partition test needs redis-server"
    if pg_bindir() is None:
        return "the partition test needs PostgreSQL's server binaries (initdb, postgres)"
    probe = f"chatsvg-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_lab() -> None:
    """Skip (or, under ``CHATSVG_REQUIRE_SERVICES=1``, fail) the test if :func:`missing`."""
    import pytest

    reason = missing()
    if reason is None:
        return
    # The rule of tests/conftest.py's service_missing, kept here (importing
    # 'conftest' from a test helper picks the wrong one in a whole-suite run).
    if os.environ.get("CHATSVG_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable (CHATSVG_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


# --- the network ----------------------------------------------------------------------------


class Network:
    """A bridge, and one namespace per worker joined to it; cut and heal links. Cleans up always.

    Names carry a random tag (interface names are at most 15 characters), and
    the /24 is picked among the ones no interface uses, so parallel runs on
    one machine do not collide.
    """

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"csb{self.tag}"
        self.subnet = self._free_subnet()
        self.address = f"{self.subnet}.1"
        self.namespaces: dict[str, str] = {}  # worker name -> namespace
        self.links: dict[str, str] = {}  # worker name -> host end of its veth
        self.cut_now: set[str] = set()
        self.record: LabRecord | None = None
        self._closed = False

    @staticmethod
    def _free_subnet() -> str:
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        rng = random.Random()
        for _ in range(200):
            subnet = f"10.{rng.randrange(160, 250)}.{rng.randrange(0, 255)}"
            if f" {subnet}." not in used:
                return subnet
        raise RuntimeError("no free 10.x.y.0/24 for the partition test")

    def __enter__(self) -> Network:
        atexit.register(self.close)
        # Written before anything is made: a run killed from here on is reaped by the next.
        self.record = LabRecord(self.tag)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str) -> str:
        """A namespace for worker ``name`` with an address on the bridge; returns the namespace."""
        n = len(self.namespaces) + 2
        ns = f"chatsvg-{self.tag}-{name}"
        host_end, ns_end = f"csv{self.tag}{n}", f"csw{self.tag}{n}"
        self.namespaces[name] = ns
        self.links[name] = host_end
        _ip("netns", "add", ns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("link", "set", host_end, "master", self.bridge)
        _ip("link", "set", host_end, "up")
        _ip("-n", ns, "addr", "add", f"{self.subnet}.{n}/24", "dev", ns_end)
        _ip("-n", ns, "link", "set", ns_end, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def cut(self, name: str) -> None:
        """Drop every packet to and from worker ``name`` (no reset: connections stall)."""
        _ip("link", "set", self.links[name], "down")
        self.cut_now.add(name)

    def heal(self, name: str) -> None:
        _ip("link", "set", self.links[name], "up")
        _ip("link", "set", self.links[name], "master", self.bridge)
        self.cut_now.discard(name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ns in self.namespaces.values():
            # Deleting a namespace deletes its end of the veth, and so the pair.
            _ip("netns", "del", ns, check=False)
        for link in self.links.values():
            _ip("link", "del", link, check=False)
        _ip("link", "del", self.bridge, check=False)
        if self.record is not None:
            self.record.close()


# --- the servers ------------------------------------------------------------------------------


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _wait_listening(address: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (``initdb`` + ``postgres``), trust auth, fsync off."""

    def __init__(self, address: str, record: LabRecord | None = None) -> None:
        self.address = address
        self.port = free_port(address)
        self.bindir = pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="chatsvg-pg-"))
        self.data = self.dir / "data"
        self.record = record
        self.proc: subprocess.Popen[bytes] | None = None
        # initdb refuses to run as root: the cluster belongs to an ordinary user.
        self.user = "postgres" if _has_user("postgres") else "nobody"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.address}:{self.port}/postgres"

    def _as_user(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=True)

    def start(self) -> None:
        atexit.register(self.stop)
        if self.record is not None:
            self.record.add_dir(self.dir)
        uid = pwd.getpwnam(self.user).pw_uid
        os.chown(self.dir, uid, -1)
        self._as_user(
            f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"
        )
        # initdb trusts loopback only; the workers come from the bridge's /24.
        subnet = self.address.rsplit(".", 1)[0]
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {subnet}.0/24 trust\n")
        # The server itself, not `pg_ctl start`: pg_ctl leaves it a daemon that outlives a
        # killed run, where as our child it gets SIGQUIT (an immediate shutdown, which
        # frees its shared memory) from the kernel when the run dies.
        with (self.dir / "log").open("ab") as log:
            self.proc = popen(
                [
                    f"{self.bindir}/postgres",
                    "-D",
                    str(self.data),
                    "-c",
                    f"listen_addresses={self.address}",
                    "-p",
                    str(self.port),
                    "-c",
                    f"unix_socket_directories={self.dir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                death_signal=signal.SIGQUIT,
                user=self.user if os.geteuid() == 0 else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        if self.record is not None:
            self.record.add_process(self.proc.pid, signal.SIGQUIT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        # As `pg_ctl -w` did: a server that listens may still refuse ("starting up").
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [f"{self.bindir}/pg_isready", "-q", "-h", self.address, "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the test's PostgreSQL did not start:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            # SIGQUIT: the immediate shutdown `pg_ctl -m immediate` sends.
            kill_group(self.proc, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class BridgeRedis:
    """A redis-server of the test's own on the bridge's address (no persistence)."""

    def __init__(self, address: str, record: LabRecord | None = None) -> None:
        self.address = address
        self.port = free_port(address)
        self.record = record
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> None:
        atexit.register(self.stop)
        self.proc = popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                self.address,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.record is not None:
            self.record.add_process(self.proc.pid)
        _wait_listening(self.address, self.port)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None


# --- one run ----------------------------------------------------------------------------------


@dataclass
class PartitionReport:
    """What a partition run did and what it found."""

    kind: str
    jobs: int
    workers: int
    cuts: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    taken_over: int = 0  # jobs a cut-off worker held that another worker finished
    stale_writes_refused: int = 0  # lost attempts refused by the fencing token (LEASE_LOST)
    stale_attempts_without_write: int = 0  # lost attempts whose connection died first
    completed_by: dict[str, int] = field(default_factory=dict)  # SUCCEEDED events per worker
    charges: int = 0
    refunds: int = 0
    # Procrastinate: its own job rows left at the end, by status (the cut-off
    # workers' spent doorbells; SIGTERMed workers finish theirs).
    queue_rows_left: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    cut_log: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        body = {k: v for k, v in vars(self).items() if k != "cut_log"}
        return json.dumps(body, default=dict)


def _spawn_in(ns: str, spec: Spec, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with open(log, "ab") as err:
        # `ip netns exec` execs the worker: the death signal set for `ip` is the worker's.
        return popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "tests.queues._fleet",
                "worker",
                json.dumps(asdict(spec)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def _pid_in(worker_id: str | None, pids: dict[int, str]) -> str | None:
    """The worker name whose pid is a number in ``worker_id`` (adapters put the pid there)."""
    for token in re.split(r"[^0-9]+", worker_id or ""):
        if token and int(token) in pids:
            return pids[int(token)]
    return None


@contextlib.contextmanager
def _servers(kind: str) -> Iterator[tuple[Network, OwnPostgres, BridgeRedis | None]]:
    # What a killed run left (its namespaces, veths, cluster) goes before this run starts.
    for thing in reap_stale():
        print(f"reaped from a dead run: {thing}", file=sys.stderr)
    with Network() as net:
        pg = OwnPostgres(net.address, net.record)
        redis = BridgeRedis(net.address, net.record) if kind == "arq" else None
        try:
            pg.start()
            if redis is not None:
                redis.start()
            yield net, pg, redis
        finally:
            if redis is not None:
                redis.stop()
            pg.stop()


async def partition(
    kind: str = "arq",
    *,
    jobs: int = 1,
    workers: int = 2,
    cuts: int = 1,
    lease: float = 2.0,
    call_seconds: float = 1.0,
    concurrency: int = 50,
    cut_seconds: float | None = None,
    seed: int = 0,
    give_up_after: float = 120.0,
) -> PartitionReport:
    """Run ``jobs`` jobs on ``workers`` workers in namespaces; cut ``cuts`` of them mid-job.

    Each cut takes a worker that holds a RUNNING job off the network until
    every job it held has been claimed by another worker (its lease lapsed
    and recovery ran on the other side) or ``cut_seconds`` passed (default:
    ten leases), then heals the link and, at the end, waits until the cut-off
    worker has reported each attempt it lost (LEASE_LOST: its late write or
    heartbeat was refused by the fencing token).
    """
    from tests.engine._support import check_invariants, ledger_rows

    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage import EntryKind
    from chatsvg_core.storage.postgres import PostgresStore

    rng = random.Random(seed)
    cut_seconds = 10 * lease if cut_seconds is None else cut_seconds
    report = PartitionReport(kind=kind, jobs=jobs, workers=workers)
    workdir = Path(tempfile.mkdtemp(prefix="chatsvg-partition-"))
    start = time.monotonic()
    try:
        with _servers(kind) as (net, pg, redis):
            if net.record is not None and not os.environ.get("CHATSVG_PARTITION_KEEP"):
                net.record.add_dir(workdir)
            # The chatsvg tables, and Procrastinate's in "<schema>_pq" for its workers.
            schema = await new_schema(pg.url, procrastinate=kind == "procrastinate")
            store = await PostgresStore.open(pg.url, schema=schema, min_size=1, max_size=4)
            procs: dict[str, subprocess.Popen[str]] = {}
            base = Spec(
                kind=kind if kind in ("arq", "procrastinate") else "next",
                postgres_url=pg.url,
                schema=schema,
                queue_name=f"chatsvg-part-{net.tag}",
                redis_url=redis.url if redis else "",
                concurrency=concurrency,
                lease=lease,
                call_seconds=call_seconds,
                maintain_every=1,
                shutdown_grace=1.0,
            )
            try:
                names = [chr(ord("a") + i) for i in range(workers)]
                for name in names:
                    ns = net.add(name)
                    spec = Spec(
                        **{**asdict(base), "events_path": str(workdir / f"events-{name}.jsonl")}
                    )
                    procs[name] = _spawn_in(ns, spec, workdir / f"worker-{name}.log")
                for name, proc in procs.items():
                    assert proc.stdout is not None
                    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
                    if "READY" not in line:
                        log = (workdir / f"worker-{name}.log").read_text()[-3000:]
                        raise RuntimeError(f"worker {name} did not start: {line!r}\n{log}")
                pids = {p.pid: n for n, p in procs.items()}
                # `ip netns exec` execs the worker, so its pid is the worker's own.

                await Ledger(store).grant("owner", 10 * jobs)
                async with parent_queue(base) as queue:
                    engine = Engine(store, queue, OfflineSketchProvider())
                    ids = [
                        (await engine.submit("owner", f"k{i}", {"prompt": f"a kite {i}"})).job.id
                        for i in range(jobs)
                    ]

                    # The database-as-queue workers do not run recovery themselves: the
                    # test stands in for the host's periodic `chatsvg recover` (root side).
                    # arq's and Procrastinate's workers run it as their periodic task.
                    async def maintain() -> None:
                        while True:
                            if kind == "next":
                                with contextlib.suppress(Exception):
                                    await engine.recover()
                            await asyncio.sleep(0.5)

                    maintainer = asyncio.create_task(maintain())
                    try:
                        await _run_cuts(
                            report,
                            net,
                            store,
                            ids,
                            pids,
                            rng,
                            cuts,
                            cut_seconds,
                            give_up_after,
                        )
                        deadline = time.monotonic() + give_up_after
                        while True:
                            async with store.transaction() as tx:
                                final = [await tx.get_job(i) for i in ids]
                            if all(j is not None and j.terminal for j in final):
                                break
                            if time.monotonic() > deadline:
                                report.violations.append("timeout: jobs not final")
                                break
                            await asyncio.sleep(0.1)
                        # Every cut-off attempt must come back as refused before the end.
                        await _await_refusals(report, workdir, settle=20.0)
                    finally:
                        maintainer.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await maintainer
            finally:
                for name in list(net.cut_now):
                    net.heal(name)
                for proc in procs.values():
                    with contextlib.suppress(Exception):
                        proc.send_signal(signal.SIGTERM)
                        proc.communicate(timeout=20)
                    kill_group(proc)
            if kind == "procrastinate":
                report.queue_rows_left = _procrastinate_rows(pg.url, schema)
            try:
                async with store.transaction() as tx:
                    final_jobs = {i: await tx.get_job(i) for i in ids}
                for j in final_jobs.values():
                    if j is not None:
                        report.statuses[j.status.value] += 1
                rows = await ledger_rows(store, ["owner"])
                kinds = Counter(e.kind for e in rows["owner"])
                report.charges, report.refunds = kinds[EntryKind.CHARGE], kinds[EntryKind.REFUND]
                try:
                    await check_invariants(store, ["owner"], recovered=True)
                except AssertionError as exc:
                    report.violations.append(f"ledger/job invariant: {exc}")
                events = _events_with_file(workdir)
                for event in events:
                    if event["kind"] == "succeeded":
                        name = Path(event["_file"]).stem.removeprefix("events-")
                        report.completed_by[name] = report.completed_by.get(name, 0) + 1
                _check(report, final_jobs, events, JobStatus)
            finally:
                await store.aclose()
    finally:
        if os.environ.get("CHATSVG_PARTITION_KEEP"):
            print(f"worker logs and events kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report.seconds = time.monotonic() - start
    return report


def _procrastinate_rows(url: str, schema: str) -> dict[str, int]:
    """Procrastinate's job rows in ``<schema>_pq``, counted by status."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT status::text, count(*) FROM "{schema}_pq".procrastinate_jobs '
            "GROUP BY status".encode()
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


async def _run_cuts(
    report: PartitionReport,
    net: Network,
    store: Any,
    ids: list[str],
    pids: dict[int, str],
    rng: random.Random,
    cuts: int,
    cut_seconds: float,
    give_up_after: float,
) -> None:
    from chatsvg_core.jobs import JobStatus

    deadline = time.monotonic() + give_up_after
    while report.cuts < cuts and time.monotonic() < deadline:
        async with store.transaction() as tx:
            running = [j for j in [await tx.get_job(i) for i in ids] if j is not None]
        held: dict[str, list[Any]] = {}
        for job in running:
            if job.status is JobStatus.RUNNING:
                name = _pid_in(job.worker_id, pids)
                if name is not None:
                    held.setdefault(name, []).append(job)
        if not held:
            if all(j.terminal for j in running):
                return  # nothing left to cut
            await asyncio.sleep(0.05)
            continue
        victim = rng.choice(sorted(held))
        await asyncio.sleep(rng.uniform(0, 0.3))  # somewhere mid-call
        net.cut(victim)
        report.cuts += 1
        cut_at = time.monotonic()
        # The link stays down until every job the victim held has been claimed
        # by another worker (a later attempt) or ended, or for at most
        # ``cut_seconds``: its lease must lapse and recovery run on the other side.
        while True:
            await asyncio.sleep(0.1)
            async with store.transaction() as tx:
                later = [await tx.get_job(j.id) for j in held[victim]]
            taken = [
                j.id
                for j, now in zip(held[victim], later, strict=True)
                if now is not None and now.attempt > j.attempt
            ]
            settled = all(
                now is not None and (now.attempt > j.attempt or now.terminal)
                for j, now in zip(held[victim], later, strict=True)
            )
            if settled or time.monotonic() - cut_at >= cut_seconds:
                break
        report.taken_over += len(taken)
        report.cut_log.append(
            {
                "worker": victim,
                "held": [(j.id, j.attempt) for j in held[victim]],
                "taken_over": taken,
                "seconds": round(time.monotonic() - cut_at, 2),
            }
        )
        net.heal(victim)
        await asyncio.sleep(rng.uniform(0.2, 1.0))


async def _await_refusals(report: PartitionReport, workdir: Path, settle: float) -> None:
    """Wait (up to ``settle`` s) until each attempt a cut-off worker lost is reported LEASE_LOST.

    A lost attempt ends one of two ways once the link heals: its connection
    survived, its next write or heartbeat reaches the database and the
    fencing token refuses it (LEASE_LOST); or its connection did not survive
    the cut (a statement timed out and was cancelled, the pool dropped it),
    the attempt fails with a storage error and writes nothing. Both leave
    the job to the worker that took it; :func:`_check` proves that no lost
    attempt completed a job. The first kind is counted as refused writes,
    the second as attempts that died with their connection.
    """
    deadline = time.monotonic() + settle
    owed = {
        (cut["worker"], job_id, attempt)
        for cut in report.cut_log
        for job_id, attempt in cut["held"]
        if job_id in cut["taken_over"]
    }
    while True:
        seen = {
            (Path(e["_file"]).stem.removeprefix("events-"), e["job"], e["attempt"])
            for e in _events_with_file(workdir)
            if e["kind"] == "lease_lost"
        }
        if owed <= seen or time.monotonic() > deadline:
            report.stale_writes_refused = len(owed & seen)
            report.stale_attempts_without_write = len(owed - seen)
            return
        await asyncio.sleep(0.1)


def _events_with_file(workdir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(workdir.glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append({**json.loads(line), "_file": str(path)})
    return out


def _check(
    report: PartitionReport, final: dict[str, Any], events: list[dict[str, Any]], status: Any
) -> None:
    """Each job completed once, by the attempt the store kept; nothing left unfinished."""
    succeeded: dict[str, list[int]] = {}
    for event in events:
        if event["kind"] == "succeeded":
            succeeded.setdefault(event["job"], []).append(event["attempt"])
    for job_id, job in final.items():
        if job is None or not job.terminal:
            report.violations.append(f"job {job_id} not terminal: {job}")
            continue
        attempts = succeeded.get(job_id, [])
        if len(attempts) > 1:
            report.violations.append(f"job {job_id} completed {len(attempts)} times: {attempts}")
        if job.status is status.SUCCEEDED and attempts != [job.attempt]:
            report.violations.append(f"job {job_id} is attempt {job.attempt}, completed {attempts}")
    taken = {j for cut in report.cut_log for j in cut["taken_over"]}
    for job_id in taken:
        job = final.get(job_id)
        if job is not None and job.status is status.SUCCEEDED and job.attempt < 2:
            report.violations.append(f"job {job_id} taken over but completed by attempt 1")
