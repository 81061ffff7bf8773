from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_oxen.models import OxenModel
from airflow_provider_oxen.pricing import estimate_cost, price_per_output, why_unknown


def _model(pricing: Any, duration: dict[str, Any] | None = None) -> OxenModel:
    schema = {"type": "object", "properties": {"duration": duration}} if duration is not None else None
    return OxenModel.model_validate({"id": "m", "pricing": pricing, "request_schema": schema})


PER_SECOND = {"method": "second", "cost_per_second": 0.07}


@pytest.mark.parametrize(
    ("pricing", "parameters", "price"),
    [
        ({"method": "image", "cost_per_image": 0.06}, {}, Decimal("0.06")),
        ({"method": "image", "cost_per_image": "0.0600"}, {}, Decimal("0.0600")),
        ({"method": "Image", "cost_per_image": 1}, {}, Decimal(1)),
        (PER_SECOND, {"duration": 5}, Decimal("0.35")),
        (PER_SECOND, {"duration": "10"}, Decimal("0.70")),
        (PER_SECOND, {"duration": "5s"}, Decimal("0.35")),
        ({"method": "second", "cost_per_second": "0.1120"}, {"duration": 3}, Decimal("0.3360")),
        # Unknown: no duration anywhere, a shape or unit that is not the contract's, a bad price.
        (PER_SECOND, {}, None),
        (PER_SECOND, {"duration": "long"}, None),
        ({"method": "token", "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}, {}, None),
        ({"method": "image", "input_cost_per_image": 1, "output_cost_per_image": 2}, {}, None),
        ({"method": "image", "output_cost_per_image": 0.04}, {}, None),
        ({"method": "megapixel", "cost_per_megapixel": 0.01}, {}, None),
        ({"method": "image", "cost_per_second": 0.07}, {}, None),
        ({"cost_per_image": 0.06}, {}, None),
        ({"per_image": "0.0600", "currency": "USD"}, {}, None),
        ({"method": "image", "cost_per_image": "free"}, {}, None),
        ({"method": "image", "cost_per_image": -1}, {}, None),
        ({"method": "image", "cost_per_image": True}, {}, None),
        (0.06, {}, None),
        (None, {}, None),
    ],
)
def test_price_per_output_reads_the_contracts_shape_and_nothing_else(
    pricing: Any, parameters: dict[str, Any], price: Decimal | None
) -> None:
    assert price_per_output(_model(pricing), parameters) == price


@pytest.mark.parametrize(
    ("duration", "parameters", "price"),
    [
        ({"type": "integer", "minimum": 3, "maximum": 10, "default": 5}, {}, Decimal("0.35")),
        ({"type": "string", "enum": ["5", "10"], "default": "5"}, {}, Decimal("0.35")),
        ({"type": "string", "enum": ["5", "10"], "default": "5"}, {"duration": "10"}, Decimal("0.70")),
        ({"type": "integer", "default": 5}, {"duration": 3}, Decimal("0.21")),  # the request wins
        ({"type": "integer", "default": 5}, {"duration": None}, Decimal("0.35")),
        ({"type": "string", "enum": ["5", "10"]}, {}, None),  # no default: unknown
    ],
)
def test_a_per_second_price_uses_the_schemas_default_duration(
    duration: dict[str, Any], parameters: dict[str, Any], price: Decimal | None
) -> None:
    assert price_per_output(_model(PER_SECOND, duration), parameters) == price


def test_estimate_multiplies_by_the_number_of_generations() -> None:
    assert estimate_cost(_model({"method": "image", "cost_per_image": 0.06}), {}, 4) == Decimal("0.24")
    assert estimate_cost(_model(PER_SECOND), {"duration": 5}, 2) == Decimal("0.70")
    assert estimate_cost(_model(None), {}, 4) is None


def test_why_unknown_names_the_reason() -> None:
    assert "cost_per_<method>" in why_unknown(_model({"tiers": []}))
    assert "duration" in why_unknown(_model(PER_SECOND))
    assert "'token'" in why_unknown(_model({"method": "token", "cost_per_token": 1e-6}))
