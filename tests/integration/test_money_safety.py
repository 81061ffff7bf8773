"""Validate before spend, pay exactly once, never lose a result — over a real socket, against
the emulator in its documented (default) behaviour."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_oxen.exceptions import (
    OxenCostLimitError,
    OxenError,
    OxenGenerationGoneError,
    OxenInsufficientCreditsError,
    OxenRequestMayHaveSucceededError,
    OxenUnrecordedEnqueueError,
    OxenValidationError,
)
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.ledger import LEDGER_KEY, LedgerEntry
from airflow_provider_oxen.operators.generate import (
    CARRIED_LEDGER_KWARG,
    OxenGenerateImageOperator,
)
from airflow_provider_oxen.triggers.generation import OxenGenerationTrigger
from tests.fixtures import EmulatorControl, FakeTaskStateStore
from tests.integration.helpers import FakeTI as _TI
from tests.integration.helpers import crash, defer, with_pricing
from tests.integration.helpers import generate_operator as _operator
from tests.integration.helpers import run_trigger as _run_trigger
from tests.integration.helpers import task_context as _context


def _defer(operator: OxenGenerateImageOperator, context: dict[str, Any]) -> OxenGenerationTrigger:
    trigger = defer(operator, context).trigger
    assert isinstance(trigger, OxenGenerationTrigger)
    return trigger


def _wait_until_terminal(ids: list[str], timeout: float = 15) -> None:
    deadline = time.time() + timeout
    with OxenHook() as hook:
        while time.time() < deadline:
            if all(hook.get_generation(i).status.is_terminal for i in ids):
                return
            time.sleep(0.1)
    raise AssertionError("generations did not finish")


# -- nothing is paid for a request that cannot succeed ---------------------------------------------


def test_a_definite_refusal_fails_without_airflow_retries_and_the_next_try_scans_nothing(
    oxen_conn: EmulatorControl,
) -> None:
    oxen_conn.configure(credits="0.0100")
    store = FakeTaskStateStore()
    with pytest.raises(OxenInsufficientCreditsError) as info:
        _operator(deferrable=True).execute(_context(store, try_number=1))
    assert isinstance(info.value, AirflowFailException)  # Airflow fails the task, retries unspent
    assert info.value.status_code == 402 and "credits" in str(info.value)
    assert oxen_conn.stats()["generations_created"] == 0
    entry = LedgerEntry.model_validate(store.get(LEDGER_KEY))
    assert entry.pending == 0 and entry.generation_ids == []

    # Any definite refusal (here a 400) clears the pending mark: the next try scans nothing.
    oxen_conn.configure(credits=None)
    oxen_conn.fault(type="status", status=400, method="POST", path="/api/ai/queue", count=1)
    with pytest.raises(OxenValidationError):
        _operator(deferrable=False).execute(_context(store))
    assert LedgerEntry.model_validate(store.get(LEDGER_KEY)).pending == 0
    results = _operator(deferrable=False).execute(_context(store))
    assert len(results) == 1
    assert oxen_conn.requests(method="GET", path="/api/ai/queue") == []  # no recovery scan
    assert oxen_conn.stats()["generations_created"] == 1


@pytest.mark.parametrize("num_outputs", [0, -2, 17])
def test_output_counts_out_of_bounds_fail_before_any_request(
    oxen_conn: EmulatorControl, num_outputs: int
) -> None:
    with pytest.raises(OxenValidationError) as info:
        _operator(num_outputs=num_outputs).execute(_context())
    assert info.value.field == "num_outputs"
    assert oxen_conn.requests() == []


def test_only_the_parameters_a_models_schema_names_are_sent(oxen_conn: EmulatorControl) -> None:
    _operator(
        model="black-forest-labs-flux-2-klein-4b",
        wait_for_completion=False,
        num_outputs=2,
        parameters={"seed": 3},
    ).execute(_context())
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert set(post["json"]) == {"model", "prompt", "seed", "num_generations"}


VIDEO = "kling-video-v2-6-pro-text-to-video"  # 0.07 per second, 5 s when no duration is given
UNKNOWN_ALLOWED = {"allow_unknown_cost": True}


@pytest.mark.parametrize(
    ("model", "update", "fits", "says"),
    [
        # 4 images at 0.06 are above 0.18, 3 fit; the refusal names both figures.
        ("ideogram-v4", {}, {"num_outputs": 3}, ["0.24", "0.18"]),
        # A clip without duration is priced at the schema's default (5 s); a shorter one fits.
        (VIDEO, {}, {"parameters": {"duration": 4}}, ["0.35", "0.34"]),
        # Pricing that cannot be read refuses a budget unless the task allows an unknown cost.
        ("ideogram-v4", {"pricing": {"tiers": []}}, UNKNOWN_ALLOWED, ["cost_per_<method>"]),
        (
            "ideogram-v4",
            {"pricing": {"method": "megapixel", "cost_per_megapixel": 0.01}},
            UNKNOWN_ALLOWED,
            ["megapixel"],
        ),
        (VIDEO, {"request_schema": None}, UNKNOWN_ALLOWED, ["duration"]),
    ],
)
def test_max_cost_refuses_before_any_enqueue_what_it_cannot_prove_fits(
    oxen_conn: EmulatorControl, model: str, update: dict[str, Any], fits: dict[str, Any], says: list[str]
) -> None:
    budget = "0.34" if model == VIDEO else "0.18"
    if update:
        with_pricing(model, **update)
        budget, says = "100", [*says, "max_cost 100 cannot be enforced", "allow_unknown_cost"]
    outputs = fits.get("num_outputs", 0) + 1  # one more than fits (or one, for what is not priced)
    with pytest.raises(OxenValidationError) as info:  # an OxenCostLimitError when it is priced
        _operator(model=model, max_cost=budget, num_outputs=outputs).execute(_context())
    assert isinstance(info.value, OxenCostLimitError) == (not update) and info.value.field == "max_cost"
    assert all(figure in str(info.value) for figure in says), str(info.value)
    assert oxen_conn.enqueue_posts() == 0
    results = _operator(model=model, max_cost=budget, deferrable=False, **fits).execute(_context())
    assert len(results) == fits.get("num_outputs", 1) and results[0]["status"] == "succeeded"
    if update:  # no budget: no check
        assert _operator(model=model, deferrable=False).execute(_context())


# -- cost ---------------------------------------------------------------------------------------


def test_cost_is_read_once_per_generation_on_resume_and_summed_in_the_log(
    oxen_conn: EmulatorControl, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = _operator(deferrable=True, num_outputs=3)
    context = _context()
    event = _run_trigger(_defer(operator, context))
    # The resumed task (a fresh process on a worker) reads each generation's cost once, and the
    # model's schema not again: what was sent is in the ledger.
    from airflow_provider_oxen.hooks.oxen import MODEL_CACHE

    MODEL_CACHE.clear()
    before = oxen_conn.stats()
    results = operator.execute_complete(context, event)
    after = oxen_conn.stats()
    details = "GET /api/ai/generations/{id}"
    assert after.get(details, 0) - before.get(details, 0) == 3
    assert after["requests_total"] - before["requests_total"] == 3, after
    costs = [Decimal(r["cost"]) for r in results]
    assert all(isinstance(r["cost"], str) for r in results) and all(c > 0 for c in costs)
    assert f"reported cost {sum(costs)}" in capsys.readouterr().out
    assert [r["parameters"]["prompt"] for r in results] == [operator.prompt] * 3


class _OldSignature(OxenGenerateImageOperator):
    """A subclass overriding ``execute_complete`` with the signature it always had."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**r, "custom": True} for r in super().execute_complete(context, event)]


@pytest.mark.parametrize("cls", [OxenGenerateImageOperator, _OldSignature])
def test_the_resumed_task_takes_its_ledger_entry_from_the_deferral_not_the_store(
    oxen_conn: EmulatorControl, cls: type[OxenGenerateImageOperator]
) -> None:
    """The entry recorded before deferring travels in ``next_kwargs``: resuming reads no ledger,
    also in a subclass that overrides ``execute_complete`` with the old signature."""
    store = FakeTaskStateStore()
    operator = cls(
        task_id="gen", prompt="A poster", poll_interval=0.1, timeout=30, num_outputs=2, deferrable=True
    )
    deferred = defer(operator, _context(store))
    carried = deferred.kwargs[CARRIED_LEDGER_KWARG]
    assert deferred.kwargs == {CARRIED_LEDGER_KWARG: store.values[LEDGER_KEY]}
    assert len(carried["generation_ids"]) == 2
    event = _run_trigger(deferred.trigger)
    reads = store.reads
    # As Airflow resumes it: the trigger's event joins the deferral's kwargs.
    next_kwargs = {**deferred.kwargs, "event": event}
    results = operator.resume_execution(deferred.method_name, next_kwargs, _context(store))
    assert store.reads == reads
    assert [r["generation_id"] for r in results] == carried["generation_ids"]
    assert [r.get("custom", False) for r in results] == [cls is _OldSignature] * 2
    assert store.values[LEDGER_KEY]["settled"] is True  # settled, so a clear starts afresh


@pytest.mark.parametrize(
    ("kwargs", "max_tries", "next_max_tries", "same"),
    [
        ({"deferrable": True}, 2, 2, True),
        ({"wait_for_completion": False}, 2, 2, True),  # likewise the ids of a task that does not wait
        # A clear starts the next try with a higher max_tries (Airflow: last try + retries).
        ({"deferrable": False}, 0, 1, False),
    ],
)
def test_a_retry_returns_a_settled_tasks_results_without_paying_again_and_a_clear_generates_afresh(
    oxen_conn: EmulatorControl, kwargs: dict[str, Any], max_tries: int, next_max_tries: int, same: bool
) -> None:
    """Airflow fails a try after it returned (pushing the XCom, rendering the map index): the
    retry of the same run gets the results from the ledger."""
    store = FakeTaskStateStore()
    operator = _operator(**kwargs)
    context = _context(store, try_number=1, max_tries=max_tries)
    if kwargs.get("deferrable"):
        first = operator.execute_complete(context, _run_trigger(_defer(operator, context)))
    else:
        first = operator.execute(context)
    again = _operator(**kwargs).execute(_context(store, try_number=2, max_tries=next_max_tries))
    assert (again == first) is same
    assert oxen_conn.enqueue_posts() == (1 if same else 2)


# -- exactly once across crashes ------------------------------------------------------------------


@pytest.mark.parametrize("row_parameters", [False, True], ids=["documented-rows", "rows-with-parameters"])
def test_same_prompt_tasks_one_crashing_mid_enqueue_never_share_generations(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch, row_parameters: bool
) -> None:
    """Documented rows carry no parameters: A cannot prove which rows are its own, so it stops.
    Rows that carry their parameters let it adopt exactly its own."""
    oxen_conn.configure(render_seconds=5, row_parameters=row_parameters)

    def task(name: str, seed: int) -> OxenGenerateImageOperator:
        return _operator(task_id=name, deferrable=True, parameters={"seed": seed}, num_outputs=2)

    other_ids = _defer(task("b", 2), _context()).generation_ids
    store = crash(monkeypatch, task("a", 1), "after the answer")
    assert oxen_conn.stats()["generations_created"] == 4

    if row_parameters:
        trigger = _defer(task("a", 1), _context(store, try_number=2))
        assert len(trigger.generation_ids) == 2 and not set(trigger.generation_ids) & set(other_ids)
    else:
        with pytest.raises(OxenUnrecordedEnqueueError) as info:
            task("a", 1).execute(_context(store, try_number=2))
        assert isinstance(info.value, OxenRequestMayHaveSucceededError)
        assert "force_new_enqueue" in str(info.value)
        assert set(info.value.candidates) >= set(other_ids)  # shown to the user, never adopted
    assert oxen_conn.stats()["generations_created"] == 4  # nothing paid twice
    assert oxen_conn.requests(method="DELETE") == []  # nobody's generation was cancelled
    with OxenHook() as hook:
        assert {hook.get_generation(i).status for i in other_ids} <= {"queued", "processing"}


def test_identical_requests_without_a_seed_never_adopt_each_others_rows(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows carry their parameters; a seed drawn and recorded before sending tells them apart."""
    oxen_conn.configure(render_seconds=5, row_parameters=True)
    [other_id] = _defer(_operator(task_id="b", deferrable=True), _context()).generation_ids

    # A died before its POST landed: B's identical row is not its own, and nothing was created.
    store = crash(monkeypatch, _operator(task_id="a", deferrable=True), "before the POST")
    assert LedgerEntry.model_validate(store.get(LEDGER_KEY)).pending == 1
    [retried] = _defer(_operator(task_id="a", deferrable=True), _context(store, try_number=2)).generation_ids
    assert retried != other_id and oxen_conn.enqueue_posts() == 2
    # Its POST carried the seed recorded before sending; B's carried another.
    entry = LedgerEntry.model_validate(store.get(LEDGER_KEY))
    sent_seeds = [post["json"]["seed"] for post in oxen_conn.requests(method="POST", path="/api/ai/queue")]
    assert entry.seed == sent_seeds[1] and sent_seeds[0] != sent_seeds[1]

    # A died after its POST landed: the retry adopts exactly its own row, again not B's.
    store = crash(monkeypatch, _operator(task_id="c", deferrable=True), "after the answer")
    lost = LedgerEntry.model_validate(store.get(LEDGER_KEY))
    [adopted] = _defer(_operator(task_id="c", deferrable=True), _context(store, try_number=2)).generation_ids
    assert oxen_conn.enqueue_posts() == 3 and adopted not in (other_id, retried)
    with OxenHook() as hook:
        assert hook.get_generation(adopted).model_extra["seed"] == lost.seed
    assert oxen_conn.requests(method="DELETE") == []


def test_several_outputs_without_a_seed_are_never_adopted_unless_forced_anew(
    oxen_conn: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No seed is drawn for several outputs (they could all be one image): the retry stops, and
    ``force_new_enqueue`` is how a user enqueues afresh after such a crash."""
    oxen_conn.configure(render_seconds=5, row_parameters=True)
    store = crash(monkeypatch, _operator(deferrable=True, num_outputs=2), "after the answer")
    [post] = oxen_conn.requests(method="POST", path="/api/ai/queue")
    assert "seed" not in post["json"]
    with pytest.raises(OxenUnrecordedEnqueueError, match="sent no seed"):
        _operator(deferrable=True, num_outputs=2).execute(_context(store, try_number=2))
    assert oxen_conn.enqueue_posts() == 1
    _defer(_operator(deferrable=True, num_outputs=2, force_new_enqueue="True"), _context(store, try_number=3))
    assert oxen_conn.stats()["generations_created"] == 4


def test_a_generation_gone_from_oxen_is_never_replaced_silently(oxen_conn: EmulatorControl) -> None:
    store = FakeTaskStateStore()
    operator = _operator(deferrable=True)
    request = operator.build_request()
    with OxenHook() as hook:
        from airflow_provider_oxen.ledger import request_fingerprint

        prepared = hook.prepare(request)
    entry = LedgerEntry(
        fingerprint=request_fingerprint(prepared.model_id, prepared.parameters, 1),
        generation_ids=["00000000-0000-0000-0000-000000000000"],
    )
    store.set(LEDGER_KEY, entry.model_dump(mode="json"))
    with pytest.raises(OxenGenerationGoneError):
        operator.execute(_context(store, try_number=2))
    assert oxen_conn.enqueue_posts() == 0


# -- deadlines and giving up ----------------------------------------------------------------------


def test_trigger_resumed_after_its_deadline_reports_what_succeeded(oxen_conn: EmulatorControl) -> None:
    ids = _operator(wait_for_completion=False, num_outputs=2).execute(_context())
    _wait_until_terminal(ids)
    trigger = OxenGenerationTrigger(generation_ids=ids, poll_interval=0.1, deadline=time.time() - 60)
    event = _run_trigger(trigger)
    assert event["status"] == "success"
    assert oxen_conn.requests(method="DELETE") == []


@pytest.mark.parametrize("retries", [0, 2], ids=["final-try-cancels", "retries-left-keep-them"])
def test_a_trigger_that_cannot_start_yields_an_error(oxen_conn: EmulatorControl, retries: int) -> None:
    """E.g. ``airflow dags test``'s in-process triggerer cannot read a stored connection. The
    final try cancels the generations; with retries left they are kept for the retry."""
    oxen_conn.configure(render_seconds=30)
    operator = _operator(deferrable=True, num_outputs=2, retries=retries)
    context = _context(try_number=1)
    trigger = _defer(operator, context)
    blind = OxenGenerationTrigger(
        generation_ids=trigger.generation_ids, oxen_conn_id="no_such_connection", deadline=trigger.deadline
    )
    event = _run_trigger(blind)
    assert event["status"] == "error" and "no_such_connection" in event["message"]
    with pytest.raises(OxenError):
        operator.execute_complete(context, event)
    with OxenHook() as hook:
        statuses = {hook.get_generation(i).status for i in trigger.generation_ids}
    if not retries:
        assert statuses == {"cancelled"}
        return
    assert oxen_conn.requests(method="DELETE") == [] and "cancelled" not in statuses
    retried = _defer(_operator(deferrable=True, num_outputs=2, retries=retries), {**context, "ti": _TI(2)})
    assert retried.generation_ids == trigger.generation_ids
    assert oxen_conn.stats()["generations_created"] == 2


def test_a_partial_enqueue_refused_for_credits_cancels_what_was_enqueued(oxen_conn: EmulatorControl) -> None:
    with OxenHook() as hook:
        price = Decimal(str(hook.get_model("ideogram-v4").pricing["cost_per_image"]))
    oxen_conn.configure(credits=str(price * 5))  # the first 4 fit, the next 2 do not
    with pytest.raises(OxenInsufficientCreditsError):
        _operator(num_outputs=6, deferrable=True).execute(_context(try_number=1))
    assert len(oxen_conn.requests(method="DELETE")) == 4
