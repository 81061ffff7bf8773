"""Validation of a request against a model's JSON request schema, before anything is paid.

The queue does not validate model parameters at enqueue time (a bad one only fails the
generation later, after it was billed), so the hooks check requests here first.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
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


def schema_properties(model: OxenModel) -> frozenset[str] | None:
    """The parameter names the model's schema declares, or None when it declares none."""
    schema = model.request_schema
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None
    return frozenset(schema["properties"])


def allows_other_names(model: OxenModel) -> bool:
    """Whether the schema lets a request carry names it does not declare (JSON Schema's default)."""
    schema = model.request_schema
    if not isinstance(schema, dict):
        return True
    extra = schema.get("additionalProperties", True)
    # ``additionalProperties: {schema}`` also admits other names (their values are checked).
    return extra is not False


def shape_parameters(
    model: OxenModel, parameters: Mapping[str, Any], explicit: Collection[str]
) -> dict[str, Any]:
    """The parameters to send: exactly the names the model's schema knows.

    A name the caller set (``explicit``) that the schema does not know is refused, naming the
    closest known one, unless the schema admits other names. Any other name (a caller's own
    default) is dropped when the schema lacks it. Without a schema everything is sent as given.
    """
    known = schema_properties(model)
    params = {k: v for k, v in parameters.items() if k not in ENVELOPE_KEYS}
    if known is None:
        return params
    open_schema = allows_other_names(model)
    shaped: dict[str, Any] = {}
    for name, value in params.items():
        if name in known:
            shaped[name] = value
        elif name in explicit:
            if not open_schema:
                raise unknown_parameter(model, name, known)
            shaped[name] = value
    return shaped


def unknown_parameter(model: OxenModel, name: str, known: Collection[str]) -> OxenValidationError:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return OxenValidationError(
        f"Unknown parameter '{name}' for model '{model.id}'{hint} (it takes: {', '.join(sorted(known))})",
        field=name,
        allowed=sorted(known),
    )


def prepare_parameters(
    model: OxenModel, parameters: Mapping[str, Any], explicit: Collection[str]
) -> dict[str, Any]:
    """Check the model can be queued, shape and type the parameters to its schema, validate them."""
    check_model_accepts_media(model)
    shaped = model.typed(shape_parameters(model, parameters, explicit))
    validate_parameters(model, shaped)
    return shaped
