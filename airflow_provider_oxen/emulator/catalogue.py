"""The model catalogue: model objects as ``/api/ai/models`` serves them, and their request schemas.

Parameter names differ per model, as on the real API: the size is ``image_size`` (presets or
``{"width", "height"}``), ``resolution`` (with ``aspect_ratio``) or ``size`` (``"WxH"``), and only
``ideogram-v4`` takes ``num_images``. Edit models take ``input_image`` (one URL, or an array of URLs);
video models take ``prompt`` or ``multi_prompt``, ``duration`` and ``aspect_ratio``. Pricing has the
contract's shape, ``{"method": "image", "cost_per_image": 0.06}`` or ``{"method": "second",
"cost_per_second": 0.07}`` (x the request's ``duration``, else the schema's default), and requests
are billed by it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
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
# ``resolution`` values: the long side of the image; ``aspect_ratio`` gives the short one.
RESOLUTIONS: dict[str, int] = {"1K": 1024, "2K": 2048}
ASPECT_RATIOS = ["1:1", "4:3", "3:4", "16:9", "9:16"]
GPT_IMAGE_SIZES = ["1024x1024", "1536x1024", "1024x1536", "auto"]
MAX_IMAGES_PER_REQUEST = 4
# Video results: small frames at a low frame rate, so files stay tiny and render fast.
VIDEO_FPS = 8
VIDEO_SIZES: dict[str, tuple[int, int]] = {"16:9": (320, 180), "9:16": (180, 320), "1:1": (240, 240)}
VIDEO_DURATION_RANGE = (3, 10)
DEFAULT_VIDEO_DURATION = 5
MAX_INPUT_IMAGES = 4
# An input URL the emulator can fetch: http(s) only (the contract: "a publicly reachable URL").
_URL_PATTERN = "^https?://[^\\s]+$"
_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_IDEOGRAM_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
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
    "additionalProperties": False,
}

_FLUX_KLEIN_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
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
    "additionalProperties": False,
}

# Custom, non-validating keys (``basic``, ``x-order``, ``renderType``) as UI hints, the way some
# real schemas carry them: a client must ignore them when validating.
_NANO_BANANA_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
    "title": "nano-banana-2 input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "basic": True, "x-order": 0, "renderType": "textarea"},
        "resolution": {
            "type": "string",
            "enum": list(RESOLUTIONS),
            "default": "1K",
            "basic": True,
            "x-order": 1,
            "renderType": "select",
        },
        "aspect_ratio": {
            "type": "string",
            "enum": ASPECT_RATIOS,
            "default": "1:1",
            "basic": True,
            "x-order": 2,
            "renderType": "select",
        },
        "output_format": {
            "type": "string",
            "enum": ["png", "jpeg", "webp"],
            "default": "png",
            "basic": False,
            "x-order": 3,
            "renderType": "select",
        },
        "seed": {"type": "integer", "basic": False, "x-order": 4, "renderType": "number"},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}

# No ``additionalProperties``: unknown parameters are allowed (and ignored) by this model.
_GPT_IMAGE_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
    "title": "openai/gpt-image-1.5:latest input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "x-order": 0},
        "size": {"type": "string", "enum": GPT_IMAGE_SIZES, "default": "auto", "x-order": 1},
        "quality": {"type": "string", "enum": ["low", "medium", "high", "auto"], "default": "auto"},
        "background": {"type": "string", "enum": ["auto", "transparent", "opaque"], "default": "auto"},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"},
    },
    "required": ["prompt"],
}

_URL: dict[str, Any] = {"type": "string", "format": "uri", "pattern": _URL_PATTERN, "minLength": 8}

_QWEN_EDIT_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
    "title": "qwen-image-edit input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "description": "How to change the input image."},
        "input_image": {**_URL, "description": "URL of the image to edit (a presigned S3 URL works)."},
        "negative_prompt": {"type": "string"},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 30},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20, "default": 4},
        "seed": {"type": "integer"},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"},
    },
    "required": ["prompt", "input_image"],
    "additionalProperties": False,
}

_NANO_BANANA_EDIT_SCHEMA: dict[str, Any] = {
    "$schema": _SCHEMA_DIALECT,
    "title": "nano-banana-2-edit input",
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "basic": True, "x-order": 0, "renderType": "textarea"},
        "input_image": {
            "type": "array",
            "items": _URL,
            "minItems": 1,
            "maxItems": MAX_INPUT_IMAGES,
            "description": "URLs of 1-4 images; the first one is edited, the others are references.",
            "basic": True,
            "x-order": 1,
            "renderType": "image-list",
        },
        "output_format": {
            "type": "string",
            "enum": ["png", "jpeg", "webp"],
            "default": "png",
            "basic": False,
            "x-order": 2,
            "renderType": "select",
        },
        "seed": {"type": "integer", "basic": False, "x-order": 3, "renderType": "number"},
    },
    "required": ["prompt", "input_image"],
    "additionalProperties": False,
}


def _video_schema(title: str, *, input_image: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 2500},
        "multi_prompt": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 2500},
            "minItems": 1,
            "maxItems": 6,
            "description": "Shots in order, sharing the duration evenly (instead of prompt).",
        },
        "duration": {
            "type": "integer",
            "minimum": VIDEO_DURATION_RANGE[0],
            "maximum": VIDEO_DURATION_RANGE[1],
            "default": DEFAULT_VIDEO_DURATION,
            "description": "Length in seconds.",
        },
        "aspect_ratio": {"type": "string", "enum": list(VIDEO_SIZES), "default": "16:9"},
        "generate_audio": {"type": "boolean", "default": True},
        "negative_prompt": {"type": "string"},
        "cfg_scale": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "seed": {"type": "integer"},
    }
    required: list[str] = []
    if input_image:
        properties["input_image"] = {**_URL, "description": "URL of the reference image (first frame)."}
        required.append("input_image")
    schema: dict[str, Any] = {
        "$schema": _SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": properties,
        # prompt or multi_prompt, not both.
        "oneOf": [{"required": ["prompt"]}, {"required": ["multi_prompt"]}],
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


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
        "summary": description.split(". ")[0],
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
    # Which parameter sets the picture's size: "image_size", "resolution" or "size".
    size_param: str
    default_size: tuple[int, int]
    # The model's pricing as billed: its ``method`` (unit) and ``cost_per_<method>``.
    billing_unit: str
    unit_price: Decimal

    @property
    def id(self) -> str:
        return str(self.model["id"])

    @property
    def endpoint(self) -> str:
        return str(self.model["endpoint"])

    @property
    def inputs(self) -> list[str]:
        return list(self.model["capabilities"]["input"])

    @property
    def makes_video(self) -> bool:
        return "video" in self.outputs

    @property
    def is_edit(self) -> bool:
        """An image-to-image model (``/images/edit``): its ``input_image`` is edited."""
        return self.endpoint == "/images/edit"

    @property
    def input_param(self) -> str | None:
        """The parameter naming input image URL(s), when the schema has one."""
        if self.schema is not None and "input_image" in self.schema.get("properties", {}):
            return "input_image"
        return None

    def price(self, params: dict[str, Any], images: int = 1) -> Decimal:
        """What one request costs: ``cost_per_second`` x its duration, else ``cost_per_image`` x images."""
        if self.billing_unit == "second":
            return self.unit_price * resolve_duration(self, params)
        return self.unit_price * images

    @property
    def outputs(self) -> list[str]:
        return list(self.model["capabilities"]["output"])

    @property
    def makes_images(self) -> bool:
        return "image" in self.outputs

    @property
    def media_type(self) -> str:
        return "image" if self.makes_images else "video"

    @property
    def count_param(self) -> str | None:
        """The parameter asking for several images in one request (only where the schema has it)."""
        if self.schema is not None and "num_images" in self.schema.get("properties", {}):
            return "num_images"
        return None

    def public(self) -> dict[str, Any]:
        """A fresh copy of the model object, safe for the caller to serialise or mutate."""
        return copy.deepcopy(self.model)


def _spec(
    model: dict[str, Any],
    schema: dict[str, Any] | None,
    *,
    default_format: str = "png",
    size_param: str = "image_size",
    default_size: tuple[int, int] = (1024, 1024),
    schema_key: str = "request_schema",
) -> ModelSpec:
    model = dict(model)
    # The seed page names the field json_request_schema; one model uses that spelling so that
    # clients are exercised on both names.
    model[schema_key] = schema
    pricing = model["pricing"]
    unit = pricing["method"]
    validator = None
    if schema is not None:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
    return ModelSpec(
        model=model,
        schema=schema,
        validator=validator,
        default_format=default_format,
        size_param=size_param,
        default_size=default_size,
        billing_unit=unit,
        unit_price=Decimal(str(pricing.get(f"cost_per_{unit}", 0))),
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
                pricing={"method": "image", "cost_per_image": 0.06},
                description="Ideogram V4 text-to-image. Native 2K resolution, strong typography.",
            ),
            _IDEOGRAM_SCHEMA,
            default_format="jpeg",
        ),
        _spec(
            _model(
                "black-forest-labs-flux-2-klein-4b",
                display_name="FLUX.2 [klein] 4B",
                developer="Black Forest Labs",
                endpoint="/images/generate",
                inputs=["text", "image"],
                outputs=["image"],
                pricing={"method": "image", "cost_per_image": 0.012},
                description="FLUX.2 klein 4B. Fast distilled text-to-image model.",
            ),
            _FLUX_KLEIN_SCHEMA,
            default_size=PRESET_SIZES["landscape_4_3"],
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
                # A price as text: the contract says to accept strings as well as numbers.
                pricing={"method": "image", "cost_per_image": "0.0250"},
                description="FLUX.2 dev. Open-weights text-to-image model.",
            ),
            None,
        ),
        _spec(
            _model(
                "nano-banana-2",
                display_name="Nano Banana 2",
                developer="Google",
                endpoint="/images/generate",
                inputs=["text"],
                outputs=["image"],
                pricing={"method": "image", "cost_per_image": 0.039},
                description="Nano Banana 2 text-to-image. Sized by resolution (1K, 2K) and aspect ratio.",
            ),
            _NANO_BANANA_SCHEMA,
            size_param="resolution",
        ),
        _spec(
            _model(
                "openai/gpt-image-1.5:latest",
                display_name="GPT Image 1.5",
                developer="OpenAI",
                endpoint="/images/generate",
                inputs=["text"],
                outputs=["image"],
                pricing={"method": "image", "cost_per_image": 0.04},
                description="GPT Image 1.5 text-to-image. Sized by a WxH size string.",
            ),
            _GPT_IMAGE_SCHEMA,
            size_param="size",
        ),
        _spec(
            _model(
                "qwen-image-edit",
                display_name="Qwen Image Edit",
                developer="Alibaba",
                endpoint="/images/edit",
                inputs=["text", "image"],
                outputs=["image"],
                pricing={"method": "image", "cost_per_image": 0.03},
                description="Qwen Image Edit image-to-image. Edits one input image as the prompt says.",
            ),
            _QWEN_EDIT_SCHEMA,
        ),
        _spec(
            _model(
                "nano-banana-2-edit",
                display_name="Nano Banana 2 Edit",
                developer="Google",
                endpoint="/images/edit",
                inputs=["text", "image"],
                outputs=["image"],
                pricing={"method": "image", "cost_per_image": 0.039},
                description="Nano Banana 2 image editing. Takes 1-4 input images; the first one is edited.",
            ),
            _NANO_BANANA_EDIT_SCHEMA,
        ),
        _spec(
            _model(
                "kling-video-v2-6-pro-text-to-video",
                display_name="Kling Video v2.6 Pro (text to video)",
                developer="Kuaishou",
                endpoint="/videos/generate",
                inputs=["text"],
                outputs=["video"],
                pricing={"method": "second", "cost_per_second": 0.07},
                description="Kling v2.6 Pro text-to-video. 3-10 s clips from a prompt or multi-shot prompts.",
            ),
            _video_schema("kling-video-v2-6-pro-text-to-video input", input_image=False),
            default_format="mp4",
            default_size=VIDEO_SIZES["16:9"],
        ),
        _spec(
            _model(
                "kling-video-o3-pro-reference-to-video",
                display_name="Kling Video O3 Pro (reference to video)",
                developer="Kuaishou",
                endpoint="/videos/generate",
                inputs=["text", "image"],
                outputs=["video"],
                pricing={"method": "second", "cost_per_second": 0.112},
                description="Kling O3 Pro image-to-video. Animates a reference image as the prompt says.",
            ),
            _video_schema("kling-video-o3-pro-reference-to-video input", input_image=True),
            default_format="mp4",
            default_size=VIDEO_SIZES["16:9"],
        ),
        _spec(
            _model(
                "gpt-oss-120b",
                display_name="GPT-OSS 120B",
                developer="OpenAI",
                endpoint="/chat/completions",
                inputs=["text"],
                outputs=["text"],
                pricing={"method": "token", "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
                description="Open-weights 120B chat model. Text in, text out.",
            ),
            None,
        ),
    ]
    return {spec.id: spec for spec in specs}


@dataclass(frozen=True)
class ParamError:
    """A parameter that failed validation: which field, and a message naming it and what is allowed."""

    param: str | None
    message: str


def _describe(spec: ModelSpec, error: ValidationError) -> ParamError:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and not path:
        # The failing field is the missing property, which jsonschema only puts in the message.
        missing = next((name for name in error.validator_value if name not in error.instance), None)
        return ParamError(missing, f"{missing}: {error.message}")
    if error.validator == "additionalProperties" and not path and isinstance(error.instance, dict):
        known = (spec.schema or {}).get("properties", {})
        extra = sorted(name for name in error.instance if name not in known)
        name = extra[0] if extra else None
        return ParamError(name, f"{name}: not a parameter of model '{spec.id}' ({error.message})")
    if not path:
        return ParamError(None, error.message)
    return ParamError(path[0], f"{'.'.join(path)}: {error.message}")


def check_prompt(spec: ModelSpec, params: dict[str, Any]) -> ParamError | None:
    """The prompt rule: a non-blank ``prompt``; video models take ``multi_prompt`` instead (not both).

    A ParamError for ``prompt`` carries the API's own text, "Prompt cannot be empty".
    """
    if spec.makes_video and "multi_prompt" in params:
        if "prompt" in params:
            return ParamError("multi_prompt", "multi_prompt: give either prompt or multi_prompt, not both")
        shots = params["multi_prompt"]
        if isinstance(shots, list) and any(isinstance(shot, str) and not shot.strip() for shot in shots):
            return ParamError("multi_prompt", "multi_prompt: a shot's prompt cannot be empty")
        return None  # its type and length are the schema's business
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        hint = " (give prompt or multi_prompt)" if spec.makes_video else ""
        return ParamError("prompt", f"Prompt cannot be empty{hint}")
    return None


def validate_params(spec: ModelSpec, params: dict[str, Any]) -> ParamError | None:
    """Check the model-specific parameters against the model's schema (None: valid or no schema)."""
    if spec.validator is None:
        return None
    if spec.makes_video:
        # The schema's oneOf (prompt | multi_prompt) would only say "not valid under ..."; name the field.
        problem = check_prompt(spec, params)
        if problem is not None:
            return problem
    error = best_match(spec.validator.iter_errors(params))
    return None if error is None else _describe(spec, error)


def prompt_shots(params: dict[str, Any]) -> list[str]:
    """The prompt(s) to draw: ``multi_prompt``'s shots in order, else ``[prompt]``."""
    shots = params.get("multi_prompt")
    if isinstance(shots, list) and shots and all(isinstance(shot, str) for shot in shots):
        return [str(shot) for shot in shots]
    prompt = params.get("prompt")
    return [prompt if isinstance(prompt, str) else ""]


def resolve_duration(spec: ModelSpec, params: dict[str, Any]) -> int:
    """A video's length in seconds: ``duration`` (an integer, or text such as ``"5"`` where the
    schema takes an enum of strings), else the schema's default when absent or out of range."""
    default = (spec.schema or {}).get("properties", {}).get("duration", {}).get("default")
    default = int(default) if default is not None else DEFAULT_VIDEO_DURATION
    duration = params.get("duration", default)
    if isinstance(duration, str) and duration.isdigit():
        duration = int(duration)
    low, high = VIDEO_DURATION_RANGE
    if isinstance(duration, bool) or not isinstance(duration, int) or not low <= duration <= high:
        return default
    return duration


def resolve_video_size(params: dict[str, Any]) -> tuple[int, int]:
    """Frame size from ``aspect_ratio`` (16:9 when absent or unknown)."""
    ratio = params.get("aspect_ratio", "16:9")
    return VIDEO_SIZES.get(ratio, VIDEO_SIZES["16:9"]) if isinstance(ratio, str) else VIDEO_SIZES["16:9"]


def input_urls(spec: ModelSpec, params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, url)`` of every input image to fetch, labelled as the parameter (``input_image``,
    or ``input_image[1]`` for an array); empty for models without inputs. Call on validated params."""
    name = spec.input_param
    if name is None:
        return []
    value = params.get(name)
    if isinstance(value, str):
        return [(name, value)]
    if isinstance(value, list):
        return [(f"{name}[{i}]", str(url)) for i, url in enumerate(value)]
    return []


def _ratio_size(long_side: int, ratio: str) -> tuple[int, int] | None:
    left, sep, right = ratio.partition(":")
    if not sep or not left.isdigit() or not right.isdigit() or not int(left) or not int(right):
        return None
    across, down = int(left), int(right)
    if across >= down:
        return long_side, max(16, round(long_side * down / across))
    return max(16, round(long_side * across / down)), long_side


def resolve_size(spec: ModelSpec, params: dict[str, Any]) -> tuple[int, int]:
    """Pixel size from whichever size parameter the model takes (the default when absent or odd)."""
    if spec.size_param == "resolution":
        resolution = params.get("resolution", "1K")
        ratio = params.get("aspect_ratio", "1:1")
        if isinstance(resolution, str) and resolution in RESOLUTIONS and isinstance(ratio, str):
            return _ratio_size(RESOLUTIONS[resolution], ratio) or spec.default_size
        return spec.default_size
    if spec.size_param == "size":
        text = params.get("size")
        if isinstance(text, str):
            across, sep, down = text.lower().partition("x")
            if sep and across.isdigit() and down.isdigit():
                pixels = int(across), int(down)
                if all(16 <= side <= 4096 for side in pixels):
                    return pixels
        return spec.default_size
    size = params.get("image_size")
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
    return spec.default_size


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


_ACTION_ALIASES: dict[str, str] = {
    "generate_image": "images/generate",
    "text_to_image": "images/generate",
    "image_generation": "images/generate",
    "edit_image": "images/edit",
    "image_edit": "images/edit",
    "image_to_image": "images/edit",
    "generate_video": "videos/generate",
    "video_generation": "videos/generate",
    "text_to_video": "videos/generate",
    "image_to_video": "videos/generate",
}


def matches_action(spec: ModelSpec, action: str) -> bool:
    """Loose reading of the undocumented ``action`` filter: the endpoint (``images/edit``), its first
    part (``images``, ``videos``), an output kind (``image``, ``video``) or an alias such as
    ``text_to_image``, ``image_to_image`` or ``image_to_video`` (which also needs an image input)."""
    action = action.strip().lower().strip("/")
    endpoint = spec.endpoint.strip("/")
    if action in (endpoint, endpoint.split("/")[0], *spec.outputs):
        return True
    if _ACTION_ALIASES.get(action) != endpoint:
        return False
    if action == "image_to_video":
        return spec.input_param is not None
    if action == "text_to_video":
        return spec.input_param is None
    return True


def matches_search(spec: ModelSpec, text: str) -> bool:
    """Case-insensitive substring search over id, display name, description and developer."""
    needle = text.strip().lower()
    haystack = (
        " ".join(str(spec.model.get(key) or "") for key in ("id", "display_name", "description"))
        + " "
        + str(spec.model["developer"]["name"])
    )
    return needle in haystack.lower()
