"""What a reviewer reads in Airflow's Human-in-the-loop form: titles, descriptions, the body.

Shaped by what Airflow's required-action page (3.1+, checked on 3.3) renders (docs/campaign.md):
Markdown without raw HTML and images capped at 300 px wide, so one row per image (a clip: its
poster frame linked to the clip) and the contact sheet as a link; a param's ``title`` as its
label and ``description`` as plain text; a field with a non-null ``type`` is required and a
cleared one disables every button, so the note and each decision also allow null.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from airflow_provider_oxen.media.checks import check_failed
from airflow_provider_oxen.media.video import (
    duration_text,
    frame_rate_text,
    is_video,
    requested_duration,
)
from airflow_provider_oxen.models import PRESET_DIMENSIONS

APPROVE, REJECT, REGENERATE = "approve", "reject", "regenerate"
DECISIONS = [APPROVE, REJECT, REGENERATE]
DECISION_LABELS = {
    APPROVE: "Approve (publish)",
    REJECT: "Reject (move aside)",
    REGENERATE: "Regenerate (with the note)",
}
NOTE_PARAM = "note"
NOTE_TITLE = "Note for regenerations (optional)"

_TIMES = "\N{MULTIPLICATION SIGN}"
_PLAY = "\N{BLACK RIGHT-POINTING TRIANGLE}"
_COMMON_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
# Markdown characters that would format (or link) text taken from a prompt.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def decision_param_name(index: int, generation_id: str) -> str:
    """Form field per image or clip: sortable and stable across retries (``image_01_0b6c1f2a``)."""
    return f"image_{index + 1:02d}_{generation_id.replace('-', '')[:8]}"


def default_decision(record: Mapping[str, Any]) -> str:
    """``approve``, or ``reject`` when the image or clip failed the automatic checks (not run or
    not checked, a clip stored without PyAV, is not failed)."""
    return REJECT if check_failed(record) else APPROVE


def checks_text(record: Mapping[str, Any]) -> str:
    """``passed``, ``FAILED: <problems>``, ``not run``, or why not checked (a clip stored without PyAV)."""
    checks = record.get("checks")
    if not isinstance(checks, Mapping):
        return "not run"
    if "ok" in checks and checks["ok"] is None:
        return str(checks.get("note") or "not checked")
    if not check_failed(record):
        return "passed"
    return "FAILED: " + ("; ".join(str(p) for p in checks.get("problems") or []) or "see the transfer's log")


def _pixels(source: Any) -> tuple[int, int] | None:
    """A mapping's ``width`` and ``height``, if both are positive integers."""
    if isinstance(source, Mapping):
        width, height = source.get("width"), source.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            return width, height
    return None


def pixel_size(record: Mapping[str, Any]) -> tuple[int, int] | None:
    """The stored image's size: what the checks measured, else what was asked for."""
    return _pixels(record.get("checks")) or _pixels(record)


def _requested_size(record: Mapping[str, Any]) -> Any:
    parameters = record.get("parameters")
    if not isinstance(parameters, Mapping):
        return None
    for name in ("image_size", "aspect_ratio", "size"):
        if parameters.get(name) not in (None, ""):
            return parameters[name]
    return None


def _ratio(width: int, height: int) -> str:
    divisor = math.gcd(width, height)
    exact = f"{width // divisor}:{height // divisor}"
    if exact in _COMMON_RATIOS:
        return exact
    for ratio in _COMMON_RATIOS:  # 1344x768 is "16:9" to a person, not "7:4"
        w, h = (int(n) for n in ratio.split(":"))
        if abs(width / height - w / h) < 0.03 * (w / h):
            return ratio
    return f"{width}{_TIMES}{height}"


def aspect_label(record: Mapping[str, Any]) -> str | None:
    """How a person names the image's shape: ``16:9``, ``1:1``, ``3:4``, else width x height."""
    requested = _requested_size(record)
    if isinstance(requested, str):
        if requested in PRESET_DIMENSIONS:
            return _ratio(*PRESET_DIMENSIONS[requested])
        if re.fullmatch(r"\d+:\d+", requested):
            return requested
    size = pixel_size(record) or _pixels(requested)
    if size is not None:
        return _ratio(*size)
    return str(requested) if isinstance(requested, str) and requested else None


def size_text(record: Mapping[str, Any], *, preset: bool = True) -> str:
    """``16:9 (landscape_16_9), 1024 x 576 px`` (a multiplication sign): shape, preset, pixels.

    ``preset=False`` leaves the preset's name out (the body's table: an underscore in running
    text is easily lost at the form's font size; the field's description keeps it).
    """
    parts = []
    aspect = aspect_label(record)
    requested = _requested_size(record)
    if aspect:
        parts.append(aspect)
    if preset and isinstance(requested, str) and requested and requested != aspect:
        parts.append(f"({requested})")
    text = " ".join(parts)
    size = pixel_size(record)
    if size is not None:
        pixels = f"{size[0]}{_TIMES}{size[1]} px"
        text = f"{text}, {pixels}" if text else pixels
    return text or "unknown size"


def excerpt(text: str, limit: int = 48) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (``…`` when cut)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-—") + "…"


def label_for(record: Mapping[str, Any], labels: Mapping[str, str] | None) -> str | None:
    """The reviewer's name for what the image shows (e.g. the product), looked up by prompt."""
    prompt = str(record.get("prompt") or "")
    if labels:
        label = labels.get(prompt)
        if label is None:
            label = labels.get(str(record.get("generation_id") or ""))
        if label:
            return " ".join(str(label).split())
    return excerpt(prompt) if prompt else None


def duration_seconds(record: Mapping[str, Any]) -> float | None:
    """A clip's length: what the checks measured, else what was asked for."""
    checks = record.get("checks")
    if isinstance(checks, Mapping):
        measured = checks.get("duration_seconds")
        if isinstance(measured, (int, float)) and not isinstance(measured, bool) and measured > 0:
            return float(measured)
    return requested_duration(record)


def clip_text(record: Mapping[str, Any]) -> str | None:
    """``5 s, 40 frames at 8 fps`` (what is known of it), or None for an image."""
    if not is_video(record):
        return None
    checks = record.get("checks")
    parts = [duration_text(duration_seconds(record)) or "length unknown"]
    if isinstance(checks, Mapping) and isinstance(checks.get("frames"), int) and checks["frames"] > 0:
        frames = f"{checks['frames']} frames"
        fps = checks.get("fps")
        rate = frame_rate_text(float(fps)) if isinstance(fps, (int, float)) else None
        parts.append(f"{frames} at {rate}" if rate else frames)
    return ", ".join(parts)


def image_title(index: int, record: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """``Image 1 — Cold Brew Kit, 16:9``; a video clip: ``Clip 1 — Cold Brew Kit, 16:9, 5 s``.

    Numbered from 1, as in the body (by row: image 1 and clip 2 in a mixed batch).
    """
    video = is_video(record)
    duration = duration_text(duration_seconds(record)) if video else None
    parts = [p for p in (label_for(record, labels), aspect_label(record), duration) if p]
    kind = "Clip" if video else "Image"
    return f"{kind} {index + 1} — {', '.join(parts)}" if parts else f"{kind} {index + 1}"


def image_description(record: Mapping[str, Any]) -> str:
    """Plain text under the field: size (and a clip's length), seed, checks, the whole prompt (never cut)."""
    seed = record.get("seed")
    facts = [size_text(record)]
    clip = clip_text(record)
    if clip:
        facts.append(clip)
    if seed is not None:
        facts.append(f"seed {seed}")
    facts.append(f"checks {checks_text(record)}")
    prompt = " ".join(str(record.get("prompt") or "").split())
    text = " · ".join(facts)
    return f"{text}. Prompt: {prompt}" if prompt else text


def decision_param(index: int, record: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> Param:
    """The per-image select: approve / reject / regenerate, defaulting from the checks.

    Airflow's select always has a clear button (x); a cleared required field disables every
    option button. So null is allowed, shown as this item's default, and means it.
    """
    default = default_decision(record)
    return Param(
        default,
        type=["null", "string"],
        enum=[*DECISIONS, None],
        title=image_title(index, record, labels),
        description=image_description(record),
        values_display={**DECISION_LABELS, "null": f"Default: {DECISION_LABELS[default]}"},
    )


def note_param() -> Param:
    """Optional: ``null`` is allowed, so an empty note never disables the form's buttons."""
    return Param(
        None,
        type=["null", "string"],
        format="multiline",
        title=NOTE_TITLE,
        description=(
            "Optional. Appended to the prompt of every image you send back for regeneration, "
            'e.g. "make the headline larger". Leave empty to approve or reject.'
        ),
    )


def provenance_text(record: Mapping[str, Any]) -> str | None:
    """``marked as AI-generated (trainedAlgorithmicMedia)``, ``signed (Content Credentials), …`` or
    ``not marked: <reason>``, from what the transfer recorded; None when it recorded nothing."""
    provenance = record.get("provenance")
    if not isinstance(provenance, Mapping):
        return None
    source_type = str(provenance.get("digital_source_type") or "").rsplit("/", 1)[-1]
    marked = f"marked as AI-generated ({source_type})" if source_type else "marked as AI-generated"
    state = provenance.get("state")
    if state == "signed":
        return f"signed (Content Credentials), {marked}"
    if state == "marked":
        return marked
    if state == "unmarked":
        return f"not marked: {provenance.get('reason') or 'no reason recorded'}"
    return None


def input_uris(record: Mapping[str, Any]) -> list[str]:
    """The images an edit or a clip was made from, as the task was given them ([] for text-to-X)."""
    uris = record.get("input_uris")
    return [u for u in uris if isinstance(u, str) and u] if isinstance(uris, list) else []


def md_text(text: str) -> str:
    """Text shown literally in Markdown: special characters escaped, whitespace collapsed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def count_text(records: Sequence[Mapping[str, Any]]) -> str:
    """``3 images``, ``1 clip``, ``2 images and 1 clip``."""
    clips = sum(1 for r in records if is_video(r))
    images = len(records) - clips
    parts = [_plural(images, "image")] if images or not clips else []
    if clips:
        parts.append(_plural(clips, "clip"))
    return " and ".join(parts)


def _folder(uris: Sequence[str]) -> str | None:
    """The ``s3://bucket/prefix/`` every URI is in, if they share one."""
    if not uris:
        return None
    common = os.path.commonprefix(list(uris))  # noqa: RUF071 - characters, then cut back to a "/"
    folder = common[: common.rfind("/") + 1]
    return folder if folder.startswith("s3://") and folder.count("/") >= 3 else None


def _details(
    index: int,
    record: Mapping[str, Any],
    labels: Mapping[str, str] | None,
    folder: str | None,
    clip_ref: str | None = None,
) -> str:
    """One table cell (no line breaks in a Markdown table): title, facts, file, prompt."""
    facts = [
        f"**{md_text(image_title(index, record, labels))}**",
        f"Size {md_text(size_text(record, preset=False))}",
    ]
    clip = clip_text(record)
    if clip:
        facts.append(f"Length {md_text(clip)}")
    if clip_ref:
        facts.append(f"{_PLAY} [Play the clip][{clip_ref}]")
    seed = record.get("seed")
    facts.append(f"Seed {md_text(str(seed))}" if seed is not None else "Seed not recorded")
    verdict = checks_text(record)
    mark = (
        "\N{CHECK MARK}" if verdict == "passed" else ("\N{BALLOT X}" if verdict.startswith("FAILED") else "-")
    )
    facts.append(f"Checks {mark} {md_text(verdict)}")
    provenance = provenance_text(record)
    if provenance:
        facts.append(f"Provenance: {md_text(provenance)}")
    facts.append(f"Default **{default_decision(record)}**")
    uri = record.get("s3_uri")
    if isinstance(uri, str) and uri:
        shown = uri[len(folder) :] if folder and uri.startswith(folder) else uri
        facts.append(f"File `{shown.replace('`', '')}`")
    prompt = str(record.get("prompt") or "")
    text = " · ".join(facts)
    return f"{text} — Prompt: *{md_text(prompt)}*" if prompt else text


def review_body(
    records: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str] | None = None,
    link: Callable[[str | None], str | None] = lambda _uri: None,
    contact_sheet_uri: str | None = None,
    links_expire_at: datetime | None = None,
    max_inline_images: int = 20,
    options: Sequence[str] = (),
) -> str:
    """The form's Markdown: how to answer, the overview link, then a table, one image or clip per row.

    Each row has the image's 300 px preview (the UI's cap), linked to the full-size file, and
    its title, size, seed, checks, default decision, file and whole prompt. A video clip's row
    shows its poster frame (``poster_s3_uri``) linked to the clip, its length and a "Play the
    clip" link. ``link(s3_uri)`` gives the URL a browser loads a file from (a presigned S3 URL),
    or None. URLs are written once, as Markdown reference definitions at the end (a preview and
    its link share one).
    """
    total = len(records)
    options = list(options)
    clips = sum(1 for r in records if is_video(r))
    counted = count_text(records)
    if not clips:
        how = "click a preview to open the full-size image."
    elif clips == total:
        how = "click a poster frame to play its clip."
    else:
        how = "click a preview to open the full-size image, or a poster frame to play its clip."
    intro = f"**{counted}** to review, one per row: {how}"
    if options:
        intro += " Answer with a button at the bottom: " + ", ".join(f"**{md_text(o)}**" for o in options)
        intro += " (the per-image choices are the fields under the table)."
    lines = [intro + " The note is optional."]
    references: list[tuple[str, str]] = []
    uris = [str(r["s3_uri"]) for r in records if isinstance(r.get("s3_uri"), str) and r.get("s3_uri")]
    folder = _folder(uris) if len(uris) == total else None
    about: list[str] = []
    sheet = link(contact_sheet_uri) if contact_sheet_uri else None
    if sheet:
        references.append(("contact-sheet", sheet))
        about.append(f"Overview: [contact sheet, all {counted} on one page][contact-sheet]")
    if folder:
        about.append(f"Stored in `{folder.replace('`', '')}`")
    if links_expire_at is not None and (sheet or uris):
        about.append(
            f"Links valid until {links_expire_at.strftime('%Y-%m-%d %H:%M UTC')} (presigned S3 URLs)"
        )
    if about:
        lines += ["", " · ".join(about) + "."]
    failed = [i for i, r in enumerate(records) if check_failed(r)]
    if failed:
        if clips:
            names = ", ".join(f"{'clip' if is_video(records[i]) else 'image'} {i + 1}" for i in failed)
        else:
            names = "image " + ", ".join(str(i + 1) for i in failed)
        lines += ["", f"**Failed the automatic checks, defaulting to reject:** {names}."]
    if total > max_inline_images:
        rows = "rows" if clips else "images"
        lines += [
            "",
            f"Previews are shown for the first {max_inline_images} {rows}; the contact sheet has them all.",
        ]

    heading = "Image" if not clips else ("Clip" if clips == total else "Image or clip")
    # Edits and clips are judged against what they were made from: a column beside the preview.
    with_sources = any(input_uris(r) for r in records)
    source_refs: dict[str, str] = {}
    if with_sources:
        lines += ["", f"| # | Made from | Preview | {heading} |", "|---|---|---|---|"]
    else:
        lines += ["", f"| # | Preview | {heading} |", "|---|---|---|"]
    for index, record in enumerate(records):
        inline = index < max_inline_images
        title = md_text(image_title(index, record, labels))
        made_from = ""
        if with_sources:
            shown = []
            for source in input_uris(record):
                ref: str | None = source_refs.get(source)
                source_url = link(source) if inline and ref is None else None
                if source_url:
                    ref = source_refs[source] = f"source-{len(source_refs) + 1}"
                    references.append((ref, source_url))
                name = md_text(source.rsplit("/", 1)[-1])
                shown.append(
                    f"[![Source: {name}][{ref}]][{ref}]" if ref and inline else f"`{source.replace('`', '')}`"
                )
            made_from = f" {' '.join(shown) or 'nothing (generated from the prompt)'} |"
        uri = record.get("s3_uri")
        url = link(uri) if inline and isinstance(uri, str) else None
        clip_ref = None
        if is_video(record):
            poster_uri = record.get("poster_s3_uri")
            poster = link(poster_uri) if inline and isinstance(poster_uri, str) and poster_uri else None
            if url:
                clip_ref = f"clip-{index + 1}"
                references.append((clip_ref, url))
            if poster:
                references.append((f"poster-{index + 1}", poster))
            if poster and clip_ref:
                # Markdown cannot overlay the frame: the play mark heads it, inside the same link.
                preview = f"[{_PLAY} Play ![{title}][poster-{index + 1}]][{clip_ref}]"
            elif poster:
                preview = f"![{title}][poster-{index + 1}]"
            elif clip_ref:
                preview = f"[{_PLAY} play the clip][{clip_ref}] (no poster frame)"
            else:
                preview = "no preview"
        elif url:
            ref = f"image-{index + 1}"
            references.append((ref, url))
            preview = f"[![{title}][{ref}]][{ref}]"
        else:
            preview = "no preview"
        lines.append(
            f"| {index + 1} |{made_from} {preview} | {_details(index, record, labels, folder, clip_ref)} |"
        )

    if references:
        lines.append("")
        lines += [f"[{ref}]: {url}" for ref, url in references]
    return "\n".join(lines)
