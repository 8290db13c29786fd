"""SanitizePolicy: frozen, validated, presets, safe extension."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from pydantic import ValidationError

from chatsvg_core.sanitize import PRESET_NAMES, SanitizePolicy, Sanitizer, _sanitizer, sanitize_svg

FIDELITY = Path(__file__).parents[1] / "data" / "fidelity"

NS = 'xmlns="http://www.w3.org/2000/svg"'


def test_presets() -> None:
    assert PRESET_NAMES == ("strict", "default")
    default, strict = SanitizePolicy.preset("default"), SanitizePolicy.preset("strict")
    assert default is SanitizePolicy.default()
    assert strict is SanitizePolicy.strict()
    assert strict.elements < default.elements
    assert "style" in default.elements
    assert "style" not in strict.elements
    assert not strict.data_image_types
    assert not strict.allow_style_element
    with pytest.raises(ValueError, match="unknown preset"):
        SanitizePolicy.preset("lax")


def test_policy_is_frozen_and_forbids_unknown_fields() -> None:
    policy = SanitizePolicy.default()
    with pytest.raises(ValidationError):
        policy.max_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        SanitizePolicy(allow_script=True)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("elements", {"script"}),
        ("elements", {"foreignObject"}),
        ("elements", {"iframe"}),
        ("attributes", {"onload"}),
        ("attributes", {"xml:base"}),
        ("extra_attributes", {"onclick"}),
        ("extra_attributes", {"href"}),
        ("extra_attributes", {"style"}),
        ("css_properties", {"behavior"}),
        ("css_properties", {"-moz-binding"}),
        ("css_properties", {"background-image"}),
        ("image_hosts", {"evil.example/path"}),
        ("max_depth", 10_000),
        ("max_bytes", 0),
    ],
)
def test_extension_cannot_reenable_danger(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        SanitizePolicy.default().extend(**{field: value})


def test_extend_unions_sets_and_replaces_scalars() -> None:
    policy = SanitizePolicy.strict().extend(elements={"image"}, max_depth=20, name="mine")
    assert "image" in policy.elements
    assert "rect" in policy.elements
    assert policy.max_depth == 20
    assert policy.name == "mine"
    assert SanitizePolicy.strict().max_depth == 128  # the preset is unchanged


def test_narrowing_a_policy_by_validation() -> None:
    data = SanitizePolicy.default().model_dump()
    data["elements"] = {"svg", "rect"}
    policy = SanitizePolicy.model_validate(data)
    out = Sanitizer(policy).sanitize(f"<svg {NS}><rect/><circle/></svg>")
    assert out.svg == f"<svg {NS}><rect/></svg>"


def test_policy_must_keep_svg() -> None:
    with pytest.raises(ValidationError):
        SanitizePolicy(elements=frozenset({"rect"}))


def test_policy_round_trips_through_json() -> None:
    policy = SanitizePolicy.default().extend(image_hosts={"cdn.example.com"}, id_prefix="x")
    again = SanitizePolicy.model_validate_json(policy.model_dump_json())
    assert again == policy


def test_sanitizer_is_reusable_and_matches_the_function() -> None:
    sanitizer = Sanitizer(SanitizePolicy.strict())
    doc = f"<svg {NS}><style>rect{{fill:red}}</style><rect/></svg>"
    assert sanitizer.sanitize(doc) == sanitize_svg(doc, policy=SanitizePolicy.strict())
    assert sanitizer.sanitize(doc) == sanitizer.sanitize(doc.encode())
    assert Sanitizer().policy is SanitizePolicy.default()


def test_one_sanitizer_shared_by_threads_gives_the_sequential_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Shared: the policy tables and the bounded value caches; per thread: the
    # parser; per call: everything else. A tiny cache makes threads clear and
    # refill it while others read it.
    docs = [p.read_bytes() for p in sorted(FIDELITY.rglob("*.svg"))[:120]]
    assert len(docs) == 120
    expected = [Sanitizer().sanitize(d) for d in docs]
    shared = Sanitizer()
    monkeypatch.setattr(_sanitizer, "_CLEAN_SIZE", 8)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(shared.sanitize, docs))
            assert [g.svg for g in got] == [e.svg for e in expected]
            assert [g.report for g in got] == [e.report for e in expected]


# --- exact checks, from the survivors of a mutation run (docs/mutation.md) ---------


def test_presets_built_afresh_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # The presets are built once per process, usually at import: build them again
    # here so that this test judges the code that builds them, not an old cache.
    monkeypatch.setattr(SanitizePolicy, "_presets", {})
    default = SanitizePolicy.preset("default")
    strict = SanitizePolicy.preset("strict")
    assert default is SanitizePolicy.preset("default")
    assert strict is SanitizePolicy.preset("strict")
    assert default == SanitizePolicy(name="default")
    assert (strict.name, strict.allow_style_element, strict.data_image_types) == (
        "strict",
        False,
        frozenset(),
    )
    dropped = default.elements - strict.elements
    assert {"style", "a", "image", "feImage", "animate", "set"} <= dropped
    assert strict == SanitizePolicy(
        name="strict",
        elements=strict.elements,
        allow_style_element=False,
        data_image_types=frozenset(),
    )


REFUSED_FIELDS: list[tuple[str, object, str]] = [
    ("elements", {"svg", "script"}, "elements outside the SVG allowlist table: ['script']"),
    ("elements", {"rect"}, "elements must include 'svg'"),
    ("attributes", {"onload"}, "attributes outside the SVG allowlist table: ['onload']"),
    ("extra_attributes", {"onclick"},
     "extra_attributes must be data-*, aria-* or role: ['onclick']"),
    ("css_properties", {"behavior"}, "css_properties outside the allowlist table: ['behavior']"),
    ("data_image_types", {"svg+xml"},
     "data_image_types must be a subset of ['gif', 'jpeg', 'png', 'webp']"),
    ("image_hosts", {"evil.example/x"},
     "image_hosts must be host names (optionally *.domain): {'evil.example/x'}"),
    ("image_schemes", {"ftp"}, "image_schemes must be a subset of {'http', 'https'}"),
    ("link_schemes", {"javascript"},
     "link_schemes must be a subset of ['http', 'https', 'mailto', 'tel']"),
    ("id_prefix", "1x", "id_prefix must match [A-Za-z][A-Za-z0-9_]*"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "message"), REFUSED_FIELDS)
def test_each_refused_field_says_why(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SanitizePolicy.model_validate({field: value})
    (error,) = caught.value.errors()
    assert (error["loc"], error["msg"]) == ((field,), f"Value error, {message}")


@pytest.mark.parametrize(
    ("field", "given", "kept"),
    [
        ("data_image_types", {"PNG", "Gif"}, {"png", "gif"}),
        (
            "image_hosts",
            {"CDN.Example.com.", "*.Img.example"},
            {"cdn.example.com", "*.img.example"},
        ),
        ("image_hosts", {"a", "localhost:8080"}, {"a", "localhost:8080"}),
        ("image_schemes", {"HTTP"}, {"http"}),
        ("link_schemes", {"MailTo", "https"}, {"mailto", "https"}),
        ("extra_attributes", {"data-x.y_z", "aria-label", "role"}, None),
        ("elements", {"svg"}, None),
        ("link_schemes", "tel", {"tel"}),  # one name, not its letters
        ("elements", ["svg", "rect"], {"svg", "rect"}),
        ("elements", ("svg", "rect"), {"svg", "rect"}),
    ],
)
def test_accepted_values_are_normalised(field: str, given: object, kept: set[str] | None) -> None:
    value = getattr(SanitizePolicy.model_validate({field: given}), field)
    assert value == frozenset(given if kept is None else kept)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("extra_attributes", {"data-"}),
        ("extra_attributes", {"aria-"}),
        ("extra_attributes", {"roles"}),
        ("extra_attributes", {"Role"}),
        ("image_hosts", {"-bad.example"}),
        ("image_hosts", {"bad.example-"}),
        ("id_prefix", ""),
        ("id_prefix", "a-b"),
    ],
)
def test_near_misses_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        SanitizePolicy.model_validate({field: value})


def test_id_prefixes_of_one_letter_or_none_are_valid() -> None:
    assert SanitizePolicy(id_prefix="a").id_prefix == "a"
    assert SanitizePolicy(id_prefix="A_1").id_prefix == "A_1"
    assert SanitizePolicy(id_prefix=None).id_prefix is None


def test_extend_adds_a_single_name_to_a_set() -> None:
    policy = SanitizePolicy.strict().extend(elements="image", link_schemes="https")
    assert "image" in policy.elements and "rect" in policy.elements
    assert policy.link_schemes == {"https"}
