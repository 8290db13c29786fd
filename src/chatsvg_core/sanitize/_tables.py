"""Allowlist tables drawn from SVG 1.1 and SVG 2: which element takes which attribute.

These tables describe what the *spec* allows; a :class:`SanitizePolicy` then
narrows them (``elements``, ``attributes``). Nothing outside these tables can
ever be allowed by a policy, so extending a policy cannot re-enable script.

Names are the exact XML (case-sensitive) names; the HTML parser maps every
camelCase name used here back to the same case when an SVG is inlined.
"""

from __future__ import annotations

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"

XLINK_HREF = f"{{{XLINK_NS}}}href"
XML_SPACE = f"{{{XML_NS}}}space"
XML_LANG = f"{{{XML_NS}}}lang"

# Attributes (in lxml's Clark notation for namespaced ones) that may carry a URL.
HREF_ATTRIBUTES = frozenset({"href", XLINK_HREF})

CORE_ATTRIBUTES = frozenset({"id", "class", "style", "lang", XML_SPACE, XML_LANG})
CONDITIONAL_ATTRIBUTES = frozenset({"systemLanguage", "requiredFeatures"})

# Presentation attributes: CSS properties that may be written as attributes.
PRESENTATION_ATTRIBUTES = frozenset(
    {
        "alignment-baseline", "baseline-shift", "clip", "clip-path", "clip-rule", "color",
        "color-interpolation", "color-interpolation-filters", "color-rendering", "cursor",
        "direction", "display", "dominant-baseline", "enable-background", "fill",
        "fill-opacity", "fill-rule", "filter", "flood-color", "flood-opacity", "font",
        "font-family", "font-size", "font-size-adjust", "font-stretch", "font-style",
        "font-variant", "font-weight", "glyph-orientation-horizontal",
        "glyph-orientation-vertical", "image-rendering", "isolation", "kerning",
        "letter-spacing", "lighting-color", "marker", "marker-end", "marker-mid",
        "marker-start", "mask", "mask-type", "mix-blend-mode", "opacity", "overflow",
        "paint-order", "pointer-events", "shape-rendering", "stop-color", "stop-opacity",
        "stroke", "stroke-dasharray", "stroke-dashoffset", "stroke-linecap",
        "stroke-linejoin", "stroke-miterlimit", "stroke-opacity", "stroke-width",
        "text-anchor", "text-decoration", "text-rendering", "transform", "transform-box",
        "transform-origin", "unicode-bidi", "vector-effect", "visibility", "white-space",
        "word-spacing", "writing-mode",
    }
)  # fmt: skip

# Presentation attributes whose value may hold url(...): checked like CSS.
URL_VALUE_ATTRIBUTES = frozenset(
    {"fill", "stroke", "clip-path", "mask", "filter", "marker", "marker-start",
     "marker-mid", "marker-end", "cursor"}
)  # fmt: skip

# Attribute values that are path data, limited by ``max_path_length``.
PATH_ATTRIBUTES = frozenset({"d", "points", "path"})

_XYWH = frozenset({"x", "y", "width", "height"})
_FILTER_PRIMITIVE = _XYWH | {"result"}
_FE_IN = frozenset({"in"})
_TIMING = frozenset(
    {"begin", "dur", "end", "min", "max", "restart", "repeatCount", "repeatDur", "fill"}
)
_ANIM_VALUE = frozenset(
    {"calcMode", "values", "keyTimes", "keySplines", "from", "to", "by", "additive",
     "accumulate"}
)  # fmt: skip
_ANIM_TARGET = frozenset({"attributeName", "attributeType"}) | HREF_ATTRIBUTES
_LENGTH_ADJUST = frozenset({"textLength", "lengthAdjust"})
_GRADIENT = frozenset({"gradientUnits", "gradientTransform", "spreadMethod"}) | HREF_ATTRIBUTES
_TRANSFER = frozenset(
    {"type", "tableValues", "slope", "intercept", "amplitude", "exponent", "offset"}
)

# Element local name -> attributes allowed besides the core ones.
# ``True`` in the second slot: presentation and conditional attributes apply too.
ELEMENT_ATTRIBUTES: dict[str, tuple[frozenset[str], bool]] = {
    "svg": (_XYWH | {"viewBox", "preserveAspectRatio", "version", "baseProfile"}, True),
    "g": (frozenset(), True),
    "defs": (frozenset(), True),
    "symbol": (_XYWH | {"viewBox", "preserveAspectRatio", "refX", "refY"}, True),
    "use": (_XYWH | HREF_ATTRIBUTES, True),
    "image": (_XYWH | HREF_ATTRIBUTES | {"preserveAspectRatio"}, True),
    "switch": (frozenset(), True),
    "a": (HREF_ATTRIBUTES, True),
    "view": (frozenset({"viewBox", "preserveAspectRatio"}), False),
    "path": (frozenset({"d", "pathLength"}), True),
    "rect": (_XYWH | {"rx", "ry", "pathLength"}, True),
    "circle": (frozenset({"cx", "cy", "r", "pathLength"}), True),
    "ellipse": (frozenset({"cx", "cy", "rx", "ry", "pathLength"}), True),
    "line": (frozenset({"x1", "y1", "x2", "y2", "pathLength"}), True),
    "polyline": (frozenset({"points", "pathLength"}), True),
    "polygon": (frozenset({"points", "pathLength"}), True),
    "text": (frozenset({"x", "y", "dx", "dy", "rotate"}) | _LENGTH_ADJUST, True),
    "tspan": (frozenset({"x", "y", "dx", "dy", "rotate"}) | _LENGTH_ADJUST, True),
    "textPath": (
        frozenset({"startOffset", "method", "spacing", "side", "path"})
        | HREF_ATTRIBUTES
        | _LENGTH_ADJUST,
        True,
    ),
    "title": (frozenset(), False),
    "desc": (frozenset(), False),
    "style": (frozenset({"type", "media"}), False),
    "linearGradient": (_GRADIENT | {"x1", "y1", "x2", "y2"}, True),
    "radialGradient": (_GRADIENT | {"cx", "cy", "r", "fx", "fy", "fr"}, True),
    "stop": (frozenset({"offset"}), True),
    "pattern": (
        _XYWH
        | HREF_ATTRIBUTES
        | {
            "patternUnits",
            "patternContentUnits",
            "patternTransform",
            "viewBox",
            "preserveAspectRatio",
        },
        True,
    ),
    "clipPath": (frozenset({"clipPathUnits"}), True),
    "mask": (_XYWH | {"maskUnits", "maskContentUnits"}, True),
    "marker": (
        frozenset(
            {
                "viewBox",
                "preserveAspectRatio",
                "refX",
                "refY",
                "markerUnits",
                "markerWidth",
                "markerHeight",
                "orient",
            }
        ),
        True,
    ),
    "filter": (_XYWH | HREF_ATTRIBUTES | {"filterUnits", "primitiveUnits"}, True),
    "feBlend": (_FILTER_PRIMITIVE | _FE_IN | {"in2", "mode"}, True),
    "feColorMatrix": (_FILTER_PRIMITIVE | _FE_IN | {"type", "values"}, True),
    "feComponentTransfer": (_FILTER_PRIMITIVE | _FE_IN, True),
    "feFuncR": (_TRANSFER, False),
    "feFuncG": (_TRANSFER, False),
    "feFuncB": (_TRANSFER, False),
    "feFuncA": (_TRANSFER, False),
    "feComposite": (_FILTER_PRIMITIVE | _FE_IN | {"in2", "operator", "k1", "k2", "k3", "k4"}, True),
    "feConvolveMatrix": (
        _FILTER_PRIMITIVE
        | _FE_IN
        | {
            "order",
            "kernelMatrix",
            "divisor",
            "bias",
            "targetX",
            "targetY",
            "edgeMode",
            "kernelUnitLength",
            "preserveAlpha",
        },
        True,
    ),
    "feDiffuseLighting": (
        _FILTER_PRIMITIVE | _FE_IN | {"surfaceScale", "diffuseConstant", "kernelUnitLength"},
        True,
    ),
    "feSpecularLighting": (
        _FILTER_PRIMITIVE
        | _FE_IN
        | {"surfaceScale", "specularConstant", "specularExponent", "kernelUnitLength"},
        True,
    ),
    "feDistantLight": (frozenset({"azimuth", "elevation"}), False),
    "fePointLight": (frozenset({"x", "y", "z"}), False),
    "feSpotLight": (
        frozenset(
            {
                "x",
                "y",
                "z",
                "pointsAtX",
                "pointsAtY",
                "pointsAtZ",
                "specularExponent",
                "limitingConeAngle",
            }
        ),
        False,
    ),
    "feDisplacementMap": (
        _FILTER_PRIMITIVE | _FE_IN | {"in2", "scale", "xChannelSelector", "yChannelSelector"},
        True,
    ),
    "feDropShadow": (_FILTER_PRIMITIVE | _FE_IN | {"dx", "dy", "stdDeviation"}, True),
    "feFlood": (_FILTER_PRIMITIVE, True),
    "feGaussianBlur": (_FILTER_PRIMITIVE | _FE_IN | {"stdDeviation", "edgeMode"}, True),
    "feImage": (_FILTER_PRIMITIVE | HREF_ATTRIBUTES | {"preserveAspectRatio"}, True),
    "feMerge": (_FILTER_PRIMITIVE, True),
    "feMergeNode": (_FE_IN, False),
    "feMorphology": (_FILTER_PRIMITIVE | _FE_IN | {"operator", "radius"}, True),
    "feOffset": (_FILTER_PRIMITIVE | _FE_IN | {"dx", "dy"}, True),
    "feTile": (_FILTER_PRIMITIVE | _FE_IN, True),
    "feTurbulence": (
        _FILTER_PRIMITIVE | {"baseFrequency", "numOctaves", "seed", "stitchTiles", "type"},
        True,
    ),
    "animate": (_ANIM_TARGET | _TIMING | _ANIM_VALUE, False),
    "set": (_ANIM_TARGET | _TIMING | {"to"}, False),
    "animateTransform": (_ANIM_TARGET | _TIMING | _ANIM_VALUE | {"type"}, False),
    "animateMotion": (
        HREF_ATTRIBUTES | _TIMING | _ANIM_VALUE | {"path", "keyPoints", "rotate", "origin"},
        False,
    ),
    "mpath": (HREF_ATTRIBUTES, False),
}

KNOWN_ELEMENTS = frozenset(ELEMENT_ATTRIBUTES)
ANIMATION_ELEMENTS = frozenset({"animate", "set", "animateTransform", "animateMotion"})
# Elements whose character data is rendered or meaningful.
TEXT_ELEMENTS = frozenset({"text", "tspan", "textPath", "title", "desc", "style", "a"})
# HTML integration points: their content is parsed as HTML when inlined, so only text.
TEXT_ONLY_ELEMENTS = frozenset({"title", "desc", "style"})
FILTER_PRIMITIVES = frozenset(n for n in ELEMENT_ATTRIBUTES if n.startswith("fe"))

# Every attribute name any element may carry, for policy validation.
KNOWN_ATTRIBUTES = frozenset(
    CORE_ATTRIBUTES
    | CONDITIONAL_ATTRIBUTES
    | PRESENTATION_ATTRIBUTES
    | frozenset().union(*(attrs for attrs, _ in ELEMENT_ATTRIBUTES.values()))
)

# Attributes a SMIL animation may never target (compared lowercased, prefix removed).
ANIMATION_FORBIDDEN_TARGETS = frozenset(
    {"href", "style", "class", "id", "attributename", "values", "from", "to", "by",
     "begin", "end", "src", "action", "formaction", "xmlns", "base", "target"}
    | {a.lower() for a in URL_VALUE_ATTRIBUTES if a not in {"fill", "stroke"}}
)  # fmt: skip

# CSS properties allowed in ``style`` attributes and ``<style>``: the presentation
# properties plus geometry (SVG 2) and animation/transition properties.
CSS_PROPERTIES = frozenset(
    PRESENTATION_ATTRIBUTES
    | {"x", "y", "cx", "cy", "r", "rx", "ry", "width", "height", "d",
       "font-feature-settings", "font-kerning", "font-variant-ligatures",
       "font-variant-numeric", "font-variant-caps", "line-height", "text-transform",
       "text-decoration-line", "text-decoration-color", "text-decoration-style",
       "stroke-dashadjust", "mask-type", "inline-size", "shape-inside",
       # The box of an inlined root <svg> (mermaid sizes its diagrams with max-width):
       # lengths and colours only, like width/height and fill.
       "max-width", "max-height", "min-width", "min-height", "background-color",
       "animation", "animation-name", "animation-duration", "animation-timing-function",
       "animation-delay", "animation-iteration-count", "animation-direction",
       "animation-fill-mode", "animation-play-state", "transition", "transition-property",
       "transition-duration", "transition-timing-function", "transition-delay"}
) - {"cursor"}  # fmt: skip

# CSS functions allowed in values (compared lowercased); ``url`` is checked separately.
CSS_FUNCTIONS = frozenset(
    {"rgb", "rgba", "hsl", "hsla", "hwb", "lab", "lch", "oklab", "oklch", "color",
     "color-mix", "calc", "min", "max", "clamp",
     "matrix", "matrix3d", "translate", "translatex", "translatey", "translatez",
     "translate3d", "scale", "scalex", "scaley", "scalez", "scale3d", "rotate", "rotatex",
     "rotatey", "rotatez", "rotate3d", "skew", "skewx", "skewy", "perspective",
     "blur", "brightness", "contrast", "drop-shadow", "grayscale", "hue-rotate", "invert",
     "opacity", "saturate", "sepia",
     "circle", "ellipse", "inset", "polygon", "path",
     "cubic-bezier", "steps", "linear", "url"}
)  # fmt: skip

# Pseudo-classes allowed in ``<style>`` selectors (plain and functional).
CSS_PSEUDO_CLASSES = frozenset(
    {"hover", "active", "focus", "first-child", "last-child", "only-child", "first-of-type",
     "last-of-type", "only-of-type", "empty", "root"}
)  # fmt: skip
CSS_PSEUDO_FUNCTIONS = frozenset(
    {"not", "is", "where", "nth-child", "nth-last-child", "nth-of-type", "nth-last-of-type"}
)
