"""Automatic per-image checks: it decodes, has the requested size and format, and a sane byte size.

:func:`decode_image` reads the spooled file once (its pixels reused for a thumbnail);
:func:`evaluate` lists every problem, so a batch is reported image by image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import IO, Any, TypeVar

from PIL import Image, UnidentifiedImageError

MiB = 1024 * 1024
KiB = 1024

# Pillow's format names mapped onto the API's ``output_format`` vocabulary.
_FORMAT_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "mpo": "jpeg", "png": "png", "webp": "webp"}
MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def normalise_format(value: str | None) -> str | None:
    """``"JPEG"``, ``"jpg"`` → ``"jpeg"``; ``"PNG"`` → ``"png"``; unknown names are lower-cased."""
    if not value:
        return None
    lowered = str(value).strip().lower()
    return _FORMAT_ALIASES.get(lowered, lowered)


@dataclass(frozen=True)
class CheckSettings:
    """What the checks enforce (``max_video_bytes``, ``check_duration``: clips); ``enabled=False``: none."""

    enabled: bool = True
    min_bytes: int = 1 * KiB
    max_bytes: int = 20 * MiB
    check_dimensions: bool = True
    check_format: bool = True
    max_video_bytes: int = 512 * MiB
    check_duration: bool = True

    @classmethod
    def from_param(cls, value: CheckSettings | Mapping[str, Any] | bool | None) -> CheckSettings:
        """The operator's ``checks`` argument: True/None (defaults), False (off), or overrides."""
        if isinstance(value, CheckSettings):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"Unknown check setting(s) {unknown}; allowed: {sorted(known)}")
            settings = cls(**dict(value))
            if (
                settings.min_bytes < 0
                or settings.max_bytes < settings.min_bytes
                or settings.max_video_bytes < settings.min_bytes
            ):
                raise ValueError(
                    "Check sizes must satisfy 0 <= min_bytes <= max_bytes and min_bytes <= max_video_bytes, "
                    f"got {settings}"
                )
            return settings
        raise TypeError(f"checks must be a bool, a mapping or CheckSettings, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class ExpectedImage:
    """What the generation asked for; ``None`` means unknown, so not checked."""

    width: int | None = None
    height: int | None = None
    format: str | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> ExpectedImage:
        return cls(
            width=_positive_int(result.get("width")),
            height=_positive_int(result.get("height")),
            format=normalise_format(result.get("output_format")),
        )


@dataclass(frozen=True)
class DecodedImage:
    """What decoding found; ``error`` is set when the file is not a readable image."""

    width: int | None = None
    height: int | None = None
    format: str | None = None
    error: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the file does not (wholly) decode, or None."""
        return self.error


_Check = TypeVar("_Check", bound="ImageCheck")


@dataclass(frozen=True)
class ImageCheck:
    """The verdict for one image: ``ok`` is True only when ``problems`` is empty."""

    ok: bool | None
    problems: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    format: str | None = None

    @classmethod
    def verdict(cls: type[_Check], decoded: DecodedImage, problems: list[str]) -> _Check:
        """The verdict on ``problems``, with what decoding measured (the fields both share)."""
        measured = {f.name: getattr(decoded, f.name) for f in fields(cls) if hasattr(decoded, f.name)}
        return cls(ok=not problems, problems=problems, **measured)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return "ok" if self.ok else "FAILED: " + "; ".join(self.problems)


# The signatures by which Pillow's PNG and JPEG (and MPO) plugins accept a file: what a decode
# reports as its format is decided by exactly these bytes. A WebP: "RIFF", 4 bytes, "WEBP", then
# one of the three chunk kinds Pillow's WebP plugin accepts.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))
_WEBP_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")


def check_failed(record: Mapping[str, Any]) -> bool:
    """A stored record's checks ran and found problems (``ok`` None means not checked, not failed)."""
    checks = record.get("checks")
    return isinstance(checks, Mapping) and checks.get("ok") is False


def identify_mime_type(fileobj: IO[bytes]) -> str | None:
    """The MIME type (PNG, JPEG or WebP, by Pillow's own signatures) the first 16 bytes declare,
    or None; the file is left at its start. (Pillow's ``open`` reads a whole WebP.)"""
    fileobj.seek(0)
    head = fileobj.read(16)
    fileobj.seek(0)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and head[12:16] in _WEBP_CHUNKS:
        return MIME_TYPES["webp"]
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return MIME_TYPES[fmt]
    return None


def decode_image(
    fileobj: IO[bytes], *, on_decoded: Callable[[Image.Image], None] | None = None
) -> DecodedImage:
    """Open, ``verify()`` (the container) and then fully load (the pixels) the image in ``fileobj``.

    The loaded image is handed to ``on_decoded``, then released. A decompression-bomb warning
    is an error: a huge canvas is a failed check, not a worker out of memory.
    """
    width = height = None
    fmt = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fileobj.seek(0)
            with Image.open(fileobj) as probe:
                fmt = normalise_format(probe.format)
                width, height = probe.size
                probe.verify()
            fileobj.seek(0)
            with Image.open(fileobj) as image:
                image.load()
                if on_decoded is not None:
                    on_decoded(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return DecodedImage(width, height, fmt, error=f"does not decode as an image ({exc})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data with any of these, depending on the codec.
        return DecodedImage(width, height, fmt, error=f"image data is corrupt or truncated ({exc})")
    return DecodedImage(width, height, fmt)


def find_problems(
    decoded: DecodedImage,
    size_bytes: int,
    expected: ExpectedImage,
    settings: CheckSettings,
    *,
    max_bytes: int,
    maximum: str = "maximum",
) -> list[str]:
    """What the checks of images and video clips share: size, decoding, dimensions, format."""
    problems: list[str] = []
    if size_bytes < settings.min_bytes:
        problems.append(f"size {size_bytes} B is below the minimum of {settings.min_bytes} B")
    if size_bytes > max_bytes:
        problems.append(f"size {size_bytes} B is above the {maximum} of {max_bytes} B")
    if decoded.problem is not None:
        problems.append(decoded.problem)
    wrong_width = expected.width is not None and decoded.width != expected.width
    wrong_height = expected.height is not None and decoded.height != expected.height
    if settings.check_dimensions and decoded.width is not None and (wrong_width or wrong_height):
        want = f"{expected.width or '?'}x{expected.height or '?'}"
        problems.append(f"is {decoded.width}x{decoded.height}, expected {want}")
    if settings.check_format and expected.format is not None and decoded.format != expected.format:
        problems.append(f"format is {decoded.format or 'unknown'}, expected {expected.format}")
    return problems


def evaluate(
    decoded: DecodedImage, size_bytes: int, expected: ExpectedImage, settings: CheckSettings
) -> ImageCheck:
    """Judge a decoded image against what was requested; every problem found is listed."""
    problems = find_problems(decoded, size_bytes, expected, settings, max_bytes=settings.max_bytes)
    return ImageCheck.verdict(decoded, problems)
