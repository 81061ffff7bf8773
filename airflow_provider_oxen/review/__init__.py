"""Automatic review of generated images: per-image checks and a contact sheet of a batch."""

from airflow_provider_oxen.review.checks import (
    CheckSettings,
    DecodedImage,
    ExpectedImage,
    ImageCheck,
    check_image,
    decode_image,
    evaluate,
    normalise_format,
)
from airflow_provider_oxen.review.contact_sheet import (
    SheetItem,
    make_contact_sheet,
    make_thumbnail,
    sheet_size,
)

__all__ = [
    "CheckSettings",
    "DecodedImage",
    "ExpectedImage",
    "ImageCheck",
    "SheetItem",
    "check_image",
    "decode_image",
    "evaluate",
    "make_contact_sheet",
    "make_thumbnail",
    "normalise_format",
    "sheet_size",
]
