"""Reason codes: why the sanitizer refused a document or changed part of it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Action", "ReasonCode"]


class ReasonCode(StrEnum):
    """A stable, machine-readable reason, used both in reports and in :class:`SVGRejected`.

    The first group makes the whole document rejected (``SVGRejected.reason``);
    the second group appears in :class:`SanitizeReport` entries for parts that
    were removed or rewritten.
    """

    # --- rejections -------------------------------------------------------
    NOT_WELL_FORMED = "not_well_formed"
    """The input is not well-formed XML (or not decodable text)."""
    NOT_SVG_ROOT = "not_svg_root"
    """The root element is not ``<svg>`` in the SVG namespace."""
    ENCODING_NOT_ALLOWED = "encoding_not_allowed"
    """The XML declaration names an encoding outside the allowlist (``utf-7``, ``punycode``)."""
    DOCTYPE_FORBIDDEN = "doctype_forbidden"
    """The input has a DOCTYPE (document type declaration)."""
    ENTITY_FORBIDDEN = "entity_forbidden"
    """The input declares or references a non-predefined entity."""
    TOO_MANY_BYTES = "too_many_bytes"
    """The input is larger than ``max_bytes``."""
    TOO_MANY_ELEMENTS = "too_many_elements"
    """The input has more elements than ``max_elements``."""
    TOO_DEEP = "too_deep"
    """Elements are nested deeper than ``max_depth``."""
    ATTRIBUTE_TOO_LONG = "attribute_too_long"
    """An attribute value is longer than ``max_attribute_length``."""
    TOO_MANY_ATTRIBUTES = "too_many_attributes"
    """An element has more attributes than ``max_attributes``."""
    PATH_TOO_LONG = "path_too_long"
    """Path data (``d``, ``points``, ``path``) is longer than ``max_path_length``."""
    TOO_MANY_NAMESPACES = "too_many_namespaces"
    """The input declares more namespaces than ``max_namespace_declarations``."""
    TOO_MUCH_RENDERING = "too_much_rendering"
    """``<use>`` references would expand to more than ``max_rendered_elements``."""
    TIME_BUDGET_EXCEEDED = "time_budget_exceeded"
    """Sanitizing took longer than ``max_seconds`` (wall clock)."""
    EMPTY_RESULT = "empty_result"
    """Nothing drawable is left after sanitizing."""

    # --- removals and rewrites --------------------------------------------
    ELEMENT_NOT_ALLOWED = "element_not_allowed"
    """An SVG element outside the policy's allowlist (``<script>``, ``<foreignObject>``...)."""
    FOREIGN_NAMESPACE = "foreign_namespace"
    """An element or attribute from another namespace (Inkscape, Sodipodi, RDF, XHTML...)."""
    ATTRIBUTE_NOT_ALLOWED = "attribute_not_allowed"
    """An attribute not allowed on this element by the spec tables and the policy."""
    EVENT_HANDLER = "event_handler"
    """An ``on*`` event-handler attribute."""
    URL_NOT_ALLOWED = "url_not_allowed"
    """A URL (in ``href`` or a ``url()`` value) that the policy does not allow."""
    CSS_PROPERTY_NOT_ALLOWED = "css_property_not_allowed"
    """A CSS declaration whose property is outside the allowlist."""
    CSS_VALUE_NOT_ALLOWED = "css_value_not_allowed"
    """A CSS value with a forbidden function, URL or token."""
    CSS_RULE_NOT_ALLOWED = "css_rule_not_allowed"
    """A CSS at-rule (``@import``, ``@font-face``...) or a rule with a selector not allowed."""
    CSS_INVALID = "css_invalid"
    """CSS that does not parse (a browser would drop it too)."""
    ANIMATION_TARGET_FORBIDDEN = "animation_target_forbidden"
    """A SMIL animation that targets ``href``, ``style``, an event handler or a URL attribute."""
    ANIMATION_VALUE_FORBIDDEN = "animation_value_forbidden"
    """A SMIL animation whose ``values``/``from``/``to``/``by`` carry a URL."""
    COMMENT_REMOVED = "comment_removed"
    """An XML comment."""
    PROCESSING_INSTRUCTION_REMOVED = "processing_instruction_removed"
    """An XML processing instruction (``<?xml-stylesheet?>``...)."""
    TEXT_REMOVED = "text_removed"
    """Character data where SVG never renders text, or markup inside ``<title>``/``<desc>``."""
    REFERENCE_CYCLE = "reference_cycle"
    """A ``<use>`` that references itself or an ancestor (browsers ignore it)."""
    ID_PREFIXED = "id_prefixed"
    """An id, class or reference rewritten with the policy's ``id_prefix``."""
    SELECTOR_CONFINED = "selector_confined"
    """A CSS selector rewritten so it matches only inside this SVG."""
    SCOPE_CLASS_ADDED = "scope_class_added"
    """The root ``<svg>`` and ``<use>`` targets were given the class that confines ``<style>``
    (one entry per document; ``detail`` says how many elements)."""
    NAMESPACE_ADDED = "namespace_added"
    """A namespace declaration a model left out was added to the root (see ``_repair``)."""


class Action(StrEnum):
    """What the sanitizer did to one part of the document."""

    REMOVED = "removed"
    REWRITTEN = "rewritten"
