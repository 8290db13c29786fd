"""Processes that die with the run that started them, and a reaper for what a killed run left.

The queue harnesses (``_fleet.py``, ``_partition.py``, ``_celery_chaos.py``)
start worker processes, redis-servers and a PostgreSQL cluster, and the
partition test builds network namespaces and veth pairs. A run that ends
normally stops them in ``finally`` blocks; a run that is killed (``timeout``
sends SIGTERM, then SIGKILL) runs none of that. Three layers make sure that
nothing outlives it:

* :func:`popen` starts every child in a process group of its own, with
  Linux's ``PR_SET_PDEATHSIG`` set in the child before it execs: the kernel
  signals it the moment the run's process dies, however it died (SIGKILL
  included), and nothing has to poll.
* The run kills its children at exit (``atexit``), and a SIGTERM becomes a
  KeyboardInterrupt, so ``timeout``'s first signal stops pytest as Ctrl-C
  does: its teardowns and ``finally`` blocks run, then ``atexit``.
* What the kernel does not take away with a process (network namespaces,
  veths, a cluster's data directory) is written, before it is made, to a
  :class:`LabRecord` file under :data:`RECORDS` holding the run's pid and
  the start time of that pid (so a reused pid is not mistaken for the run).
  :func:`reap_stale` (run at the start of every partition run) removes what
  the records of dead runs name, and nothing else: names carry a random tag,
  and a record whose run is alive is left alone.

``python -m tests.queues._reaper`` reaps by hand and lists ``chatsvg-*``
namespaces that no record names (left by code older than the records).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)

RECORDS = Path(
    os.environ.get("CHATSVG_LAB_RECORDS")
    # /run is cleared at boot, as network namespaces are: a record never outlives its objects.
    or ("/run/chatsvg-lab" if os.geteuid() == 0 else f"{tempfile.gettempdir()}/chatsvg-lab")
)
# Directories a record may name for removal: the harnesses' mkdtemp prefixes, nothing else.
_DIR_PREFIXES = ("chatsvg-pg-", "chatsvg-partition-")

_children: list[subprocess.Popen[Any]] = []
_hooked = False


# --- children tied to this process --------------------------------------------------------


def _child_setup(parent: int, death_signal: int, user: str | None) -> Callable[[], None]:
    """What the child runs between fork and exec (kept to syscalls: no locks, no imports)."""
    ids = None
    if user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        ids = (entry.pw_uid, entry.pw_gid)
    # prctl's arguments are unsigned longs: pass them so, not as C ints.
    args = [ctypes.c_ulong(a) for a in (_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)]

    def setup() -> None:
        # A change of user clears the death signal (prctl(2)), so switch first.
        if ids is not None:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        if _LIBC.prctl(*args) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent:
            os._exit(126)

    return setup


def popen(
    cmd: list[str],
    *,
    death_signal: int = signal.SIGKILL,
    user: str | None = None,
    **kwargs: Any,
) -> subprocess.Popen[Any]:
    """``subprocess.Popen(cmd, **kwargs)`` for a child that must not outlive this process.

    The child leads a process group of its own (a terminal's Ctrl-C or
    ``timeout``'s group signal does not reach it behind the harness's back;
    :func:`kill_group` ends it with whatever it started), gets
    ``death_signal`` from the kernel when this process dies, and is killed
    at exit if still running. ``user``: run it as that user (root only), as
    PostgreSQL's server requires.

    Call it from the main thread: the kernel sends the death signal when the
    *thread* that forked the child ends, so a child started from a worker
    thread would die with that thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start tied children from the main thread (PR_SET_PDEATHSIG)")
    _hook_exit()
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        preexec_fn=_child_setup(os.getpid(), death_signal, user),
        **kwargs,
    )
    # Only the running ones: a chaos run starts hundreds of workers.
    _children[:] = [p for p in _children if p.poll() is None]
    _children.append(proc)
    return proc


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc``'s process group (it leads one: see :func:`popen`) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait()


def _kill_children() -> None:
    for proc in _children:
        kill_group(proc)
    _children.clear()


def _on_sigterm(signum: int, frame: object) -> None:
    # As Ctrl-C: pytest stops, runs its teardowns and finally blocks, then atexit.
    raise KeyboardInterrupt(f"signal {signum}")


def _hook_exit() -> None:
    global _hooked
    if _hooked:
        return
    _hooked = True
    # Whatever a harness's own atexit stops (each one idempotent) leave running.
    atexit.register(_kill_children)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# --- records of what a run made outside its processes ------------------------------------


def _start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields 3 (state) and 22; the command name (field 2) may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and _start_time(pid) == start


class LabRecord:
    """A file naming what run ``tag`` made; written before each thing is made, gone when closed."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.path = RECORDS / f"{tag}.json"
        self.data: dict[str, Any] = {
            "tag": tag,
            "pid": os.getpid(),
            "start": _start_time(os.getpid()),
            # [pid, start time, signal to stop it] of children outside the namespaces
            "processes": [],
            "dirs": [],
        }
        _hook_exit()
        self._write()

    def _write(self) -> None:
        RECORDS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)

    def add_process(self, pid: int, stop: int = signal.SIGKILL) -> None:
        self.data["processes"].append([pid, _start_time(pid), int(stop)])
        self._write()

    def add_dir(self, path: Path) -> None:
        self.data["dirs"].append(str(path))
        self._write()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _names(tag: str) -> tuple[list[str], list[str]]:
    """The namespaces and links of run ``tag`` that exist now."""
    namespaces = [
        line.split()[0]
        for line in _ip("netns", "list").stdout.splitlines()
        if line.startswith(f"chatsvg-{tag}-")
    ]
    links = []
    for line in _ip("-o", "link").stdout.splitlines():
        # "7: csvab12cd2@if6: <...>": the name, without the peer after '@'.
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name == f"csb{tag}" or name.startswith(f"csv{tag}"):
            links.append(name)
    return namespaces, links


def _kill_and_wait(pids: list[int], sig: int, seconds: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_start_time(p) is not None for p in pids):
        time.sleep(0.05)


def _reap(data: dict[str, Any]) -> list[str]:
    tag = str(data["tag"])
    done: list[str] = []
    namespaces, links = _names(tag)
    for ns in namespaces:
        # Every process inside one of the run's namespaces is one of its workers.
        pids = [int(p) for p in _ip("netns", "pids", ns).stdout.split()]
        _kill_and_wait(pids, signal.SIGKILL, 5)
        done += [f"process {p} (in {ns})" for p in pids]
    ours = [(pid, stop) for pid, start, stop in data["processes"] if _alive(pid, start)]
    # Each with its own stop first (PostgreSQL: SIGQUIT, an immediate shutdown that
    # frees its shared memory), then SIGKILL for any still there.
    for pid, stop in ours:
        _kill_and_wait([pid], stop, 5)
    _kill_and_wait([p for p, _ in ours if _start_time(p) is not None], signal.SIGKILL, 5)
    done += [f"process {p}" for p, _ in ours]
    for ns in namespaces:
        _ip("netns", "del", ns)  # takes its end of the veth, and so the pair
        done.append(f"netns {ns}")
    for link in links:
        _ip("link", "del", link)
        done.append(f"link {link}")
    for folder in map(Path, data["dirs"]):
        if folder.name.startswith(_DIR_PREFIXES) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            done.append(f"dir {folder}")
    return done


def reap_stale() -> list[str]:
    """Remove what the records of runs no longer alive name; return what was removed."""
    done: list[str] = []
    if not RECORDS.is_dir():
        return done
    for path in sorted(RECORDS.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written (tmp + rename makes this rare) or already reaped
        if _alive(int(data["pid"]), data["start"]):
            continue
        done += _reap(data)
        path.unlink(missing_ok=True)
    return done


def unrecorded_namespaces() -> list[str]:
    """``chatsvg-*`` namespaces that no record names: left by older code, or a run starting."""
    tags = {p.stem for p in RECORDS.glob("*.json")} if RECORDS.is_dir() else set()
    return [
        line.split()[0]
        for line in _ip("netns", "list").stdout.splitlines()
        if line.startswith("chatsvg-") and line.split("-")[1] not in tags
    ]


if __name__ == "__main__":
    for thing in reap_stale():
        print(f"removed {thing}")
    for ns in unrecorded_namespaces():
        print(f"not recorded (remove by hand if no run is using it): netns {ns}")
    sys.exit(0)
