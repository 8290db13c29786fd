"""Shared machinery for the browser proofs of the sanitizer.

A loopback HTTP server serves each case's pages from memory; Playwright drives
Debian's Chromium; every effect a hostile SVG could have is recorded as an
``Effect``: a script that ran (a dialog or a call to the ``__xss`` probe), a
navigation of the top-level page or a popup, a frame the harness did not
create, and any request to a URL the case did not serve.

The contexts a picture is shown in by a host:

- ``inline``: the markup pasted into an HTML page's body (server template / innerHTML);
- ``img``: ``<img src=…svg>``;
- ``direct``: the ``.svg`` document navigated to directly;
- ``object``: ``<object data=…svg type=image/svg+xml>``;
- ``iframe``: ``<iframe src=…svg>``.

After load the harness waits for SMIL animations, then *interacts* with every
frame in which script could run: it dispatches mouse, pointer, focus and key
events on every element (so an ``onclick`` or ``javascript:`` link that
survived would fire), clicks the page with the real mouse and presses a
few access keys (``begin="accessKey(a)"``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from playwright.async_api import Browser, Dialog, Frame, Page, Playwright, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

T = TypeVar("T")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CONTEXTS: tuple[str, ...] = ("inline", "img", "direct", "object", "iframe")

CASE_TIMEOUT_S = 45.0

SETTLE_MS = 100
"""The wait after ``load`` (SMIL timelines) and, by default, after the interaction."""
PATIENT_SETTLE_MS = 1500
"""The wait after the interaction when an effect must not be missed for being late.

A click on a link reaches the request interception 100 ms or more after the
interaction on a loaded machine (seen on 2 cores with 4 loads at once):
liveness loads that stayed quiet are loaded again with this wait, and the
sanitized loads use ``SANITIZED_SETTLE_MS``.
"""
SANITIZED_SETTLE_MS = 500
"""The wait after the interaction for every sanitized load (see ``PATIENT_SETTLE_MS``)."""

SVG_TYPE = "image/svg+xml"
HTML_TYPE = "text/html; charset=utf-8"

# Runs in every frame before any of its own script: a probe payloads of our own
# call, and ``print`` (which shows no dialog headless) routed to it.
INIT_SCRIPT = """
(() => {
  const report = (what) => { try { window.__xss(String(what)); } catch (e) {} };
  try { window.print = () => report('print()'); } catch (e) {}
})();
"""

# Dispatched on every element of a frame where script can run.
INTERACT_SCRIPT = """
() => {
  const kinds = ['mouseover', 'mouseenter', 'mousemove', 'mousedown', 'mouseup', 'click',
                 'dblclick', 'contextmenu', 'mouseout', 'mouseleave', 'pointerover',
                 'pointerenter', 'pointerdown', 'pointerup', 'focus', 'focusin', 'blur',
                 'focusout', 'keydown', 'keyup', 'keypress', 'wheel', 'touchstart',
                 'input', 'change', 'select', 'scroll', 'resize', 'animationstart',
                 'transitionend', 'beginEvent', 'endEvent', 'repeatEvent'];
  const all = Array.from(document.querySelectorAll('*')).slice(0, 400);
  let n = 0;
  for (const el of all) {
    for (const k of kinds) {
      try {
        let ev;
        if (k.startsWith('mouse') || k === 'click' || k === 'dblclick' || k === 'contextmenu') {
          ev = new MouseEvent(k, {bubbles: true, cancelable: true, view: window});
        } else if (k.startsWith('pointer')) {
          ev = new PointerEvent(k, {bubbles: true, cancelable: true});
        } else if (k.startsWith('key')) {
          ev = new KeyboardEvent(k, {bubbles: true, cancelable: true, key: 'a'});
        } else if (k.startsWith('focus') || k === 'blur') {
          ev = new FocusEvent(k, {bubbles: k.endsWith('in') || k.endsWith('out')});
        } else {
          ev = new Event(k, {bubbles: true, cancelable: true});
        }
        el.dispatchEvent(ev);
        n++;
      } catch (e) {}
    }
    try { if (typeof el.focus === 'function') el.focus(); } catch (e) {}
  }
  return n;
}
"""


REPARSE_SCRIPT = (
    "<script>addEventListener('load',()=>{const h=document.getElementById('inline');"
    "if(h){h.innerHTML=h.innerHTML;}});</script>"
)


@dataclass(frozen=True)
class Effect:
    """One observable effect of a hostile document."""

    kind: str  # "script" | "navigation" | "popup" | "frame" | "request" | "crash"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail[:160]}"


@dataclass
class CaseResult:
    """Everything one load of one case produced."""

    effects: list[Effect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return bool(self.effects)


class LoopbackServer:
    """An in-memory HTTP server on 127.0.0.1 with a free port.

    ``put`` registers a body under a path; everything else is 404. The server
    records every path it was asked for, so a test can also see requests that
    bypassed the browser's routing.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self.hits: list[str] = []
        files, lock, hits = self._files, self._lock, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with lock:
                    hits.append(path)
                    entry = files.get(path)
                if entry is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ctype, body = entry
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self._ids = itertools.count()

    def put(self, path: str, ctype: str, body: bytes) -> str:
        with self._lock:
            self._files[path] = (ctype, body)
        return self.origin + path

    def new_prefix(self) -> str:
        return f"/c{next(self._ids)}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _html_page(body: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>case</title>"
        "<style>body{margin:0} img,object,iframe{width:300px;height:300px;border:0;"
        "display:block}</style></head><body>" + body + "</body></html>"
    ).encode()


@dataclass
class Staged:
    """The URLs of one staged case: the page to open and every URL it may load."""

    page_url: str
    allowed: set[str]


def stage(server: LoopbackServer, svg: bytes, contexts: tuple[str, ...]) -> Staged:
    """Serve ``svg`` and one page showing it in ``contexts`` (one page for all).

    ``direct`` must be alone: the page opened is then the SVG document itself.
    """
    prefix = server.new_prefix()
    svg_url = server.put(prefix + "/pic.svg", SVG_TYPE, svg)
    allowed = {svg_url, server.origin + "/favicon.ico"}
    if contexts == ("direct",):
        return Staged(svg_url, allowed)
    assert "direct" not in contexts, "direct is a navigation of its own"
    parts: list[str] = []
    src = html.escape(svg_url, quote=True)
    for ctx in contexts:
        if ctx == "inline":
            # Exactly what a host's template does: the markup, unescaped, in the body.
            parts.append("<div id=inline>" + svg.decode("utf-8", "replace") + "</div>")
            # ...then the host's DOM round trip (serialize, parse again via
            # innerHTML), which is where mutation XSS appears.
            parts.append(REPARSE_SCRIPT)
        elif ctx == "img":
            parts.append(f'<img alt="" src="{src}">')
        elif ctx == "object":
            parts.append(f'<object type="image/svg+xml" data="{src}"></object>')
        elif ctx == "iframe":
            parts.append(f'<iframe src="{src}"></iframe>')
        else:  # pragma: no cover - programming error
            raise ValueError(ctx)
    page_url = server.put(prefix + "/page.html", HTML_TYPE, _html_page("".join(parts)))
    allowed.add(page_url)
    return Staged(page_url, allowed)


def _frame_of(route: Route) -> Frame | None:
    try:
        return route.request.frame
    except PlaywrightError:  # e.g. a service worker's request has no frame
        return None


def _strip_fragment(url: str) -> str:
    return url.split("#", 1)[0]


async def run_case(
    browser: Browser,
    server: LoopbackServer,
    svg: bytes,
    contexts: tuple[str, ...],
    *,
    settle_ms: int = SETTLE_MS,
) -> CaseResult:
    """Load ``svg`` in ``contexts`` in a fresh browser context and record its effects.

    ``settle_ms``: how long to keep watching after the interaction. An effect
    that comes later (a followed link on a loaded machine) is not seen.
    """
    staged = stage(server, svg, contexts)
    result = CaseResult()
    effects = result.effects
    pending_navigations: list[str] = []
    navigated = asyncio.Event()
    main_frame: list[Frame | None] = [None]
    page_of: list[Page | None] = [None]
    ctx = await browser.new_context(viewport={"width": 800, "height": 700})
    try:
        await ctx.add_init_script(INIT_SCRIPT)
        await ctx.expose_binding(
            "__xss", lambda source, what: effects.append(Effect("script", f"probe {what}"))
        )

        async def on_route(route: Route) -> None:
            url = route.request.url
            if url in staged.allowed:
                await route.continue_()
            else:
                effects.append(Effect("request", url))
                frame = _frame_of(route)
                nav = route.request.is_navigation_request()
                if nav and (frame is None or frame.page is not page_of[0]):
                    # A navigation in another page of this context (Playwright has no
                    # frame yet for a popup's first request): a popup, seen here even
                    # when the popup event comes too late to be counted.
                    effects.append(Effect("popup", url))
                if nav and frame is main_frame[0]:
                    pending_navigations.append(url)
                    # Answer the top-level navigation locally (nothing leaves the
                    # machine) so it completes and is seen as one. Others (popups,
                    # frames) are aborted: fulfilling the navigation of a popup that
                    # Chromium's XSLT deprecation notice opens crashes Chromium 156.
                    await route.fulfill(status=200, content_type="text/html", body="")
                else:
                    await route.abort()

        await ctx.route("**/*", on_route)
        page: Page = await ctx.new_page()
        main = page.main_frame
        main_frame[0] = main
        page_of[0] = page

        async def on_dialog(dialog: Dialog) -> None:
            effects.append(Effect("script", f"{dialog.type}({dialog.message})"))
            with contextlib.suppress(PlaywrightError):
                await dialog.dismiss()

        def on_nav(frame: Frame) -> None:
            navigated.set()
            url = frame.url
            if frame is main:
                if _strip_fragment(url) != _strip_fragment(staged.page_url):
                    effects.append(Effect("navigation", url))
            elif _strip_fragment(url) not in staged.allowed and url != "about:blank":
                effects.append(Effect("frame", url[:200]))

        def on_popup(popup: Page) -> None:
            effects.append(Effect("popup", popup.url))

        page.on("dialog", on_dialog)
        page.on("framenavigated", on_nav)
        page.on("popup", on_popup)
        ctx.on("page", lambda p: None if p is page else on_popup(p))
        try:
            await page.goto(staged.page_url, wait_until="load", timeout=10_000)
        except PlaywrightError as exc:
            result.notes.append(f"goto: {exc.message.splitlines()[0]}")
        await page.wait_for_timeout(SETTLE_MS)
        await _interact(page, result, svg)
        await page.wait_for_timeout(settle_ms)
        if pending_navigations and not any(e.kind in ("navigation", "frame") for e in effects):
            # A navigation we answered is still committing: give it time to show.
            navigated.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(navigated.wait(), timeout=3)
        frames = [f.url for f in page.frames if f is not main] if not page.is_closed() else []
        expected = sum(1 for c in contexts if c in ("object", "iframe"))
        if len(frames) > expected:
            extra = [u for u in frames if _strip_fragment(u) not in staged.allowed]
            for url in extra[: len(frames) - expected]:
                effects.append(Effect("frame", f"extra frame {url[:200]}"))
    finally:
        await ctx.close()
    return result


async def _interact(page: Page, result: CaseResult, svg: bytes) -> None:
    if page.is_closed():
        return
    # Synthetic events reach every element, hidden or not; a synthetic click on
    # an <a> also runs its activation (navigation or javascript: URL), so no
    # per-link real click is needed.
    for frame in list(page.frames):
        try:
            await frame.evaluate(INTERACT_SCRIPT)
        except PlaywrightError as exc:
            # A frame showing an image, an error page or an opaque origin the
            # payload made: nothing of ours can run there, which is fine.
            result.notes.append(f"interact {frame.url[:60]}: {exc.message.splitlines()[0]}")
    try:
        await page.mouse.move(150, 150)
        await page.mouse.click(150, 150)
        if b"accesskey" in svg.lower():
            # SMIL accessKey() timing reacts to real key presses only.
            for key in ("a", "b"):
                await page.keyboard.press(key)
    except PlaywrightError as exc:
        result.notes.append(f"input: {exc.message.splitlines()[0]}")


class BrowserPortal:
    """One headless Chromium on an event-loop thread, callable from sync tests.

    The async API lets one payload's loads overlap (most of a load is waiting),
    while tests stay plain functions; the same idea as anyio's BlockingPortal.
    """

    def __init__(self, executable_path: str, *, concurrency: int = 4) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._concurrency = concurrency
        self._pw: Playwright | None = None
        self.browser: Browser = self.call(self._launch(executable_path))
        self.version: str = self.browser.version

    async def _launch(self, executable_path: str) -> Browser:
        self._executable = executable_path
        self._pw = await async_playwright().start()
        self._sem = asyncio.Semaphore(self._concurrency)
        self._relaunch_lock = asyncio.Lock()
        self.crashes: list[str] = []
        return await self._pw.chromium.launch(executable_path=executable_path, args=CHROMIUM_ARGS)

    async def _relaunch(self, crashed: Browser) -> None:
        async with self._relaunch_lock:
            if self.browser is crashed and self._pw is not None:
                self.browser = await self._pw.chromium.launch(
                    executable_path=self._executable, args=CHROMIUM_ARGS
                )

    async def run_one(
        self,
        server: LoopbackServer,
        svg: bytes,
        contexts: tuple[str, ...],
        settle_ms: int = SETTLE_MS,
    ) -> CaseResult:
        """One case; if Chromium itself dies meanwhile, relaunch it and try once more.

        Chromium 156 crashes now and then on this corpus (seen around the XSLT
        deprecation popup). A case whose retry also loses the browser reports a
        ``crash`` effect, so a sanitized output that kills the browser fails.
        """
        for _attempt in range(2):
            browser = self.browser
            try:
                # Every step has its own timeout but evaluate(); a case that still
                # hangs (seen after a relaunch) must not stall the whole batch.
                return await asyncio.wait_for(
                    run_case(browser, server, svg, contexts, settle_ms=settle_ms),
                    timeout=CASE_TIMEOUT_S + settle_ms / 1000,
                )
            except TimeoutError:
                what = svg[:100].decode("utf-8", "replace")
                label = "+".join(contexts)
                self.crashes.append(f"{label} {what!r}: no result in {CASE_TIMEOUT_S}s")
                if not browser.is_connected():
                    await self._relaunch(browser)
                continue
            except PlaywrightError as exc:
                if browser.is_connected():
                    raise
                what = svg[:100].decode("utf-8", "replace")
                self.crashes.append(f"{'+'.join(contexts)} {what!r}: {exc.message.splitlines()[0]}")
                await self._relaunch(browser)
        return CaseResult(effects=[Effect("crash", "Chromium died or hung twice on this case")])

    def call(self, coro: Awaitable[T], timeout: float = 300) -> T:
        """Run ``coro`` on the portal's loop and wait for its result."""

        async def wrapped() -> T:
            return await coro

        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        return fut.result(timeout)

    def run_cases(
        self,
        server: LoopbackServer,
        jobs: Sequence[tuple[bytes, tuple[str, ...]]],
        *,
        settle_ms: int = SETTLE_MS,
    ) -> list[CaseResult]:
        """Run several loads at once (bounded), results in order."""

        async def one(svg: bytes, contexts: tuple[str, ...]) -> CaseResult:
            async with self._sem:
                return await self.run_one(server, svg, contexts, settle_ms)

        async def many() -> list[CaseResult]:
            return list(await asyncio.gather(*(one(s, c) for s, c in jobs)))

        # Generous: every load is bounded by its own timeouts; this only stops a hang.
        return self.call(many(), timeout=120 + 10 * len(jobs))

    def run_async(self, fn: Callable[[Browser], Awaitable[T]], timeout: float = 300) -> T:
        """Run ``fn(browser)`` on the portal's loop."""
        return self.call(fn(self.browser), timeout)

    def close(self) -> None:
        async def stop() -> None:
            await self.browser.close()
            if self._pw is not None:
                await self._pw.stop()

        try:
            self.call(stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def iter_contexts_single() -> Iterator[tuple[str, ...]]:
    """Each context alone, for attributing liveness to one context."""
    for name in CONTEXTS:
        yield (name,)


SANITIZED_GROUPS: tuple[tuple[str, ...], ...] = (("inline", "img", "object", "iframe"), ("direct",))
"""The loads a sanitized payload gets: every embedding in one page, and the direct document."""
