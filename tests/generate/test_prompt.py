"""Prompt validation: named rules, normalisation that keeps meaning, content rules."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import PromptRejected
from chatsvg_core.generate import (
    BannedTerms,
    ContentRule,
    GenerationRequest,
    PromptPolicy,
    fold_prompt,
    normalize_prompt,
)

POLICY = PromptPolicy()
RULES = {
    "not_text",
    "too_many_characters",
    "too_many_bytes",
    "invalid_unicode",
    "control_character",
    "bidi_control",
    "invisible_character",
    "noncharacter",
    "empty",
    "banned_content",
}
FLAG_SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"


def rule_of(prompt: object, policy: PromptPolicy = POLICY) -> str:
    with pytest.raises(PromptRejected) as info:
        policy.validate_prompt(prompt)
    assert info.value.http_status == 422
    return str(info.value.rule)


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [
        ("", "empty"),
        ("   \n\t  ", "empty"),
        ("\u200b\ufeff\u00ad", "empty"),
        ("\u3000\u00a0", "empty"),
        ("a\x00b", "control_character"),
        ("bell\x07", "control_character"),
        ("esc \x1b[31m red", "control_character"),
        ("del\x7f", "control_character"),
        ("c1 \x85 next line", "control_character"),
        ("c1 \x9b csi", "control_character"),
        ("abc\u202edcba", "bidi_control"),
        ("\u2066isolate\u2069", "bidi_control"),
        ("\u202aembed\u202c", "bidi_control"),
        (
            "draw a cat\U000e0069\U000e0067\U000e006e\U000e006f\U000e0072\U000e0065",
            "invisible_character",
        ),
        ("\ufff9annotated\ufffb", "invisible_character"),
        ("x\ufdd0", "noncharacter"),
        ("x\U0010ffff", "noncharacter"),
        ("lone \ud800 surrogate", "invalid_unicode"),
        (b"bytes", "not_text"),
        (None, "not_text"),
        (42, "not_text"),
    ],
)
def test_refusals_name_their_rule(prompt: object, rule: str) -> None:
    assert rule_of(prompt) == rule


def test_length_limits_in_characters_and_bytes() -> None:
    policy = PromptPolicy(max_chars=10, max_bytes=12)
    assert policy.validate_prompt("a" * 10) == "a" * 10
    assert rule_of("a" * 11, policy) == "too_many_characters"
    # 5 characters, 15 bytes in UTF-8.
    assert rule_of("龍" * 5, policy) == "too_many_bytes"
    assert policy.validate_prompt("龍" * 4) == "龍" * 4
    # Huge raw input is refused before normalisation, whatever it holds.
    assert rule_of("\u200b" * 41, policy) == "too_many_characters"
    # Stripped characters do not count once under the raw cap.
    assert policy.validate_prompt("\u200b" * 30 + "cat") == "cat"


def test_limit_field_is_reported() -> None:
    with pytest.raises(PromptRejected) as info:
        PromptPolicy(max_chars=3).validate_prompt("abcd")
    assert info.value.limit == 3
    assert info.value.to_dict()["rule"] == "too_many_characters"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("  a cat  ", "a cat"),
        ("line one\r\nline two\rthree", "line one\nline two\nthree"),
        ("para\u2028graph\u2029end", "para\ngraph\nend"),
        ("cafe\u0301", "caf\u00e9"),
        ("zero\u200bwidth", "zerowidth"),
        ("soft\u00adhyphen", "softhyphen"),
        ("\ufeffbom", "bom"),
        ("e\u200b\u0301", "\u00e9"),  # stripping joins base and mark; NFC runs after
        # Kept: meaning-bearing joiners, marks, compatibility characters, flags.
        (
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        ),
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        ),
        ("E=mc\u00b2 and \ufb01sh, \uff21", "E=mc\u00b2 and \ufb01sh, \uff21"),
        ("rtl \u200fmark", "rtl \u200fmark"),
        (f"a {FLAG_SCOTLAND} flag", f"a {FLAG_SCOTLAND} flag"),
        ("tab\tinside", "tab\tinside"),
    ],
)
def test_normalisation_examples(prompt: str, expected: str) -> None:
    assert POLICY.validate_prompt(prompt) == expected


def test_check_returns_a_request_with_the_normalised_prompt() -> None:
    request = GenerationRequest(prompt=" cafe\u0301 ", width=300)
    checked = POLICY.check(request)
    assert checked.prompt == "caf\u00e9"
    assert checked.width == 300
    clean = GenerationRequest(prompt="clean")
    assert POLICY.check(clean) is clean
    with pytest.raises(PromptRejected):
        POLICY.check(GenerationRequest(prompt=" "))


# --- content rules ------------------------------------------------------------


def test_banned_terms_match_folded_whole_words() -> None:
    policy = PromptPolicy(content_rules=[BannedTerms(["gore", "Blood Bath"])])
    for prompt in [
        "gore",
        "a GORE scene",
        "\uff27\uff2f\uff32\uff25 art",  # full-width
        "go\u200dre",  # ZWJ inside the word (kept in the prompt, removed when folding)
        "blood   bath",
        "BLOOD\u00a0BATH",
    ]:
        with pytest.raises(PromptRejected) as info:
            policy.validate_prompt(prompt)
        assert info.value.rule == "banned_content"
        assert "banned term" in str(info.value.detail)
    for prompt in ["gorey cartoon", "gorgeous", "a bloodbath? no: a blood orange"]:
        assert policy.validate_prompt(prompt) == prompt


def test_host_rule_protocol_receives_prompt_and_folded_form() -> None:
    seen: list[tuple[str, str]] = []

    def no_logos(prompt: str, folded: str, /) -> str | None:
        seen.append((prompt, folded))
        return "trademarked logo" if "logo" in folded else None

    assert isinstance(no_logos, ContentRule)
    policy = PromptPolicy(content_rules=[no_logos])
    assert policy.validate_prompt("A Cat") == "A Cat"
    assert seen == [("A Cat", "a cat")]
    with pytest.raises(PromptRejected) as info:
        policy.validate_prompt("the \uff2c\uff2f\uff27\uff2f of a brand")
    assert (info.value.rule, info.value.detail) == ("banned_content", "trademarked logo")


def test_host_rule_may_raise_its_own_rule_name_and_bugs_propagate() -> None:
    def strict(prompt: str, folded: str, /) -> str | None:
        raise PromptRejected("custom", rule="custom_rule", detail="x")

    with pytest.raises(PromptRejected) as info:
        PromptPolicy(content_rules=[strict]).validate_prompt("anything")
    assert info.value.rule == "custom_rule"

    def buggy(prompt: str, folded: str, /) -> str | None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        PromptPolicy(content_rules=[buggy]).validate_prompt("anything")


def test_banned_terms_edge_cases() -> None:
    assert BannedTerms([])("x", "x") is None
    assert BannedTerms(["", "  "]).terms == ()
    rule = BannedTerms(["a.b"])  # escaped: '.' is a literal
    assert rule("axb", "axb") is None
    assert rule("a.b", "a.b") is not None
    assert repr(rule) == "BannedTerms(1 terms)"


# --- properties ------------------------------------------------------------------

# Text made of everything interesting: controls, joiners, marks, bidi, tags, CJK, emoji.
interesting = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            "\x00\x07\t\n\r\x1b\x7f\x85\u00ad\u0301\u0308\u200b\u200c\u200d\u200e\u2028"
            "\u202e\u2066\u2060\ufeff\ufff9\ufdd0\U000e0041\U000e007f\U0001f3f4 aé龍\uff21"
        ),
    ),
    max_size=60,
)


@given(st.one_of(interesting, st.text(max_size=60), st.binary(max_size=10), st.none()))
@settings(max_examples=200)
def test_validation_raises_only_prompt_rejected(prompt: object) -> None:
    result: str | None = None
    rule: object = None
    try:
        result = POLICY.validate_prompt(prompt)
    except PromptRejected as exc:
        rule = exc.rule
    if result is None:
        assert rule in RULES
        return
    assert result
    assert len(result) <= POLICY.max_chars
    assert len(result.encode("utf-8")) <= POLICY.max_bytes


@given(interesting)
@settings(max_examples=150)
def test_a_valid_prompt_is_a_fixed_point(prompt: str) -> None:
    try:
        once = POLICY.validate_prompt(prompt)
    except PromptRejected:
        return
    assert POLICY.validate_prompt(once) == once
    assert normalize_prompt(once) == once
    assert unicodedata.is_normalized("NFC", once)


@given(interesting)
@settings(max_examples=150)
def test_normalisation_is_idempotent(prompt: str) -> None:
    once = normalize_prompt(prompt)
    assert normalize_prompt(once) == once


# Text that needs no stripping or newline mapping, so only NFC may change it.
plain_text = (
    st.text(
        alphabet=st.characters(
            codec="utf-8",
            exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"),
        ),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)


@given(plain_text)
def test_valid_prompt_keeps_its_meaning(prompt: str) -> None:
    """Only canonically equivalent rewrites: same NFD, hence the same text by Unicode's rules."""
    try:
        result = POLICY.validate_prompt(prompt)
    except PromptRejected as exc:  # no rule applies to such text
        pytest.fail(f"refused clean text: {exc!r}")
    assert unicodedata.normalize("NFD", result) == unicodedata.normalize("NFD", prompt)


@given(interesting, st.sampled_from(["gore", "Gore", "\uff47\uff4f\uff52\uff45"]))
@settings(max_examples=100)
def test_banned_term_is_caught_however_it_is_dressed(prefix: str, term: str) -> None:
    policy = PromptPolicy(content_rules=[BannedTerms(["gore"])])
    try:
        policy.validate_prompt(prefix)
    except PromptRejected:
        return  # the prefix alone breaks a rule; nothing to check
    with pytest.raises(PromptRejected) as info:
        policy.validate_prompt(f"{prefix} {term} scene")
    assert info.value.rule == "banned_content"


@given(st.text(max_size=40))
@settings(max_examples=150)
def test_fold_is_idempotent(text: str) -> None:
    assert fold_prompt(fold_prompt(text)) == fold_prompt(text)


def test_five_megabytes_of_prompt_are_refused_before_any_work() -> None:
    with pytest.raises(PromptRejected) as info:
        POLICY.validate_prompt("\u202e" * 5_000_000)
    assert info.value.rule == "too_many_characters"


# --- the printable-ASCII shortcut ---------------------------------------------------


def _normal_outcome(fn: object, prompt: str) -> tuple[str, object]:
    try:
        return "text", fn(prompt)  # type: ignore[operator]
    except PromptRejected as exc:
        return "refused", (exc.fields.get("rule"), exc.fields.get("detail"))


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30),
        st.text(max_size=20),
        st.sampled_from(["", "   ", " a ", "\ta", "a\r\nb", "a\x7f", "\u00e9", "a\u200bb"]),
    )
)
def test_printable_ascii_shortcut_equals_the_general_rules(prompt: str) -> None:
    from chatsvg_core.generate import _prompt

    assert _normal_outcome(_prompt._normalized, prompt) == _normal_outcome(
        _prompt._refuse_or_normalize, prompt
    )


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(max_codepoint=0x7F))))
def test_owner_shortcut_equals_the_patterns(owner: str) -> None:
    from chatsvg_core import _owner
    from chatsvg_core.errors import InvalidOwner

    try:
        got: object = _owner.validate_owner(owner)
    except InvalidOwner as exc:
        got = exc.fields.get("reason")
    if not 1 <= len(owner) <= _owner.MAX_OWNER:
        expected: object = "length"
    elif _owner._CONTROL.search(owner):
        expected = "control_character"
    elif _owner._SURROGATE.search(owner):
        expected = "surrogate"
    else:
        expected = owner
    assert got == expected
