"""``chatsvg sanitize FILE... [-o OUT | --in-place] [--policy strict|default] [--report json]``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import PRESET_NAMES, SanitizePolicy, Sanitizer

__all__ = ["command", "run"]

_PROGRESS_MIN_FILES = 2


@click.command("sanitize", context_settings=CONTEXT_SETTINGS)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "-o",
    "--output",
    metavar="OUT",
    help="Output file (one input), directory (several inputs), or - for stdout.",
)
@click.option("--in-place", is_flag=True, help="Overwrite each input file.")
@click.option(
    "--policy",
    type=click.Choice(PRESET_NAMES),
    default="default",
    show_default=True,
    help="Sanitizer preset.",
)
@click.option(
    "--report",
    type=click.Choice(("json",)),
    help="Print one JSON object per file (to stderr when the SVG goes to stdout).",
)
@click.option("--no-progress", is_flag=True, help="Never show a progress bar.")
def command(
    files: tuple[str, ...],
    output: str | None,
    in_place: bool,
    policy: str,
    report: str | None,
    no_progress: bool,
) -> int:
    """Make SVG files safe to show (allowlist sanitizer).

    FILE may be - for stdin. Exit status 1 when any file is rejected or
    unreadable, 2 on usage errors.
    """
    if output is not None and in_place:
        raise click.UsageError("-o and --in-place cannot be used together")
    return run(
        _Args(
            files=list(files),
            output=output,
            in_place=in_place,
            policy=policy,
            report=report,
            no_progress=no_progress,
        )
    )


@dataclass(frozen=True)
class _Args:
    files: list[str]
    output: str | None
    in_place: bool
    policy: str
    report: str | None
    no_progress: bool


class _Progress(Protocol):
    def advance(self) -> None: ...


class _PlainProgress:
    """Fallback without rich: a line every 10% on stderr."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.step = total, 0, max(1, total // 10)

    def advance(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            print(f"sanitized {self.done}/{self.total}", file=sys.stderr)


class _NoProgress:
    def advance(self) -> None:
        pass


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[_Progress]:
    if not enabled:
        yield _NoProgress()
        return
    try:
        from rich.progress import Progress  # optional: the ``cli`` extra
    except ImportError:
        yield _PlainProgress(total)
        return
    with Progress(transient=True, console=None) as bar:
        task = bar.add_task("sanitizing", total=total)

        class _Rich:
            def advance(self) -> None:
                bar.advance(task)

        yield _Rich()


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _write(target: str, data: str) -> None:
    if target == "-":
        sys.stdout.write(data)
        if not data.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        return
    path = Path(target)
    tmp = path.with_name(f".{path.name}.chatsvg-tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash never leaves half a file


def _targets(args: _Args) -> list[str] | str:
    """One output target per input, or an error message."""
    files: list[str] = args.files
    if args.in_place:
        if "-" in files:
            return "--in-place cannot be used with '-' (stdin)"
        return list(files)
    if args.output is None or args.output == "-":
        if len(files) > 1:
            return "several inputs need -o DIRECTORY or --in-place"
        return ["-"]
    out = Path(args.output)
    if len(files) == 1 and not out.is_dir():
        return [args.output]
    if not out.is_dir():
        # Several inputs write into a directory that must already exist: a
        # typo such as ``-o one.svg`` must not silently become a directory.
        what = "is a file" if out.exists() else "does not exist"
        return f"-o {args.output}: several inputs need an existing directory, and this {what}"
    names = [Path(f).name if f != "-" else "stdin.svg" for f in files]
    if len(set(names)) != len(names):
        return "several inputs have the same file name; use --in-place or separate runs"
    return [str(out / n) for n in names]


def run(args: _Args) -> int:
    """Sanitize every file; return 1 if any was rejected or unreadable, else 0."""
    targets = _targets(args)
    if isinstance(targets, str):
        raise click.UsageError(targets)
    sanitizer = Sanitizer.prepared(SanitizePolicy.preset(args.policy))
    to_stdout = "-" in targets
    report_stream = sys.stderr if to_stdout else sys.stdout
    show_progress = (
        not args.no_progress and len(args.files) >= _PROGRESS_MIN_FILES and sys.stderr.isatty()
    )
    failures = changed = 0
    with _progress(len(args.files), show_progress) as progress:
        for source, target in zip(args.files, targets, strict=True):
            record: dict[str, Any] = {"file": source}
            try:
                result = sanitizer.sanitize(_read(source))
            except SVGRejected as exc:
                failures += 1
                record |= {"status": "rejected", "error": exc.to_dict()}
                if args.report is None:
                    limit = f" (limit {exc.limit})" if exc.fields.get("limit") else ""
                    print(
                        f"{source}: rejected ({exc.reason}): {exc.detail}{limit}", file=sys.stderr
                    )
            except OSError as exc:
                failures += 1
                record |= {"status": "error", "error": {"message": str(exc)}}
                print(f"{source}: cannot read: {exc}", file=sys.stderr)
            else:
                try:
                    _write(target, result.svg)
                except OSError as exc:
                    failures += 1
                    record |= {"status": "error", "error": {"message": str(exc)}}
                    print(f"{target}: cannot write: {exc}", file=sys.stderr)
                else:
                    changed += result.changed
                    record |= {
                        "status": "ok",
                        "output": target,
                        "changed": result.changed,
                        "report": [e.model_dump(mode="json") for e in result.report.entries],
                    }
            if args.report == "json":
                print(json.dumps(record, sort_keys=True), file=report_stream, flush=True)
            progress.advance()
    if len(args.files) > 1:
        ok = len(args.files) - failures
        print(
            f"{len(args.files)} files: {ok} sanitized ({changed} changed), {failures} failed",
            file=sys.stderr,
        )
    return 1 if failures else 0
