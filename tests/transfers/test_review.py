"""Image checks and the contact sheet, on images made in memory."""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest
from PIL import Image

from airflow_provider_oxen.media.checks import (
    CheckSettings,
    ExpectedImage,
    ImageCheck,
    decode_image,
    evaluate,
    identify_mime_type,
    normalise_format,
)
from airflow_provider_oxen.media.contact_sheet import (
    SheetItem,
    make_contact_sheet,
    make_thumbnail,
    sheet_size,
)


def _encode(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: Any) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def _check(data: bytes, expected: ExpectedImage, **settings: Any) -> ImageCheck:
    return evaluate(
        decode_image(io.BytesIO(data)), len(data), expected, CheckSettings(**{"min_bytes": 0, **settings})
    )


PNG = _encode("PNG")  # 64x48


@pytest.mark.parametrize(
    ("data", "expected", "settings", "problems"),
    [
        (_encode("JPEG"), ExpectedImage(64, 48, "jpeg"), {}, []),
        (PNG, ExpectedImage(64, 48, "png"), {}, []),
        (_encode("WEBP"), ExpectedImage(64, 48, "webp"), {}, []),
        (
            PNG,
            ExpectedImage(100, 48, "jpeg"),
            {"min_bytes": 10_000},
            [
                f"size {len(PNG)} B is below the minimum of 10000 B",
                "is 64x48, expected 100x48",
                "format is png, expected jpeg",
            ],
        ),
        # Unknown or switched-off expectations are not checked.
        (PNG, ExpectedImage(), {}, []),
        (PNG, ExpectedImage(width=64), {}, []),
        (PNG, ExpectedImage(1, 1, "jpeg"), {"check_dimensions": False, "check_format": False}, []),
        (PNG, ExpectedImage(), {"max_bytes": 10}, [f"size {len(PNG)} B is above the maximum of 10 B"]),
    ],
)
def test_every_problem_of_an_image_is_listed(
    data: bytes, expected: ExpectedImage, settings: dict[str, Any], problems: list[str]
) -> None:
    check = _check(data, expected, **settings)
    fmt = normalise_format(Image.open(io.BytesIO(data)).format or "")
    assert check == ImageCheck(ok=not problems, problems=problems, width=64, height=48, format=fmt)
    assert check.to_dict()["problems"] == problems
    assert check.summary() == ("FAILED: " + "; ".join(problems) if problems else "ok")
    assert normalise_format("JPG") == normalise_format("JPEG") == normalise_format("jpeg") == "jpeg"


def test_not_an_image() -> None:
    check = _check(b"<html>Access denied</html>" * 100, ExpectedImage(64, 48, "png"))
    assert not check.ok and "does not decode as an image" in check.problems[0]
    assert check.width is None and check.format is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_or_corrupt_data_fails(fmt: str) -> None:
    data = _encode(fmt, (256, 256))
    check = _check(data[: len(data) // 2], ExpectedImage(256, 256))
    assert not check.ok
    assert any("corrupt or truncated" in p or "does not decode" in p for p in check.problems)
    corrupt = bytearray(_encode("PNG", (128, 128)))
    corrupt[60] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    assert not _check(bytes(corrupt), ExpectedImage(128, 128, "png")).ok


def test_a_decompression_bomb_is_a_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 = 3072 pixels: over the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = _check(_encode("PNG"), ExpectedImage())
    assert not check.ok and "does not decode" in check.problems[0]


def test_decode_hands_the_loaded_image_to_the_callback_once() -> None:
    seen: list[tuple[int, int]] = []
    decoded = decode_image(io.BytesIO(_encode("PNG", (300, 200))), on_decoded=lambda im: seen.append(im.size))
    assert seen == [(300, 200)] and decoded.error is None and decoded.format == "png"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, CheckSettings()),
        (None, CheckSettings()),
        (False, CheckSettings(enabled=False)),
        ({"max_bytes": 5000, "check_format": False}, CheckSettings(max_bytes=5000, check_format=False)),
        ({"max_size": 1}, None),  # refused
        ({"min_bytes": 10, "max_bytes": 5}, None),
        ("yes", None),
    ],
)
def test_check_settings_from_the_operator_argument(value: Any, expected: CheckSettings | None) -> None:
    if expected is None:
        with pytest.raises((ValueError, TypeError)):
            CheckSettings.from_param(value)
    else:
        assert CheckSettings.from_param(value) == expected


def test_expected_image_from_a_result() -> None:
    assert ExpectedImage.from_result({"width": 768, "height": 1024, "output_format": "JPG"}) == ExpectedImage(
        768, 1024, "jpeg"
    )
    assert ExpectedImage.from_result({"width": True, "height": "1024"}) == ExpectedImage()


# -- contact sheet ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16"])
def test_thumbnails_are_small_rgb_copies(mode: str) -> None:
    image = Image.new(mode, (1000, 500))
    thumb = make_thumbnail(image, 128)
    assert thumb.mode == "RGB" and thumb.size == (128, 64)
    assert make_thumbnail(Image.new(mode, (40, 30)), 128).size == (40, 30)  # never enlarged


@pytest.mark.parametrize(
    ("count", "columns", "grid"),
    [(1, 4, (1, 1)), (3, 4, (3, 1)), (4, 4, (4, 1)), (5, 4, (4, 2)), (9, 2, (2, 5))],
)
def test_contact_sheet_is_a_png_grid(count: int, columns: int, grid: tuple[int, int]) -> None:
    items = [
        SheetItem(
            image=make_thumbnail(Image.new("RGB", (200 + 10 * i, 120), (i * 20, 80, 160)), 96),
            generation_id=f"{i:08d}-aaaa-bbbb",
            prompt="A lighthouse at dusk, bold type, " * 5,
            ok=[True, False, None][i % 3],
            problems=("is 10x10, expected 20x20",) if i % 3 == 1 else (),
        )
        for i in range(count)
    ]
    data = make_contact_sheet(items, columns=columns, thumb=96)
    sheet = Image.open(io.BytesIO(data))
    assert sheet.format == "PNG"
    assert sheet.size == sheet_size(count, columns=columns, thumb=96)
    cell_width = 96 + 16
    assert sheet.size[0] == grid[0] * cell_width
    assert sheet.size[1] % grid[1] == 0 and sheet.size[1] // grid[1] > 96
    # Deterministic: the same items give the same bytes (so a re-run skips the upload).
    assert make_contact_sheet(items, columns=columns, thumb=96) == data


def test_contact_sheet_copes_with_missing_previews_and_odd_captions() -> None:
    items = [
        SheetItem(image=None, generation_id="x", prompt=None, ok=False, problems=()),
        SheetItem(
            image=Image.new("RGBA", (600, 600)), generation_id="y" * 50, prompt="\u732b " * 80, ok=True
        ),
    ]
    sheet = Image.open(io.BytesIO(make_contact_sheet(items, thumb=64)))
    assert sheet.size == sheet_size(2, thumb=64)
    with pytest.raises(ValueError):
        make_contact_sheet([])
    with pytest.raises(ValueError):
        make_contact_sheet([SheetItem(None, "x")], columns=0)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        ("PNG", "image/png"),  # the first 16 bytes of a file Pillow opens as that format
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        (b"GIF89a" + b"\0" * 16, None),  # an image, but not a format this provider stores
        (b"not an image at all", None),
        (b"RIFF\0\0\0\0WAVEfmt ", None),  # RIFF, but audio
        (b"RIFF\0\0\0\0WEBPXXXX", None),  # not a chunk Pillow's WebP plugin accepts
        (b"\x89PNG\r\n", None),  # short of the signature
        (b"", None),
    ],
)
def test_identify_mime_type_agrees_with_pillow_from_the_first_bytes_and_rewinds(
    head: str | bytes, mime: str | None
) -> None:
    if isinstance(head, str):
        data = io.BytesIO()
        Image.effect_noise((512, 384), 64).convert("RGB").save(data, head)
        with Image.open(io.BytesIO(data.getvalue())) as opened:
            assert opened.format == head  # what a decode reports
        head = data.getvalue()[:16]  # all it reads: a corrupt or cut file is still named
    cut = io.BytesIO(head)
    cut.seek(min(7, len(head)))
    assert identify_mime_type(cut) == mime
    assert cut.tell() == 0
