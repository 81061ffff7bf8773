from __future__ import annotations

from decimal import Decimal

import pytest

from airflow_provider_oxen.models import OxenModel
from airflow_provider_oxen.pricing import estimate_cost, price_per_output


@pytest.mark.parametrize(
    ("pricing", "parameters", "price"),
    [
        ({"per_image": "0.0600", "currency": "USD"}, {}, Decimal("0.0600")),
        ({"per_image": 0.012}, {}, Decimal("0.012")),
        ({"per_generation": "0.25"}, {}, Decimal("0.25")),
        ({"per_second": "0.10"}, {"duration": 5}, Decimal("0.50")),
        ({"per_second": "0.10"}, {"duration": "5s"}, Decimal("0.50")),
        ({"per_second": "0.10"}, {}, None),
        ({"tiers": [1, 2]}, {}, None),
        (None, {}, None),
        ({"per_image": "free"}, {}, None),
        ({"per_image": -1}, {}, None),
    ],
)
def test_price_per_output_reads_known_shapes_and_nothing_else(
    pricing: object, parameters: dict, price: Decimal | None
) -> None:
    assert price_per_output(pricing, parameters) == price


def test_estimate_multiplies_by_the_number_of_generations() -> None:
    model = OxenModel.model_validate({"id": "m", "pricing": {"per_image": "0.06"}})
    assert estimate_cost(model, {}, 4) == Decimal("0.24")
    assert estimate_cost(OxenModel.model_validate({"id": "m"}), {}, 4) is None
