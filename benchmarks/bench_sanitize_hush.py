"""chatsvg's sanitizer beside py-svg-hush, rounds interleaved, plus peak memory at 5 MB.

    python benchmarks/bench_sanitize_hush.py [--rounds 7] [--quick]

The machine is shared, so the two are timed in the same rounds: in each round
every group (the fidelity corpus; synthetic files of 1 KB to 5 MB) is run by
both, in alternating order, and the per-round ratio ``svg-hush time / chatsvg
time`` is what is reported (median and range over rounds; above 1: chatsvg is
faster). A load spike then hits both sides of a ratio, not one side of the
table. Times are process CPU time; small files are repeated so that each
timing is at least about 20 ms.

chatsvg is called as users call it: ``sanitize_svg(data)`` (the prepared
default sanitizer), and ``sanitize_svg(data, policy=p)`` with ``p`` an equal
copy of the default policy built once (no slow path: both reach one prepared
sanitizer). Memory: the growth of the peak RSS of a fresh process while it
sanitizes the 5 MB file once (after imports and reading the file), and the CPU
time of that one call, per implementation, next to lxml's bare parse + write of
the same bytes and a bare *streaming* pass (``iterparse`` with each element
cleared once written, into ``etree.xmlfile``; no check at all): the least a
streaming sanitizer built on lxml would cost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_sanitize_peers import CORPUS, SIZES, synthetic_svg  # noqa: E402
from chatsvg_core.sanitize import SanitizePolicy, sanitize_svg  # noqa: E402

MEMORY_PROBE = """
import io
import sys
import time

def peak():
    # VmHWM, not ru_maxrss: a child's ru_maxrss keeps the parent's peak across exec.
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024

data = open(sys.argv[2], 'rb').read()
which = sys.argv[1]
if which == 'chatsvg':
    from chatsvg_core.sanitize import sanitize_svg as run
elif which == 'hush':
    from py_svg_hush import filter_svg as run
elif which == 'stream':
    from lxml import etree
    def run(d):
        out = io.BytesIO()
        events = etree.iterparse(io.BytesIO(d), events=('start', 'end'), huge_tree=False,
                                 resolve_entities=False, no_network=True, load_dtd=False)
        with etree.xmlfile(out, encoding='utf-8') as xf:
            open_tags = []
            for event, el in events:
                if event == 'start':
                    tag = xf.element(el.tag, dict(el.attrib))
                    tag.__enter__()
                    open_tags.append(tag)
                    continue
                if el.text and len(el) == 0:
                    xf.write(el.text)
                open_tags.pop().__exit__(None, None, None)
                if el.tail:
                    xf.write(el.tail)
                el.clear(keep_tail=False)
                parent = el.getparent()
                if parent is not None:
                    while el.getprevious() is not None:
                        del parent[0]
        return out.getvalue()
else:
    from lxml import etree
    def run(d):
        return etree.tostring(etree.fromstring(d, etree.XMLParser(huge_tree=False)))
run(b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
before = peak()
t0 = time.process_time()
out = run(data)
cpu = time.process_time() - t0
print(peak() - before, cpu * 1000)
"""


def _pass(fn: Callable[[bytes], object], texts: list[bytes], reps: int) -> float:
    t0 = time.process_time()
    for _ in range(reps):
        for data in texts:
            with contextlib.suppress(Exception):  # a refusal is work done, on either side
                fn(data)
    return time.process_time() - t0


def _memory(which: str, path: Path) -> tuple[float, float]:
    """Peak RSS growth (MB) and CPU time (ms) of one call in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, which, str(path)],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    peak, cpu = out.stdout.split()
    return float(peak), float(cpu)


def _walk_kind() -> str:
    """Which walk this process runs: the compiled one is built by ``pip install``."""
    from chatsvg_core.sanitize import _sanitizer

    if _sanitizer._ACCELERATOR is not None:
        return "compiled"
    print(
        "WARNING: the sanitizer's compiled walk is not built (or is stale) in this checkout: "
        "these are the pure-Python figures. Build it with `pip install -e .` first.",
        file=sys.stderr,
    )
    return "PURE PYTHON (compiled walk not built)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the 1MB and 5MB files")
    args = parser.parse_args()
    walk = _walk_kind()  # warns now, before the long run, when the compiled walk is missing
    from py_svg_hush import filter_svg

    equal_policy = SanitizePolicy.default().extend()  # equal to the preset, another object

    def chat(data: bytes) -> object:
        return sanitize_svg(data)

    def chat_policy(data: bytes) -> object:
        return sanitize_svg(data, policy=equal_policy)

    impls: dict[str, Callable[[bytes], object]] = {
        "chatsvg": chat,
        "chatsvg(policy=p)": chat_policy,
        "svg-hush": filter_svg,
    }
    with tempfile.TemporaryDirectory() as tmp:
        groups: dict[str, tuple[list[bytes], int]] = {
            "fidelity corpus": ([p.read_bytes() for p in sorted(CORPUS.glob("*/*.svg"))], 1)
        }
        five_mb = Path(tmp) / "5MB.svg"
        for label, size in SIZES.items():
            if args.quick and size >= 1_000_000:
                continue
            text = synthetic_svg(size).encode()
            if label == "5MB":
                five_mb.write_bytes(text)
            groups[f"synthetic {label}"] = ([text], max(1, 200_000 // size))
        times: dict[str, dict[str, list[float]]] = {g: {i: [] for i in impls} for g in groups}
        rng = random.Random(17)
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            order = list(groups)
            rng.shuffle(order)
            for group in order:
                texts, reps = groups[group]
                names = list(impls) if r % 2 == 0 else list(reversed(impls))
                for name in names:
                    times[group][name].append(_pass(impls[name], texts, reps))
            load.append(os.getloadavg()[0])
        memory = {}
        if five_mb.exists():
            memory = {w: _memory(w, five_mb) for w in ("lxml", "stream", "chatsvg", "hush")}

    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  nproc={os.cpu_count()}  "
          f"rounds={args.rounds}  load average {min(load):.1f}-{max(load):.1f}  "
          f"walk: {walk}")  # fmt: skip
    print("| files | MB | chatsvg MB/s | svg-hush MB/s | svg-hush / chatsvg (median, range) "
          "| svg-hush / chatsvg(policy=p) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for group, (texts, reps) in groups.items():
        mb = sum(map(len, texts)) * reps / 1e6
        t = times[group]
        ratios = [h / c for h, c in zip(t["svg-hush"], t["chatsvg"], strict=True)]
        ratios_p = [h / c for h, c in zip(t["svg-hush"], t["chatsvg(policy=p)"], strict=True)]
        print(f"| {group} ({len(texts)}) | {mb / reps:.3f} | "
              f"{mb / statistics.median(t['chatsvg']):.1f} | "
              f"{mb / statistics.median(t['svg-hush']):.1f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{statistics.median(ratios_p):.2f}x |")  # fmt: skip
    if memory:
        names = {
            "lxml": "lxml parse+write",
            "stream": "lxml streaming pass (no checks)",
            "chatsvg": "chatsvg",
            "hush": "py-svg-hush",
        }
        print("\none call on the 5 MB file in a fresh process (first call: caches empty):")
        for which, (peak, cpu) in memory.items():
            print(f"  {names[which]}: peak RSS growth {peak:.0f} MB, {cpu:.0f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
