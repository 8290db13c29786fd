"""URLs: normalised like a browser reads them, then allowed only by context and policy."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from chatsvg_core.sanitize import ReasonCode, SanitizePolicy, Sanitizer, sanitize_svg
from chatsvg_core.sanitize._urls import UrlContext, check_url

NS = 'xmlns="http://www.w3.org/2000/svg"'
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20).decode()
GIF = "data:image/gif;base64," + base64.b64encode(b"GIF89a" + b"\0" * 10).decode()
JPEG = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 10).decode()
WEBP = "data:image/webp;base64," + base64.b64encode(b"RIFF\0\0\0\0WEBPVP8 ").decode()


def href_kept(element: str, url: str, policy: SanitizePolicy | None = None) -> bool:
    """Whether ``url`` survives on ``element``; ``href`` and ``xlink:href`` must agree."""
    verdicts = []
    for attr in ("href", "xlink:href"):
        doc = f'<svg {NS} {XLINK}><{element} {attr}="{url}"/><rect/></svg>'
        out = sanitize_svg(doc, policy=policy)
        kept = "href=" in out.svg
        if not kept:
            assert out.report.by_reason(ReasonCode.URL_NOT_ALLOWED)
        verdicts.append(kept)
    assert verdicts[0] == verdicts[1], "href and xlink:href must be treated alike"
    return verdicts[0]


HOSTILE = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "  javascript:alert(1)",
    "&#x20;javascript:alert(1)",
    "&#1;javascript:alert(1)".replace("&#1;", "&#x9;"),
    "java&#x09;script:alert(1)",
    "java&#x0A;script:alert(1)",
    "java&#x0D;script:alert(1)",
    "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
    "vbscript:msgbox(1)",
    "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
    "data:image/svg+xml,&lt;svg onload='alert(1)'/&gt;",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:,alert(1)",
    "http://evil.example/x.svg#a",
    "https://evil.example/x.png",
    "//evil.example/x.png",
    "x.svg#a",
    "/x.svg",
    "file:///etc/passwd",
    "#",
]


@pytest.mark.parametrize("url", HOSTILE)
@pytest.mark.parametrize("element", ["use", "image", "a", "feImage", "linearGradient", "mpath"])
def test_hostile_urls_are_removed_everywhere(element: str, url: str) -> None:
    assert not href_kept(element, url)


@pytest.mark.parametrize("element", ["use", "image", "a", "feImage", "linearGradient", "textPath"])
def test_same_document_references_are_kept(element: str) -> None:
    assert href_kept(element, "#target")


@pytest.mark.parametrize("url", [PNG, GIF, JPEG, WEBP])
def test_raster_data_urls_are_kept_in_images_only(url: str) -> None:
    assert href_kept("image", url)
    assert href_kept("feImage", url)
    assert not href_kept("use", url)
    assert not href_kept("a", url)
    assert not href_kept("image", url, SanitizePolicy.strict().extend(elements={"image"}))


def test_data_url_type_must_match_the_bytes() -> None:
    svg_as_png = "data:image/png;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode()
    assert not href_kept("image", svg_as_png)
    assert not href_kept("image", "data:image/png;base64,!!!!")
    assert not href_kept("image", "data:image/png," + "x")
    gif_as_png = "data:image/png;base64," + GIF.split(",", 1)[1]
    assert not href_kept("image", gif_as_png)


def test_data_types_are_a_policy_choice() -> None:
    only_png = SanitizePolicy.default().model_copy()  # presets are shared and frozen
    only_png = SanitizePolicy.model_validate({**only_png.model_dump(), "data_image_types": {"png"}})
    assert href_kept("image", PNG, only_png)
    assert not href_kept("image", GIF, only_png)


def test_normalised_url_is_written_out() -> None:
    out = sanitize_svg(f'<svg {NS}><use href="  #a&#10;"/><rect id="a"/></svg>')
    assert out.svg == f'<svg {NS}><use href="#a"/><rect id="a"/></svg>'


def test_image_hosts_allow_external_images_only_on_those_hosts() -> None:
    policy = SanitizePolicy.default().extend(image_hosts={"cdn.example.com", "*.img.example"})
    assert href_kept("image", "https://cdn.example.com/a.png", policy)
    assert href_kept("image", "HTTPS://CDN.EXAMPLE.COM/a.png", policy)
    assert href_kept("image", "https://a.b.img.example/a.png", policy)
    assert not href_kept("image", "http://cdn.example.com/a.png", policy)  # https only
    assert not href_kept("image", "https://cdn.example.com.evil.example/a.png", policy)
    assert not href_kept("image", "https://evil.example/a.png", policy)
    assert not href_kept("image", "https://user@cdn.example.com/a.png", policy)
    assert not href_kept("image", "https://evil.example\\@cdn.example.com/a.png", policy)
    assert not href_kept("image", "https://img.example/a.png", policy)
    assert not href_kept("use", "https://cdn.example.com/a.svg#x", policy)
    both = policy.extend(image_schemes={"http"})
    assert href_kept("image", "http://cdn.example.com/a.png", both)


def test_link_schemes_policy() -> None:
    policy = SanitizePolicy.default().extend(link_schemes={"https", "mailto"})
    assert href_kept("a", "https://example.com/", policy)
    assert href_kept("a", "mailto:a@example.com", policy)
    assert not href_kept("a", "javascript:alert(1)", policy)
    assert not href_kept("a", "https://example.com/")


def test_policy_refuses_dangerous_schemes() -> None:
    with pytest.raises(ValueError, match="link_schemes"):
        SanitizePolicy.default().extend(link_schemes={"javascript"})
    with pytest.raises(ValueError, match="image_schemes"):
        SanitizePolicy.default().extend(image_schemes={"data"})
    with pytest.raises(ValueError, match="data_image_types"):
        SanitizePolicy.default().extend(data_image_types={"svg+xml"})


def test_data_url_check_is_linear_on_hostile_padding() -> None:
    # A regex with backtracking would take hours on this (quadratic in the spaces);
    # the check must refuse it like any other bad payload.
    url = "data:image/png;base64,iVBORw0KGgo" + " " * 1_000_000 + "!"
    out = sanitize_svg(f'<svg {NS}><image href="{url}"/><rect/></svg>')
    assert out.svg == f"<svg {NS}><image/><rect/></svg>"


@given(
    st.text(alphabet="#aZ09_-.:/% \t\n", max_size=8),
    st.sampled_from(["use", "a", "image", "linearGradient"]),
    st.sampled_from([None, "p"]),
)
@settings(max_examples=300)
def test_plain_fragment_shortcut_gives_what_the_url_check_gives(
    value: str, element: str, prefix: str | None
) -> None:
    # ``#id`` hrefs skip check_url when ids are not prefixed; every value must
    # still come out as check_url and rewrite_fragment decide.
    policy = SanitizePolicy.default().extend(id_prefix=prefix)
    sanitizer = Sanitizer(policy)
    svg = etree.Element("{http://www.w3.org/2000/svg}svg")
    etree.SubElement(svg, "{http://www.w3.org/2000/svg}rect")
    etree.SubElement(svg, "{http://www.w3.org/2000/svg}" + element).set("href", value)
    out = etree.fromstring(sanitizer.sanitize(etree.tostring(svg)).svg)
    context = {"a": UrlContext.LINK, "image": UrlContext.IMAGE}.get(element, UrlContext.REFERENCE)
    verdict = check_url(value, context, policy)
    expected = sanitizer.rewrite_fragment(verdict.url) if verdict.allowed else None
    assert out[1].get("href") == expected
