"""``chatsvg generate | jobs | balance | grant | worker``: the engine on the embedded default."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.errors import ChatSVGError, ConfigurationError
from chatsvg_core.generate import (
    Detail,
    GenerationRequest,
    OfflineSketchProvider,
    OpenAICompatibleProvider,
    OpenAICompatibleSettings,
    Provider,
)
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import InProcessQueue
from chatsvg_core.storage import Store, open_storage

if TYPE_CHECKING:
    from chatsvg_core.cli._settings import CLISettings

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``generate``, ``jobs``, ``balance``, ``grant`` and ``worker``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url", help="storage URL (default sqlite:///.chatsvg/chatsvg.db)"
    )
    common.add_argument("--owner", help="account to act for (default: local)")

    gen = sub.add_parser(
        "generate",
        parents=[common],
        help="turn a prompt into a sanitized SVG through the full job flow",
        description="Submit a job, run it on an in-process worker, write the sanitized SVG.",
    )
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output", help="write the SVG here (default: stdout)")
    gen.add_argument("--key", help="idempotency key: the same key returns the same job")
    gen.add_argument("--style")
    gen.add_argument("--width", type=int, default=512)
    gen.add_argument("--height", type=int, default=512)
    gen.add_argument("--detail", choices=[d.value for d in Detail], default=Detail.STANDARD.value)
    gen.add_argument("--provider", choices=["auto", "offline", "openai"])
    gen.add_argument("--quiet", "-q", action="store_true", help="no lifecycle display")
    gen.set_defaults(handler=_sync(_generate))

    jobs = sub.add_parser("jobs", parents=[common], help="list recent jobs")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--all-owners", action="store_true")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=_sync(_jobs))

    bal = sub.add_parser("balance", parents=[common], help="show the credit balance and entries")
    bal.add_argument("--limit", type=int, default=10)
    bal.add_argument("--json", action="store_true")
    bal.set_defaults(handler=_sync(_balance))

    grant = sub.add_parser("grant", parents=[common], help="give credits to an owner")
    grant.add_argument("amount", type=int)
    grant.add_argument("--external-id", help="payment id: a repeat with it grants nothing")
    grant.set_defaults(handler=_sync(_grant))

    worker = sub.add_parser(
        "worker", parents=[common], help="run a worker against the configured store"
    )
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--poll", type=float, default=2.0, help="seconds between store sweeps")
    worker.add_argument("--provider", choices=["auto", "offline", "openai"])
    worker.add_argument("--once", action="store_true", help="drain what is due, then exit")
    worker.set_defaults(handler=_sync(_worker))


# --- plumbing -----------------------------------------------------------------


def _sync(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except ChatSVGError as exc:
            return _error(exc)

    return handler


def _settings(args: argparse.Namespace) -> CLISettings:
    try:
        from chatsvg_core.cli._settings import CLISettings
    except ImportError as exc:  # pydantic-settings comes with the `cli` extra
        raise ConfigurationError(
            "the engine commands need the cli extra: pip install 'chatsvg-core[cli]'",
            missing=exc.name,
        ) from exc
    return CLISettings().with_flags(
        database_url=getattr(args, "database_url", None),
        owner=getattr(args, "owner", None),
        provider=getattr(args, "provider", None),
        concurrency=getattr(args, "concurrency", None),
    )


def _provider(settings: CLISettings) -> Provider:
    import os

    wants_openai = settings.provider == "openai" or (
        settings.provider == "auto"
        and any(os.environ.get(v) for v in ("CHATSVG_OPENAI_BASE_URL", "CHATSVG_OPENAI_API_KEY"))
    )
    if wants_openai:
        return OpenAICompatibleProvider(OpenAICompatibleSettings.from_env())
    return OfflineSketchProvider()


@contextlib.asynccontextmanager
async def _store(settings: CLISettings) -> AsyncIterator[Store]:
    url = settings.storage_url()
    if url.startswith("sqlite:///") and settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    store = await open_storage(url)
    try:
        yield store
    finally:
        await store.aclose()


async def _welcome(ledger: Ledger, settings: CLISettings) -> None:
    # Exactly once per owner (keyed by external id), so the demo has credits.
    if settings.welcome_credits:
        await ledger.grant(
            settings.owner,
            settings.welcome_credits,
            external_id=f"welcome:{settings.owner}",
            memo="welcome credits (chatsvg CLI)",
        )


@dataclass
class _Display:
    """Renders engine events as a lifecycle, with rich when it is installed."""

    out: TextIO
    quiet: bool = False
    watch: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _console: Any = None
    _status: Any = None

    def __post_init__(self) -> None:
        if self.quiet:
            return
        try:
            from rich.console import Console
        except ImportError:  # the `cli` extra is optional
            return
        self._console = Console(file=self.out, highlight=False)

    def start(self, text: str) -> None:
        if self._console is not None and self.out.isatty():
            self._status = self._console.status(text)
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(text)
        else:
            print(text, file=self.out)

    def __call__(self, event: EngineEvent) -> None:
        if self.watch is not None and event.job_id != self.watch:
            return
        f = event.fields
        text = {
            EventKind.SUBMITTED: "queued",
            EventKind.REPLAYED: "replayed: this key already has a job",
            EventKind.CLAIMED: f"running (attempt {event.attempt}, worker {f.get('worker_id')})",
            EventKind.CHARGED: f"charged {f.get('amount')} credits",
            EventKind.GENERATED: f"model {f.get('model')} answered; SVG sanitized",
            EventKind.SUCCEEDED: "succeeded",
            EventKind.RETRY_SCHEDULED: f"transient error ({f.get('error_code')}); "
            f"retrying in {float(f.get('delay') or 0):.1f}s",  # type: ignore[arg-type]
            EventKind.FAILED: f"failed ({f.get('error_code')})",
            EventKind.REFUNDED: f"refunded {f.get('amount')} credits",
            EventKind.LEASE_EXPIRED: "lease expired; recovered",
            EventKind.LEASE_LOST: "lease lost",
        }[event.kind]
        self.line(f"  {event.kind.value:<16} {text}")
        if event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            self.done.set()


def _error(exc: ChatSVGError) -> int:
    print(f"chatsvg: {exc.code}: {exc.message}", file=sys.stderr)
    return 1


# --- commands -----------------------------------------------------------------


async def _generate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    display = _Display(out=sys.stderr, quiet=args.quiet)
    request = GenerationRequest(
        prompt=args.prompt,
        style=args.style,
        width=args.width,
        height=args.height,
        detail=Detail(args.detail),
    )
    provider = _provider(settings)
    queue = InProcessQueue(concurrency=settings.concurrency)
    async with _store(settings) as store:
        engine = _engine(settings, store, queue, provider, display)
        ledger = Ledger(store)
        await _welcome(ledger, settings)
        await engine.recover()
        display.line(f"chatsvg: {args.prompt!r} with {getattr(provider, 'name', provider)}")
        sub = await engine.submit(settings.owner, args.key, request)
        display.watch = sub.job.id
        display.line(f"  job {sub.job.id}")
        job = sub.job
        if not job.terminal:
            if sub.replayed:
                await queue.enqueue(job.id)

            async def handle(job_id: str) -> None:
                await engine.process(job_id, "cli")

            display.start("generating…")
            server = asyncio.create_task(queue.serve(handle))
            try:
                await display.done.wait()
            finally:
                display.stop()
                await queue.stop(grace=5)
                await server
            job = await engine.get(job.id)
        if hasattr(provider, "aclose"):
            await provider.aclose()
        if job.status is not JobStatus.SUCCEEDED:
            err = job.last_error
            print(
                f"chatsvg: job {job.id} failed: {err.code if err else '?'}: "
                f"{err.message if err else ''}",
                file=sys.stderr,
            )
            return 1
        result = await engine.result(job.id)
        assert result is not None
        balance = await ledger.balance(settings.owner)
    if args.output and args.output != "-":
        await asyncio.to_thread(Path(args.output).write_text, result.svg, encoding="utf-8")
        display.line(f"  wrote {args.output} ({len(result.svg)} bytes); balance {balance} credits")
    else:
        sys.stdout.write(result.svg + "\n")
    return 0


async def _jobs(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with _store(settings) as store, store.transaction() as tx:
        jobs = await tx.list_jobs(
            owner=None if args.all_owners else settings.owner,
            status=JobStatus(args.status) if args.status else None,
            limit=args.limit,
        )
    if args.json:
        print(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
        return 0
    for j in jobs:
        prompt = str(j.request.get("prompt", ""))[:40]
        error = f"  {j.last_error.code}" if j.last_error else ""
        print(
            f"{j.id}  {j.status.value:<9}  attempt {j.attempt}/{j.max_attempts}  "
            f"{j.created_at:%Y-%m-%d %H:%M}  {prompt!r}{error}"
        )
    if not jobs:
        print("no jobs")
    return 0


async def _balance(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with _store(settings) as store:
        # An owner without an account has 0 credits, as everywhere else.
        statement = await Ledger(store).statement(settings.owner, limit=args.limit)
    if args.json:
        print(statement.model_dump_json(indent=2))
        return 0
    print(f"{settings.owner}: {statement.balance} credits")
    for e in statement.entries:
        print(
            f"  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.kind.value:<10} {e.amount:>+6}  {e.ref or ''}"
        )
    return 0


async def _grant(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with _store(settings) as store:
        ledger = Ledger(store)
        entry = await ledger.grant(settings.owner, args.amount, external_id=args.external_id)
        balance = await ledger.balance(settings.owner)
    print(f"granted {entry.amount} to {settings.owner} (entry {entry.id}); balance {balance}")
    return 0


async def _worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    queue = InProcessQueue(concurrency=settings.concurrency)
    display = _Display(out=sys.stderr)
    provider = _provider(settings)
    async with _store(settings) as store:
        engine = _engine(settings, store, queue, provider, display)
        display.line(
            f"chatsvg worker: {settings.storage_url()} with {getattr(provider, 'name', provider)}, "
            f"concurrency {settings.concurrency}"
        )

        async def handle(job_id: str) -> None:
            await engine.process(job_id, "cli-worker")

        await engine.recover()
        await engine.sweep()
        if args.once:
            await queue.serve(handle, until_idle=True)
            return 0
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stopping.set)

        async def poll() -> None:
            # Other processes submit into the same store: look for due work.
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), args.poll)
                await engine.recover()
                await engine.sweep()

        server = asyncio.create_task(queue.serve(handle))
        poller = asyncio.create_task(poll())
        await stopping.wait()
        display.line("stopping: letting running jobs finish")
        await queue.stop(grace=30)
        await asyncio.gather(server, poller)
    return 0


def _engine(
    settings: CLISettings,
    store: Store,
    queue: InProcessQueue,
    provider: Provider,
    display: _Display,
) -> Engine:
    return Engine(
        store,
        queue,
        provider,
        on_event=display,
        daily_cap=settings.daily_cap,
        lease=timedelta(seconds=settings.lease_seconds),
    )
