"""Prompt validation: refuse bad prompts with a rule name, normalise good ones.

The decisions, per category of character (see ``docs/providers.md``):

======================================  ==========  =================================
Characters                              Action      Why
======================================  ==========  =================================
CR LF, lone CR, U+2028, U+2029          → ``\\n``    one newline convention; U+2028/9
                                                    break JSON and JavaScript strings
C0 controls except TAB/LF/CR, DEL, C1   refuse      binary junk or terminal/log
                                                    injection, never text
bidi embeddings/overrides/isolates      refuse      "Trojan Source": what a reviewer
(U+202A-U+202E, U+2066-U+2069)                      sees differs from what the model
                                                    reads
tag characters U+E0000-U+E007F          refuse      invisible "ASCII smuggling" of
(except inside an emoji flag sequence)              instructions to a model
interlinear annotation U+FFF9-U+FFFB    refuse      hidden text
noncharacters, lone surrogates          refuse      not text; cannot be encoded
zero-width space U+200B, word joiner    strip       invisible copy-paste debris, also
U+2060, BOM U+FEFF, soft hyphen U+00AD,             used to split banned words; no
U+180E, invisible operators U+2061-64,              meaning is lost
deprecated format U+206A-U+206F
ZWJ U+200D, ZWNJ U+200C, LRM/RLM/ALM,   keep        carry meaning: emoji sequences,
variation selectors, other format chars             Persian and Indic spelling,
                                                    right-to-left text
leading and trailing whitespace         strip
======================================  ==========  =================================

Normalisation form: **NFC** for the prompt the model receives. NFC only joins
canonically equivalent sequences (``e`` + U+0301 → ``é``), which by the
Unicode definition mean the same text, so a valid prompt keeps its meaning.
NFKC would also fold compatibility characters (``x²`` → ``x2``, ``½`` → ``1`` U+2044 ``2``,
``ﬁ`` → ``fi``, full-width letters → ASCII), which changes what some prompts say.
Content rules, however, are matched against a **folded** form (NFKC, case-folded,
with ZWJ/ZWNJ and other format characters removed and whitespace collapsed), so
full-width, ligature or zero-width tricks do not slip a banned term past them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Annotated, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from chatsvg_core.errors import PromptRejected
from chatsvg_core.generate._request import GenerationRequest

__all__ = [
    "BannedTerms",
    "ContentRule",
    "PromptPolicy",
    "fold_prompt",
    "normalize_prompt",
]

_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_ANNOTATION = re.compile(r"[\ufff9-\ufffb]")
# An emoji subdivision flag (England, Scotland, Wales...) is the only legitimate
# use of tag characters: U+1F3F4, 2-7 tag letters/digits, U+E007F CANCEL TAG.
_FLAG = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,7}\U000e007f")
_TAG = re.compile("[\U000e0000-\U000e007f]")
_NONCHARACTER = re.compile(
    "[\ufdd0-\ufdef\ufffe\uffff\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff"
    "\U0004fffe\U0004ffff\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff"
    "\U0008fffe\U0008ffff\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff"
    "\U000cfffe\U000cffff\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff"
    "\U0010fffe\U0010ffff]"
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_STRIP = re.compile(r"[\u00ad\u180e\u200b\u2060-\u2064\u206a-\u206f\ufeff]")
_WHITESPACE = re.compile(r"\s+")

# Refusal checks in the order they run; the first that matches names the rule.
_REFUSALS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("invalid_unicode", _SURROGATE, "lone surrogate code point"),
    ("control_character", _CONTROL, "C0/C1 control character"),
    ("bidi_control", _BIDI, "bidirectional embedding, override or isolate"),
    ("invisible_character", _ANNOTATION, "interlinear annotation character"),
    ("noncharacter", _NONCHARACTER, "Unicode noncharacter"),
)


def _codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _normalized(prompt: str) -> str:
    """:func:`_refuse_or_normalize`, settled at once for printable ASCII.

    U+0020..U+007E only: no refusal pattern can match, and the normalisation
    only trims (no newline, nothing to strip, ASCII is NFC). Most prompts;
    tests/generate/test_prompt.py holds it to the general path.
    """
    if prompt.isascii() and prompt.isprintable():
        return prompt.strip()
    return _refuse_or_normalize(prompt)


def _refuse_or_normalize(prompt: str) -> str:
    """The refusal rules of :meth:`PromptPolicy.validate_prompt`, then :func:`normalize_prompt`."""
    for rule, pattern, what in _REFUSALS:
        found = pattern.search(prompt)
        if found:
            raise PromptRejected(
                f"prompt contains a {what}",
                rule=rule,
                detail=f"{_codepoint(found.group(0))} at index {found.start()}",
            )
    tag = _TAG.search(_FLAG.sub("", prompt))
    if tag:
        raise PromptRejected(
            "prompt contains invisible tag characters",
            rule="invisible_character",
            detail=f"{_codepoint(tag.group(0))} outside an emoji flag sequence",
        )
    return normalize_prompt(prompt)


def normalize_prompt(text: str) -> str:
    """Apply the normalisation rules without the refusal rules.

    Newlines become ``\\n``, the strip-set is removed, the text is put in NFC
    and trimmed. Idempotent: ``normalize_prompt(normalize_prompt(t)) ==
    normalize_prompt(t)``. :meth:`PromptPolicy.validate_prompt` refuses first, then
    calls this.
    """
    text = _NEWLINES.sub("\n", text)
    text = _STRIP.sub("", text)
    # NFC after stripping: removing a character can bring a base letter and a
    # combining mark together, and the result must already be in NFC.
    return unicodedata.normalize("NFC", text).strip()


def fold_prompt(text: str) -> str:
    """The form content rules match against: NFKC, case-folded, no format characters.

    Format characters (category ``Cf``: ZWJ, ZWNJ, bidi marks, tags) are removed
    and every run of whitespace becomes one space, so full-width ``banned``,
    ``BANNED`` and ``ban\\u200dned`` all fold to ``banned``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    # casefold can leave text that NFKC would still change (e.g. U+0130).
    text = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", text).strip()


@runtime_checkable
class ContentRule(Protocol):
    """A host's banned-content rule.

    Called with the normalised prompt and its folded form
    (:func:`fold_prompt`); returns ``None`` to allow, or a short reason to
    refuse, which becomes the ``detail`` of ``PromptRejected(rule="banned_content")``.
    A rule may also raise :class:`~chatsvg_core.errors.PromptRejected` itself
    with a rule name of its own. Any other exception is a bug in the rule and
    propagates unchanged.
    """

    def __call__(self, prompt: str, folded: str, /) -> str | None:
        """Return a reason to refuse ``prompt``, or ``None``."""
        ...


class BannedTerms:
    """A :class:`ContentRule` refusing prompts that contain any listed term as whole words.

    Terms are folded like the prompt, so matching ignores case, width and
    invisible characters. Matching is linear: one compiled alternation of
    escaped literals, no host-written regular expression.

    >>> rule = BannedTerms(["gore"])
    >>> rule("A GORE scene", fold_prompt("A GORE scene"))
    'banned term: gore'
    >>> rule("gorey cartoon", fold_prompt("gorey cartoon")) is None
    True
    """

    def __init__(self, terms: Iterable[str], *, reason: str = "banned term") -> None:
        folded = sorted({fold_prompt(t) for t in terms} - {""}, key=len, reverse=True)
        self.terms: tuple[str, ...] = tuple(folded)
        self.reason = reason
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, folded)) + r")(?!\w)")
            if folded
            else None
        )

    def __call__(self, prompt: str, folded: str, /) -> str | None:
        """Return ``"<reason>: <term>"`` for the first banned term found, else ``None``."""
        if self._pattern is None:
            return None
        match = self._pattern.search(folded)
        return f"{self.reason}: {match.group(0)}" if match else None

    def __repr__(self) -> str:
        return f"BannedTerms({len(self.terms)} terms)"


class PromptPolicy(BaseModel):
    """The prompt rules a host applies at submit time.

    Rules and their names (``PromptRejected.rule``):

    - ``not_text``: the prompt is not a ``str``.
    - ``too_many_characters``: longer than ``max_chars`` code points after
      normalisation, or the raw input is longer than ``4 * max_chars`` (refused
      before any normalisation work, so hostile input is cheap to refuse).
    - ``too_many_bytes``: more than ``max_bytes`` bytes in UTF-8 after normalisation.
    - ``invalid_unicode``, ``control_character``, ``bidi_control``,
      ``invisible_character``, ``noncharacter``: see the module table.
    - ``empty``: nothing but whitespace or stripped characters.
    - ``banned_content``: a content rule refused it (``detail`` is its reason).

    >>> PromptPolicy().validate_prompt("  a cafe\\u0301 at night\\r\\n")
    'a café at night'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_chars: Annotated[int, Field(ge=1)] = 2000
    max_bytes: Annotated[int, Field(ge=4)] = 8000
    content_rules: Sequence[ContentRule] = ()

    def validate_prompt(self, prompt: object) -> str:
        """Return the normalised prompt, or raise ``PromptRejected`` naming the rule."""
        if not isinstance(prompt, str):
            raise PromptRejected(
                "prompt must be text", rule="not_text", detail=type(prompt).__name__
            )
        if len(prompt) > 4 * self.max_chars:
            raise PromptRejected(
                f"prompt longer than {self.max_chars} characters",
                rule="too_many_characters",
                detail=f"{len(prompt)} characters before normalisation",
                limit=self.max_chars,
            )
        text = _normalized(prompt)
        if not text:
            raise PromptRejected("prompt is empty", rule="empty", detail="nothing to draw")
        if len(text) > self.max_chars:
            raise PromptRejected(
                f"prompt longer than {self.max_chars} characters",
                rule="too_many_characters",
                detail=f"{len(text)} characters",
                limit=self.max_chars,
            )
        # An ASCII text's UTF-8 is one byte a character: no encoded copy to count.
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        if size > self.max_bytes:
            raise PromptRejected(
                f"prompt larger than {self.max_bytes} bytes",
                rule="too_many_bytes",
                detail=f"{size} bytes in UTF-8",
                limit=self.max_bytes,
            )
        if self.content_rules:
            folded = fold_prompt(text)
            for content_rule in self.content_rules:
                reason = content_rule(text, folded)
                if reason is not None:
                    raise PromptRejected(
                        "prompt refused by a content rule", rule="banned_content", detail=reason
                    )
        return text

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Validate ``request.prompt``; return the request with the normalised prompt."""
        text = self.validate_prompt(request.prompt)
        return request if text == request.prompt else request.model_copy(update={"prompt": text})
