"""Turning what a host passes in into typed values, or typed errors naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from chatsvg_core.errors import InvalidRequest, JobNotFound
from chatsvg_core.generate import GenerationRequest

__all__ = ["check_job_id", "invalid_request", "parse_request"]

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
