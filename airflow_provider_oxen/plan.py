"""A cost plan for a whole DAG, like ``terraform plan``: nothing is enqueued.

Every Oxen generate task of the DAG is rendered as Airflow renders it for a run (params, conf,
logical date; each map index of a task mapped over literal values), checked against the live
model schema (:meth:`OxenHook.prepare`) and priced from the model's ``pricing``, with the
operator's own ``max_cost`` check. What an upstream task pushes to XCom is not known before the
run: a task whose model, prompt, parameters or count come from one is listed as not known; an
input image from one is stood in for by a placeholder URL, so the rest is still checked.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

from airflow_provider_oxen.exceptions import OxenError
from airflow_provider_oxen.hooks.oxen import OxenHook
from airflow_provider_oxen.inputs import input_image_value
from airflow_provider_oxen.models import media_type_of
from airflow_provider_oxen.operators.generate import OxenGenerateOperator
from airflow_provider_oxen.pricing import duration, estimate_cost
from airflow_provider_oxen.redact import redact_text

RUN_TIME_TEXT = "(known at run time)"
# Stands in for an input image an upstream task will push: a URL that can never resolve.
PLACEHOLDER_INPUT = "https://input-known-at-run-time.invalid/image.png"
# The fields that decide what a task asks for and what it costs.
_DECIDING = ("model", "prompt", "parameters", "num_outputs", "max_cost")


class _RunTimeValue:
    """What an upstream task will push to XCom: any lookup on it is unknown too."""

    def __getattr__(self, name: str) -> _RunTimeValue:
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> _RunTimeValue:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _RunTimeValue:
        return self

    def __str__(self) -> str:
        return RUN_TIME_TEXT

    __repr__ = __str__


RUN_TIME = _RunTimeValue()


class _PlanTaskInstance(RuntimeTaskInstance):
    """A task instance of a run that has not happened: nothing has been pushed to XCom yet."""

    def xcom_pull(self, *args: Any, **kwargs: Any) -> Any:
        return RUN_TIME


def is_run_time(value: Any) -> bool:
    """Whether a rendered value depends on what an upstream task pushes."""
    if isinstance(value, _RunTimeValue):
        return True
    if isinstance(value, str):
        return RUN_TIME_TEXT in value
    if isinstance(value, Mapping):
        return any(is_run_time(k) or is_run_time(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_run_time(v) for v in value)
    return False


@dataclass
class PlanRow:
    """One task (or one map index of a mapped task) of the plan."""

    task: str
    model: str = ""
    outputs: str = ""
    cost: Decimal | None = None
    problem: str = ""
    # Set when the request depends on what upstream tasks push: not checked, not priced.
    unknown: str = ""


@dataclass
class Plan:
    """The rows of a DAG's plan, and the budget their total is held to."""

    rows: list[PlanRow] = field(default_factory=list)
    budget: Decimal | None = None

    @property
    def total(self) -> Decimal:
        return sum((row.cost for row in self.rows if row.cost is not None), Decimal(0))

    @property
    def problems(self) -> list[str]:
        found = [f"{row.task}: {row.problem}" for row in self.rows if row.problem]
        if self.budget is not None and self.total > self.budget:
            found.append(f"the estimated total {self.total} exceeds the budget {self.budget}")
        return found

    def table(self) -> str:
        """The plan as a text table, then the total against the budget and what is not known."""
        header = ("task", "model", "outputs", "estimated cost", "problems")
        lines = [
            (
                row.task,
                row.model or (RUN_TIME_TEXT if row.unknown else "?"),
                row.outputs or "?",
                "?" if row.cost is None else str(row.cost),
                row.problem.replace("\n", " "),
            )
            for row in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(4)]
        text = [
            "  ".join([*(c.ljust(w) for c, w in zip(cells[:4], widths, strict=True)), cells[4]]).rstrip()
            for cells in [header, *lines]
        ]
        budget = "" if self.budget is None else f" of a budget of {self.budget}"
        known = " of the known tasks" if any(row.unknown for row in self.rows) else ""
        text.append(f"Estimated total{known}: {self.total}{budget}. Nothing was enqueued.")
        text += [
            f"Not known until upstream tasks run: {r.task} ({r.unknown})." for r in self.rows if r.unknown
        ]
        problems = self.problems
        text.append(f"{len(problems)} problem(s)." if problems else "No problems.")
        return "\n".join(text)


def plan_run(dag_id: str, *, logical_date: datetime, conf: Mapping[str, Any] | None = None) -> DagRun:
    """A manual run of ``dag_id`` that is only planned, as task templates see it."""
    # A manual run has one date: its logical date is when it runs and what its interval spans.
    dates: dict[str, Any] = dict.fromkeys(
        ("logical_date", "data_interval_start", "data_interval_end", "run_after", "start_date"), logical_date
    )
    return DagRun.model_construct(
        dag_id=dag_id,
        run_id=f"plan__{logical_date.isoformat()}",
        **dates,
        end_date=None,
        clear_number=0,
        run_type="manual",
        state="running",
        conf=dict(conf or {}),
        consumed_asset_events=[],
        partition_key=None,
        partition_date=None,
    )


def _render(task: Any, dag_run: DagRun, map_index: int) -> Any:
    """``task`` rendered for ``dag_run`` the way `airflow tasks render` does (a mapped task: one
    map index, unmapped); the DAG's own task is left as it was."""
    task = task if getattr(task, "is_mapped", False) else copy.copy(task)
    ti = _PlanTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        try_number=1,
        map_index=map_index,
        task=task,
        _ti_context_from_server=TIRunContext.model_construct(
            dag_run=dag_run, max_tries=0, variables=[], connections=[], xcom_keys_to_clear=[]
        ),
    )
    context = ti.get_template_context()
    task.render_template_fields(context)
    return context["task"]  # a mapped task puts its unmapped, rendered self here


def _map_count(task: Any) -> int | None:
    """How many instances a mapped task has, when it is mapped over literal values."""
    value = task._get_specified_expand_input().value
    if isinstance(value, Mapping):  # .expand(a=[...], b=[...]): one instance per combination
        sizes = [len(v) if isinstance(v, (list, tuple, dict)) else None for v in value.values()]
        return None if None in sizes else math.prod(s for s in sizes if s is not None)
    return len(value) if isinstance(value, (list, tuple)) else None


def _is_oxen(task: Any) -> bool:
    cls = getattr(task, "operator_class", None) if getattr(task, "is_mapped", False) else type(task)
    return isinstance(cls, type) and issubclass(cls, OxenGenerateOperator)


def _plan_task(row: PlanRow, task: OxenGenerateOperator, hook: OxenHook) -> PlanRow:
    unknown = [name for name in _DECIDING if is_run_time(getattr(task, name))]
    if unknown:
        row.unknown = f"{', '.join(unknown)} from upstream XCom"
        return row
    row.model = str(task.model)
    try:
        request = None
        if is_run_time(task.input_images):
            placeholder = input_image_value(hook.get_model(task.model), [PLACEHOLDER_INPUT])
            request = task.build_request(input_image=placeholder)
        prepared, sent, count = task.check_request(hook, request)  # the run's own checks
        parameters = sent["parameters"]
    except Exception as exc:  # whatever would stop the run (an unreadable AWS connection too) is a finding
        text = str(exc) if isinstance(exc, OxenError) else f"{type(exc).__name__}: {exc}"
        row.problem = redact_text(text)  # presigned inputs' signatures never reach the table or the log
        return row
    row.cost = estimate_cost(prepared.model, parameters, count)
    seconds = duration(prepared.model, parameters)
    if media_type_of(prepared.model) == "video" and seconds is not None:
        row.outputs = f"{count} x {seconds} s"
    else:
        row.outputs = f"{count} {media_type_of(prepared.model)}(s)"
    return row


def plan_dag(dag: Any, dag_run: DagRun, *, budget: Decimal | None = None) -> Plan:
    """The plan of every Oxen generate task of ``dag`` for ``dag_run``; nothing is enqueued."""
    plan = Plan(budget=budget)
    with ExitStack() as hooks:
        opened: dict[str, OxenHook] = {}
        for task in dag.tasks:
            if not _is_oxen(task):
                continue
            indexes: list[int] = [-1]
            if task.is_mapped:
                count = _map_count(task)
                if count is None:
                    plan.rows.append(
                        PlanRow(task.task_id, unknown="mapped over what an upstream task pushes")
                    )
                    continue
                indexes = list(range(count))
            for index in indexes:
                name = task.task_id if index < 0 else f"{task.task_id}[{index}]"
                try:
                    rendered = _render(task, dag_run, index)
                except Exception as exc:  # a template error is the plan's finding, not its end
                    plan.rows.append(PlanRow(name, problem=redact_text(f"cannot be rendered: {exc}")))
                    continue
                conn_id = rendered.oxen_conn_id
                if conn_id not in opened:
                    opened[conn_id] = hooks.enter_context(OxenHook(conn_id))
                plan.rows.append(_plan_task(PlanRow(name), rendered, opened[conn_id]))
    return plan
