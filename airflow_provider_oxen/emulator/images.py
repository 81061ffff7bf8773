"""Real images for results: a seeded gradient with the prompt drawn on it, rendered lazily and cached."""

from __future__ import annotations

import asyncio
import hashlib
import io
import textwrap
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_DIRECTIONS = (
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
    Image.Transpose.TRANSPOSE,
)


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines an image's bytes."""

    prompt: str
    seed: int
    width: int
    height: int
    fmt: str
    model: str
    generation_id: str
    index: int = 0

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.fmt]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]

    @property
    def filename(self) -> str:
        return f"image-{self.index}.{self.extension}"


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # load_default(size=...) ships a scalable font with Pillow >= 10.1, so no network or system fonts.
    return ImageFont.load_default(size=size)


def _background(spec: ImageSpec) -> Image.Image:
    digest = hashlib.sha256(f"{spec.prompt}\0{spec.seed}\0{spec.generation_id}".encode()).digest()
    start = (digest[0], digest[1], digest[2])
    end = (255 - digest[0], 255 - digest[1] // 2, 255 - digest[2])
    # Averaging a vertical and a horizontal ramp gives a diagonal one; a transpose picks its direction.
    # Working at 256x256 and scaling up is far cheaper than drawing full-size.
    ramp = Image.linear_gradient("L")
    diagonal = Image.blend(ramp, ramp.transpose(Image.Transpose.ROTATE_90), 0.5)
    diagonal = diagonal.transpose(_DIRECTIONS[digest[3] % len(_DIRECTIONS)])
    diagonal = diagonal.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    return ImageOps.colorize(diagonal, start, end)


def render_image(spec: ImageSpec) -> bytes:
    """Render one image; deterministic for the spec (CPU-bound: run it off the event loop)."""
    image = _background(spec)
    draw = ImageDraw.Draw(image)

    short = min(spec.width, spec.height)
    size = max(10, short // 16)
    font = _font(size)
    margin = max(8, short // 20)
    chars = max(8, int((spec.width - 2 * margin) / (size * 0.55)))
    lines = textwrap.wrap(spec.prompt, width=chars)[: max(1, (spec.height - 3 * margin) // (size + 4))]
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
    caption = f"{spec.model} · {spec.generation_id} · seed {spec.seed}"
    draw.text(
        (margin, spec.height - margin),
        caption,
        font=small,
        fill=(255, 255, 255),
        anchor="ls",
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )

    out = io.BytesIO()
    if spec.fmt == "jpeg":
        image.save(out, "JPEG", quality=85)
    elif spec.fmt == "webp":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


class ImageCache:
    """Bounded LRU of rendered bytes; concurrent first fetches of one image share a single render."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[ImageSpec, bytes] = OrderedDict()
        self._pending: dict[ImageSpec, asyncio.Future[bytes]] = {}
        self._bytes = 0
        self.renders = 0

    async def get(self, spec: ImageSpec) -> bytes:
        """The image's bytes, rendering in a worker thread on a miss."""
        cached = self._items.get(spec)
        if cached is not None:
            self._items.move_to_end(spec)
            return cached
        pending = self._pending.get(spec)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending[spec] = future
        try:
            data = await loop.run_in_executor(None, render_image, spec)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; retrieving the exception keeps asyncio from warning about it.
            future.exception()
            raise
        finally:
            self._pending.pop(spec, None)
        future.set_result(data)
        self.renders += 1
        self._store(spec, data)
        return data

    def _store(self, spec: ImageSpec, data: bytes) -> None:
        self._items[spec] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
