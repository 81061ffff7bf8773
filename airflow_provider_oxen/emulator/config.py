"""Emulator settings: what it is started with, and the subset ``POST /_emulator/config`` may change."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

# A video takes this many times an image's render time unless video_render_seconds says otherwise.
VIDEO_RENDER_FACTOR = 4.0


def money(value: Decimal) -> str:
    """A decimal amount as the API writes it: a string with four places (``"0.0600"``)."""
    return str(value.quantize(Decimal("0.0001")))


# A decimal string or a number (never a boolean), finite and >= 0; shown as money.
Credits = Annotated[Decimal, Field(ge=0, strict=False), PlainSerializer(money)]
Seconds = Annotated[float, Field(ge=0)]


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told at start-up (``port=0`` picks a free port)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    port: int = 0
    # The only accepted bearer token; None accepts any non-empty one.
    api_key: str | None = Field(default=None, repr=False)
    render_seconds: Seconds = 2.0
    # Render times drawn uniformly from [render_seconds, render_seconds_max] (a value below
    # render_seconds counts as render_seconds); None, the default: every render takes render_seconds.
    render_seconds_max: Seconds | None = None
    # Seed of that draw (the sequence restarts on reset and when the seed changes); None: unseeded.
    render_seed: int | None = None
    queue_seconds: Seconds = 0.2
    # How long a video renders (queue and sync); None means VIDEO_RENDER_FACTOR x the image render
    # time (render_seconds, or the drawn time of the range).
    video_render_seconds: Seconds | None = None
    # A negative TTL is allowed on purpose: it hands out already-expired URLs.
    url_ttl_seconds: float = 3600.0
    events_enabled: bool = True
    keepalive_seconds: Seconds = 15.0
    # Queue rows also carry the request's own model parameters as top-level fields ("plus the
    # request's own parameters in some versions"); off by default, as in the documented shape.
    row_parameters: bool = False
    # Remaining credits of the account (USD); None is unlimited. Spending lowers it; a request that
    # costs more than what is left answers 402 insufficient_credits.
    credits: Credits | None = None
    # Base of result-file URLs; set to the bound address at start.
    public_url: str | None = None
    log_requests: bool = False

    def render_range(self) -> tuple[float, float]:
        """The (lowest, highest) render time of a queue generation."""
        high = self.render_seconds if self.render_seconds_max is None else self.render_seconds_max
        return self.render_seconds, max(self.render_seconds, high)

    def video_seconds(self, image_seconds: float) -> float:
        """A video's render time: ``video_render_seconds``, else the factor times ``image_seconds``."""
        if self.video_render_seconds is not None:
            return self.video_render_seconds
        return VIDEO_RENDER_FACTOR * image_seconds

    def runtime_view(self) -> dict[str, Any]:
        """The settings as JSON for the control API; the API key itself is never included."""
        view = self.model_dump(mode="json", include=set(RUNTIME_SETTINGS))
        return {**view, "api_key_set": self.api_key is not None}

    def apply_runtime(self, changes: dict[str, Any]) -> None:
        """Validate and apply a partial update (all or nothing); raises ValueError or ValidationError."""
        unknown = set(changes) - RUNTIME_SETTINGS
        if unknown:
            raise ValueError(f"Unknown settings {sorted(unknown)}; allowed: {sorted(RUNTIME_SETTINGS)}")
        updated = self.model_validate({**self.model_dump(), **changes})
        for key in changes:
            setattr(self, key, getattr(updated, key))


# What the control API may change: everything but how the server was started.
RUNTIME_SETTINGS = frozenset(EmulatorConfig.model_fields) - {"port", "api_key", "public_url", "log_requests"}
