"""A fake OpenAI-compatible server on loopback, scripted reply by reply.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``) on
``127.0.0.1`` with a free port, run in a daemon thread, so a provider under
test goes through its real HTTP stack: connection handling, timeouts,
status codes, broken bodies, disconnects.

>>> from chatsvg_core.testing import FakeOpenAIServer, ChatReply
>>> with FakeOpenAIServer() as server:
...     server.script(ChatReply("<svg xmlns='http://www.w3.org/2000/svg'/>"))
...     server.base_url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = [
    "ChatReply",
    "DisconnectReply",
    "ErrorReply",
    "FakeOpenAIServer",
    "FakeReply",
    "RawReply",
    "RecordedRequest",
    "StreamReply",
]


@dataclass(frozen=True)
class ChatReply:
    """A successful chat completion whose message content is ``content``.

    ``finish_reason="content_filter"`` or a ``refusal`` text script a content
    refusal; ``delay`` seconds pass before the headers are sent (a slow model).
    """

    content: str | None
    finish_reason: str = "stop"
    refusal: str | None = None
    model: str = "fake-model"
    usage: Mapping[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}
    )
    delay: float = 0.0

    def body(self) -> dict[str, Any]:
        """The JSON body the server sends."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.refusal is not None:
            message["refusal"] = self.refusal
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            body["usage"] = dict(self.usage)
        return body


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error in OpenAI's shape: ``{"error": {"message", "type", "code"}}``.

    ``retry_after`` sets the ``Retry-After`` header (seconds, or an HTTP date
    given as a string).
    """

    status: int
    message: str = "fake error"
    code: str | None = None
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class RawReply:
    """Exact bytes: malformed JSON, a body without choices, odd content types.

    With ``chunk_delay`` the body is sent in ``chunks`` pieces with a pause
    between them (an answer that trickles in: read timeouts never fire, a
    total timeout does).
    """

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: int = 1
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class DisconnectReply:
    """Close the connection abruptly.

    With ``partial_body=False`` nothing is sent; otherwise the status line and
    headers announce a longer body than the bytes sent before the close.
    """

    partial_body: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class StreamReply:
    """A streamed chat completion (``text/event-stream``), one event per piece.

    ``pieces`` are the content deltas; ``gap`` seconds pass between them (a
    stalled stream when large); ``events`` are extra raw ``data:`` payloads
    sent after the pieces (an in-stream error object, a usage chunk, bad JSON);
    ``done=False`` leaves out ``data: [DONE]``. The server records whether the
    client hung up before the end in :attr:`FakeOpenAIServer.hangups`.
    """

    pieces: tuple[str, ...]
    finish_reason: str | None = "stop"
    model: str = "fake-model"
    gap: float = 0.0
    events: tuple[str, ...] = ()
    done: bool = True
    delay: float = 0.0

    def payloads(self) -> list[str]:
        """The ``data:`` payloads in order."""

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return json.dumps(
                {"object": "chat.completion.chunk", "model": self.model, "choices": [choice]}
            )

        out = [chunk({"role": "assistant", "content": piece}, None) for piece in self.pieces]
        out.append(chunk({}, self.finish_reason))
        out.extend(self.events)
        if self.done:
            out.append("[DONE]")
        return out


FakeReply = ChatReply | ErrorReply | RawReply | DisconnectReply | StreamReply
"""Any scripted reply."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class FakeOpenAIServer:
    """A scriptable chat-completions server on ``127.0.0.1`` (context manager).

    Replies are consumed in order, one per ``POST .../chat/completions``;
    when the script is empty the server answers with ``default`` (a 500 error
    unless given). Every request is recorded in :attr:`requests`.

    With ``check_requests`` (the default) a body that is not a chat-completions
    request (JSON object with a ``model`` string and a non-empty ``messages``
    list of ``{"role", "content"}`` objects) is answered with a 400 that names
    the problem, without using a scripted reply, as a real server would.
    ``GET .../models`` lists one model.
    """

    def __init__(self, *, default: FakeReply | None = None, check_requests: bool = True) -> None:
        self.default: FakeReply = default or ErrorReply(500, "script exhausted")
        self.check_requests = check_requests
        self.requests: list[RecordedRequest] = []
        self.hangups = 0
        """Streamed replies the client closed before their end (early stop, timeouts)."""
        self._script: deque[FakeReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Bind a free loopback port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed replies still waiting are cut short."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, ready for a provider's ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting ---------------------------------------------------------

    def script(self, *replies: FakeReply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._script)

    def _next_reply(self, request: RecordedRequest) -> FakeReply:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _request_problem(body: bytes) -> str | None:
    """Why ``body`` is not a chat-completions request, or ``None``."""
    try:
        data = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    if not isinstance(data.get("model"), str) or not data["model"]:
        return "'model' must be a non-empty string"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return "each message needs a 'role'"
        if not isinstance(message.get("content"), str):
            return "each message needs a string 'content'"
    return None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is a scripted outcome, not a
        # server fault: no traceback on stderr. Anything else is still shown.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _handler_for(owner: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeOpenAI/1"

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: tests read owner.requests instead of stderr.
            return

        def _read_request(self) -> RecordedRequest:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            return RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )

        def do_GET(self) -> None:
            request = self._read_request()
            owner._record(request)
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "fake-model"}]})
            else:
                self._send(404, {"error": {"message": "not found", "code": "not_found"}})

        def do_POST(self) -> None:
            request = self._read_request()
            if not self.path.rstrip("/").endswith("/chat/completions"):
                owner._record(request)
                self._send(404, {"error": {"message": "unknown path", "code": "not_found"}})
                return
            problem = _request_problem(request.body) if owner.check_requests else None
            if problem is not None:
                owner._record(request)
                self._send(400, {"error": {"message": problem, "code": "invalid_request"}})
                return
            reply = owner._next_reply(request)
            owner._wait(reply.delay)
            if isinstance(reply, ChatReply):
                self._send(200, reply.body())
            elif isinstance(reply, ErrorReply):
                headers = dict(reply.headers)
                if reply.retry_after is not None:
                    value = reply.retry_after
                    headers["Retry-After"] = (
                        str(int(value)) if isinstance(value, int | float) else value
                    )
                error = {"message": reply.message, "type": "fake_error", "code": reply.code}
                self._send(reply.status, {"error": error}, headers)
            elif isinstance(reply, RawReply):
                self._send_raw(reply)
            elif isinstance(reply, StreamReply):
                self._send_stream(reply)
            else:
                self._disconnect(reply)

        def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_raw(self, reply: RawReply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            pieces = max(1, reply.chunks)
            step = -(-len(reply.body) // pieces) or 1
            try:
                for start in range(0, len(reply.body), step):
                    if start:
                        owner._wait(reply.chunk_delay)
                        if owner._stopping.is_set():
                            return
                    self.wfile.write(reply.body[start : start + step])
                    self.wfile.flush()
            except OSError:
                # The client gave up (its timeout fired); nothing left to do.
                self.close_connection = True

        def _send_stream(self, reply: StreamReply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for index, payload in enumerate(reply.payloads()):
                    if index:
                        owner._wait(reply.gap)
                        if owner._stopping.is_set():
                            return
                    data = f"data: {payload}\r\n\r\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                with owner._lock:
                    owner.hangups += 1
                self.close_connection = True

        def _disconnect(self, reply: DisconnectReply) -> None:
            if reply.partial_body:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"choices": [')
                self.wfile.flush()
            self.close_connection = True
            # The peer may already be gone; an abrupt close is all we want.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler
