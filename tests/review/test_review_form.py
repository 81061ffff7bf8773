"""The review form's content: what Airflow's Human-in-the-loop page shows a reviewer.

That the form answers with one click, nothing typed, and that a cleared choice keeps every
button usable and shows its default, is proven in a real browser by
tests/e2e/test_review_browser.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from airflow_provider_oxen.operators.review import (
    APPLY,
    APPROVE_ALL,
    MAX_LINK_EXPIRY,
    NOTE_PARAM,
    OxenImageReviewOperator,
    decision_param_name,
    link_expiry_for,
)
from airflow_provider_oxen.review_form import (
    aspect_label,
    excerpt,
    image_description,
    image_title,
    review_body,
    size_text,
)
from tests.review.conftest import image_record

PROMPT_COLD_BREW = (
    "Acme Coffee campaign image for Cold Brew Kit: a glass carafe of cold brew with ice. "
    'Headline text, rendered exactly: "Spring Into Flavour". Style: bold flat illustration, '
    "warm palette, generous whitespace, clean sans-serif typography."
)
X = "\N{MULTIPLICATION SIGN}"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
RECORDS = [
    image_record("82d2c347-0001", PROMPT_COLD_BREW, "square_hd", (1024, 1024)),
    image_record("82d2c347-0002", PROMPT_COLD_BREW, "landscape_16_9", (1024, 576), ok=False, seed=None),
]
LABELS = {PROMPT_COLD_BREW: "Cold Brew Kit"}


def _form(records: list[dict[str, Any]], **kwargs: Any) -> OxenImageReviewOperator:
    kwargs.setdefault("aws_conn_id", None)
    operator = OxenImageReviewOperator(task_id="review", records=records, labels=LABELS, **kwargs)
    operator._prepare(records)
    return operator


def test_field_titles_name_the_product_and_size_and_differ_per_size() -> None:
    operator = _form(RECORDS)
    params = operator.serialized_params
    titles = [
        params[decision_param_name(i, r["generation_id"])]["schema"]["title"] for i, r in enumerate(RECORDS)
    ]
    assert titles == ["Image 1 — Cold Brew Kit, 1:1", "Image 2 — Cold Brew Kit, 16:9"]
    descriptions = [
        params[decision_param_name(i, r["generation_id"])]["description"] for i, r in enumerate(RECORDS)
    ]
    assert descriptions[0] != descriptions[1]
    assert descriptions[0].startswith(f"1:1 (square_hd), 1024{X}1024 px · seed 7 · checks passed. Prompt: ")
    assert descriptions[1].startswith(f"16:9 (landscape_16_9), 512{X}512 px · checks FAILED: wrong size")


def test_descriptions_carry_the_whole_prompt() -> None:
    long_prompt = PROMPT_COLD_BREW + " " + "More words that go on and on. " * 10
    description = image_description(image_record("g-1", long_prompt, "square_hd", (1024, 1024)))
    assert description.endswith(" ".join(long_prompt.split()))
    assert len(long_prompt) > 300


def test_title_without_a_label_cuts_the_prompt_at_a_word() -> None:
    record = image_record("g-1", PROMPT_COLD_BREW, "portrait_4_3", (768, 1024))
    title = image_title(4, record)
    assert title == "Image 5 — Acme Coffee campaign image for Cold Brew Kit…, 3:4"
    assert excerpt("one two three", limit=9) == "one two…"
    assert excerpt("short") == "short"


@pytest.mark.parametrize(
    ("parameters", "size", "aspect"),
    [
        ({"image_size": "portrait_16_9"}, (576, 1024), "9:16"),
        ({"aspect_ratio": "4:3"}, None, "4:3"),
        ({"size": "1536x1024"}, (1536, 1024), "3:2"),
        ({"image_size": {"width": 1344, "height": 768}}, None, "16:9"),
        ({}, (1000, 333), f"1000{X}333"),
    ],
)
def test_aspect_labels(parameters: dict[str, Any], size: tuple[int, int] | None, aspect: str) -> None:
    record: dict[str, Any] = {"parameters": parameters}
    if size:
        record["width"], record["height"] = size
    assert aspect_label(record) == aspect


def test_size_text_prefers_what_the_checks_measured() -> None:
    assert size_text(RECORDS[1]) == f"16:9 (landscape_16_9), 512{X}512 px"
    assert size_text({}) == "unknown size"


def test_decisions_are_selects_with_readable_entries_and_defaults_from_the_checks() -> None:
    params = _form(RECORDS).serialized_params
    first = params[decision_param_name(0, "82d2c347-0001")]
    assert first["value"] == "approve"
    assert first["schema"]["enum"] == ["approve", "reject", "regenerate", None]
    assert first["schema"]["values_display"]["reject"].startswith("Reject")
    assert first["schema"]["values_display"]["null"] == "Default: Approve (publish)"
    second = params[decision_param_name(1, "82d2c347-0002")]
    assert second["value"] == "reject"
    assert second["schema"]["values_display"]["null"].startswith("Default: Reject")


@pytest.mark.parametrize(
    ("provenance", "shown"),
    [
        (
            {"state": "marked", "digital_source_type": f"{IPTC}trainedAlgorithmicMedia", "reason": None},
            "Provenance: marked as AI-generated \\(trainedAlgorithmicMedia\\)",
        ),
        (
            {"state": "signed", "digital_source_type": f"{IPTC}compositeWithTrainedAlgorithmicMedia"},
            "Provenance: signed \\(Content Credentials\\), marked as AI-generated "
            "\\(compositeWithTrainedAlgorithmicMedia\\)",
        ),
        (
            {"state": "unmarked", "digital_source_type": None, "reason": "webm: no XMP container"},
            "Provenance: not marked: webm: no XMP container",
        ),
        (None, None),
    ],
)
def test_each_row_says_how_the_stored_file_is_marked(provenance: Any, shown: str | None) -> None:
    record = {**RECORDS[0], "provenance": provenance} if provenance else RECORDS[0]
    body = review_body([record], labels=LABELS)
    if shown is None:
        assert "Provenance" not in body  # a record from before marking: nothing claimed
    else:
        assert shown in body


def test_an_edit_is_shown_beside_the_image_it_was_made_from() -> None:
    source = "s3://oxen-campaigns/approved/2026-05-01/82d2c347-0001.png"
    edits = [
        {
            **image_record(f"e{i}", "The same poster at night", "square_hd", (1024, 1024)),
            "input_uris": [source],
        }
        for i in (1, 2)
    ]
    text_to_image = {**RECORDS[0], "input_uris": []}
    links = {r["s3_uri"]: f"https://s3.example/{r['generation_id']}?X-Amz-Signature=s" for r in edits}
    links[source] = "https://s3.example/source?X-Amz-Signature=s"
    body = review_body([*edits, text_to_image], labels=LABELS, link=links.get)
    assert "| # | Made from | Preview | Image |" in body
    rows = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    # The source's presigned preview beside each edit (one URL, written once), nothing for text-to-image.
    for row in rows[:2]:
        assert row.split(" | ")[1] == "[![Source: 82d2c347-0001.png][source-1]][source-1]", row
    assert rows[2].split(" | ")[1] == "nothing (generated from the prompt)"
    assert body.count(links[source]) == 1 and f"[source-1]: {links[source]}" in body
    # Without links (no AWS connection), the source is named.
    assert f"| `{source}` |" in review_body(edits, labels=LABELS)
    # Records without input_uris (before the field existed): the table is as before.
    assert "Made from" not in review_body(RECORDS, labels=LABELS, link=links.get)


@pytest.mark.parametrize("note", [None, "", "  make the headline larger "])
def test_approve_all_with_or_without_a_note_resumes(note: str | None) -> None:
    operator = _form(RECORDS)
    answer = {name: p["value"] for name, p in operator.serialized_params.items()}
    answer[NOTE_PARAM] = note
    event = {
        "chosen_options": [APPROVE_ALL],
        "params_input": answer,
        "responded_at": datetime.now(timezone.utc),
        "responded_by_user": {"id": "1", "name": "reviewer"},
    }
    result = operator.execute_complete({}, event)
    assert set(result["decisions"].values()) == {"approve"}
    assert result["note"] == (note or "").strip()


def test_the_form_never_holds_an_oxen_url_or_a_signed_query() -> None:
    operator = _form(RECORDS)
    text = operator._body(RECORDS) + repr(operator.serialized_params)
    assert "hub.oxen.example" not in text
    assert "signature" not in text and "?" not in text
    # Without an AWS connection there is nothing to presign: no previews, no expiry line.
    assert "![" not in text and "valid until" not in text
    assert "| 1 | no preview |" in text


def test_body_has_one_row_per_image_with_prompt_size_seed_and_checks() -> None:
    links = {r["s3_uri"]: f"https://s3.example/{r['generation_id']}?X-Amz-Signature=s" for r in RECORDS}
    sheet = "s3://oxen-campaigns/campaigns/run1/contact-sheet.png"
    links[sheet] = "https://s3.example/sheet?X-Amz-Signature=s"
    body = review_body(
        RECORDS,
        labels=LABELS,
        link=lambda uri: links.get(uri or ""),
        contact_sheet_uri=sheet,
        links_expire_at=datetime(2026, 1, 2, 10, 0, tzinfo=timezone.utc),
        options=[APPLY, APPROVE_ALL],
    )
    rows = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(RECORDS)
    assert rows[0].startswith(
        "| 1 | [![Image 1 — Cold Brew Kit, 1:1][image-1]][image-1] | **Image 1 — Cold Brew Kit, 1:1**"
    )
    assert f"Size 1:1, 1024{X}1024 px · Seed 7" in rows[0]
    assert "Seed 7" in rows[0] and "Checks ✓ passed" in rows[0] and "Default **approve**" in rows[0]
    assert "Seed not recorded" in rows[1] and "Checks ✗ FAILED: wrong size" in rows[1]
    assert "Default **reject**" in rows[1]
    prompt = PROMPT_COLD_BREW.replace('"', '"').replace("(", "\\(").replace(")", "\\)")
    assert all(prompt in row for row in rows)
    assert "File `82d2c347-0001.png`" in rows[0] and "Stored in `s3://oxen-campaigns/campaigns/run1/`" in body
    # The contact sheet is an overview link (at the UI's 300 px it would be unreadable inline).
    assert "[contact sheet, all 2 images on one page][contact-sheet]" in body
    assert "![contact" not in body
    assert "Links valid until 2026-01-02 10:00 UTC" in body
    assert "**Failed the automatic checks, defaulting to reject:** image 2." in body
    # Each URL once, as a reference definition.
    for url in links.values():
        assert body.count(url) == 1 and f"]: {url}" in body


def test_prompt_markdown_is_shown_literally() -> None:
    record = image_record("g-1", "a [link](javascript:alert(1)) | *bold* <b>x</b>", "square_hd", (1024, 1024))
    body = review_body([record])
    assert "\\[link\\]\\(javascript:alert\\(1\\)\\) \\| \\*bold\\* \\<b\\>x\\</b\\>" in body


def test_previews_are_capped_to_keep_the_stored_body_small() -> None:
    records = [image_record(f"g-{i:03d}", f"prompt {i}", "square_hd", (1024, 1024)) for i in range(5)]
    body = review_body(records, link=lambda uri: f"https://s3.example/{uri}", max_inline_images=2)
    assert body.count("[![") == 2 and body.count("| no preview |") == 3
    assert "Previews are shown for the first 2 images" in body


def test_link_expiry_follows_the_review_window_and_is_bounded() -> None:
    assert link_expiry_for(None, timedelta(days=1)) == timedelta(days=1, hours=1)
    assert link_expiry_for(None, timedelta(days=30)) == MAX_LINK_EXPIRY
    assert link_expiry_for(None, None) == MAX_LINK_EXPIRY
    assert link_expiry_for(timedelta(hours=2), timedelta(days=1)) == timedelta(hours=2)
    with pytest.raises(ValueError, match="at most 7 days"):
        OxenImageReviewOperator(task_id="review", records=[], link_expiry=timedelta(days=8))


def test_presigned_previews_load_and_expire_with_the_review(
    s3_client: Any, bucket: str, aws_conn: str
) -> None:
    records = [image_record("82d2c347-0001", PROMPT_COLD_BREW, "square_hd", (1024, 1024), bucket=bucket)]
    s3_client.put_object(
        Bucket=bucket, Key=records[0]["s3_key"], Body=b"\x89PNG fake", ContentType="image/png"
    )
    operator = _form(records, aws_conn_id="aws_default", response_timeout=timedelta(hours=3))
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    body = operator._body(records, now=now)
    urls = re.findall(r"^\[image-1\]: (\S+)$", body, flags=re.MULTILINE)
    assert len(urls) == 1
    url = urls[0]
    # Our bucket's presigned GET (the moto endpoint here), valid for the window plus an hour.
    assert url.startswith(f"{aws_conn}/{bucket}/campaigns/run1/82d2c347-0001.png?")
    query = parse_qs(urlsplit(url).query)
    expires = query.get("X-Amz-Expires") or query.get("Expires")
    assert expires is not None
    if "X-Amz-Expires" in query:
        assert int(expires[0]) == 4 * 3600
    assert "Links valid until 2026-01-01 16:00 UTC" in body
    assert httpx.get(url).content == b"\x89PNG fake"
    assert "hub.oxen.example" not in body and "signature=0x" not in body
