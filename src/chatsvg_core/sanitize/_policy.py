"""SanitizePolicy: what a sanitizer keeps, as frozen data, with named presets."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatsvg_core.sanitize import _tables as t

__all__ = ["PRESET_NAMES", "SanitizePolicy"]

PresetName = Literal["strict", "default"]
PRESET_NAMES: tuple[PresetName, ...] = ("strict", "default")

_RASTER_TYPES = frozenset({"png", "jpeg", "gif", "webp"})
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_IMAGE_SCHEMES = frozenset({"http", "https"})
_EXTRA_ATTRIBUTE = re.compile(r"^(?:data-[a-z0-9_.-]+|aria-[a-z]+|role)$")
_ID_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HOST = re.compile(r"^(?:\*\.)?[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$")

_STRICT_ELEMENTS = frozenset(
    {"svg", "g", "defs", "symbol", "use", "switch", "title", "desc", "path", "rect",
     "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan", "textPath",
     "linearGradient", "radialGradient", "stop", "pattern", "clipPath", "mask", "marker",
     "filter", "view"}
    | (t.FILTER_PRIMITIVES - {"feImage"})
)  # fmt: skip
_DEFAULT_ELEMENTS = t.KNOWN_ELEMENTS


def _to_frozenset(value: Any) -> Any:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple | set):
        return frozenset(value)
    return value


def _known_elements(value: frozenset[str]) -> frozenset[str]:
    unknown = value - t.KNOWN_ELEMENTS
    if unknown:
        raise ValueError(f"elements outside the SVG allowlist table: {sorted(unknown)}")
    if "svg" not in value:
        raise ValueError("elements must include 'svg'")
    return value


def _known_attributes(value: frozenset[str]) -> frozenset[str]:
    unknown = value - t.KNOWN_ATTRIBUTES
    if unknown:
        raise ValueError(f"attributes outside the SVG allowlist table: {sorted(unknown)}")
    return value


def _extra_attributes(value: frozenset[str]) -> frozenset[str]:
    bad = {a for a in value if not _EXTRA_ATTRIBUTE.match(a)}
    if bad:
        raise ValueError(f"extra_attributes must be data-*, aria-* or role: {sorted(bad)}")
    return value


def _known_css(value: frozenset[str]) -> frozenset[str]:
    unknown = value - t.CSS_PROPERTIES
    if unknown:
        raise ValueError(f"css_properties outside the allowlist table: {sorted(unknown)}")
    return value


def _raster_types(value: frozenset[str]) -> frozenset[str]:
    value = frozenset(v.lower() for v in value)
    if value - _RASTER_TYPES:
        raise ValueError(f"data_image_types must be a subset of {sorted(_RASTER_TYPES)}")
    return value


def _host_names(value: frozenset[str]) -> frozenset[str]:
    value = frozenset(v.lower().rstrip(".") for v in value)
    bad = {h for h in value if not _HOST.match(h)}
    if bad:
        raise ValueError(f"image_hosts must be host names (optionally *.domain): {bad}")
    return value


def _image_schemes(value: frozenset[str]) -> frozenset[str]:
    value = frozenset(v.lower() for v in value)
    if value - _IMAGE_SCHEMES:
        raise ValueError("image_schemes must be a subset of {'http', 'https'}")
    return value


def _link_schemes(value: frozenset[str]) -> frozenset[str]:
    value = frozenset(v.lower() for v in value)
    if value - _LINK_SCHEMES:
        raise ValueError(f"link_schemes must be a subset of {sorted(_LINK_SCHEMES)}")
    return value


def _id_prefix(value: str | None) -> str | None:
    if value is not None and not _ID_PREFIX.match(value):
        raise ValueError("id_prefix must match [A-Za-z][A-Za-z0-9_]*")
    return value


class SanitizePolicy(BaseModel):
    """What the sanitizer keeps: allowlists, URL rules, rewriting options and limits.

    A policy is frozen data. Start from a preset and extend it::

        policy = SanitizePolicy.preset("default").extend(
            image_hosts={"cdn.example.com"},
            extra_attributes={"data-layer"},
        )

    Every allowlist can only narrow the built-in spec tables (``_tables``):
    elements and attributes are validated against them, so no policy can
    re-enable ``<script>``, ``<foreignObject>`` or an ``on*`` handler.
    ``extend`` and ``model_validate`` validate; ``model_copy(update=...)`` does
    not, so do not use it to build policies.

    Attributes:
        name: a label shown in reports and the CLI.
        elements: allowed SVG element local names (a subset of the spec table).
        attributes: attribute names allowed wherever the spec allows them on the
            element (``{http://www.w3.org/1999/xlink}href`` in Clark notation for
            ``xlink:href``).
        extra_attributes: ``data-*``, ``aria-*`` or ``role`` attributes kept on every
            element, as plain text.
        css_properties: CSS properties kept in ``style`` attributes and ``<style>``.
        allow_style_element: keep ``<style>`` elements (their CSS sanitized).
        allow_style_attribute: keep ``style`` attributes (their CSS sanitized).
        data_image_types: raster types allowed as ``data:image/<type>;base64`` in
            ``<image>`` and ``<feImage>`` (subset of png, jpeg, gif, webp).
        image_hosts: hosts whose ``http(s)`` images ``<image>``/``<feImage>`` may load
            (``"*.example.com"`` matches subdomains). Empty: no external image.
        image_schemes: schemes allowed for ``image_hosts`` (``https`` by default).
        link_schemes: schemes allowed in ``<a href>`` besides ``#id``
            (subset of http, https, mailto, tel). Empty: same-document links only.
        id_prefix: when set, every id and class is prefixed (``p-name``) and every
            reference rewritten, so several inline SVGs on one page never clash.
            Ids already carrying the prefix are kept, which keeps sanitizing stable.
        confine_styles: rewrite ``<style>`` selectors so they only match inside this
            SVG when it is inlined in an HTML page (the root gets an id if needed).
        allow_svg_doctype: drop (instead of rejecting) the standard SVG 1.0/1.1
            DOCTYPE (``<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "...">``, as graphviz
            and old editors write it) when it has no internal subset. On in both presets:
            it is never loaded, and nothing of it reaches the output.
        allow_plain_doctype: drop (instead of rejecting) any DOCTYPE that has no internal
            subset. It is never loaded.
        max_bytes: input size limit, checked before parsing.
        max_elements: element count limit, checked while parsing.
        max_depth: nesting depth limit, checked while parsing.
        max_attributes: attributes per element (reading an element's attributes
            in lxml costs time quadratic in their number).
        max_attribute_length: length limit of any attribute value except path data
            and ``href`` (bounded by ``max_bytes``).
        max_path_length: length limit of path data (``d``, ``points``, ``path``).
        max_rendered_elements: limit on elements rendered once ``<use>`` references
            are expanded (guards against exponential ``<use>`` fan-out).
        max_seconds: wall-clock budget of one ``sanitize`` call, checked as the
            work goes (``None``: no budget). Every step is linear in the input;
            this bounds what a loaded machine or a large stylesheet can cost.
        max_namespace_declarations: ``xmlns`` declarations in the whole document
            (lxml's namespace clean-up and namespaced attribute writes cost time
            proportional to the declarations times the elements).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    elements: frozenset[str] = _DEFAULT_ELEMENTS
    attributes: frozenset[str] = t.KNOWN_ATTRIBUTES
    extra_attributes: frozenset[str] = frozenset()
    css_properties: frozenset[str] = t.CSS_PROPERTIES
    allow_style_element: bool = True
    allow_style_attribute: bool = True
    data_image_types: frozenset[str] = _RASTER_TYPES
    image_hosts: frozenset[str] = frozenset()
    image_schemes: frozenset[str] = frozenset({"https"})
    link_schemes: frozenset[str] = frozenset()
    id_prefix: str | None = None
    confine_styles: bool = True
    allow_svg_doctype: bool = True
    allow_plain_doctype: bool = False

    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_elements: int = Field(default=100_000, gt=0)
    max_depth: int = Field(default=128, gt=1, le=256)
    max_attributes: int = Field(default=256, gt=0, le=10_000)
    max_attribute_length: int = Field(default=65_536, gt=0)
    max_path_length: int = Field(default=1_048_576, gt=0)
    max_rendered_elements: int = Field(default=250_000, gt=0)
    max_namespace_declarations: int = Field(default=256, gt=0, le=10_000)
    max_seconds: float | None = Field(default=10.0, gt=0)

    _presets: ClassVar[dict[str, SanitizePolicy]] = {}

    @field_validator(
        "elements",
        "attributes",
        "extra_attributes",
        "css_properties",
        "data_image_types",
        "image_hosts",
        "image_schemes",
        "link_schemes",
        mode="before",
    )
    @classmethod
    def _coerce_sets(cls, value: Any) -> Any:
        return _to_frozenset(value)

    # The checks are plain module functions, called from one-line validators:
    # mutation testing (mutmut, docs/mutation.md) leaves decorated functions alone,
    # and these are the checks that keep a policy within the spec tables.
    @field_validator("elements")
    @classmethod
    def _check_elements(cls, value: frozenset[str]) -> frozenset[str]:
        return _known_elements(value)

    @field_validator("attributes")
    @classmethod
    def _check_attributes(cls, value: frozenset[str]) -> frozenset[str]:
        return _known_attributes(value)

    @field_validator("extra_attributes")
    @classmethod
    def _check_extra(cls, value: frozenset[str]) -> frozenset[str]:
        return _extra_attributes(value)

    @field_validator("css_properties")
    @classmethod
    def _check_css(cls, value: frozenset[str]) -> frozenset[str]:
        return _known_css(value)

    @field_validator("data_image_types")
    @classmethod
    def _check_data(cls, value: frozenset[str]) -> frozenset[str]:
        return _raster_types(value)

    @field_validator("image_hosts")
    @classmethod
    def _check_hosts(cls, value: frozenset[str]) -> frozenset[str]:
        return _host_names(value)

    @field_validator("image_schemes")
    @classmethod
    def _check_image_schemes(cls, value: frozenset[str]) -> frozenset[str]:
        return _image_schemes(value)

    @field_validator("link_schemes")
    @classmethod
    def _check_link_schemes(cls, value: frozenset[str]) -> frozenset[str]:
        return _link_schemes(value)

    @field_validator("id_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        return _id_prefix(value)

    # --- presets and extension --------------------------------------------

    @classmethod
    def preset(cls, name: PresetName | str) -> SanitizePolicy:
        """The named preset: ``"default"`` or ``"strict"``.

        ``default`` keeps everything that draws, ``<style>``, SMIL animation,
        ``<a>`` with same-document links and raster ``data:`` images.
        ``strict`` also drops ``<style>`` elements, animation, ``<a>``,
        ``<image>``/``<feImage>`` and every ``data:`` URL.
        """
        if name not in PRESET_NAMES:
            raise ValueError(f"unknown preset {name!r}; choose one of {PRESET_NAMES}")
        if not cls._presets:
            cls._presets["default"] = cls(name="default")
            cls._presets["strict"] = cls(
                name="strict",
                elements=_STRICT_ELEMENTS,
                allow_style_element=False,
                data_image_types=frozenset(),
            )
        return cls._presets[name]

    @classmethod
    def default(cls) -> SanitizePolicy:
        """The ``default`` preset (what ``sanitize_svg`` uses without a policy)."""
        return cls.preset("default")

    @classmethod
    def strict(cls) -> SanitizePolicy:
        """The ``strict`` preset."""
        return cls.preset("strict")

    def extend(self, **changes: Any) -> SanitizePolicy:
        """A validated copy: set fields, and *add* to set-valued fields.

        Set-valued fields (``elements``, ``attributes``, ``image_hosts``...) are
        unioned with the given values; other fields are replaced::

            SanitizePolicy.strict().extend(elements={"image"}, data_image_types={"png"})
        """
        data = self.model_dump()
        for key, value in changes.items():
            current = data.get(key)
            if isinstance(current, frozenset | set):
                data[key] = frozenset(current) | _to_frozenset(value)
            else:
                data[key] = value
        return type(self).model_validate(data)
