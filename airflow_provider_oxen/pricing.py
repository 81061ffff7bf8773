"""What a request will cost, from the model's ``pricing`` object, before anything is enqueued.

The contract's shape is ``{"method": "<unit>", "cost_per_<unit>": <price>}``: the unit billed
and its price (a JSON number; text is accepted too). ``image`` prices each output; ``second``
prices each second of the request's ``duration``, or of the schema's default when the request
has none. Anything else is unknown (``None``), and the operator refuses a task with a
``max_cost`` rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_oxen.models import OxenModel

# The units an image or video request is billed in, and what each one multiplies.
PER_OUTPUT, PER_SECOND = "image", "second"


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def unit_price(pricing: Any) -> tuple[str, Decimal] | None:
    """``(method, price)`` from a pricing object, or None when it is not in the contract's shape.

    Only ``cost_per_<method>`` is read: a prefixed price (``input_cost_per_image``) may be one
    part of the cost, so it is not taken for the whole.
    """
    if not isinstance(pricing, Mapping) or not isinstance(pricing.get("method"), str):
        return None
    method = pricing["method"].strip().lower()
    price = _decimal(pricing.get(f"cost_per_{method}"))
    return None if price is None else (method, price)


def duration(model: OxenModel, parameters: Mapping[str, Any]) -> Decimal | None:
    """Seconds of video asked for: the request's ``duration`` (``5``, ``"5"`` or ``"5s"``), else
    the default of the model's schema; None when neither gives one."""
    value = parameters.get("duration")
    if value is None:
        value = model.parameter_defaults.get("duration")
    if isinstance(value, str):
        value = value.strip().removesuffix("s")
    return _decimal(value)


def price_per_output(model: OxenModel, parameters: Mapping[str, Any]) -> Decimal | None:
    """The price of one generation with ``parameters``, or None when it cannot be told."""
    unit = unit_price(model.pricing)
    if unit is None:
        return None
    method, price = unit
    if method == PER_OUTPUT:
        return price
    seconds = duration(model, parameters) if method == PER_SECOND else None
    return None if seconds is None else price * seconds


def estimate_cost(model: OxenModel, parameters: Mapping[str, Any], count: int) -> Decimal | None:
    """Estimated cost of ``count`` generations, or None when the model's pricing is unknown."""
    price = price_per_output(model, parameters)
    return None if price is None else price * count


def why_unknown(model: OxenModel) -> str:
    """Why :func:`estimate_cost` answered None for ``model``, for the user."""
    unit = unit_price(model.pricing)
    if unit is None:
        return f"its pricing {model.pricing!r:.200} is not a `method` with a matching `cost_per_<method>`"
    if unit[0] == PER_SECOND:
        return "it is priced per second, and neither the request nor the model's schema gives a duration"
    return f"it is priced per {unit[0]!r}, which says nothing about what an image or video request costs"
