"""A contact sheet: one PNG grid of a batch's thumbnails, each captioned with id, prompt and check status.

Built from thumbnails kept while each file was processed: never the full-size images again.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from airflow_provider_oxen.media.video import duration_text

PAD = 8
CAPTION_LINES = 3
COLUMNS, THUMB = 4, 256  # the transfer's sheet: thumbnails per row, a thumbnail's edge in pixels
_BORDER = 3
_BACKGROUND = (245, 245, 245)
_PLACEHOLDER = (200, 200, 200)
_TEXT = (20, 20, 20)
_MUTED = (90, 90, 90)
_OK = (20, 130, 60)
_FAIL = (190, 30, 30)
_UNCHECKED = (120, 120, 120)
_ELLIPSIS = "..."
_PLAY_DISC = (30, 30, 30)
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class SheetItem:
    """One cell: a thumbnail (scaled to fit; a clip's poster frame) and its caption's facts."""

    image: Image.Image | None
    generation_id: str
    prompt: str | None = None
    ok: bool | None = None
    problems: tuple[str, ...] = ()
    media_type: str = "image"
    duration_seconds: float | None = None
    note: str | None = None

    @property
    def is_video(self) -> bool:
        return self.media_type == "video"

    @property
    def kind_text(self) -> str | None:
        """``video, 5 s`` for a clip (``video`` when its duration is unknown); None for an image."""
        if not self.is_video:
            return None
        duration = duration_text(self.duration_seconds)
        return f"video, {duration}" if duration else "video"


def make_thumbnail(image: Image.Image, thumb: int = THUMB) -> Image.Image:
    """An RGB copy fitting in ``thumb`` x ``thumb`` (never enlarged); transparency over white."""
    width, height = image.size
    scale = min(thumb / width, thumb / height, 1.0)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Resized first, converted after: work and memory follow the thumbnail, not the image.
    source = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGBA")
    small = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    if small.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", size, (255, 255, 255))
        flat.paste(small.convert("RGBA"), mask=small.getchannel("A"))
        return flat
    return small.convert("RGB")


def _font_size(thumb: int) -> int:
    return max(10, thumb // 18)


def _line_height(thumb: int) -> int:
    return _font_size(thumb) + 4


def _cell_size(thumb: int) -> tuple[int, int]:
    return thumb + 2 * PAD, PAD + thumb + PAD + CAPTION_LINES * _line_height(thumb) + PAD


def sheet_size(count: int, *, columns: int = COLUMNS, thumb: int = THUMB) -> tuple[int, int]:
    """Pixel size of the sheet for ``count`` items (columns shrink to ``count`` for small batches)."""
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    cell_width, cell_height = _cell_size(thumb)
    return cols * cell_width, rows * cell_height


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font: no system fonts or downloads needed.
    return ImageFont.load_default(size=size)


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """``text`` on one line, cut with an ellipsis to fit ``width`` pixels."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits together with the ellipsis
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle] + _ELLIPSIS) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + _ELLIPSIS


def _status(item: SheetItem) -> tuple[str, tuple[int, int, int]]:
    if item.ok is None:
        return item.note or "not checked", _UNCHECKED
    if item.ok:
        return "checks OK", _OK
    first = item.problems[0] if item.problems else "failed"
    return f"FAIL ({len(item.problems)}): {first}", _FAIL


def _draw_cell(
    sheet: Image.Image, draw: ImageDraw.ImageDraw, item: SheetItem, x: int, y: int, thumb: int
) -> None:
    status, colour = _status(item)
    box = (x + PAD, y + PAD, x + PAD + thumb - 1, y + PAD + thumb - 1)
    draw.rectangle(box, fill=_PLACEHOLDER)
    font = _font(_font_size(thumb))
    if item.image is not None:
        fits = max(item.image.size) <= thumb and item.image.mode == "RGB"
        picture = item.image if fits else make_thumbnail(item.image, thumb)
        left = x + PAD + (thumb - picture.width) // 2
        top = y + PAD + (thumb - picture.height) // 2
        sheet.paste(picture, (left, top))
        if item.is_video:
            _play_mark(draw, left, top + picture.height, thumb)
    else:
        draw.text(
            (x + PAD + thumb // 2, y + PAD + thumb // 2),
            "video, no preview" if item.is_video else "no preview",
            font=font,
            fill=_MUTED,
            anchor="mm",
        )
    # A coloured frame makes failures visible at a glance, before reading any caption.
    outer = (box[0] - _BORDER, box[1] - _BORDER, box[2] + _BORDER, box[3] + _BORDER)
    draw.rectangle(outer, outline=colour, width=_BORDER)

    line = _line_height(thumb)
    top = y + PAD + thumb + PAD
    kind = item.kind_text
    captions = (
        (f"{item.generation_id[:8]} \N{MIDDLE DOT} {kind}" if kind else item.generation_id[:8], _TEXT),
        (item.prompt or "(no prompt)", _MUTED),
        (status, colour),
    )
    for number, (text, fill) in enumerate(captions):
        draw.text((x + PAD, top + number * line), _fit(text, font, thumb), font=font, fill=fill)


def _play_mark(draw: ImageDraw.ImageDraw, left: int, bottom: int, thumb: int) -> None:
    """A white play triangle on a dark disc in the picture's lower left corner: "this is a clip"."""
    radius = max(8, thumb // 12)
    cx, cy = left + radius + 4, bottom - radius - 4
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_PLAY_DISC)
    half = radius // 2
    draw.polygon(
        [(cx - half + 2, cy - half - 1), (cx - half + 2, cy + half + 1), (cx + half + 2, cy)], fill=_WHITE
    )


def make_contact_sheet(items: Sequence[SheetItem], *, columns: int = COLUMNS, thumb: int = THUMB) -> bytes:
    """One PNG grid of ``items`` (row by row), each with a caption: short id (and ``video, 5 s`` for a
    clip), prompt, check status."""
    if not items:
        raise ValueError("A contact sheet needs at least one item")
    if columns < 1 or thumb < 16:
        raise ValueError(f"columns must be >= 1 and thumb >= 16, got columns={columns}, thumb={thumb}")
    cols = min(columns, len(items))
    cell_width, cell_height = _cell_size(thumb)
    sheet = Image.new("RGB", sheet_size(len(items), columns=columns, thumb=thumb), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, item in enumerate(items):
        row, col = divmod(index, cols)
        _draw_cell(sheet, draw, item, col * cell_width, row * cell_height, thumb)
    out = io.BytesIO()
    # Deterministic encoding (no timestamps): the same batch gives the same bytes, so a re-run
    # finds the stored sheet unchanged and does not upload it again.
    sheet.save(out, "PNG", compress_level=6)
    return out.getvalue()
