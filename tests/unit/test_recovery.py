"""Recovery of an enqueue whose answer was never recorded: adopt only what is provably ours."""

from __future__ import annotations

from typing import Any

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


def _decide(
    rows: list[Generation],
    missing: int = 2,
    complete: bool = True,
    known: tuple[str, ...] = (),
    sent: dict[str, Any] = SENT,
):
    return match_unrecorded(
        rows,
        model="ideogram-v4",
        sent=sent,
        sent_at=SENT_AT,
        missing=missing,
        known_ids=list(known),
        listings_complete=complete,
    )


def test_rows_carrying_every_sent_parameter_in_the_window_are_adopted() -> None:
    rows = [_row("a", **SENT), _row("b", **SENT)]
    assert _decide(rows).adopt == ["a", "b"]


def test_same_prompt_rows_without_their_parameters_are_never_adopted() -> None:
    # The documented row shape has no parameters: same prompt is not proof.
    decision = _decide([_row("a", prompt=SENT["prompt"]), _row("b", prompt=SENT["prompt"])])
    assert decision.adopt is None
    assert decision.candidates == ["a", "b"]


def test_another_tasks_row_with_the_same_prompt_and_another_seed_is_not_a_candidate() -> None:
    mine = [_row("a", **SENT), _row("b", **SENT)]
    theirs = _row("c", **{**SENT, "seed": 8})
    assert _decide([*mine, theirs]).adopt == ["a", "b"]


def test_rows_matching_a_request_without_a_seed_are_never_adopted() -> None:
    """Another task's identical request (no seed to tell them apart) makes the same rows."""
    unseeded = {k: v for k, v in SENT.items() if k != "seed"}
    rows = [_row("a", **unseeded), _row("b", **unseeded)]
    decision = _decide(rows, sent=unseeded)
    assert decision.adopt is None and decision.candidates == ["a", "b"] and "no seed" in decision.reason


def test_more_matching_rows_than_were_lost_is_ambiguous() -> None:
    rows = [_row(i, **SENT) for i in "abc"]
    decision = _decide(rows)
    assert decision.adopt is None and decision.candidates == ["a", "b", "c"]


def test_fewer_matching_rows_than_were_lost_is_ambiguous() -> None:
    assert _decide([_row("a", **SENT)]).adopt is None


def test_rows_outside_the_send_window_are_ignored() -> None:
    early = _row("old", at="2026-05-12T09:50:00Z", **SENT)
    late = _row("late", at="2026-05-12T10:20:00Z", **SENT)
    decision = _decide([early, late, _row("a", **SENT), _row("b", **SENT)])
    assert decision.adopt == ["a", "b"]


def test_other_models_and_already_recorded_ids_are_ignored() -> None:
    other = _row("x", model_name="flux-2-dev", **SENT)
    decision = _decide([other, _row("known", **SENT), _row("a", **SENT), _row("b", **SENT)], known=("known",))
    assert decision.adopt == ["a", "b"]


def test_no_candidate_in_complete_listings_means_nothing_was_created() -> None:
    decision = _decide([_row("z", **{**SENT, "prompt": "another"})])
    assert decision.adopt == []


def test_no_candidate_in_an_incomplete_listing_proves_nothing() -> None:
    assert _decide([], complete=False).adopt is None


def test_row_without_a_time_cannot_be_proven() -> None:
    rows = [_row("a", at="", **SENT), _row("b", **SENT)]
    assert _decide(rows).adopt is None


def test_parameters_may_sit_in_a_nested_parameters_object() -> None:
    rows = [
        _row("a", prompt=SENT["prompt"], parameters=SENT),
        _row("b", prompt=SENT["prompt"], parameters=SENT),
    ]
    assert _decide(rows).adopt == ["a", "b"]
