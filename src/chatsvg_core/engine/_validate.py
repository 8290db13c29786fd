"""Turning what a host passes in into typed values, or typed errors naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from json.encoder import encode_basestring as _escape  # JCS's string rules (_canonical)
from typing import Any, Final

from pydantic import ValidationError

from chatsvg_core._construct import built
from chatsvg_core.errors import InvalidRequest, JobNotFound
from chatsvg_core.generate import Detail, GenerationRequest
from chatsvg_core.generate._request import MAX_SIDE, MIN_SIDE, MODEL_NAME_PATTERN, SLUG_PATTERN

__all__ = [
    "check_job_id",
    "invalid_request",
    "parse_request",
    "plain_jcs",
    "plain_payload",
    "stored_request",
]

_MAX_JOB_ID: Final = 128


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """pydantic's errors as :class:`InvalidRequest`: field paths and messages, never values."""
    errors = [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(request)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0] if errors else {"field": "(request)", "message": "invalid"}
    return InvalidRequest(
        f"invalid request: {first['field']}: {first['message']}",
        field=first["field"],
        errors=errors,
    )


def parse_request(request: object) -> GenerationRequest:
    """A :class:`GenerationRequest` from a mapping, or :class:`InvalidRequest`."""
    if isinstance(request, GenerationRequest):
        return request
    if not isinstance(request, Mapping):
        raise InvalidRequest(
            f"a request is a JSON object, not {type(request).__name__}",
            field="(request)",
            errors=[
                {
                    "field": "(request)",
                    "message": "expected an object",
                    "type": "model_type",
                }
            ],
        )
    try:
        data: dict[Any, Any] = dict(request)
        return GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def check_job_id(job_id: object) -> str:
    """``job_id`` if it could name a job; anything else names no job (``JobNotFound``)."""
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= _MAX_JOB_ID:
        shown = repr(job_id)[:64]
        raise JobNotFound(f"no job {shown}", job_id=shown)
    return job_id


# plain_payload: what GenerationRequest's validation, then its JSON dump, make
# of a plain dict, for the values it would accept unchanged. fullmatch of the
# anchored patterns is what pydantic's (Rust) regex does: "$" before a final
# newline does not end the text.
_SLUG: Final = re.compile(SLUG_PATTERN)
_MODEL_NAME: Final = re.compile(MODEL_NAME_PATTERN)
_FIELDS: Final = frozenset(GenerationRequest.model_fields)
_DEFAULTS: Final = {
    name: field.default.value if isinstance(field.default, Detail) else field.default
    for name, field in GenerationRequest.model_fields.items()
    if name != "prompt"
}
_PROMPT_ONLY: Final[dict[str, Any]] = {"prompt": None, **_DEFAULTS}
"""A prompt-only request's dump, its prompt still to set (plain_payload copies it)."""
_DETAILS: Final = {detail.value: detail.value for detail in Detail}
PLAIN_FIELDS: Final = ("prompt", "style", "width", "height", "detail", "model")
"""The fields plain_payload knows; with any other set it leaves every request to validation."""
_KNOWN: Final = tuple(GenerationRequest.model_fields) == PLAIN_FIELDS


def _plain_values(style: object, width: object, height: object, model: object) -> bool:
    """Whether validation keeps ``style``, ``width``, ``height`` and ``model``
    as they are: the rules plain_payload and stored_request share, written once."""
    return (
        type(width) is int
        and MIN_SIDE <= width <= MAX_SIDE
        and type(height) is int
        and MIN_SIDE <= height <= MAX_SIDE
        and (style is None or (type(style) is str and _SLUG.fullmatch(style) is not None))
        and (model is None or (type(model) is str and _MODEL_NAME.fullmatch(model) is not None))
    )


def plain_payload(request: object) -> dict[str, Any] | None:
    """``GenerationRequest.model_validate(request).model_dump(mode="json")`` for a
    plain ``dict`` whose every value validation keeps as it is; ``None`` (let
    validation decide) for anything else. The prompt is not yet normalised.

    A property test in tests/engine holds it equal to validation and the dump.
    """
    if not _KNOWN or type(request) is not dict or not _FIELDS.issuperset(request):
        return None
    prompt = request.get("prompt")
    if type(prompt) is not str:
        return None
    if len(request) == 1:  # the prompt alone (request is a subset of the fields)
        # A copy of the defaults' dict with the prompt set: 1.6 k instructions
        # fewer than {"prompt": prompt, **_DEFAULTS} (same keys, same order).
        payload = _PROMPT_ONLY.copy()
        payload["prompt"] = prompt
        return payload
    style = request.get("style", _DEFAULTS["style"])
    width = request.get("width", _DEFAULTS["width"])
    height = request.get("height", _DEFAULTS["height"])
    model = request.get("model", _DEFAULTS["model"])
    if not _plain_values(style, width, height, model):
        return None
    detail = request.get("detail", _DEFAULTS["detail"])
    kind = type(detail)
    if kind is not str and kind is not Detail:
        return None
    detail = _DETAILS.get(detail)
    if detail is None:
        return None
    return {
        "prompt": prompt,
        "style": style,
        "width": width,
        "height": height,
        "detail": detail,
        "model": model,
    }


def plain_jcs(payload: dict[str, Any]) -> str:
    """``canonical_json(payload)`` for a dict :func:`plain_payload` made (any ``str`` prompt).

    Its six members in JCS's order, each value written as JCS writes it,
    in one expression: CPython's C encoder with sorted keys (the general
    flat path) cost 17.6 k instructions for it, this 5.7 k. The values are
    what plain_payload let through: ``detail`` one of :class:`Detail`'s
    values and ``style`` a slug or ``None`` (lowercase ASCII letters, digits
    and ``-``: nothing to escape), ``width`` and ``height`` ``int`` in
    range, ``model`` ``None`` or printable ASCII (``"`` and ``\\`` escaped)
    and the prompt any exact ``str`` (escaped as ``_canonical`` escapes
    strings). tests/engine holds it to ``canonical_json``.
    """
    style = payload["style"]
    model = payload["model"]
    # JCS orders the members by name: detail, height, model, prompt, style, width.
    return (
        f'{{"detail":"{payload["detail"]}","height":{payload["height"]},'
        f'"model":{"null" if model is None else _escape(model)},'
        f'"prompt":{_escape(payload["prompt"])},'
        f'"style":{"null" if style is None else _quoted(style)},"width":{payload["width"]}}}'
    )


def _quoted(slug: str) -> str:
    return f'"{slug}"'


_DETAIL_OF: Final = {detail.value: detail for detail in Detail}


def stored_request(data: object) -> GenerationRequest:
    """``GenerationRequest.model_validate(data)`` for a job's stored request.

    A claim rebuilds the request it charges for from the job's ``request``,
    which submit stored as a validated request's JSON dump: every field
    present, each value one validation keeps as it is. Such a dict is built
    without validation (see ``chatsvg_core._construct``); anything else (a
    row written by other code, a field added to the model) is validated as
    before. A property test in tests/engine holds it equal to validation.
    """
    # Exactly the model's fields (six entries, each found): a missing one would
    # leave it out of model_fields_set, an unknown one is refused (extra="forbid").
    if not _KNOWN or type(data) is not dict or len(data) != 6:
        return GenerationRequest.model_validate(data)
    try:
        prompt = data["prompt"]
        style = data["style"]
        width = data["width"]
        height = data["height"]
        text = data["detail"]
        model = data["model"]
    except KeyError:
        return GenerationRequest.model_validate(data)
    detail = _DETAIL_OF.get(text) if type(text) is str else None
    if type(prompt) is str and detail is not None and _plain_values(style, width, height, model):
        return built(
            GenerationRequest,
            {
                "prompt": prompt,
                "style": style,
                "width": width,
                "height": height,
                "detail": detail,
                "model": model,
            },
        )
    return GenerationRequest.model_validate(data)
