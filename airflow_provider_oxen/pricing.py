"""What a request will cost, from the model's ``pricing`` object, before anything is enqueued.

The contract names a ``pricing`` field on model objects but not its shape, so this reads the
shapes seen so far (a price per image / generation, or per second of video) and answers
``None`` for anything else: unknown pricing never blocks a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_oxen.models import OxenModel

# Keys that price one output (one queue row), most specific first.
_PER_OUTPUT_KEYS = ("per_image", "per_generation", "per_output", "per_video", "price", "unit_price")
_PER_SECOND_KEYS = ("per_second", "per_video_second")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _duration(parameters: Mapping[str, Any]) -> Decimal | None:
    value = parameters.get("duration")
    if isinstance(value, str):
        value = value.strip().rstrip("s")
    return _decimal(value)


def price_per_output(pricing: Any, parameters: Mapping[str, Any]) -> Decimal | None:
    """The price of one generation with ``parameters``, or None when the pricing is not understood."""
    if isinstance(pricing, (int, float, str)):
        return _decimal(pricing)
    if not isinstance(pricing, Mapping):
        return None
    for key in _PER_OUTPUT_KEYS:
        price = _decimal(pricing.get(key))
        if price is not None:
            return price
    for key in _PER_SECOND_KEYS:
        price, seconds = _decimal(pricing.get(key)), _duration(parameters)
        if price is not None and seconds is not None:
            return price * seconds
    return None


def estimate_cost(model: OxenModel, parameters: Mapping[str, Any], count: int) -> Decimal | None:
    """Estimated cost of ``count`` generations, or None when the model's pricing is unknown."""
    price = price_per_output(model.pricing, parameters)
    return None if price is None else price * count
