"""The offline sketch provider: valid SVG, deterministic, reacts to the words it knows."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from chatsvg_core.generate import (
    GenerationRequest,
    OfflineSketchProvider,
    Provider,
    extract_svg,
    generate_sync,
    sketch_svg,
)

SVG_NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(svg.encode("utf-8"), parser)
    assert root.tag == f"{SVG_NS}svg"
    return root


def tags(svg: str) -> list[str]:
    return [el.tag.removeprefix(SVG_NS) for el in parse(svg).iter() if isinstance(el.tag, str)]


def test_is_a_provider_and_says_it_is_not_a_model() -> None:
    provider = OfflineSketchProvider()
    assert isinstance(provider, Provider)
    assert "not a model" in (OfflineSketchProvider.__doc__ or "")
    output = asyncio.run(provider.generate(GenerationRequest(prompt="a cat")))
    assert output.provider == "offline-sketch"
    assert output.model == "offline-sketch-1"
    assert output.finish_reason == "stop"
    assert extract_svg(output.text) == output.text
    assert "not a model" in output.text


def test_sync_facade() -> None:
    output = generate_sync(OfflineSketchProvider(), GenerationRequest(prompt="a tree"))
    parse(output.text)


def test_size_is_respected() -> None:
    root = parse(sketch_svg(GenerationRequest(prompt="sea", width=800, height=600)))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "800",
        "600",
        "0 0 800 600",
    )


@pytest.mark.parametrize(
    ("prompt", "expect"),
    [
        ("a lighthouse at dusk", {"polygon", "rect"}),
        ("a cat", {"ellipse", "polygon"}),
        ("clouds", {"ellipse", "circle"}),
        ("a heart", {"path"}),
    ],
)
def test_known_words_draw_objects(prompt: str, expect: set[str]) -> None:
    assert expect <= set(tags(sketch_svg(GenerationRequest(prompt=prompt))))


def test_time_of_day_changes_the_sky_and_words_change_the_picture() -> None:
    def sky(prompt: str) -> list[str | None]:
        root = parse(sketch_svg(GenerationRequest(prompt=prompt)))
        stops = root.findall(f".//{SVG_NS}linearGradient[@id='sky']/{SVG_NS}stop")
        return [s.get("stop-color") for s in stops]

    skies = {t: tuple(sky(f"a house at {t}")) for t in ["noon", "dusk", "night", "sunrise"]}
    assert len(set(skies.values())) == 4
    # Night brings a moon (a masked circle) without asking.
    night = sketch_svg(GenerationRequest(prompt="a house at night"))
    assert "mask" in tags(night)
    assert sketch_svg(GenerationRequest(prompt="a house")) != sketch_svg(
        GenerationRequest(prompt="a house and a boat")
    )


def test_colour_word_colours_the_next_object() -> None:
    red = sketch_svg(GenerationRequest(prompt="a red heart"))
    blue = sketch_svg(GenerationRequest(prompt="a blue heart"))
    assert 'fill="#d64541"' in red
    assert 'fill="#2f6fd6"' in blue


def test_counts_and_plurals() -> None:
    def trees(prompt: str) -> int:
        root = parse(sketch_svg(GenerationRequest(prompt=prompt)))
        # A tree is a group of a trunk and a round canopy.
        return sum(
            1
            for g in root.iter(f"{SVG_NS}g")
            if [c.tag for c in g] == [f"{SVG_NS}rect", f"{SVG_NS}circle"]
        )

    assert trees("a tree") == 1
    assert trees("trees") == 3
    assert trees("five trees") == 5


def test_unknown_words_get_the_abstract_fallback() -> None:
    svg = sketch_svg(GenerationRequest(prompt="quantum entanglement"))
    assert "abstract fallback" in svg
    assert tags(svg).count("circle") + tags(svg).count("rect") >= 4


def test_the_prompt_is_escaped_in_the_title() -> None:
    svg = sketch_svg(GenerationRequest(prompt='</title><script>alert(1)</script> & "x"'))
    root = parse(svg)
    assert root.findtext(f"{SVG_NS}title") == '</title><script>alert(1)</script> & "x"'
    assert "script" not in tags(svg)


requests = st.builds(
    GenerationRequest,
    prompt=st.text(min_size=1, max_size=80)
    | st.lists(
        st.sampled_from(
            [
                "sun",
                "moon",
                "star",
                "stars",
                "cloud",
                "mountain",
                "sea",
                "wave",
                "tree",
                "trees",
                "forest",
                "house",
                "lighthouse",
                "boat",
                "cat",
                "bird",
                "birds",
                "flower",
                "heart",
                "red",
                "blue",
                "gold",
                "three",
                "many",
                "dusk",
                "night",
                "dawn",
                "noon",
            ]
        ),
        min_size=1,
        max_size=8,
    ).map(" ".join),
    width=st.integers(16, 2000),
    height=st.integers(16, 2000),
)


@given(requests)
@settings(max_examples=150)
def test_always_valid_svg_and_deterministic(request: GenerationRequest) -> None:
    svg = sketch_svg(request)
    parse(svg)
    assert sketch_svg(request) == svg
    assert sketch_svg(request.model_copy()) == svg
