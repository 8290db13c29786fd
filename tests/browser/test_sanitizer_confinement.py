"""Proof in Chromium that a sanitized ``<style>`` styles its own SVG, clones included, and
nothing of the host page.

One host page holds ordinary HTML, an SVG of the host's own (with a ``<use>``
shadow tree of its own) and elements whose ids and classes a hostile SVG would
aim at. The same page is loaded without and with a sanitized hostile SVG
inlined: every host element's computed style must be the same. And the
sanitized picture must look the same as the unsanitized one where its text
and shapes are drawn through ``<use>`` of a ``<symbol>`` (their clones live in
a shadow tree, where an ancestor-based confinement no longer matches).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from browserkit import BrowserPortal, LoopbackServer
from PIL import Image, ImageChops

from chatsvg_core.sanitize import SanitizePolicy, sanitize_svg

NS = 'xmlns="http://www.w3.org/2000/svg"'

# Aimed at everything a rule could reach in a host page: type selectors, the
# host's ids and classes, the root, and the scope class itself.
HOSTILE = (
    f'<svg {NS} id="app" class="chatsvg" width="120" height="60">'
    "<style>*{opacity:0.1;display:none;visibility:hidden;fill:rgb(255,0,0);color:red}"
    "html,body,div,p,span,svg,text,rect,use,g{opacity:0.2;display:none;font-size:40px}"
    "#app,#app *,.card,.card *,#host-text,.chatsvg,.chatsvg *,:root,:root *"
    "{transform:scale(3);stroke:red;stroke-width:9}"
    ":where(.chatsvg,.chatsvg *) p{display:none}"
    "p:where(#app *){display:none}</style>"
    '<rect width="10" height="10"/></svg>'
)
HOST_BODY = (
    '<div id="app" class="card"><p class="card-text">host text</p><span>more</span>'
    f'<svg {NS} id="host-svg" width="80" height="40"><defs><symbol id="host-sym">'
    '<text id="host-text" class="chatsvg-x" y="20">h</text></symbol></defs>'
    '<use href="#host-sym"/><rect class="card" x="40" width="10" height="10"/></svg></div>'
)
PROPS = ("opacity", "display", "visibility", "fill", "color", "transform", "stroke",
         "stroke-width", "font-size")  # fmt: skip
COMPUTED = """(props) => Array.from(document.querySelectorAll('body *'))
  .filter(e => !e.closest('#guest'))
  .map(e => [e.tagName, e.id, ...props.map(p => getComputedStyle(e).getPropertyValue(p))])"""


def _load(portal: BrowserPortal, server: LoopbackServer, body: str, script: str, arg: Any) -> Any:
    page_html = f"<!doctype html><html><head></head><body>{body}</body></html>"
    url = server.put(
        server.new_prefix() + "/p.html", "text/html; charset=utf-8", page_html.encode()
    )

    async def run(browser: Any) -> Any:
        ctx = await browser.new_context(viewport={"width": 400, "height": 200})
        try:
            page = await ctx.new_page()
            await page.goto(url, wait_until="load")
            return await page.evaluate(script, arg)
        finally:
            await ctx.close()

    return portal.run_async(run)


@pytest.mark.browser
@pytest.mark.parametrize("policy", [SanitizePolicy.default(),
                                    SanitizePolicy.default().extend(id_prefix="g1")])  # fmt: skip
def test_sanitized_style_never_reaches_the_host_page(
    policy: SanitizePolicy, browser_portal: BrowserPortal, loopback_server: LoopbackServer
) -> None:
    clean = sanitize_svg(HOSTILE, policy=policy).svg
    assert "<style>" in clean, clean  # the rules are kept (confined), not dropped
    guest = f'<div id="guest">{clean}</div>'
    alone = _load(browser_portal, loopback_server, HOST_BODY, COMPUTED, list(PROPS))
    # The guest before and after the host's content: order must not matter either.
    both = _load(browser_portal, loopback_server, guest + HOST_BODY + guest, COMPUTED, list(PROPS))
    assert len(alone) >= 7
    assert both == alone
    # ...while the guest's own rules do apply to the guest.
    probe = "() => getComputedStyle(document.querySelector('#guest rect')).display"
    assert _load(browser_portal, loopback_server, guest, probe, None) == "none"


# Text and a shape drawn only through <use> of a <symbol>, styled by class and
# type selectors (what svg-term writes), and a <use> of a <use> target's child.
SHADOW = (
    f'<svg {NS} width="128" height="128" viewBox="0 0 128 128">'
    "<style>.fg{fill:rgb(200,30,30)} text{font:bold 40px monospace} .bg{fill:rgb(20,90,200)}"
    " g > rect{stroke:rgb(0,160,0);stroke-width:6}</style>"
    '<symbol id="s"><rect class="bg" width="128" height="64"/>'
    '<text class="fg" x="8" y="48">AB</text></symbol>'
    '<g id="g"><rect id="inner" x="20" y="80" width="40" height="30"/></g>'
    '<use href="#s"/><use href="#g" x="60"/><use href="#inner" x="0" y="-80"/></svg>'
)


def _shot(portal: BrowserPortal, server: LoopbackServer, svg: str) -> Image.Image:
    page_html = f"<!doctype html><html><body style='margin:0'>{svg}</body></html>"
    url = server.put(
        server.new_prefix() + "/s.html", "text/html; charset=utf-8", page_html.encode()
    )

    async def run(browser: Any) -> bytes:
        ctx = await browser.new_context(viewport={"width": 128, "height": 128})
        try:
            page = await ctx.new_page()
            await page.goto(url, wait_until="load")
            return bytes(await page.screenshot(type="png"))
        finally:
            await ctx.close()

    return Image.open(io.BytesIO(portal.run_async(run))).convert("RGB")


@pytest.mark.browser
def test_confined_style_still_matches_use_shadow_trees(
    browser_portal: BrowserPortal, loopback_server: LoopbackServer
) -> None:
    clean = sanitize_svg(SHADOW).svg
    assert ":where(" in clean
    before = _shot(browser_portal, loopback_server, SHADOW)
    after = _shot(browser_portal, loopback_server, clean)
    assert before.getcolors(1 << 16) is not None
    colours = {c for _, c in before.getcolors(1 << 16) or []}
    assert (200, 30, 30) in colours and (20, 90, 200) in colours  # the styles did apply
    assert ImageChops.difference(before, after).getbbox() is None, clean
