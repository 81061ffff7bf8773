"""Wire models: what goes to the Oxen API and what comes back.

A request carries its parameters by the names its model's ``request_schema`` uses. Response
models are lenient (unknown fields kept, an unknown status is ``UNKNOWN``): an API addition
never breaks a running pipeline.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_oxen.exceptions import OxenValidationError
from airflow_provider_oxen.redact import redact_text

DEFAULT_MODEL = "ideogram-v4"
# The queue accepts at most this many generations per request (the contract's 1 to 4).
MAX_GENERATIONS_PER_REQUEST = 4


# Pixel dimensions of the size presets several image models take (``image_size``), used to
# check what comes back.
PRESET_DIMENSIONS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}


class ImageGenerationRequest(BaseModel):
    """A request for any media model: its id, and its parameters by the names its schema uses.

    Only what every model shares is checked here (a prompt, or a video model's
    ``multi_prompt``); the model's ``request_schema`` is the authority on the rest
    (:meth:`OxenHook.prepare <airflow_provider_oxen.hooks.oxen.OxenHook.prepare>`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=1)
    prompt: str | None = None

    def parameters(self) -> dict[str, Any]:
        """Model parameters as the API expects them (everything except ``model``)."""
        payload = self.model_dump(mode="json", exclude_none=True)
        payload.pop("model", None)
        return payload


def build_image_request(
    model: str = DEFAULT_MODEL,
    prompt: str | None = "",
    **parameters: Any,
) -> ImageGenerationRequest:
    """The request for ``model``, raising :class:`OxenValidationError` naming the field.

    ``prompt`` may be None only when a ``multi_prompt`` (video models) is given instead.
    Parameters set to None are not sent.
    """
    parameters = {key: value for key, value in parameters.items() if value is not None}
    if prompt is not None and parameters.get("multi_prompt"):
        raise OxenValidationError("Give either prompt or multi_prompt, not both", field="multi_prompt")
    if (prompt is None and not parameters.get("multi_prompt")) or (
        isinstance(prompt, str) and not prompt.strip()
    ):
        raise OxenValidationError(
            f"Invalid value for 'prompt' ({model}): Prompt cannot be empty", field="prompt"
        )
    for name in ("num_images", "num_generations"):
        if name in parameters:
            raise OxenValidationError(
                f"'{name}' is not a model parameter here: each queue row is one output, so the number "
                "is the count given to the operator (num_outputs=...) or to OxenHook.enqueue().",
                field=name,
            )
    try:
        return ImageGenerationRequest(model=model, prompt=prompt, **parameters)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise OxenValidationError(
            f"Invalid value for '{field}' ({model}): {first['msg']}", field=field
        ) from None


# A task asking for more outputs than this is probably a templating mistake; raise it per task.
DEFAULT_MAX_OUTPUTS_PER_TASK = 16


def check_output_count(value: Any, maximum: int = DEFAULT_MAX_OUTPUTS_PER_TASK) -> int:
    """``num_outputs`` as an int in 1..maximum, else an error naming the field (nothing is sent)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OxenValidationError(f"num_outputs must be an integer, got {value!r}", field="num_outputs")
    if value < 1:
        raise OxenValidationError(f"num_outputs must be at least 1, got {value}", field="num_outputs")
    if value > maximum:
        raise OxenValidationError(
            f"num_outputs is {value}, above this task's maximum of {maximum} "
            "(raise max_outputs on the operator if you mean it)",
            field="num_outputs",
        )
    return value


def split_generation_counts(total: int, per_request: int = MAX_GENERATIONS_PER_REQUEST) -> list[int]:
    """Split ``total`` queue rows into request-sized chunks of at most 4: 6 → [4, 2]."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise OxenValidationError(f"num_outputs must be at least 1, got {total!r}", field="num_outputs")
    full, rest = divmod(total, per_request)
    return [per_request] * full + ([rest] if rest else [])


class GenerationStatus(str, enum.Enum):
    """Queue row status. ``UNKNOWN`` stands in for a status this version does not know yet."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> GenerationStatus:
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELLED})


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class EnqueuedGeneration(_Lenient):
    generation_id: str
    status: GenerationStatus = GenerationStatus.QUEUED


class EnqueueResponse(_Lenient):
    generations: list[EnqueuedGeneration]


def decimal_string(value: Any) -> str | None:
    """Costs are decimal strings on the wire (``"0.0600"``); keep them exact."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        Decimal(text)
    except InvalidOperation:
        raise ValueError(f"cost {text!r} is not a decimal number") from None
    return text


# A completion event's names for what a queue row calls ``model_name``, ``result_url``, ``error_message``.
_EVENT_NAMES = {"model_name": "model", "result_url": "url", "error_message": "error"}


class _GenerationShape(_Lenient):
    """What every description of one generation shares: its id, times and cost."""

    generation_id: str
    model_name: str | None = None
    cost: str | None = None
    enqueued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_event_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for name, other in _EVENT_NAMES.items():
                if data.get(name) is None and isinstance(data.get(other), str) and data[other]:
                    data[name] = data[other]
        return data

    @field_validator("cost", mode="before")
    @classmethod
    def _cost_as_decimal_string(cls, value: Any) -> str | None:
        return decimal_string(value)


class Generation(_GenerationShape):
    """One queue row (``GET /api/ai/queue/{id}``), or what a completion event says of one.

    An event's ``model``/``url``/``error`` are read as ``model_name``/``result_url``/``error_message``.
    ``cost`` is never on a queue row: it is filled from ``GET /api/ai/generations/{id}``.
    """

    status: GenerationStatus
    prompt: str | None = None
    media_type: str | None = None
    parameters: dict[str, Any] | None = None
    result_url: str | None = None
    error_message: str | None = None
    retried_from_id: str | None = None

    @field_validator("error_message")
    @classmethod
    def _error_without_signatures(cls, value: str | None) -> str | None:
        # A failure text may quote a presigned input URL; the row reaches logs, the trigger's
        # event (stored in the database) and the exception.
        return redact_text(value) if value else value


class GenerationDetails(_GenerationShape):
    """Full metadata of one generation (``GET /api/ai/generations/{id}``): the only place with cost."""

    status: GenerationStatus | None = None


class GenerationList(_Lenient):
    """``GET /api/ai/queue``: ``{"count": N, "generations": [...]}``. Pagination is undocumented."""

    count: int | None = None
    generations: list[Generation] = Field(default_factory=list)

    @property
    def is_complete(self) -> bool:
        """Only a listing that states its count, and holds that many rows, is known to be whole."""
        return self.count is not None and self.count <= len(self.generations)


class GeneratedImage(_Lenient):
    url: str | None = None
    b64_json: str | None = None


class ImageGenerationResponse(_Lenient):
    """Answer of the synchronous ``POST /api/ai/images/generate``."""

    model: str | None = None
    created: int | None = None
    images: list[GeneratedImage] = Field(default_factory=list)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


# How text becomes each JSON type a schema may declare for a parameter.
_FROM_TEXT: dict[Any, Callable[[str], Any]] = {
    "integer": int,
    "number": _number,
    "boolean": lambda text: {"true": True, "false": False}[text.lower()],
}


class OxenModel(_Lenient):
    """A model of the catalogue; ``request_schema`` also accepts the seed's ``json_request_schema``."""

    id: str
    display_name: str | None = None
    endpoint: str | None = None
    capabilities: dict[str, Any] | None = None
    pricing: Any = None
    request_schema: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_schema_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("request_schema") is None and data.get("json_request_schema"):
            return {**data, "request_schema": data["json_request_schema"]}
        return data

    def _properties(self) -> dict[str, Any]:
        properties = (self.request_schema or {}).get("properties")
        return properties if isinstance(properties, dict) else {}

    @property
    def parameter_defaults(self) -> dict[str, Any]:
        """What the model uses for a parameter a request leaves out: its schema's ``default``s."""
        return {
            name: spec["default"]
            for name, spec in self._properties().items()
            if isinstance(spec, dict) and "default" in spec
        }

    def typed(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """``parameters`` with text in the JSON type the schema declares for it.

        Templated values arrive as text: ``"4"`` becomes 4 where the schema declares an integer
        (likewise a number or a boolean), and stays ``"4"`` where it declares a string. Text
        that is not such a value is left as it is, for the schema check to refuse by name.
        """
        typed = dict(parameters)
        for name, value in parameters.items():
            spec = self._properties().get(name)
            kind = spec.get("type") if isinstance(spec, dict) else None
            # Only a single declared type: text where ["integer", "string"] is declared is valid as it is.
            convert = _FROM_TEXT.get(kind) if isinstance(kind, str) else None
            if isinstance(value, str) and convert is not None:
                with contextlib.suppress(ValueError, KeyError):
                    typed[name] = convert(value.strip())
        return typed

    @property
    def output_kinds(self) -> list[str]:
        return list((self.capabilities or {}).get("output") or [])

    @property
    def generates_media(self) -> bool:
        """Whether the queue accepts this model (image or video output)."""
        return any(kind in ("image", "video") for kind in self.output_kinds)


# What a model does, by its inputs and outputs (``capabilities``): how a DAG picks a model.
MODEL_TASKS = ("text-to-image", "image-to-image", "text-to-video", "image-to-video")


def model_tasks(model: OxenModel) -> frozenset[str]:
    """The tasks of :data:`MODEL_TASKS` a model performs, from its declared inputs and outputs and,
    for an image input, its schema's ``input_image``."""
    inputs = {str(kind) for kind in (model.capabilities or {}).get("input") or []}
    outputs = set(model.output_kinds)
    # An image goes to a model as its ``input_image``: a schema that names no such parameter
    # cannot take one, whatever its capabilities say.
    properties = model._properties()
    takes_image = "image" in inputs and (not properties or "input_image" in properties)
    tasks = set()
    for output in ("image", "video"):
        if output in outputs:
            tasks.add(f"image-to-{output}" if takes_image else f"text-to-{output}")
    return frozenset(tasks)


def models_for(models: list[OxenModel], task: str) -> list[OxenModel]:
    """The models that perform ``task`` (one of :data:`MODEL_TASKS`)."""
    if task not in MODEL_TASKS:
        raise OxenValidationError(
            f"Unknown model task {task!r}; one of: {', '.join(MODEL_TASKS)}",
            field="task",
            allowed=list(MODEL_TASKS),
        )
    return [model for model in models if task in model_tasks(model)]


def media_type_of(model: OxenModel) -> str:
    """``"video"`` for a model whose output is video, else ``"image"``."""
    return "video" if any(t.endswith("-to-video") for t in model_tasks(model)) else "image"


class ModelList(_Lenient):
    data: list[OxenModel] = Field(default_factory=list)


class OxenEvent(BaseModel):
    """One Server-Sent Event from ``GET /api/events``."""

    event: str
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    @property
    def generation_id(self) -> str | None:
        value = self.data.get("generation_id")
        return str(value) if value else None

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return str(value) if value else None

    @property
    def result_url(self) -> str | None:
        value = self.data.get("url")
        return value if isinstance(value, str) and value else None

    @property
    def error(self) -> str | None:
        """The failure text of a ``status: failed`` completion event."""
        value = self.data.get("error")
        if isinstance(value, dict):
            value = value.get("detail") or value.get("message") or value.get("title")
        return redact_text(value) if isinstance(value, str) and value else None


COMPLETION_EVENT = "media_generation_completed"
