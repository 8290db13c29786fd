"""An offline provider: draws a simple scene from words it recognises. It is not a model."""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from chatsvg_core.generate._prompt import fold_prompt
from chatsvg_core.generate._provider import ProviderOutput, TokenUsage
from chatsvg_core.generate._request import Detail, GenerationRequest

__all__ = ["OfflineSketchProvider", "sketch_svg"]

COLOURS = {
    "red": "#d64541",
    "orange": "#f39c34",
    "yellow": "#f7d038",
    "gold": "#e6b422",
    "green": "#3fa34d",
    "teal": "#1f9e94",
    "blue": "#2f6fd6",
    "navy": "#1d2f6f",
    "purple": "#7d4cc2",
    "violet": "#8f5fd7",
    "pink": "#ef7fb0",
    "brown": "#8a5a35",
    "black": "#222222",
    "white": "#f7f7f2",
    "gray": "#8c8c8c",
    "grey": "#8c8c8c",
    "silver": "#c0c4cc",
}

# Sky gradient (top, bottom), ground, water, and whether it is dark.
_TIMES = {
    "day": ("#5fb4f0", "#d6efff", "#79b85a", "#2e86c1", False),
    "dawn": ("#f7a07c", "#ffe3b8", "#8fb36a", "#4d88b8", False),
    "dusk": ("#2c1d52", "#f2773a", "#3d4a2e", "#3b3f78", True),
    "night": ("#070b22", "#24356a", "#1c2a1f", "#15204a", True),
}
_TIME_WORDS = {
    "dawn": "dawn",
    "sunrise": "dawn",
    "morning": "dawn",
    "day": "day",
    "noon": "day",
    "midday": "day",
    "afternoon": "day",
    "sunny": "day",
    "dusk": "dusk",
    "sunset": "dusk",
    "evening": "dusk",
    "twilight": "dusk",
    "night": "night",
    "midnight": "night",
    "nighttime": "night",
    "starry": "night",
}
_OBJECT_WORDS = {
    "sun": "sun",
    "moon": "moon",
    "star": "star",
    "stars": "star",
    "cloud": "cloud",
    "clouds": "cloud",
    "cloudy": "cloud",
    "mountain": "mountain",
    "mountains": "mountain",
    "hill": "mountain",
    "hills": "mountain",
    "sea": "sea",
    "ocean": "sea",
    "wave": "sea",
    "waves": "sea",
    "lake": "sea",
    "water": "sea",
    "beach": "sea",
    "tree": "tree",
    "trees": "tree",
    "forest": "tree",
    "pine": "tree",
    "house": "house",
    "houses": "house",
    "home": "house",
    "cottage": "house",
    "cabin": "house",
    "lighthouse": "lighthouse",
    "boat": "boat",
    "ship": "boat",
    "sailboat": "boat",
    "cat": "cat",
    "cats": "cat",
    "kitten": "cat",
    "bird": "bird",
    "birds": "bird",
    "flower": "flower",
    "flowers": "flower",
    "heart": "heart",
}
_PLURAL = {
    "stars",
    "clouds",
    "mountains",
    "hills",
    "trees",
    "forest",
    "houses",
    "birds",
    "flowers",
    "cats",
}
_COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "several": 4, "many": 5, "some": 3}
_WORD = re.compile(r"[a-z]+")


@dataclass
class _Scene:
    time: str = "day"
    objects: dict[str, int] = field(default_factory=dict)
    colours: dict[str, str] = field(default_factory=dict)
    recognised: list[str] = field(default_factory=list)


def _read(prompt: str) -> _Scene:
    scene = _Scene()
    words = _WORD.findall(fold_prompt(prompt))[:400]
    pending_colour: str | None = None
    pending_count: int | None = None
    for word in words:
        if word in _TIME_WORDS:
            scene.time = _TIME_WORDS[word]
            scene.recognised.append(word)
        elif word in COLOURS:
            pending_colour = COLOURS[word]
            scene.recognised.append(word)
        elif word in _COUNTS:
            pending_count = _COUNTS[word]
        elif word in _OBJECT_WORDS:
            kind = _OBJECT_WORDS[word]
            count = pending_count or (3 if word in _PLURAL else 1)
            scene.objects[kind] = max(scene.objects.get(kind, 0), count)
            if pending_colour:
                scene.colours[kind] = pending_colour
            scene.recognised.append(word)
            pending_colour = pending_count = None
    return scene


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sketch_svg(request: GenerationRequest) -> str:
    """Draw ``request`` as a small SVG scene; the same request always gives the same bytes.

    Recognised words (case and width folded): times of day (dawn, sunrise, day,
    dusk, sunset, evening, night...) set the sky gradient; objects (sun, moon,
    stars, clouds, mountains, sea/waves, trees/forest, house, lighthouse, boat,
    cat, birds, flowers, heart) are placed in the scene; a colour word just
    before an object colours it ("a red house"); counts ("three trees") and
    plurals add copies. A prompt with no known object gets an abstract
    composition derived from its hash.
    """
    w, h = float(request.width), float(request.height)
    u = min(w, h) / 100
    seed = hashlib.sha256(
        f"{request.prompt}\x00{request.width}x{request.height}\x00{request.style}\x00"
        f"{request.detail}".encode()
    ).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    scene = _read(request.prompt)
    top, bottom, ground, water, dark = _TIMES[scene.time]
    obj = scene.objects
    horizon = h * 0.68
    out: list[str] = []
    defs: list[str] = [
        f'<linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{top}"/><stop offset="1" stop-color="{bottom}"/>'
        "</linearGradient>"
    ]
    out.append(f'<rect width="{_f(w)}" height="{_f(h)}" fill="url(#sky)"/>')

    if not obj:
        # Fallback: an abstract composition from the prompt's hash.
        palette = [c for c in COLOURS.values() if c not in {"#222222", "#f7f7f2"}]
        rng.shuffle(palette)
        for i in range(5 + (request.detail == Detail.DETAILED) * 4):
            cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.85) * h
            r = rng.uniform(6, 22) * u
            colour = palette[i % len(palette)]
            if i % 3 == 2:
                out.append(
                    f'<rect x="{_f(cx - r)}" y="{_f(cy - r)}" width="{_f(2 * r)}" '
                    f'height="{_f(2 * r)}" rx="{_f(r / 4)}" fill="{colour}" opacity="0.8" '
                    f'transform="rotate({rng.randint(0, 89)} {_f(cx)} {_f(cy)})"/>'
                )
            else:
                out.append(
                    f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(r)}" fill="{colour}" '
                    'opacity="0.8"/>'
                )
        out.append(
            f'<path d="M0 {_f(h * 0.8)} Q {_f(w * 0.5)} {_f(h * 0.6)} {_f(w)} {_f(h * 0.8)} '
            f'V {_f(h)} H 0 Z" fill="{palette[-1]}" opacity="0.6"/>'
        )
    else:
        if dark or "star" in obj:
            n = 14 if "star" in obj else 8
            for _ in range(n):
                x, y, r = (
                    rng.uniform(0, w),
                    rng.uniform(0, horizon * 0.6),
                    rng.uniform(0.5, 1.4) * u,
                )
                out.append(_star(x, y, r, scene.colours.get("star", "#fff6c8")))
        if "sun" in obj or (scene.time in {"dawn", "dusk"} and "moon" not in obj):
            low = scene.time in {"dawn", "dusk"}
            cx, cy = (w * 0.72, horizon - 6 * u) if low else (w * 0.78, h * 0.2)
            colour = scene.colours.get("sun", "#ff9f43" if low else "#ffd93b")
            out.append(f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(11 * u)}" fill="{colour}"/>')
        if "moon" in obj or (scene.time == "night" and "sun" not in obj):
            cx, cy, r = w * 0.2, h * 0.18, 8 * u
            defs.append(
                f'<mask id="crescent"><rect width="{_f(w)}" height="{_f(h)}" fill="#fff"/>'
                f'<circle cx="{_f(cx + r * 0.45)}" cy="{_f(cy - r * 0.2)}" r="{_f(r)}" '
                'fill="#000"/></mask>'
            )
            colour = scene.colours.get("moon", "#f4f1d0")
            out.append(
                f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(r)}" fill="{colour}" '
                'mask="url(#crescent)"/>'
            )
        for i in range(obj.get("cloud", 0)):
            cx, cy = w * (0.15 + 0.3 * i + rng.uniform(-0.05, 0.05)), h * rng.uniform(0.12, 0.3)
            out.append(
                _cloud(cx, cy, u, scene.colours.get("cloud", "#9aa0b5" if dark else "#ffffff"))
            )
        for i in range(obj.get("bird", 0)):
            x, y = w * rng.uniform(0.3, 0.7), h * (0.15 + 0.05 * i)
            out.append(
                f'<path d="M{_f(x - 3 * u)} {_f(y)} q {_f(1.5 * u)} {_f(-2 * u)} {_f(3 * u)} 0 '
                f'q {_f(1.5 * u)} {_f(-2 * u)} {_f(3 * u)} 0" fill="none" '
                f'stroke="{scene.colours.get("bird", "#333333")}" stroke-width="{_f(0.6 * u)}"/>'
            )
        for i in range(obj.get("mountain", 0)):
            base = w * (i / max(1, obj["mountain"]))
            peak = horizon - rng.uniform(18, 32) * u
            width = w / max(1, obj["mountain"]) * 1.6
            colour = scene.colours.get("mountain", "#4a4e6d" if dark else "#7d8ca3")
            out.append(
                f'<polygon points="{_f(base - width * 0.2)},{_f(horizon)} '
                f'{_f(base + width * 0.3)},{_f(peak)} {_f(base + width * 0.8)},{_f(horizon)}" '
                f'fill="{colour}"/>'
            )
        sea = "sea" in obj or "boat" in obj or "lighthouse" in obj
        land_right = w * (0.45 if sea else 1.0)
        if sea:
            colour = scene.colours.get("sea", water)
            out.append(
                f'<rect y="{_f(horizon)}" width="{_f(w)}" height="{_f(h - horizon)}" '
                f'fill="{colour}"/>'
            )
            for row in range(3):
                y = horizon + (row + 1) * (h - horizon) / 4
                segments = " ".join(
                    f"q {_f(2.5 * u)} {_f(-1.5 * u)} {_f(5 * u)} 0"
                    for _ in range(int(w / (5 * u)) + 1)
                )
                out.append(
                    f'<path d="M0 {_f(y)} {segments}" fill="none" stroke="#ffffff" '
                    f'stroke-opacity="0.5" stroke-width="{_f(0.5 * u)}"/>'
                )
        if not sea or any(k in obj for k in ("tree", "house", "lighthouse", "cat", "flower")):
            out.append(
                f'<path d="M0 {_f(horizon - 2 * u)} Q {_f(land_right * 0.5)} {_f(horizon - 5 * u)} '
                f'{_f(land_right)} {_f(horizon)} V {_f(h)} H 0 Z" fill="{ground}"/>'
            )
        if "lighthouse" in obj:
            out.append(
                _lighthouse(land_right * 0.75, horizon, u, scene.colours.get("lighthouse"), dark)
            )
        for i in range(obj.get("house", 0)):
            x = land_right * (0.12 + 0.25 * i)
            out.append(_house(x, horizon, u, scene.colours.get("house", "#e9d8a6"), dark))
        trees = obj.get("tree", 0)
        for i in range(trees):
            x = land_right * (0.55 + 0.4 * (i + 0.5) / trees) if trees else 0
            out.append(
                _tree(x, horizon + rng.uniform(0, 3) * u, u, scene.colours.get("tree", "#2f7d32"))
            )
        for _ in range(obj.get("flower", 0)):
            x = land_right * rng.uniform(0.05, 0.9)
            y = horizon + rng.uniform(8, 20) * u
            out.append(_flower(x, y, u, scene.colours.get("flower", "#ef7fb0")))
        for i in range(obj.get("boat", 0)):
            x = w * (0.6 + 0.15 * i)
            out.append(_boat(x, horizon + 8 * u, u, scene.colours.get("boat", "#b5523b")))
        for i in range(obj.get("cat", 0)):
            x = land_right * (0.35 + 0.15 * i)
            out.append(_cat(x, horizon + 14 * u, u, scene.colours.get("cat", "#3b3b3b")))
        if "heart" in obj:
            cx, cy, s = w * 0.5, h * 0.42, 12 * u
            out.append(
                f'<path d="M{_f(cx)} {_f(cy + s)} C {_f(cx - 2 * s)} {_f(cy - 0.2 * s)} '
                f"{_f(cx - 0.8 * s)} {_f(cy - 1.4 * s)} {_f(cx)} {_f(cy - 0.5 * s)} "
                f"C {_f(cx + 0.8 * s)} {_f(cy - 1.4 * s)} {_f(cx + 2 * s)} {_f(cy - 0.2 * s)} "
                f'{_f(cx)} {_f(cy + s)} Z" fill="{scene.colours.get("heart", "#e0245e")}"/>'
            )

    title = escape(_XML_INVALID.sub("", request.prompt)[:200])
    recognised = ", ".join(dict.fromkeys(scene.recognised)) or "nothing (abstract fallback)"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(w)} {_f(h)}" '
        f'width="{request.width}" height="{request.height}">'
        f"<title>{title}</title>"
        f"<desc>Offline sketch (not a model). Recognised: {escape(recognised)}.</desc>"
        f"<defs>{''.join(defs)}</defs>{''.join(out)}</svg>"
    )


def _star(x: float, y: float, r: float, colour: str) -> str:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = math.pi / 2 + k * math.pi / 5
        points.append(f"{_f(x + radius * math.cos(angle))},{_f(y - radius * math.sin(angle))}")
    return f'<polygon points="{" ".join(points)}" fill="{colour}"/>'


def _cloud(cx: float, cy: float, u: float, colour: str) -> str:
    return (
        f'<g fill="{colour}" opacity="0.9">'
        f'<ellipse cx="{_f(cx)}" cy="{_f(cy)}" rx="{_f(9 * u)}" ry="{_f(4 * u)}"/>'
        f'<circle cx="{_f(cx - 3 * u)}" cy="{_f(cy - 2 * u)}" r="{_f(4 * u)}"/>'
        f'<circle cx="{_f(cx + 3 * u)}" cy="{_f(cy - 3 * u)}" r="{_f(5 * u)}"/></g>'
    )


def _house(x: float, base: float, u: float, colour: str, dark: bool) -> str:
    bw, bh = 18 * u, 13 * u
    window = "#ffd966" if dark else "#bfe3ff"
    return (
        f'<g><rect x="{_f(x)}" y="{_f(base - bh)}" width="{_f(bw)}" height="{_f(bh)}" '
        f'fill="{colour}"/>'
        f'<polygon points="{_f(x - 2 * u)},{_f(base - bh)} '
        f"{_f(x + bw / 2)},{_f(base - bh - 9 * u)} "
        f'{_f(x + bw + 2 * u)},{_f(base - bh)}" fill="#a33b2f"/>'
        f'<rect x="{_f(x + 3 * u)}" y="{_f(base - 7 * u)}" width="{_f(4 * u)}" '
        f'height="{_f(7 * u)}" '
        'fill="#6b3e26"/>'
        f'<rect x="{_f(x + 10 * u)}" y="{_f(base - 10 * u)}" width="{_f(5 * u)}" '
        f'height="{_f(4 * u)}" fill="{window}"/></g>'
    )


def _tree(x: float, base: float, u: float, colour: str) -> str:
    return (
        f'<g><rect x="{_f(x - u)}" y="{_f(base - 8 * u)}" width="{_f(2 * u)}" height="{_f(8 * u)}" '
        'fill="#6b4226"/>'
        f'<circle cx="{_f(x)}" cy="{_f(base - 12 * u)}" r="{_f(6 * u)}" fill="{colour}"/></g>'
    )


def _lighthouse(x: float, base: float, u: float, colour: str | None, dark: bool) -> str:
    top, half_base, half_top, height = base - 34 * u, 5 * u, 3 * u, 34 * u
    stripe = colour or "#d64541"
    parts = [
        f'<polygon points="{_f(x - half_base)},{_f(base)} {_f(x - half_top)},{_f(top)} '
        f'{_f(x + half_top)},{_f(top)} {_f(x + half_base)},{_f(base)}" fill="#f7f7f2"/>'
    ]
    for k in (1, 3):
        y0, y1 = base - height * k / 5, base - height * (k + 1) / 5
        w0 = half_base - (half_base - half_top) * k / 5
        w1 = half_base - (half_base - half_top) * (k + 1) / 5
        parts.append(
            f'<polygon points="{_f(x - w0)},{_f(y0)} {_f(x - w1)},{_f(y1)} {_f(x + w1)},{_f(y1)} '
            f'{_f(x + w0)},{_f(y0)}" fill="{stripe}"/>'
        )
    parts.append(
        f'<rect x="{_f(x - 3 * u)}" y="{_f(top - 5 * u)}" width="{_f(6 * u)}" height="{_f(5 * u)}" '
        'fill="#ffe066"/>'
        f'<polygon points="{_f(x - 4 * u)},{_f(top - 5 * u)} {_f(x)},{_f(top - 9 * u)} '
        f'{_f(x + 4 * u)},{_f(top - 5 * u)}" fill="#333333"/>'
    )
    if dark:
        parts.append(
            f'<polygon points="{_f(x)},{_f(top - 2.5 * u)} {_f(x - 60 * u)},{_f(top - 14 * u)} '
            f'{_f(x - 60 * u)},{_f(top + 9 * u)}" fill="#fff3a8" opacity="0.35"/>'
        )
    return f"<g>{''.join(parts)}</g>"


def _flower(x: float, y: float, u: float, colour: str) -> str:
    petals = "".join(
        f'<circle cx="{_f(x + dx * u)}" cy="{_f(y - 6 * u + dy * u)}" r="{_f(1.4 * u)}" '
        f'fill="{colour}"/>'
        for dx, dy in ((-1.5, 0), (1.5, 0), (0, -1.5), (0, 1.5))
    )
    return (
        f'<g><path d="M{_f(x)} {_f(y)} V {_f(y - 6 * u)}" stroke="#2f7d32" '
        f'stroke-width="{_f(0.5 * u)}"/>{petals}'
        f'<circle cx="{_f(x)}" cy="{_f(y - 6 * u)}" r="{_f(1.1 * u)}" fill="#f7d038"/></g>'
    )


def _boat(x: float, y: float, u: float, colour: str) -> str:
    return (
        f'<g><path d="M{_f(x - 9 * u)} {_f(y)} H {_f(x + 9 * u)} L {_f(x + 6 * u)} {_f(y + 4 * u)} '
        f'H {_f(x - 6 * u)} Z" fill="{colour}"/>'
        f'<path d="M{_f(x)} {_f(y)} V {_f(y - 14 * u)}" stroke="#444444" '
        f'stroke-width="{_f(0.6 * u)}"/>'
        f'<polygon points="{_f(x + 0.5 * u)},{_f(y - 13 * u)} {_f(x + 8 * u)},{_f(y - 2 * u)} '
        f'{_f(x + 0.5 * u)},{_f(y - 2 * u)}" fill="#f7f7f2"/></g>'
    )


def _cat(x: float, y: float, u: float, colour: str) -> str:
    return (
        f'<g fill="{colour}"><ellipse cx="{_f(x)}" cy="{_f(y)}" rx="{_f(5 * u)}" '
        f'ry="{_f(6 * u)}"/>'
        f'<circle cx="{_f(x)}" cy="{_f(y - 8 * u)}" r="{_f(3.5 * u)}"/>'
        f'<polygon points="{_f(x - 3.2 * u)},{_f(y - 9.5 * u)} '
        f"{_f(x - 2.6 * u)},{_f(y - 13.5 * u)} "
        f'{_f(x - 0.8 * u)},{_f(y - 11 * u)}"/>'
        f'<polygon points="{_f(x + 3.2 * u)},{_f(y - 9.5 * u)} '
        f"{_f(x + 2.6 * u)},{_f(y - 13.5 * u)} "
        f'{_f(x + 0.8 * u)},{_f(y - 11 * u)}"/>'
        f'<path d="M{_f(x + 4 * u)} {_f(y + 4 * u)} q {_f(7 * u)} {_f(-1 * u)} {_f(5 * u)} '
        f'{_f(-9 * u)}" fill="none" stroke="{colour}" stroke-width="{_f(1.2 * u)}"/></g>'
    )


class OfflineSketchProvider:
    """A :class:`~chatsvg_core.generate.Provider` that needs no network and no model.

    **It is not a model.** It composes a simple scene from words it recognises
    (see :func:`sketch_svg`), deterministically: the same request always gives
    the same SVG. It exists so the README's first command, the notebooks and
    a host's own tests work on a fresh machine without keys or downloads.
    """

    name = "offline-sketch"
    model = "offline-sketch-1"

    def __init__(self, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self._timer = timer

    def __repr__(self) -> str:
        return "OfflineSketchProvider()"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        """Sketch ``request``; never fails for a valid request."""
        started = self._timer()
        svg = sketch_svg(request)
        return ProviderOutput(
            text=svg,
            model=self.model,
            provider=self.name,
            usage=TokenUsage(),
            latency_s=max(0.0, self._timer() - started),
            finish_reason="stop",
        )
