"""The library's loop in a gevent-patched process (Celery's gevent pool): cheap, never blocking.

gevent's monkey-patching cannot be undone, so the patched checks run in a
subprocess of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("gevent")

from chatsvg_core._green import green_loop_factory

# Run under gevent.monkey.patch_all(); prints one JSON line of findings.
_PATCHED = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import asyncio
    import json
    import socket
    import time

    import gevent

    from chatsvg_core._green import GreenEpollSelector
    from chatsvg_core._sync import portal, run_sync

    out = {}

    async def loop_selector():
        return type(asyncio.get_running_loop()._selector).__name__

    out["selector"] = run_sync(loop_selector)

    # While the loop awaits, the other greenlets run: the loop sleeps in the hub.
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    tick = gevent.spawn(ticker)
    gevent.sleep(0)
    start = time.monotonic()
    run_sync(asyncio.sleep, 0.3)
    out["slept"] = time.monotonic() - start
    out["ticks_while_sleeping"] = sum(1 for t in ticks if t > start)
    tick.kill()

    # Many greenlets calling in at once: the calls overlap on the one loop.
    def call(i):
        return portal().call(asyncio.sleep, 0.2, i)

    start = time.monotonic()
    results = [g.get() for g in [gevent.spawn(call, i) for i in range(50)]]
    out["fifty_calls"] = time.monotonic() - start
    out["results_in_order"] = results == list(range(50))

    # Socket I/O on the loop (what the database drivers do): an echo round trip.
    async def echo_round_trip():
        async def handle(reader, writer):
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        await writer.drain()
        data = await reader.readexactly(5)
        writer.close()
        server.close()
        await server.wait_closed()
        return data.decode()

    out["echo"] = run_sync(echo_round_trip)

    # The selector itself, from a greenlet: ready at once, a timeout, a wake-up.
    def selector_checks():
        sel = GreenEpollSelector()
        a, b = socket.socketpair()
        sel.register(a.fileno(), 1, "a")
        found = {"empty_now": sel.select(0) == []}
        start = time.monotonic()
        found["timed_out"] = sel.select(0.1) == []
        found["waited"] = time.monotonic() - start
        gevent.spawn_later(0.05, b.send, b"x")
        start = time.monotonic()
        ready = sel.select(5)
        found["woken_after"] = time.monotonic() - start
        found["ready"] = [(key.data, events) for key, events in ready]
        sel.unregister(a.fileno())
        sel.close()
        a.close()
        b.close()
        return found

    out["selector_checks"] = gevent.spawn(selector_checks).get()
    print(json.dumps(out))
    """
)


def test_without_gevent_the_loop_is_asyncio_s_own() -> None:
    assert green_loop_factory() is None


def test_under_gevent_the_loop_waits_in_the_hub_and_serves_many_greenlets() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PATCHED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["selector"] == "GreenEpollSelector"
    # An asyncio sleep of 0.3 s lasts about that, and the hub kept running meanwhile.
    assert 0.29 <= out["slept"] < 2.0
    assert out["ticks_while_sleeping"] >= 10
    # Fifty 0.2 s calls from fifty greenlets overlap (serially they would take 10 s).
    assert out["fifty_calls"] < 3.0
    assert out["results_in_order"]
    assert out["echo"] == "hello"
    checks = out["selector_checks"]
    assert checks["empty_now"] and checks["timed_out"]
    assert 0.09 <= checks["waited"] < 2.0
    assert checks["woken_after"] < 2.0
    assert checks["ready"] == [["a", 1]]
