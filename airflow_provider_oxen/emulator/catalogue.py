"""The model catalogue: model objects as ``/api/ai/models`` serves them, and their request schemas."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

PRESET_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
PRESET_NAMES = list(PRESET_SIZES)
MAX_IMAGES_PER_REQUEST = 4

_IDEOGRAM_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ideogram-v4 input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "description": "What to draw."},
        "image_size": {"type": "string", "enum": PRESET_NAMES, "default": "square_hd"},
        "rendering_speed": {
            "type": "string",
            "enum": ["TURBO", "BALANCED", "QUALITY"],
            "default": "BALANCED",
        },
        "expansion_model": {"type": "string", "enum": ["Medium", "Large"], "default": "Medium"},
        "acceleration": {"type": "string", "enum": ["none", "low", "regular", "high"], "default": "none"},
        "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES_PER_REQUEST, "default": 1},
        "seed": {"type": "integer"},
        "enable_safety_checker": {"type": "boolean", "default": True},
        "output_format": {"type": "string", "enum": ["jpeg", "png"], "default": "jpeg"},
    },
    "required": ["prompt"],
    "additionalProperties": True,
}

_FLUX_KLEIN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "black-forest-labs-flux-2-klein-4b input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "image_size": {
            "default": "landscape_4_3",
            "anyOf": [
                {"type": "string", "enum": PRESET_NAMES},
                {
                    "type": "object",
                    "properties": {
                        "width": {"type": "integer", "minimum": 256, "maximum": 2048},
                        "height": {"type": "integer", "minimum": 256, "maximum": 2048},
                    },
                    "required": ["width", "height"],
                    "additionalProperties": False,
                },
            ],
        },
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 4},
        "seed": {"type": "integer"},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"},
    },
    "required": ["prompt"],
    "additionalProperties": True,
}


def _model(
    model_id: str,
    *,
    display_name: str,
    developer: str,
    endpoint: str,
    inputs: list[str],
    outputs: list[str],
    pricing: dict[str, Any],
    description: str,
) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 1767225600,
        "owned_by": developer.lower().replace(" ", "-"),
        "display_name": display_name,
        "description": description,
        "summary": description.split(".")[0],
        "model_type": "base",
        "endpoint": endpoint,
        "capabilities": {"input": inputs, "output": outputs},
        "pricing": pricing,
        "fine_tuning": None,
        "deployments": [{"provider": "emulator", "status": "live", "region": "local"}],
        "developer": {"name": developer, "website": None},
        "released_at": "2026-01-01T00:00:00Z",
    }


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry: the public model object plus what the emulator needs to run it."""

    model: dict[str, Any]
    schema: dict[str, Any] | None
    validator: Draft202012Validator | None
    default_format: str
    default_size: str
    price_per_image: float

    @property
    def id(self) -> str:
        return str(self.model["id"])

    @property
    def outputs(self) -> list[str]:
        return list(self.model["capabilities"]["output"])

    @property
    def makes_images(self) -> bool:
        return "image" in self.outputs

    def public(self) -> dict[str, Any]:
        """A fresh copy of the model object, safe for the caller to serialise or mutate."""
        return copy.deepcopy(self.model)


def _spec(
    model: dict[str, Any],
    schema: dict[str, Any] | None,
    *,
    default_format: str,
    default_size: str,
    schema_key: str = "request_schema",
) -> ModelSpec:
    model = dict(model)
    if schema_key == "request_schema":
        model["request_schema"] = schema
    else:
        # The seed page names the field json_request_schema; one model uses that spelling so that
        # clients are exercised on both names.
        model[schema_key] = schema
    price = model["pricing"].get("per_image", 0.0) if isinstance(model["pricing"], dict) else 0.0
    validator = None
    if schema is not None:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
    return ModelSpec(
        model=model,
        schema=schema,
        validator=validator,
        default_format=default_format,
        default_size=default_size,
        price_per_image=float(price),
    )


def build_catalogue() -> dict[str, ModelSpec]:
    """All models, keyed by id; validators are compiled once here."""
    specs = [
        _spec(
            _model(
                "ideogram-v4",
                display_name="Ideogram V4",
                developer="Ideogram",
                endpoint="/images/generate",
                inputs=["text"],
                outputs=["image"],
                pricing={"per_image": 0.06, "currency": "USD"},
                description="Ideogram V4 text-to-image. Native 2K resolution, strong typography.",
            ),
            _IDEOGRAM_SCHEMA,
            default_format="jpeg",
            default_size="square_hd",
        ),
        _spec(
            _model(
                "black-forest-labs-flux-2-klein-4b",
                display_name="FLUX.2 [klein] 4B",
                developer="Black Forest Labs",
                endpoint="/images/generate",
                inputs=["text", "image"],
                outputs=["image"],
                pricing={"per_image": 0.012, "currency": "USD"},
                description="FLUX.2 klein 4B. Fast distilled text-to-image model.",
            ),
            _FLUX_KLEIN_SCHEMA,
            default_format="png",
            default_size="landscape_4_3",
            schema_key="json_request_schema",
        ),
        _spec(
            _model(
                "flux-2-dev",
                display_name="FLUX.2 [dev]",
                developer="Black Forest Labs",
                endpoint="/images/generate",
                inputs=["text"],
                outputs=["image"],
                pricing={"per_image": 0.025, "currency": "USD"},
                description="FLUX.2 dev. Open-weights text-to-image model.",
            ),
            None,
            default_format="png",
            default_size="square_hd",
        ),
        _spec(
            _model(
                "gpt-oss-120b",
                display_name="GPT-OSS 120B",
                developer="OpenAI",
                endpoint="/chat/completions",
                inputs=["text"],
                outputs=["text"],
                pricing={
                    "input_per_million_tokens": 0.15,
                    "output_per_million_tokens": 0.6,
                    "currency": "USD",
                },
                description="Open-weights 120B chat model. Text in, text out.",
            ),
            None,
            default_format="png",
            default_size="square_hd",
        ),
    ]
    return {spec.id: spec for spec in specs}


@dataclass(frozen=True)
class ParamError:
    """A parameter that failed validation: which field, and a message naming the allowed values."""

    param: str | None
    message: str


def _describe(error: ValidationError) -> ParamError:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and not path:
        # The failing field is the missing property, which jsonschema only puts in the message.
        missing = next((name for name in error.validator_value if name not in error.instance), None)
        return ParamError(missing, f"{missing}: {error.message}")
    if not path:
        return ParamError(None, error.message)
    return ParamError(path[0], f"{'.'.join(path)}: {error.message}")


def validate_params(spec: ModelSpec, params: dict[str, Any]) -> ParamError | None:
    """Check the model-specific parameters against the model's schema (None: valid or no schema)."""
    if spec.validator is None:
        return None
    error = best_match(spec.validator.iter_errors(params))
    return None if error is None else _describe(error)


def resolve_size(spec: ModelSpec, params: dict[str, Any]) -> tuple[int, int]:
    """Pixel size for already-validated parameters (schema-less models fall back to the default)."""
    size = params.get("image_size", spec.default_size)
    if isinstance(size, str) and size in PRESET_SIZES:
        return PRESET_SIZES[size]
    if isinstance(size, dict):
        width, height = size.get("width"), size.get("height")
        if (
            isinstance(width, int)
            and isinstance(height, int)
            and 16 <= width <= 4096
            and 16 <= height <= 4096
        ):
            return width, height
    return PRESET_SIZES[spec.default_size]


def resolve_format(spec: ModelSpec, params: dict[str, Any]) -> str:
    """Output format for already-validated parameters ("jpg" is read as jpeg)."""
    fmt = params.get("output_format")
    if isinstance(fmt, str):
        fmt = fmt.lower()
        if fmt == "jpg":
            fmt = "jpeg"
        if fmt in ("jpeg", "png", "webp"):
            return fmt
    return spec.default_format


def matches_action(spec: ModelSpec, action: str) -> bool:
    """Loose reading of the undocumented ``action`` filter: endpoint name or an output kind."""
    action = action.strip().lower().strip("/")
    endpoint = str(spec.model["endpoint"]).strip("/")
    return action in (endpoint, endpoint.split("/")[0], *spec.outputs) or (
        action in ("generate_image", "text_to_image", "image_generation") and spec.makes_images
    )


def matches_search(spec: ModelSpec, text: str) -> bool:
    """Case-insensitive substring search over id, display name, description and developer."""
    needle = text.strip().lower()
    haystack = (
        " ".join(str(spec.model.get(key) or "") for key in ("id", "display_name", "description"))
        + " "
        + str(spec.model["developer"]["name"])
    )
    return needle in haystack.lower()
