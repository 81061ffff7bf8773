"""Automatic review of generated images and video clips: checks, poster frames, a contact sheet of a batch."""

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
from airflow_provider_oxen.review.video import (
    DecodedVideo,
    ExpectedVideo,
    VideoCheck,
    decode_video,
    evaluate_video,
    poster_jpeg,
)

__all__ = [
    "CheckSettings",
    "DecodedImage",
    "DecodedVideo",
    "ExpectedImage",
    "ExpectedVideo",
    "ImageCheck",
    "SheetItem",
    "VideoCheck",
    "check_image",
    "decode_image",
    "decode_video",
    "evaluate",
    "evaluate_video",
    "make_contact_sheet",
    "make_thumbnail",
    "normalise_format",
    "poster_jpeg",
    "sheet_size",
]
