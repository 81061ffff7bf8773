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
        decode_image(io.BytesIO(data)), len(data), expected, CheckSettings(min_bytes=0, **settings)
    )


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
def test_a_good_image_passes_every_check(fmt: str, name: str) -> None:
    data = _encode(fmt)
    check = _check(data, ExpectedImage(64, 48, name))
    assert check == ImageCheck(ok=True, problems=[], width=64, height=48, format=name)
    assert check.summary() == "ok"
    assert normalise_format("JPG") == normalise_format("JPEG") == normalise_format("jpeg") == "jpeg"


def test_every_problem_is_listed() -> None:
    data = _encode("PNG", (64, 48))
    check = evaluate(
        decode_image(io.BytesIO(data)),
        len(data),
        ExpectedImage(100, 48, "jpeg"),
        CheckSettings(min_bytes=10_000),
    )
    assert not check.ok
    assert check.problems == [
        f"size {len(data)} B is below the minimum of 10000 B",
        "is 64x48, expected 100x48",
        "format is png, expected jpeg",
    ]
    assert (check.width, check.height, check.format) == (64, 48, "png")
    assert check.to_dict()["problems"] == check.problems
    assert check.summary().startswith("FAILED: size")


def test_unknown_or_switched_off_expectations_are_not_checked_and_too_large_is_a_problem() -> None:
    data = _encode("PNG")
    assert _check(data, ExpectedImage()).ok and _check(data, ExpectedImage(width=64)).ok
    assert _check(data, ExpectedImage(1, 1, "jpeg"), check_dimensions=False, check_format=False).ok
    check = _check(data, ExpectedImage(), max_bytes=10)
    assert check.problems == [f"size {len(data)} B is above the maximum of 10 B"]


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
    ],
)
def test_check_settings_from_the_operator_argument(value: Any, expected: CheckSettings) -> None:
    assert CheckSettings.from_param(value) == expected


@pytest.mark.parametrize("value", [{"max_size": 1}, {"min_bytes": 10, "max_bytes": 5}, "yes"])
def test_bad_check_settings_are_refused(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        CheckSettings.from_param(value)


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
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_identify_mime_type_agrees_with_pillow_from_the_first_bytes_and_rewinds(fmt: str, mime: str) -> None:
    data = io.BytesIO()
    Image.effect_noise((512, 384), 64).convert("RGB").save(data, fmt)
    with Image.open(io.BytesIO(data.getvalue())) as opened:
        assert opened.format == fmt  # what a decode reports
    cut = io.BytesIO(data.getvalue()[:16])  # all it reads: a corrupt or cut file is still named
    cut.seek(7)
    assert identify_mime_type(cut) == mime
    assert cut.tell() == 0


@pytest.mark.parametrize(
    "head",
    [
        b"GIF89a" + b"\0" * 16,  # an image, but not a format this provider stores
        b"not an image at all",
        b"RIFF\0\0\0\0WAVEfmt ",  # RIFF, but audio
        b"RIFF\0\0\0\0WEBPXXXX",  # not a chunk Pillow's WebP plugin accepts
        b"\x89PNG\r\n",  # short of the signature
        b"",
    ],
)
def test_identify_mime_type_of_anything_else_is_none(head: bytes) -> None:
    assert identify_mime_type(io.BytesIO(head)) is None
