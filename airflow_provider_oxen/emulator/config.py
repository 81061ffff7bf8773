"""Emulator settings: the CLI flags, and the subset that ``POST /_emulator/config`` may change."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

# Money on the wire: decimal strings with four places ("0.0600").
CENT_PLACES = Decimal("0.0001")
# A video takes this many times an image's render time unless video_render_seconds says otherwise.
VIDEO_RENDER_FACTOR = 4.0

# Settings the control API may change while the server runs, with the type each must have.
RUNTIME_SETTINGS: dict[str, type] = {
    "render_seconds": float,
    "render_seconds_max": float,
    "render_seed": int,
    "queue_seconds": float,
    "sync_render_seconds": float,
    "video_render_seconds": float,
    "input_timeout_seconds": float,
    "latency_ms": float,
    "url_ttl_seconds": float,
    "events_enabled": bool,
    "keepalive_seconds": float,
    "row_parameters": bool,
    "credits": Decimal,
}


_NULLABLE = frozenset({"sync_render_seconds", "render_seconds_max", "render_seed", "video_render_seconds"})


def money(value: Decimal) -> str:
    """A decimal amount as the API writes it: a string with four places (``"0.0600"``)."""
    return str(value.quantize(CENT_PLACES))


def parse_credits(value: Any) -> Decimal | None:
    """``None`` (unlimited), or a non-negative amount from a decimal string (numbers accepted too)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError('credits must be a decimal string (e.g. "1.5000") or null for unlimited')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"credits: {value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("credits must be a finite amount >= 0")
    return amount


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told at start-up (``port=0`` picks a free port)."""

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    render_seconds: float = 2.0
    # Render times drawn uniformly from [render_seconds, render_seconds_max] (a value below
    # render_seconds counts as render_seconds); None, the default: every render takes render_seconds.
    render_seconds_max: float | None = None
    # Seed of that draw (the sequence restarts on reset and when the seed changes); None: unseeded.
    render_seed: int | None = None
    queue_seconds: float = 0.2
    # The sync endpoint sleeps this long per request; None means "same as render_seconds".
    sync_render_seconds: float | None = None
    # How long a video renders (queue and sync); None means VIDEO_RENDER_FACTOR x the image render time
    # (render_seconds, or the drawn time of the range, for the queue; the sync render time for sync).
    video_render_seconds: float | None = None
    # How long fetching an input image (input_image) may take before the generation fails.
    input_timeout_seconds: float = 30.0
    latency_ms: float = 0.0
    url_ttl_seconds: float = 3600.0
    public_url: str | None = None
    events_enabled: bool = True
    keepalive_seconds: float = 15.0
    # Queue rows also carry the request's own model parameters as top-level fields ("plus the
    # request's own parameters in some versions"); off by default, as in the documented shape.
    row_parameters: bool = False
    # Remaining credits of the account (USD); None is unlimited. Spending lowers it; a request that
    # costs more than what is left answers 402 insufficient_credits. A string or number is accepted.
    credits: Decimal | str | None = None
    default_namespace: str = "emulator-user"
    request_log_size: int = 200_000
    image_cache_bytes: int = 256 * 1024 * 1024
    log_requests: bool = False
    # Signs result-file URLs; random per run so URLs from an earlier run never validate.
    signing_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        self.credits = parse_credits(self.credits)

    @property
    def remaining_credits(self) -> Decimal | None:
        """The credits as a Decimal (None: unlimited), also after a direct assignment of a string."""
        if self.credits is None or isinstance(self.credits, Decimal):
            return self.credits
        self.credits = parse_credits(self.credits)
        return self.credits

    def render_range(self) -> tuple[float, float]:
        """The (lowest, highest) render time of a queue generation."""
        high = self.render_seconds if self.render_seconds_max is None else self.render_seconds_max
        return self.render_seconds, max(self.render_seconds, high)

    def effective_sync_render_seconds(self) -> float:
        """How long the sync endpoint "renders" for."""
        return self.render_seconds if self.sync_render_seconds is None else self.sync_render_seconds

    def video_seconds(self, image_seconds: float) -> float:
        """A video's render time: ``video_render_seconds``, else the factor times ``image_seconds``."""
        if self.video_render_seconds is not None:
            return self.video_render_seconds
        return VIDEO_RENDER_FACTOR * image_seconds

    def runtime_view(self) -> dict[str, Any]:
        """The settings as JSON for the control API; the API key itself is never included."""
        view = {name: getattr(self, name) for name in RUNTIME_SETTINGS}
        remaining = self.remaining_credits
        view["credits"] = None if remaining is None else money(remaining)
        view.update(
            host=self.host,
            port=self.port,
            public_url=self.public_url,
            api_key_set=self.api_key is not None,
            default_namespace=self.default_namespace,
        )
        return view

    def apply_runtime(self, changes: dict[str, Any]) -> None:
        """Validate and apply a partial update; raises ValueError naming the first bad key."""
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            kind = RUNTIME_SETTINGS.get(key)
            if kind is None:
                raise ValueError(f"Unknown setting {key!r}; allowed: {sorted(RUNTIME_SETTINGS)}")
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                parsed[key] = value
                continue
            if kind is Decimal:
                parsed[key] = parse_credits(value)
                continue
            if key in _NULLABLE and value is None:
                parsed[key] = None
                continue
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{key} must be an integer or null")
                parsed[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number")
            # A negative TTL is allowed on purpose: it hands out already-expired URLs.
            if value < 0 and key != "url_ttl_seconds":
                raise ValueError(f"{key} must be >= 0")
            parsed[key] = float(value)
        for key, value in parsed.items():
            setattr(self, key, value)

    def copy(self) -> EmulatorConfig:
        """An independent copy (used to restore start-up settings on reset)."""
        return dataclasses.replace(self)
