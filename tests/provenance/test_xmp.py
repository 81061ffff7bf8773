"""XMP marking per container, read back with exiftool; the pixels and frames stay as they were."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from airflow_provider_oxen.provenance.facts import COMPOSITE, Ingredient, Provenance
from airflow_provider_oxen.provenance.xmp import mark, mark_file
from tests.fixtures import exiftool_xmp
from tests.transfers.helpers import make_clip

EDIT = Provenance(
    generation_id="gen-7f3a",
    model="black-forest-labs-flux-2-klein-4b",
    software_agent="airflow-provider-oxen 1.2.3",
    ingredients=(Ingredient("s3://brand/approved/key visual & co.png", "image/png"),),
)
TEXT_TO_VIDEO = Provenance("gen-clip", "kling-video-v2-6-pro-text-to-video", "airflow-provider-oxen 1.2.3")


def _image(fmt: str, mode: str = "RGB", **options: object) -> bytes:
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((96, 64)).convert(mode)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


IMAGES = {
    "png": lambda: _image("PNG"),
    "jpeg": lambda: _image("JPEG", quality=90),
    "webp-lossy": lambda: _image("WEBP"),  # simple VP8: gets a VP8X header
    "webp-lossless-alpha": lambda: _image("WEBP", "RGBA", lossless=True),  # simple VP8L with alpha
    "webp-extended": lambda: _image("WEBP", "RGBA"),  # VP8X + ALPH already
}


def _pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


@pytest.mark.parametrize("name", IMAGES)
def test_an_image_is_marked_readably_and_losslessly(name: str) -> None:
    original = IMAGES[name]()
    marked = mark(original, EDIT)

    assert marked is not None
    assert exiftool_xmp(marked) == {
        "SourceFile": "-",
        "DigitalSourceType": COMPOSITE,
        "AISystemUsed": EDIT.model,
        "DocumentID": "oxen:generation:gen-7f3a",
        "CreatorTool": "airflow-provider-oxen 1.2.3",
        "IngredientsFilePath": "s3://brand/approved/key visual & co.png",
    }
    assert _pixels(marked) == _pixels(original)
    # Deterministic: marking again (an existing packet replaced) gives the same bytes.
    assert mark(marked, EDIT) == marked


@pytest.mark.parametrize(
    ("name", "ext"), [("png", "png"), ("jpeg", "jpg"), ("webp-lossy", "webp"), ("mp4", "mp4")]
)
def test_a_packet_already_there_is_replaced_not_added(tmp_path: Path, name: str, ext: str) -> None:
    path = tmp_path / f"old.{ext}"
    if name == "mp4":
        make_clip(path, seconds=1)
    else:
        path.write_bytes(IMAGES[name]())
    tool = shutil.which("exiftool")
    assert tool is not None, "exiftool is not installed: run scripts/ensure_exiftool.sh"
    subprocess.run(
        [
            tool,
            "-q",
            "-overwrite_original",
            "-XMP-dc:Title=Old title",
            "-XMP-iptcExt:DigitalSourceType=old",
            path,
        ],
        check=True,
    )
    assert exiftool_xmp(path.read_bytes())["Title"] == "Old title"

    marked = mark(path.read_bytes(), EDIT)

    assert marked is not None
    read = exiftool_xmp(marked)
    assert read["DigitalSourceType"] == COMPOSITE and "Title" not in read
    assert marked.count(b"<x:xmpmeta") == 1 and b"Old title" not in marked


@pytest.mark.parametrize(
    "data",
    [
        _image("GIF"),
        _image("TIFF"),
        b"\x1aE\xdf\xa3" + bytes(64),  # a WebM (Matroska) header
        b"not an image at all",
        _image("PNG")[:40],  # cut before its image data
        b"\x00\x00\x00\x01ftyp",  # an MP4 box announcing a 64-bit size, cut before it
        b"\xff\xd8\xff\xe0\x00\x01\xff\xda",  # a JPEG segment shorter than its own length field
    ],
    ids=["gif", "tiff", "webm", "text", "cut-png", "cut-mp4", "bad-jpeg-segment"],
)
def test_an_unknown_or_damaged_container_is_left_alone(data: bytes) -> None:
    file = io.BytesIO(data)
    assert mark(data, EDIT) is None
    assert mark_file(file, EDIT) is False and file.getvalue() == data


def test_an_mp4_box_that_runs_to_the_end_is_given_its_size_before_the_packet_follows_it() -> None:
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 0, b"isom")
    clip = ftyp + struct.pack(">I4s", 0, b"mdat") + b"frames"

    marked = mark(clip, TEXT_TO_VIDEO)

    assert marked is not None
    assert marked[20:28] == struct.pack(">I4s", 14, b"mdat") and marked[28:34] == b"frames"
    assert marked[38:42] == b"uuid" and exiftool_xmp(marked)["DocumentID"] == "oxen:generation:gen-clip"
