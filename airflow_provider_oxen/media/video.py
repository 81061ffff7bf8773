"""Automatic checks of generated video clips, and the poster frame a reviewer sees for each one.

Decoding is PyAV's (the ``video`` extra); without it clips are stored with checks that say
:data:`NOT_CHECKED` (``ok`` None) and no poster frame.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import IO, Any

from PIL import Image

from airflow_provider_oxen.media.checks import (
    CheckSettings,
    DecodedImage,
    ExpectedImage,
    ImageCheck,
    find_problems,
)

NOT_CHECKED = "not checked (install the video extra)"
VIDEO_MIME_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
}
# The poster frame is stored next to its clip, at the clip's key plus this suffix.
POSTER_SUFFIX = ".poster.jpg"
POSTER_CONTENT_TYPE = "image/jpeg"
POSTER_QUALITY = 85
# A clip passes the duration check when it is within max(0.5 s, 10 %) of the requested duration.
DURATION_TOLERANCE_SECONDS = 0.5
DURATION_TOLERANCE_RATIO = 0.1
_AV_TIME_BASE = 1_000_000  # FFmpeg's AV_TIME_BASE: container durations are in microseconds


def load_av() -> ModuleType | None:
    """PyAV, or None when the ``video`` extra is not installed (imported on each call: cheap)."""
    try:
        import av
    except ImportError:
        return None
    return av


def is_video(result: Mapping[str, Any]) -> bool:
    """A result (or record) describes a video: its ``media_type`` is ``video``."""
    return result.get("media_type") == "video"


def poster_key(key: str) -> str:
    """Where a clip's poster frame is stored: ``<clip key>.poster.jpg``."""
    return key + POSTER_SUFFIX


def duration_text(seconds: float | None) -> str | None:
    """``5 s``, ``7.5 s`` (one decimal at most); None when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return f"{round(seconds, 1):g} s"


def seconds_value(value: Any) -> float | None:
    """A duration as the API's parameters carry it (``5``, ``"5"``, ``"5s"``) in seconds, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", value)
        if match is None:
            return None
        number = float(match.group(1))
    else:
        return None
    return number if math.isfinite(number) and number > 0 else None


def requested_duration(result: Mapping[str, Any]) -> float | None:
    """The duration a generation asked for (its parameters' ``duration``)."""
    parameters = result.get("parameters")
    return seconds_value(parameters.get("duration")) if isinstance(parameters, Mapping) else None


@dataclass(frozen=True)
class ExpectedVideo(ExpectedImage):
    """What the generation asked for, its duration too; ``None`` means unknown, so not checked."""

    duration_seconds: float | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> ExpectedVideo:
        image = ExpectedImage.from_result(result)
        return cls(image.width, image.height, image.format, requested_duration(result))


@dataclass(frozen=True)
class DecodedVideo(DecodedImage):
    """What decoding found: ``frames`` decoded, ``declared_frames`` by the container (None: unsaid)."""

    codec: str | None = None
    frames: int = 0
    declared_frames: int | None = None
    fps: float | None = None
    duration_seconds: float | None = None

    @property
    def problem(self) -> str | None:
        if self.error is None and self.frames <= 0:
            return "has no decodable frames"
        if self.error is None and self.declared_frames is not None and self.frames < self.declared_frames:
            return f"only {self.frames} of the {self.declared_frames} frames its container declares decode"
        return self.error


@dataclass(frozen=True)
class VideoCheck(ImageCheck):
    """The verdict for one clip: ``ok`` True (no problems), False (problems), None (not checked)."""

    codec: str | None = None
    frames: int | None = None
    fps: float | None = None
    duration_seconds: float | None = None
    note: str | None = None

    @classmethod
    def not_checked(cls, note: str = NOT_CHECKED) -> VideoCheck:
        return cls(ok=None, note=note)

    def summary(self) -> str:
        if self.ok is None:
            return self.note or "not checked"
        return super().summary()


def _container_format(container: Any) -> str | None:
    """The API's name for the container: FFmpeg's demuxer names families (``mov,mp4,m4a,…``)."""
    names = str(getattr(container.format, "name", "") or "").split(",")
    if "mp4" in names or "mov" in names:
        brand = str((container.metadata or {}).get("major_brand", "")).strip().lower()
        return "mov" if brand == "qt" else "mp4"
    if "webm" in names or "matroska" in names:
        return "webm"
    return names[0] or None


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / _AV_TIME_BASE
    return None


def _middle(declared: int | None, duration: float | None, fps: float | None) -> int | None:
    """The poster frame's index, from what the container says (None: count the frames first)."""
    if declared:
        return declared // 2
    if duration and fps:
        estimate = int(duration * fps)
        return estimate // 2 if estimate > 0 else None
    return None


def _rewind(source: str | IO[bytes]) -> str | IO[bytes]:
    if not isinstance(source, str):
        source.seek(0)
    return source


def decode_video(
    source: str | IO[bytes],
    *,
    on_poster: Callable[[Image.Image], None] | None = None,
    decode_all: bool = True,
) -> DecodedVideo:
    """Decode the first video stream of ``source`` (a path, or a seekable file), one frame at a time.

    Every frame is decoded (that catches corrupt data) unless ``decode_all=False``; the middle
    one goes to ``on_poster`` as an RGB image. Raises RuntimeError without PyAV.
    """
    av = load_av()
    if av is None:
        raise RuntimeError(NOT_CHECKED)
    width = height = fmt = codec = declared = fps = duration = error = None
    frames = 0
    poster_index: int | None = None
    try:
        with av.open(_rewind(source), mode="r") as container:
            fmt = _container_format(container)
            if not container.streams.video:
                return DecodedVideo(format=fmt, error="has no video stream")
            stream = container.streams.video[0]
            context = stream.codec_context
            width, height = (context.width or None), (context.height or None)
            codec = context.name
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            declared = int(stream.frames) if stream.frames else None
            duration = _duration(container, stream)
            if width and height and width * height > (Image.MAX_IMAGE_PIXELS or math.inf):
                error = f"frame size {width}x{height} is above the decompression-bomb limit"
            else:
                context.thread_type = "AUTO"
                target = _middle(declared, duration, fps) if on_poster is not None else None
                end_time = None
                for frame in container.decode(stream):
                    if target is not None and frames == target and on_poster is not None:
                        on_poster(frame.to_image())
                        poster_index = frames
                        if not decode_all:
                            break
                    frames += 1
                    if frame.time is not None and fps:
                        end_time = float(frame.time) + 1 / fps
                if duration is None and end_time is not None:
                    duration = end_time
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        error = (
            f"video data is corrupt or truncated after {frames} frame(s) ({exc})"
            if frames
            else f"does not decode as a video ({exc})"
        )
    if error is None and on_poster is not None and poster_index is None and frames:
        _poster_by_counting(av, source, frames // 2, on_poster)
    if error is None and not decode_all and poster_index is not None:
        frames = declared or 0  # stopped at the poster: the container's count
    return DecodedVideo(width, height, fmt, error, codec, frames, declared, _rounded(fps), _rounded(duration))


def _poster_by_counting(
    av: ModuleType, source: str | IO[bytes], index: int, on_poster: Callable[[Image.Image], None]
) -> None:
    """Second pass for a container that did not say how long it is: decode up to frame ``index``."""
    with av.open(_rewind(source), mode="r") as container:
        for number, frame in enumerate(container.decode(container.streams.video[0])):
            if number == index:
                on_poster(frame.to_image())
                return


def evaluate_video(
    decoded: DecodedVideo, size_bytes: int, expected: ExpectedVideo, settings: CheckSettings
) -> VideoCheck:
    """Judge a decoded clip against what was requested; every problem found is listed."""
    problems = find_problems(
        decoded, size_bytes, expected, settings, max_bytes=settings.max_video_bytes, maximum="video maximum"
    )
    wanted, found = expected.duration_seconds, decoded.duration_seconds
    if settings.check_duration and wanted is not None and found is not None and decoded.error is None:
        tolerance = max(DURATION_TOLERANCE_SECONDS, DURATION_TOLERANCE_RATIO * wanted)
        if abs(found - wanted) > tolerance:
            problems.append(f"lasts {found:g} s, expected {wanted:g} s")
    return VideoCheck.verdict(decoded, problems)


def poster_jpeg(image: Image.Image, *, quality: int = POSTER_QUALITY) -> bytes:
    """The poster frame as a baseline JPEG at the clip's size (deterministic: no timestamps, no EXIF)."""
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def frame_rate_text(fps: float | None) -> str | None:
    if fps is None or fps <= 0:
        return None
    return f"{round(fps, 2):g} fps"
