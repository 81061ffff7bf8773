"""Recovery of an enqueue whose answer was never recorded: adopt only what is provably ours."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_oxen.models import Generation
from airflow_provider_oxen.recovery import match_unrecorded

SENT = {"prompt": "Cold brew poster", "seed": 7, "image_size": "square_hd"}
SENT_AT = "2026-05-12T10:00:00+00:00"


def _row(generation_id: str, *, at: str = "2026-05-12T10:00:02Z", **fields: Any) -> Generation:
    return Generation.model_validate(
        {
            "generation_id": generation_id,
            "status": "queued",
            "model_name": "ideogram-v4",
            "enqueued_at": at,
            **fields,
        }
    )


MINE = [_row("a", **SENT), _row("b", **SENT)]


# Rows carrying every sent parameter (top level) adopted, rows of another seed left alone, and
# rows of the documented shape (no parameters: the same prompt is no proof) only shown as
# candidates: over a socket, in test_money_safety.py (the two same-prompt tasks, one crashing).
@pytest.mark.parametrize(
    ("rows", "options", "adopt", "candidates"),
    [
        pytest.param(
            [_row(i, prompt=SENT["prompt"], parameters=SENT) for i in "ab"],
            {},
            ["a", "b"],
            None,
            id="parameters-in-a-nested-object",
        ),
        pytest.param(
            [_row(i, **SENT) for i in "abc"], {}, None, ["a", "b", "c"], id="more-matches-than-lost"
        ),
        pytest.param([_row("a", **SENT)], {}, None, None, id="fewer-matches-than-lost"),
        pytest.param(
            [
                _row("old", at="2026-05-12T09:50:00Z", **SENT),
                _row("late", at="2026-05-12T10:20:00Z", **SENT),
                *MINE,
            ],
            {},
            ["a", "b"],
            None,
            id="outside-the-send-window",
        ),
        pytest.param(
            [_row("x", model_name="flux-2-dev", **SENT), _row("known", **SENT), *MINE],
            {"known_ids": ["known"]},
            ["a", "b"],
            None,
            id="other-models-and-recorded-ids",
        ),
        pytest.param(
            [_row("z", **{**SENT, "prompt": "another"})], {}, [], None, id="no-candidate-in-complete-listings"
        ),
        pytest.param([], {"listings_complete": False}, None, None, id="no-candidate-in-incomplete-listings"),
        pytest.param([_row("a", at="", **SENT), _row("b", **SENT)], {}, None, None, id="row-without-a-time"),
    ],
)
def test_only_rows_provably_ours_are_adopted(
    rows: list[Generation], options: dict[str, Any], adopt: list[str] | None, candidates: list[str] | None
) -> None:
    settings: dict[str, Any] = {"missing": 2, "known_ids": [], "listings_complete": True, **options}
    decision = match_unrecorded(rows, model="ideogram-v4", sent=SENT, sent_at=SENT_AT, **settings)
    assert decision.adopt == adopt
    if candidates is not None:
        assert decision.candidates == candidates
