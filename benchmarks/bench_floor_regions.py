"""Instructions per job spent inside named functions of the engine (issue 15's map).

Runs ``bench_floor_instructions.py``'s engine side (``--jobs`` jobs of one
owner after 50 warm-up jobs, SQLite ``synchronous=FULL``) under callgrind
once per target, with collection switched on only while the target function
runs (a small C helper calling ``CALLGRIND_TOGGLE_COLLECT``, built here with
``gcc``; the wrapper costs about 2.4 k instructions per call, included). For
each target it prints the instructions per job in all, those inside
``sqlite3``'s ``execute``/``fetchone``/``fetchall`` (the statements), and the rest
(Python and C extensions).

    python benchmarks/bench_floor_regions.py total \\
        chatsvg_core.engine._engine:Engine._submit \\
        chatsvg_core.storage._sql:SQLTransaction._job

A target is ``module:attribute.path`` (patched where it is looked up: a name a
module imported is patched in that module) or ``total``. Needs ``valgrind``,
``callgrind_annotate``, ``gcc`` and Python's headers. Copy the compiled
sanitizer walk (``sanitize/_walk.*.so``) into a worktree before measuring it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HELPER = r"""
#include <Python.h>
#include <valgrind/callgrind.h>
static int state = 0;
static PyObject *on(PyObject *s, PyObject *a) {
    if (!state) { state = 1; CALLGRIND_TOGGLE_COLLECT; } Py_RETURN_NONE; }
static PyObject *off(PyObject *s, PyObject *a) {
    if (state) { CALLGRIND_TOGGLE_COLLECT; state = 0; } Py_RETURN_NONE; }
static PyMethodDef M[] = {{"on", on, METH_NOARGS, ""}, {"off", off, METH_NOARGS, ""}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "cgtoggle", 0, -1, M};
PyMODINIT_FUNC PyInit_cgtoggle(void) { return PyModule_Create(&D); }
"""
SQLITE = re.compile(
    r"cursor\.c:(_pysqlite_query_execute|pysqlite_cursor_fetchone|pysqlite_cursor_fetchall) "
)


def _build(folder: Path) -> None:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    (folder / "cgtoggle.c").write_text(HELPER)
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
         str(folder / "cgtoggle.c"), "-o", str(folder / f"cgtoggle{suffix}")],
        check=True,
    )  # fmt: skip


def _child(target: str, jobs: int) -> None:
    """Inside valgrind: run the jobs with collection on only inside ``target``."""
    import cgtoggle  # type: ignore[import-not-found]  # built by _build

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_floor as bf

    depth = [0]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapped(*args: Any, **kwargs: Any) -> Any:
                depth[0] += 1
                if depth[0] == 1:
                    cgtoggle.on()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        cgtoggle.off()

            return awrapped

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            if depth[0] == 1:
                cgtoggle.on()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    cgtoggle.off()

        return wrapped

    def install() -> None:
        if target == "total":
            return
        module, path = target.split(":")
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        raw = inspect.getattr_static(owner, name)
        if isinstance(raw, classmethod | staticmethod):
            setattr(owner, name, type(raw)(wrap(raw.__func__)))
        else:
            setattr(owner, name, wrap(raw))

    path = str(Path(tempfile.mkdtemp()) / "bench.db")
    warm = 50
    asyncio.run(bf.prepare("sqlite", path, None, 2, 10 * (jobs + warm)))

    async def main() -> None:
        store = await bf.open_store("sqlite", path, None)
        engine = bf.Engine(store, None, bf.InstantProvider(), daily_cap=bf.CAP, lease=bf.LEASE)

        async def share(owner: str, tag: str, n: int) -> None:
            for i in range(n):
                await engine.submit(owner, f"{tag}-{i}", {"prompt": f"a cat {tag}-{i}"})
            while await engine.process_next("w0") is not None:
                pass

        await share(bf.owner_of(1), "warm", warm)
        install()
        if target == "total":
            cgtoggle.on()
        await share(bf.owner_of(0), "run", jobs)
        cgtoggle.off()
        await store.aclose()

    asyncio.run(main())


def _measure(target: str, jobs: int, helper: Path) -> tuple[float, float]:
    """(all, inside sqlite3) instructions per job for one target."""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/callgrind.out"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(helper), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--child", target,
             "--jobs", str(jobs)],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        text = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", out],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    total = sqlite = 0
    for line in text.splitlines():
        count = (line.split() or ["0"])[0].replace(",", "")
        if "PROGRAM TOTALS" in line:
            total = int(count)
        elif SQLITE.search(line):
            sqlite += int(count)
    return total / jobs, sqlite / jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("targets", nargs="*", default=["total"])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.jobs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _build(Path(tmp))
        print("| region | instructions/job | inside sqlite3 | rest |")
        print("| --- | --- | --- | --- |")
        for target in args.targets:
            total, sqlite = _measure(target, args.jobs, Path(tmp))
            print(
                f"| `{target}` | {total / 1e3:.1f} k | {sqlite / 1e3:.1f} k | "
                f"{(total - sqlite) / 1e3:.1f} k |",
                flush=True,
            )


if __name__ == "__main__":
    main()
