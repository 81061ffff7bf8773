"""The model catalogue: model objects as ``/api/ai/models`` serves them, and their request schemas.

Parameter names differ per model, as on the real API: the size is ``image_size`` (presets or
``{"width", "height"}``), ``resolution`` (with ``aspect_ratio``) or ``size`` (``"WxH"``), and only
``ideogram-v4`` takes ``num_images``. Edit models take ``input_image`` (one URL, or an array of URLs);
video models take ``prompt`` or ``multi_prompt``, ``duration`` (integer seconds, or for one model
text from ``["5", "10"]``) and ``aspect_ratio``. Pricing has the
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

# ``image_size`` presets, sized like ``resolution`` + ``aspect_ratio``: the shape their name says,
# 1024 pixels on the long side (``square``: 512).
PRESET_NAMES = ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]
# ``resolution`` values: the long side of the image; ``aspect_ratio`` gives the short one.
RESOLUTIONS: dict[str, int] = {"1K": 1024, "2K": 2048}
DEFAULT_SIZE = (1024, 1024)
MAX_IMAGES_PER_REQUEST = 4
# Video results: small frames at a low frame rate, so files stay tiny and render fast.
VIDEO_FPS = 8
VIDEO_SIZES: dict[str, tuple[int, int]] = {"16:9": (320, 180), "9:16": (180, 320), "1:1": (240, 240)}
VIDEO_DURATION_RANGE = (3, 10)
DEFAULT_VIDEO_DURATION = 5
IMAGE, EDIT, VIDEO, CHAT = "/images/generate", "/images/edit", "/videos/generate", "/chat/completions"

_PROMPT: dict[str, Any] = {"type": "string", "minLength": 1}
_SEED: dict[str, Any] = {"type": "integer"}
_FORMATS: dict[str, Any] = {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"}
# An input URL the emulator can fetch: http(s) only (the contract: "a publicly reachable URL").
_URL: dict[str, Any] = {"type": "string", "format": "uri", "pattern": "^https?://[^\\s]+$", "minLength": 8}


def _ui(order: int, render: str, basic: bool = True) -> dict[str, Any]:
    """Custom, non-validating UI hints, the way some real schemas carry them: a client must ignore
    them when validating."""
    return {"basic": basic, "x-order": order, "renderType": render}


def _schema(
    title: str, properties: dict[str, Any], required: tuple[str, ...] = ("prompt",), closed: bool = True
) -> dict[str, Any]:
    """A request schema; closed ones refuse parameters they do not name (``additionalProperties``)."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{title} input",
        "type": "object",
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


_IDEOGRAM = _schema(
    "ideogram-v4",
    {
        "prompt": {**_PROMPT, "description": "What to draw."},
        "image_size": {"type": "string", "enum": PRESET_NAMES, "default": "square_hd"},
        "rendering_speed": {
            "type": "string",
            "enum": ["TURBO", "BALANCED", "QUALITY"],
            "default": "BALANCED",
        },
        "expansion_model": {"type": "string", "enum": ["Medium", "Large"], "default": "Medium"},
        "acceleration": {"type": "string", "enum": ["none", "low", "regular", "high"], "default": "none"},
        "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES_PER_REQUEST, "default": 1},
        "seed": _SEED,
        "enable_safety_checker": {"type": "boolean", "default": True},
        "output_format": {"type": "string", "enum": ["jpeg", "png"], "default": "jpeg"},
    },
)
_SIDE = {"type": "integer", "minimum": 256, "maximum": 2048}
_KLEIN = _schema(
    "black-forest-labs-flux-2-klein-4b",
    {
        "prompt": _PROMPT,
        "image_size": {
            "default": "landscape_4_3",
            "anyOf": [
                {"type": "string", "enum": PRESET_NAMES},
                {
                    "type": "object",
                    "properties": {"width": _SIDE, "height": _SIDE},
                    "required": ["width", "height"],
                    "additionalProperties": False,
                },
            ],
        },
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 4},
        "seed": _SEED,
        "output_format": _FORMATS,
    },
)
_NANO_BANANA = _schema(
    "nano-banana-2",
    {
        "prompt": {**_PROMPT, **_ui(0, "textarea")},
        "resolution": {"type": "string", "enum": list(RESOLUTIONS), "default": "1K", **_ui(1, "select")},
        "aspect_ratio": {
            "type": "string",
            "enum": ["1:1", "4:3", "3:4", "16:9", "9:16"],
            "default": "1:1",
            **_ui(2, "select"),
        },
        "output_format": {**_FORMATS, **_ui(3, "select", basic=False)},
        "seed": {**_SEED, **_ui(4, "number", basic=False)},
    },
)
# Open: no ``additionalProperties``, so unknown parameters are allowed (and ignored) by this model.
_GPT_IMAGE = _schema(
    "openai/gpt-image-1.5:latest",
    {
        "prompt": {**_PROMPT, "x-order": 0},
        "size": {
            "type": "string",
            "enum": ["1024x1024", "1536x1024", "1024x1536", "auto"],
            "default": "auto",
            "x-order": 1,
        },
        "quality": {"type": "string", "enum": ["low", "medium", "high", "auto"], "default": "auto"},
        "background": {"type": "string", "enum": ["auto", "transparent", "opaque"], "default": "auto"},
        "output_format": _FORMATS,
    },
    closed=False,
)
_QWEN_EDIT = _schema(
    "qwen-image-edit",
    {
        "prompt": {**_PROMPT, "description": "How to change the input image."},
        "input_image": {**_URL, "description": "URL of the image to edit (a presigned S3 URL works)."},
        "negative_prompt": {"type": "string"},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 30},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20, "default": 4},
        "seed": _SEED,
        "output_format": _FORMATS,
    },
    ("prompt", "input_image"),
)
_NANO_BANANA_EDIT = _schema(
    "nano-banana-2-edit",
    {
        "prompt": {**_PROMPT, **_ui(0, "textarea")},
        "input_image": {
            "type": "array",
            "items": _URL,
            "minItems": 1,
            "maxItems": 4,
            "description": "URLs of 1-4 images; the first one is edited, the others are references.",
            **_ui(1, "image-list"),
        },
        "output_format": {**_FORMATS, **_ui(2, "select", basic=False)},
        "seed": {**_SEED, **_ui(3, "number", basic=False)},
    },
    ("prompt", "input_image"),
)


def _video_schema(title: str, *, input_image: bool, string_duration: bool = False) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": 2500}
    properties: dict[str, Any] = {
        "prompt": text,
        "multi_prompt": {
            "type": "array",
            "items": text,
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
        "seed": _SEED,
    }
    if string_duration:
        # As several upstream video models declare it: seconds as text, from a fixed set.
        properties["duration"] = {"type": "string", "enum": ["5", "10"], "default": "5"}
    if input_image:
        properties["input_image"] = {**_URL, "description": "URL of the reference image (first frame)."}
    schema = _schema(title, properties, ("input_image",) if input_image else ())
    # prompt or multi_prompt, not both.
    schema["oneOf"] = [{"required": ["prompt"]}, {"required": ["multi_prompt"]}]
    return schema


_T2V = _video_schema("kling-video-v2-6-pro-text-to-video", input_image=False)
_I2V = _video_schema("kling-video-o3-pro-reference-to-video", input_image=True)
_I2V_TEXT_DURATION = _video_schema(
    "kling-video-v2-5-turbo-image-to-video", input_image=True, string_duration=True
)
_TOKEN_PRICING = {"method": "token", "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}

# id: (display name, developer, endpoint, price per image (video: per second), request schema).
_MODELS: dict[str, tuple[str, str, str, Any, dict[str, Any] | None]] = {
    "ideogram-v4": ("Ideogram V4", "Ideogram", IMAGE, 0.06, _IDEOGRAM),
    "black-forest-labs-flux-2-klein-4b": ("FLUX.2 [klein] 4B", "Black Forest Labs", IMAGE, 0.012, _KLEIN),
    # A price as text (the contract: accept strings as well as numbers), and no schema.
    "flux-2-dev": ("FLUX.2 [dev]", "Black Forest Labs", IMAGE, "0.0250", None),
    "nano-banana-2": ("Nano Banana 2", "Google", IMAGE, 0.039, _NANO_BANANA),
    "openai/gpt-image-1.5:latest": ("GPT Image 1.5", "OpenAI", IMAGE, 0.04, _GPT_IMAGE),
    "qwen-image-edit": ("Qwen Image Edit", "Alibaba", EDIT, 0.03, _QWEN_EDIT),
    "nano-banana-2-edit": ("Nano Banana 2 Edit", "Google", EDIT, 0.039, _NANO_BANANA_EDIT),
    "kling-video-v2-6-pro-text-to-video": ("Kling v2.6 Pro (text to video)", "Kuaishou", VIDEO, 0.07, _T2V),
    "kling-video-o3-pro-reference-to-video": ("Kling O3 Pro (reference)", "Kuaishou", VIDEO, 0.112, _I2V),
    "kling-video-v2-5-turbo-image-to-video": (
        "Kling v2.5 Turbo (image to video)",
        "Kuaishou",
        VIDEO,
        0.07,
        _I2V_TEXT_DURATION,
    ),
    "gpt-oss-120b": ("GPT-OSS 120B", "OpenAI", CHAT, _TOKEN_PRICING, None),
}
# What each endpoint makes, and how it is described and billed.
_OUTPUTS = {IMAGE: "image", EDIT: "image", VIDEO: "video", CHAT: "text"}
_TASKS = {IMAGE: "text-to-image", EDIT: "image editing", VIDEO: "text/image-to-video", CHAT: "chat"}
_UNITS = {IMAGE: "image", EDIT: "image", VIDEO: "second"}
# The seed page names the schema field json_request_schema; one model uses that spelling so that
# clients are exercised on both names.
_JSON_REQUEST_SCHEMA_MODEL = "black-forest-labs-flux-2-klein-4b"


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry: the public model object, its schema and the schema's compiled validator."""

    model: dict[str, Any]
    schema: dict[str, Any] | None
    validator: Draft202012Validator | None

    @property
    def id(self) -> str:
        return str(self.model["id"])

    @property
    def endpoint(self) -> str:
        return str(self.model["endpoint"])

    @property
    def outputs(self) -> list[str]:
        return list(self.model["capabilities"]["output"])

    @property
    def properties(self) -> dict[str, Any]:
        return (self.schema or {}).get("properties", {})

    @property
    def makes_video(self) -> bool:
        return self.endpoint == VIDEO

    @property
    def makes_images(self) -> bool:
        return "image" in self.outputs

    @property
    def media_type(self) -> str:
        return "video" if self.makes_video else "image"

    @property
    def is_edit(self) -> bool:
        """An image-to-image model (``/images/edit``): its ``input_image`` is edited."""
        return self.endpoint == EDIT

    @property
    def input_param(self) -> str | None:
        """The parameter naming input image URL(s), when the schema has one."""
        return "input_image" if "input_image" in self.properties else None

    @property
    def count_param(self) -> str | None:
        """The parameter asking for several images in one request (only where the schema has it)."""
        return "num_images" if "num_images" in self.properties else None

    def default(self, name: str, fallback: Any) -> Any:
        """The schema's default for a parameter, else ``fallback``."""
        return self.properties.get(name, {}).get("default", fallback)

    def price(self, params: dict[str, Any], images: int = 1) -> Decimal:
        """What one request costs: ``cost_per_second`` x its duration, else ``cost_per_image`` x images."""
        pricing = self.model["pricing"]
        unit = pricing["method"]
        price = Decimal(str(pricing.get(f"cost_per_{unit}", 0)))
        return price * (resolve_duration(self, params) if unit == "second" else images)

    def public(self) -> dict[str, Any]:
        """A fresh copy of the model object, safe for the caller to serialise or mutate."""
        return copy.deepcopy(self.model)


def _spec(model_id: str, name: str, developer: str, endpoint: str, price: Any, schema: Any) -> ModelSpec:
    unit = _UNITS.get(endpoint)
    pricing = price if isinstance(price, dict) else {"method": unit, f"cost_per_{unit}": price}
    description = f"{name}: {_TASKS[endpoint]}."
    inputs = ["text", "image"] if "input_image" in (schema or {}).get("properties", {}) else ["text"]
    schema_key = "json_request_schema" if model_id == _JSON_REQUEST_SCHEMA_MODEL else "request_schema"
    model = {
        "id": model_id,
        "object": "model",
        "created": 1767225600,
        "owned_by": developer.lower().replace(" ", "-"),
        "display_name": name,
        "description": description,
        "summary": description,
        "model_type": "base",
        "endpoint": endpoint,
        "capabilities": {"input": inputs, "output": [_OUTPUTS[endpoint]]},
        "pricing": pricing,
        "fine_tuning": None,
        "deployments": [{"provider": "emulator", "status": "live", "region": "local"}],
        "developer": {"name": developer, "website": None},
        "released_at": "2026-01-01T00:00:00Z",
        schema_key: schema,
    }
    validator = None
    if schema is not None:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
    return ModelSpec(model, schema, validator)


def build_catalogue() -> dict[str, ModelSpec]:
    """All models, keyed by id; validators are compiled once here."""
    return {model_id: _spec(model_id, *row) for model_id, row in _MODELS.items()}


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
        extra = sorted(name for name in error.instance if name not in spec.properties)
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
    """The prompt rule, then the model's schema, if it has one (None: valid).

    The prompt comes first: a video schema's oneOf (prompt | multi_prompt) would only say "not valid
    under ...", where check_prompt names the field.
    """
    problem = check_prompt(spec, params)
    if problem is not None or spec.validator is None:
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
    default = int(spec.default("duration", DEFAULT_VIDEO_DURATION))
    duration = params.get("duration", default)
    if isinstance(duration, str) and duration.isdigit():
        duration = int(duration)
    low, high = VIDEO_DURATION_RANGE
    if isinstance(duration, bool) or not isinstance(duration, int) or not low <= duration <= high:
        return default
    return duration


def resolve_video_size(params: dict[str, Any]) -> tuple[int, int]:
    """Frame size from ``aspect_ratio`` (16:9 when absent or unknown)."""
    ratio = params.get("aspect_ratio")
    return VIDEO_SIZES.get(ratio, VIDEO_SIZES["16:9"]) if isinstance(ratio, str) else VIDEO_SIZES["16:9"]


def input_urls(spec: ModelSpec, params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, url)`` of every input image to fetch, labelled as the parameter (``input_image``,
    or ``input_image[1]`` for an array); empty for models without inputs. Call on validated params."""
    name = spec.input_param
    value = params.get(name) if name is not None else None
    if isinstance(value, str):
        return [(str(name), value)]
    if isinstance(value, list):
        return [(f"{name}[{i}]", str(url)) for i, url in enumerate(value)]
    return []


def _pixels(width: Any, height: Any) -> tuple[int, int] | None:
    sides = (width, height)
    if all(isinstance(side, int) and not isinstance(side, bool) and 16 <= side <= 4096 for side in sides):
        return width, height
    return None


def _shaped(long_side: int, aspect_ratio: str) -> tuple[int, int] | None:
    """``long_side`` pixels on the long side of an ``"across:down"`` shape; None when it is odd."""
    across, _, down = aspect_ratio.partition(":")
    if not (long_side and across.isdigit() and down.isdigit() and int(across) and int(down)):
        return None
    ratio = int(down) / int(across)
    if ratio <= 1:
        return long_side, max(16, round(long_side * ratio))
    return max(16, round(long_side / ratio)), long_side


def _preset(name: str) -> tuple[int, int] | None:
    """A preset's pixels: ``portrait_4_3`` is 3:4 and ``landscape_16_9`` 16:9, 1024 on the long side."""
    if name not in PRESET_NAMES:
        return None
    if name.startswith("square"):
        return _shaped(1024 if name == "square_hd" else 512, "1:1")
    orientation, wide, narrow = name.split("_")
    return _shaped(1024, f"{wide}:{narrow}" if orientation == "landscape" else f"{narrow}:{wide}")


def resolve_size(spec: ModelSpec, params: dict[str, Any]) -> tuple[int, int]:
    """Pixel size from whichever size parameter the model takes: ``resolution`` (the long side) with
    ``aspect_ratio``, ``size`` ("WxH"), or ``image_size`` (a preset or ``{"width", "height"}``);
    the default size when absent or odd."""
    if "resolution" in spec.properties:
        long_side = RESOLUTIONS.get(str(params.get("resolution", "1K")), 0)
        return _shaped(long_side, str(params.get("aspect_ratio", "1:1"))) or DEFAULT_SIZE
    if "size" in spec.properties:
        across, _, down = str(params.get("size", "")).lower().partition("x")
        if across.isdigit() and down.isdigit():
            return _pixels(int(across), int(down)) or DEFAULT_SIZE
        return DEFAULT_SIZE
    default = _preset(str(spec.default("image_size", "square_hd"))) or DEFAULT_SIZE
    size = params.get("image_size")
    if isinstance(size, str):
        return _preset(size) or default
    if isinstance(size, dict):
        return _pixels(size.get("width"), size.get("height")) or default
    return default


def resolve_format(spec: ModelSpec, params: dict[str, Any]) -> str:
    """Output format for already-validated parameters ("jpg" is read as jpeg), else the default."""
    default = str(spec.default("output_format", "png"))
    fmt = str(params.get("output_format", default)).lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    return fmt if fmt in ("jpeg", "png", "webp") else default


def matches_action(spec: ModelSpec, action: str) -> bool:
    """Loose reading of the undocumented ``action`` filter: the endpoint (``images/edit``), its first
    part (``images``, ``videos``) or an output kind (``image``, ``video``)."""
    action = action.strip().lower().strip("/")
    endpoint = spec.endpoint.strip("/")
    return action in (endpoint, endpoint.split("/")[0], *spec.outputs)


def matches_search(spec: ModelSpec, text: str) -> bool:
    """Case-insensitive substring search over id, display name, description and developer."""
    fields = (spec.id, spec.model["display_name"], spec.model["description"], spec.model["developer"]["name"])
    return text.strip().lower() in " ".join(fields).lower()
