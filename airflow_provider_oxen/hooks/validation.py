"""Validation of a request against a model's JSON request schema, before anything is paid.

The queue does not validate model parameters at enqueue time (a bad one only fails the
generation later, after it was billed), so the hooks check requests here first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.models import OxenModel
from airflow_provider_oxen.redact import redact_text

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


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "null" if value is None else type(value).__name__)


def _shown(value: Any) -> str:
    """A value as JSON with its JSON type, ``5 (integer)`` or ``"5" (string)``: Python's repr
    would print the two alike in a list of allowed values."""
    return f"{json.dumps(value, default=str)} ({_kind(value)})"


def _choices(values: list[Any]) -> str:
    """``"5", "10" (strings)``; mixed types each with its own."""
    kinds = {_kind(value) for value in values}
    if len(kinds) == 1:
        return f"{', '.join(json.dumps(value, default=str) for value in values)} ({kinds.pop()}s)"
    return ", ".join(map(_shown, values))


def _message(error: ValidationError) -> str:
    if error.validator == "enum":
        return f"{_shown(error.instance)} is not one of {_choices(list(error.validator_value))}"
    if error.validator == "type":
        types = error.validator_value
        names = " or ".join([types] if isinstance(types, str) else types)
        return f"{_shown(error.instance)} is not of type {names}"
    text = str(error.message)
    prefix = repr(error.instance)  # jsonschema starts most messages with the value's Python repr
    return _shown(error.instance) + text[len(prefix) :] if text.startswith(prefix) else text


def validate_parameters(model: OxenModel, parameters: dict[str, Any]) -> None:
    """Raise :class:`OxenValidationError` naming the first invalid field, if any.

    The message prints values as JSON with their types, and input URLs without their signed query.
    """
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
    detail = f"; allowed values: {_choices(allowed)}" if allowed and error.validator != "enum" else ""
    raise OxenValidationError(
        redact_text(f"Invalid value for '{field or 'request'}' ({model.id}): {_message(error)}{detail}"),
        field=field,
        allowed=allowed,
    )


def _edits(a: str, b: str) -> int:
    """Levenshtein distance between two names, ignoring case."""
    a, b = a.lower(), b.lower()
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, char_b in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (char_a != char_b))
    return row[-1]


def closest_name(name: str, names: list[str]) -> str | None:
    """The known name ``name`` is a typo of: one or two edits away (one for names of up to 5 letters)."""
    scored = sorted((_edits(name, known), known) for known in names)
    if scored and scored[0][0] <= (1 if len(name) <= 5 else 2):
        return scored[0][1]
    return None


def shape_parameters(
    model: OxenModel, parameters: Mapping[str, Any], *, allow_unlisted: bool = False
) -> dict[str, Any]:
    """The parameters to send: all but the API envelope's keys.

    A name the model's schema does not know is refused, naming the closest known one, where the
    schema says so (``additionalProperties: false``). An open schema (JSON Schema admits other
    names by default) still refuses a name a typo away from a known one: the model would take
    the request, ignore the name and bill it at its default. ``allow_unlisted`` sends such
    names as they are.
    """
    params = {k: v for k, v in parameters.items() if k not in ENVELOPE_KEYS}
    schema = model.request_schema or {}
    known = schema.get("properties")
    if not isinstance(known, dict):
        return params
    closed = schema.get("additionalProperties", True) is False
    names = sorted(known)
    for name in params:
        if name in known:
            continue
        close = closest_name(name, names)
        if closed:
            hint = f"; did you mean '{close}'?" if close else ""
            raise OxenValidationError(
                f"Unknown parameter '{name}' for model '{model.id}'{hint} (it takes: {', '.join(names)})",
                field=name,
                allowed=names,
            )
        if close and not allow_unlisted:
            raise OxenValidationError(
                f"Unknown parameter '{name}' for model '{model.id}': did you mean '{close}'? The model "
                "would take the request and ignore the name. Fix it, or set allow_unlisted_parameters=True "
                "to send names its schema does not list.",
                field=name,
                allowed=names,
            )
    return params


def prepare_parameters(
    model: OxenModel, parameters: Mapping[str, Any], *, allow_unlisted: bool = False
) -> dict[str, Any]:
    """Check the model can be queued, shape and type the parameters to its schema, validate them."""
    check_model_accepts_media(model)
    shaped = model.typed(shape_parameters(model, parameters, allow_unlisted=allow_unlisted))
    validate_parameters(model, shaped)
    return shaped
