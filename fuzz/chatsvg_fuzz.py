"""Coverage-guided fuzzing (atheris) of the library's hostile-input entry points.

Targets and what each input must satisfy:

* ``sanitize``: ``sanitize_svg`` under one of four policies (from the first
  byte): only ``ChatSVGError`` subclasses are raised; an output parses as XML,
  passes the independent safety checker, and sanitizes again to itself.
* ``extract``: ``extract_svg``: only its typed errors; the result is found
  again, unchanged, in itself.
* ``canonical``: ``canonical_json`` / ``request_hash`` of the input read as
  JSON (and of a big integer built from it): only ``UnhashablePayload``; the
  text parses back to a value with the same canonical text.
* ``prompt``: ``PromptPolicy.validate_prompt`` with a content rule: only
  ``PromptRejected``; an accepted prompt validates to itself.

Every input must also finish within ``CHATSVG_FUZZ_SECONDS`` (default 2 s) of
CPU time; libFuzzer's own ``-timeout`` stops a real hang.

Run one target (libFuzzer flags after it, then corpus directories)::

    python fuzz/chatsvg_fuzz.py sanitize -dict=fuzz/svg.dict -max_len=4096 \\
        -max_total_time=600 fuzz/corpus/sanitize

``fuzz/run.py`` runs all four with a fixed seed and budget (what CI runs).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import atheris
from lxml import etree

# Coverage only where the targets' code is: instrumenting the whole package
# (the engine, storage...) made each start take seconds longer for nothing.
_COVERED = [
    "chatsvg_core.sanitize",
    "chatsvg_core.generate._extract",
    "chatsvg_core.generate._prompt",
    "chatsvg_core.idempotency._canonical",
    "chatsvg_core.testing._svg_checks",
]


def _uncovered() -> list[str]:
    """Every chatsvg_core module outside ``_COVERED`` (atheris takes exact names to skip)."""
    spec = importlib.util.find_spec("chatsvg_core")  # finds it without importing it
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(tuple(_COVERED)):
            names.append(name)
    return names


with atheris.instrument_imports(include=["chatsvg_core"], exclude=_uncovered()):
    from chatsvg_core.errors import ChatSVGError, ExtractionError, PromptRejected
    from chatsvg_core.generate import BannedTerms, PromptPolicy, extract_svg
    from chatsvg_core.idempotency import canonical_json, request_hash
    from chatsvg_core.sanitize import SanitizePolicy, Sanitizer
    from chatsvg_core.testing.strategies import svg_safety_violations

SECONDS = float(os.environ.get("CHATSVG_FUZZ_SECONDS", "2"))
SANITIZERS = [
    Sanitizer(SanitizePolicy.default()),
    Sanitizer(SanitizePolicy.strict()),
    Sanitizer(SanitizePolicy.default().extend(id_prefix="p")),
    Sanitizer(
        SanitizePolicy.default().extend(
            allow_plain_doctype=True, image_hosts={"img.example.com"}, link_schemes={"https"}
        )
    ),
]
PROMPTS = PromptPolicy(max_chars=500, content_rules=[BannedTerms(["forbidden", "nsfw"])])


class Finding(AssertionError):
    """An input broke a property (atheris reports it with the input)."""


def _timed(started: float, what: str) -> None:
    spent = time.process_time() - started
    if spent > SECONDS:
        raise Finding(f"{what} took {spent:.2f} s of CPU (bound {SECONDS} s)")


def sanitize_target(data: bytes) -> None:
    if not data:
        return
    sanitizer = SANITIZERS[data[0] % len(SANITIZERS)]
    body = data[1:]
    # Half the inputs as text (the engine's path), half as bytes (files, encodings).
    doc: str | bytes = body.decode("utf-8", "replace") if data[0] & 4 else body
    started = time.process_time()
    try:
        out = sanitizer.sanitize(doc).svg
    except ChatSVGError:
        _timed(started, "sanitize (refused)")
        return
    _timed(started, "sanitize")
    try:
        etree.fromstring(out.encode("utf-8"))
    except etree.XMLSyntaxError as exc:
        raise Finding(f"output does not parse: {exc}\n{out[:500]}") from None
    problems = svg_safety_violations(out, sanitizer.policy)
    if problems:
        raise Finding(f"unsafe output: {problems}\n{out[:500]}")
    again = sanitizer.sanitize(out).svg
    if again != out:
        raise Finding(f"not idempotent:\n{out[:500]}\n{again[:500]}")


def extract_target(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    started = time.process_time()
    try:
        found = extract_svg(text)
    except ExtractionError:
        _timed(started, "extract (refused)")
        return
    _timed(started, "extract")
    if extract_svg(found) != found:
        raise Finding(f"extraction not stable on its output: {found[:300]!r}")


def canonical_target(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    big = provider.ConsumeInt(provider.ConsumeIntInRange(0, 4096))
    text = provider.ConsumeUnicodeNoSurrogates(len(data))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = text
    for payload in (value, big, {"n": big, "v": value}):
        started = time.process_time()
        try:
            canonical = canonical_json(payload)
            request_hash(payload, scope="fuzz")
        except ChatSVGError:
            _timed(started, "canonical_json (refused)")
            continue
        _timed(started, "canonical_json")
        if canonical_json(json.loads(canonical)) != canonical:
            raise Finding(f"canonical text does not round-trip: {canonical[:300]!r}")


def prompt_target(data: bytes) -> None:
    # Undecodable bytes as lone surrogates for some inputs: not Unicode text.
    text = data.decode("utf-8", "surrogateescape" if data[:1] == b"\xff" else "replace")
    started = time.process_time()
    try:
        clean = PROMPTS.validate_prompt(text)
    except PromptRejected:
        _timed(started, "prompt (refused)")
        return
    _timed(started, "prompt")
    if PROMPTS.validate_prompt(clean) != clean:
        raise Finding(f"prompt normalisation not stable: {clean[:300]!r}")


TARGETS = {
    "sanitize": sanitize_target,
    "extract": extract_target,
    "canonical": canonical_target,
    "prompt": prompt_target,
}


def _keeping_findings(name: str, target: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``target``, writing an input that raises to ``$CHATSVG_FUZZ_ARTIFACTS`` first.

    libFuzzer writes its own crash file too, but a process at high load was
    seen to die of its alarm signal before doing so; this copy is never lost.
    """
    folder = os.environ.get("CHATSVG_FUZZ_ARTIFACTS")
    if not folder:
        return target

    def run(data: bytes) -> None:
        try:
            target(data)
        except BaseException:
            digest = hashlib.sha1(data).hexdigest()
            Path(folder, f"{name}-finding-{digest}").write_bytes(data)
            raise

    return run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    name = sys.argv.pop(1)
    atheris.Setup(sys.argv, _keeping_findings(name, TARGETS[name]))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
