"""Real images for results: a seeded gradient with the prompt drawn on it (or, for edits, the input
image colour-shifted with the prompt drawn on it)."""

from __future__ import annotations

import hashlib
import io
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_DIRECTIONS = (
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
    Image.Transpose.TRANSPOSE,
)


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines an image's bytes.

    ``inputs`` holds the fetched input images of an edit (the first is edited, the others are
    shown as references); an edit's size is that of its first input, whatever width/height say.
    """

    prompt: str
    seed: int
    width: int
    height: int
    fmt: str
    model: str
    generation_id: str
    index: int = 0
    inputs: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]

    @property
    def filename(self) -> str:
        return f"image-{self.index}.{'jpg' if self.fmt == 'jpeg' else self.fmt}"

    def render(self) -> bytes:
        return render_edit(self) if self.inputs else render_image(self)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # load_default(size=...) ships a scalable font with Pillow >= 10.1, so no network or system fonts.
    return ImageFont.load_default(size=size)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\0".join(str(part) for part in parts).encode()).digest()


def gradient(key: str, width: int, height: int) -> Image.Image:
    """A diagonal two-colour gradient, its colours and direction derived from ``key``."""
    digest = _digest(key)
    start = (digest[0], digest[1], digest[2])
    end = (255 - digest[0], 255 - digest[1] // 2, 255 - digest[2])
    # Averaging a vertical and a horizontal ramp gives a diagonal one; a transpose picks its direction.
    # Working at 256x256 and scaling up is far cheaper than drawing full-size.
    ramp = Image.linear_gradient("L")
    diagonal = Image.blend(ramp, ramp.transpose(Image.Transpose.ROTATE_90), 0.5)
    diagonal = diagonal.transpose(_DIRECTIONS[digest[3] % len(_DIRECTIONS)])
    diagonal = diagonal.resize((width, height), Image.Resampling.BILINEAR)
    return ImageOps.colorize(diagonal, start, end)


def _background(spec: ImageSpec) -> Image.Image:
    return gradient(f"{spec.prompt}\0{spec.seed}\0{spec.generation_id}", spec.width, spec.height)


def draw_prompt(image: Image.Image, prompt: str, caption: str, *, scale: int = 16) -> None:
    """The prompt, wrapped, at the top left (white with a black outline); a small caption at the bottom."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    size = max(10, short // scale)
    font = _font(size)
    margin = max(8, short // 20)
    chars = max(8, int((width - 2 * margin) / (size * 0.55)))
    lines = textwrap.wrap(prompt, width=chars)[: max(1, (height - 3 * margin) // (size + 4))]
    draw.multiline_text(
        (margin, margin),
        "\n".join(lines),
        font=font,
        fill=(255, 255, 255),
        spacing=4,
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )
    small = _font(max(8, short // 48))
    draw.text(
        (margin, height - margin),
        caption,
        font=small,
        fill=(255, 255, 255),
        anchor="ls",
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=85)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def render_image(spec: ImageSpec) -> bytes:
    """Render one image; deterministic for the spec (CPU-bound: run it off the event loop)."""
    image = _background(spec)
    draw_prompt(image, spec.prompt, f"{spec.model} · {spec.generation_id} · seed {spec.seed}")
    return _encode(image, spec.fmt)


def decode_input(data: bytes) -> Image.Image:
    """A fetched input image as upright RGB (raises on bytes that are not a readable image)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)
        return upright.convert("RGB")


def colour_shift(image: Image.Image, key: str) -> Image.Image:
    """The image with its hues rotated by 90-270 degrees and a tint laid over it (derived from ``key``)."""
    digest = _digest(key)
    offset = 64 + digest[0] % 128
    hue, saturation, value = image.convert("HSV").split()
    hue = hue.point(lambda h: (h + offset) % 256)
    # At least some saturation, so that a grey input changes colour too.
    saturation = saturation.point(lambda s: max(s, 96))
    shifted = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    tint = Image.new("RGB", image.size, (digest[1], digest[2], 255 - digest[1]))
    return Image.blend(shifted, tint, 0.25)


def render_edit(spec: ImageSpec) -> bytes:
    """An "edited" input: the first input colour-shifted (deterministic per generation), the other
    inputs as small references along the bottom, and the prompt drawn on top; same size as the input."""
    base = decode_input(spec.inputs[0])
    image = colour_shift(base, f"{spec.generation_id}\0{spec.seed}\0{spec.prompt}")
    width, height = image.size
    if len(spec.inputs) > 1:
        thumb = max(16, min(width, height) // 5)
        margin = max(4, thumb // 8)
        for position, data in enumerate(spec.inputs[1:]):
            reference = ImageOps.fit(decode_input(data), (thumb, thumb))
            left = width - (position + 1) * (thumb + margin)
            if left < 0:
                break
            image.paste(reference, (left, height - thumb - 2 * margin))
    # A frame: an edit is recognisable at a glance even when the colours happen to be close.
    ImageDraw.Draw(image).rectangle(
        (0, 0, width - 1, height - 1), outline=(255, 255, 255), width=max(2, min(width, height) // 64)
    )
    draw_prompt(image, spec.prompt, f"{spec.model} · edit · {spec.generation_id} · seed {spec.seed}")
    return _encode(image, spec.fmt)
