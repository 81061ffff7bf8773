"""Validation of a request against a model's JSON request schema, before anything is paid.

The queue does not validate model parameters at enqueue time (a bad one only fails the
generation later, after it was billed), so the hooks check requests here first.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.models import OxenModel

# Request keys that belong to the API envelope, not to the model's parameters.
ENVELOPE_KEYS = frozenset({"model", "num_generations", "target_namespace", "response_format"})


def check_model_accepts_media(model: OxenModel) -> None:
    if not model.generates_media:
        raise OxenValidationError(
            f"Model '{model.id}' does not generate images or video (outputs: "
            f"{', '.join(model.output_kinds) or 'unknown'}); pick an image model.",
            field="model",
        )


@lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _field_of(error: ValidationError) -> str | None:
    path = [str(part) for part in error.absolute_path if not isinstance(part, int)]
    if path:
        return ".".join(path)
    if error.validator == "required" and isinstance(error.message, str):
        # "'prompt' is a required property"
        return error.message.split("'")[1] if error.message.count("'") >= 2 else None
    return None


def validate_parameters(model: OxenModel, parameters: dict[str, Any]) -> None:
    """Raise :class:`OxenValidationError` naming the first invalid field, if any."""
    if not model.request_schema:
        return
    validator = _validator_for(json.dumps(model.request_schema, sort_keys=True))
    params = {k: v for k, v in parameters.items() if k not in ENVELOPE_KEYS}
    error = best_match(validator.iter_errors(params))
    if error is None:
        return
    field = _field_of(error)
    allowed: list[Any] | None = None
    if error.validator == "enum":
        allowed = list(error.validator_value)
    elif isinstance(error.schema, dict) and "enum" in error.schema:
        allowed = list(error.schema["enum"])
    detail = f"; allowed values: {', '.join(map(str, allowed))}" if allowed else ""
    raise OxenValidationError(
        f"Invalid value for '{field or 'request'}' ({model.id}): {error.message}{detail}",
        field=field,
        allowed=allowed,
    )


def shape_parameters(model: OxenModel, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters to send: all but the API envelope's keys.

    A name the model's schema does not know is refused, naming the closest known one, where the
    schema says so (``additionalProperties: false``; JSON Schema admits other names by default,
    and ``additionalProperties: {schema}`` admits them with their values checked).
    """
    params = {k: v for k, v in parameters.items() if k not in ENVELOPE_KEYS}
    schema = model.request_schema or {}
    known = schema.get("properties")
    if not isinstance(known, dict) or schema.get("additionalProperties", True) is not False:
        return params
    for name in params:
        if name not in known:
            names = sorted(known)
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise OxenValidationError(
                f"Unknown parameter '{name}' for model '{model.id}'{hint} (it takes: {', '.join(names)})",
                field=name,
                allowed=names,
            )
    return params


def prepare_parameters(model: OxenModel, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Check the model can be queued, shape and type the parameters to its schema, validate them."""
    check_model_accepts_media(model)
    shaped = model.typed(shape_parameters(model, parameters))
    validate_parameters(model, shaped)
    return shaped
