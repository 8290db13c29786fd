"""``chatsvg generate PROMPT``: the full job flow on an in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import (
    PROVIDERS,
    err,
    load_settings,
    open_store,
    output_path,
    provider_for,
    run,
    store_options,
)
from chatsvg_core.generate import Detail
from chatsvg_core.generate._request import MAX_SIDE, MIN_SIDE

if TYPE_CHECKING:
    from chatsvg_core.cli._progress import Progress
    from chatsvg_core.cli._settings import CLISettings
    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import GenerationRequest, Provider, ProviderOutput
    from chatsvg_core.jobs import Job
    from chatsvg_core.queues import InProcessQueue
    from chatsvg_core.storage import Store

__all__ = ["command", "make_engine"]

_OPTION_OF = {"width": "--width", "height": "--height", "style": "--style", "prompt": "PROMPT"}


@click.command("generate", context_settings=CONTEXT_SETTINGS)
@click.argument("prompt")
@click.option(
    "-o", "--output", metavar="FILE", help="Write the sanitized SVG here (default: stdout)."
)
@click.option(
    "--key", metavar="KEY", help="Idempotency key: the same key returns the same job, charged once."
)
@click.option("--style", metavar="SLUG", help="A style slug, e.g. flat, line-art, isometric.")
@click.option(
    "--width",
    type=click.IntRange(MIN_SIDE, MAX_SIDE),
    default=512,
    show_default=True,
    help="Width in pixels.",
)
@click.option(
    "--height",
    type=click.IntRange(MIN_SIDE, MAX_SIDE),
    default=512,
    show_default=True,
    help="Height in pixels.",
)
@click.option(
    "--detail",
    type=click.Choice([d.value for d in Detail]),
    default=Detail.STANDARD.value,
    show_default=True,
    help="Level of detail; sets the price.",
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    help="Which model: 'openai' (an OpenAI-compatible server, see CHATSVG_OPENAI_*), "
    "'offline' (a built-in sketcher), 'auto' (openai when configured).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help="The answer's token budget (default: CHATSVG_OPENAI_MAX_TOKENS, else none: the "
    "server uses what its context has left).",
)
@click.option(
    "--first-token-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="Longest wait for the answer's first token (default 120; a model being loaded "
    "needs more).",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="Longest gap between two tokens of the answer (default 60).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="Longest wait to connect to the model server (default 10).",
)
@click.option(
    "--write-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="Longest wait to send the request (default 30).",
)
@click.option(
    "--total-timeout",
    type=click.FloatRange(min=0, min_open=True, max=86400),
    metavar="SECONDS",
    help="Longest a whole model call may take (default: no limit beyond the two above).",
)
@click.option(
    "--show-answer",
    is_flag=True,
    help="Print each raw answer of the model on stderr (to see why a job failed).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print no progress, only errors.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Submit, print the job id on stdout and exit; 'chatsvg worker' runs it.",
)
@store_options
def command(
    prompt: str,
    output: str | None,
    key: str | None,
    style: str | None,
    width: int,
    height: int,
    detail: str,
    provider: str | None,
    max_tokens: int | None,
    first_token_timeout: float | None,
    read_timeout: float | None,
    connect_timeout: float | None,
    write_timeout: float | None,
    total_timeout: float | None,
    show_answer: bool,
    quiet: bool,
    no_wait: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Turn PROMPT into a sanitized SVG through the full job flow.

    Submits a job, runs it on an in-process worker (charge, model call,
    extraction, sanitizing) and writes the SVG. Progress goes to stderr. On
    Ctrl-C the job is handed back to the queue and the command says what became
    of it and its credits. Exit status: 0 done, 1 the job failed or the prompt
    was refused, 2 usage error, 130 interrupted.
    """
    target = output_path(output)
    request = _request(prompt, style, width, height, detail)
    settings = load_settings(database_url=database_url, owner=owner, provider=provider)
    overrides = {
        "max_tokens": max_tokens,
        "first_token_timeout": first_token_timeout,
        "read_timeout": read_timeout,
        "connect_timeout": connect_timeout,
        "write_timeout": write_timeout,
        "total_timeout": total_timeout,
    }
    return run(
        _generate(
            settings,
            request,
            target,
            key=key,
            quiet=quiet,
            no_wait=no_wait,
            show_answer=show_answer,
            overrides=overrides,
        )
    )


def _request(
    prompt: str, style: str | None, width: int, height: int, detail: str
) -> GenerationRequest:
    from pydantic import ValidationError

    from chatsvg_core.generate import GenerationRequest

    try:
        return GenerationRequest(
            prompt=prompt, style=style, width=width, height=height, detail=Detail(detail)
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "prompt"
        raise click.BadParameter(
            first["msg"], param_hint=f"'{_OPTION_OF.get(field, field)}'"
        ) from None


def make_engine(
    settings: CLISettings,
    store: Store,
    queue: InProcessQueue | None,
    provider: Provider,
    on_event: Progress,
) -> Engine:
    """The engine the CLI commands run, from the settings."""
    from chatsvg_core.engine import Engine

    return Engine(
        store,
        queue,
        provider,
        on_event=on_event,
        daily_cap=settings.daily_cap,
        lease=timedelta(seconds=settings.lease_seconds),
    )


async def welcome(store: Store, settings: CLISettings) -> None:
    """Exactly once per owner (keyed by external id), so the demo has credits."""
    from chatsvg_core.ledger import Ledger

    if settings.welcome_credits:
        await Ledger(store).grant(
            settings.owner,
            settings.welcome_credits,
            external_id=f"welcome:{settings.owner}",
            memo="welcome credits (chatsvg CLI)",
        )


async def _generate(
    settings: CLISettings,
    request: GenerationRequest,
    target: Path | None,
    *,
    key: str | None,
    quiet: bool,
    no_wait: bool,
    show_answer: bool = False,
    overrides: dict[str, Any] | None = None,
) -> int:
    from chatsvg_core.cli._progress import Progress
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.queues import InProcessQueue

    provider = provider_for(settings, **(overrides or {}))
    if show_answer:
        provider = _ShowingProvider(provider)
    name = str(getattr(provider, "name", type(provider).__name__))
    progress = Progress(out=sys.stderr, quiet=quiet, provider=f"the model ({name})")
    queue = InProcessQueue(concurrency=settings.concurrency)
    try:
        async with open_store(settings, writes=True) as store:
            engine = make_engine(settings, store, queue, provider, progress)
            await welcome(store, settings)
            await engine.recover()
            progress.line(f"chatsvg: {request.prompt!r} with {name}")
            sub = await engine.submit(settings.owner, key, request)
            job = sub.job
            progress.watch, progress.max_attempts = job.id, job.max_attempts
            progress.line(f"  job {job.id}")
            if no_wait:
                click.echo(job.id)
                if not job.terminal:
                    progress.line("  not waiting: 'chatsvg worker' runs it")
                return 0
            if not job.terminal:
                if sub.replayed:
                    await queue.enqueue(job.id)
                interrupted = await _serve(engine, queue, progress)
                job = await engine.get(job.id)
                if interrupted:
                    await _explain_interrupt(store, job)
                    if job.status is not JobStatus.SUCCEEDED:
                        return 130
            if job.status is not JobStatus.SUCCEEDED:
                error = job.last_error
                err(
                    f"chatsvg: job {job.id} failed: {error.code if error else 'unknown'}: "
                    f"{error.message if error else ''}"
                )
                return 1
            result = await engine.result(job.id)
            if result is None:  # pragma: no cover - a SUCCEEDED job always has one
                err(f"chatsvg: job {job.id} succeeded but its result is missing")
                return 1
            balance = await Ledger(store).balance(settings.owner)
    finally:
        if hasattr(provider, "aclose"):
            await provider.aclose()
    if target is None:
        sys.stdout.write(result.svg + "\n")
        sys.stdout.flush()
    else:
        await asyncio.to_thread(target.write_text, result.svg, encoding="utf-8")
        progress.line(f"  wrote {target} ({len(result.svg)} bytes); balance {balance} credits")
    return 0


class _ShowingProvider:
    """Passes calls through and prints each raw answer on stderr (``--show-answer``)."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        output = await self.inner.generate(request)
        err(
            f"--- answer of {output.model} (finish_reason {output.finish_reason}, "
            f"{len(output.text)} characters) ---\n{output.text}\n--- end of answer ---"
        )
        return output

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


async def _serve(engine: Engine, queue: InProcessQueue, progress: Progress) -> bool:
    """Run the queue until the watched job ends; True when Ctrl-C stopped it first."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        handled = True

    async def handle(job_id: str) -> None:
        await engine.process(job_id, "cli")

    server = asyncio.create_task(queue.serve(handle))
    progress.start()
    done = asyncio.create_task(progress.done.wait())
    stop = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (done, stop):
            task.cancel()
        await progress.stop()
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        # On Ctrl-C: cancel the running attempt now; the engine hands the job
        # back to the queue (or fails and refunds it when no attempt is left).
        await queue.stop(grace=0 if interrupted.is_set() else 5)
        await server
    return interrupted.is_set() and not progress.done.is_set()


async def _explain_interrupt(store: Store, job: Job) -> None:
    """Say what became of the job and its credits after Ctrl-C."""
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.storage import EntryKind

    async with store.transaction() as tx:
        charge = await tx.find_entry(EntryKind.CHARGE, job.id)
        refund = await tx.find_entry(EntryKind.REFUND, job.id)
    charged = abs(charge.amount) if charge is not None else 0
    credits: dict[str, Any] = {"charged": charged, "refunded": refund is not None}
    where = f"'chatsvg job {job.id}' shows it"
    if job.status is JobStatus.SUCCEEDED:
        err(f"chatsvg: interrupted, but job {job.id} had already succeeded")
        return
    if job.status is JobStatus.FAILED:
        money = (
            f"its {credits['charged']} credits were refunded"
            if credits["refunded"]
            else "nothing stays charged"
        )
        err(f"chatsvg: interrupted: job {job.id} failed with no attempt left; {money}. {where}")
        return
    if charge is None:
        money = "nothing was charged"
    else:
        money = (
            f"the {credits['charged']} credits charged for it stay with the job "
            "(a later attempt reuses them; they are refunded if it finally fails)"
        )
    err(
        f"chatsvg: interrupted: job {job.id} is {job.status.value} again "
        f"(attempt {job.attempt} of {job.max_attempts} used); {money}. "
        f"'chatsvg worker' finishes it; {where}."
    )
