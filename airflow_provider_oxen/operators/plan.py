"""OxenCostPlanOperator: the DAG's cost plan as its first task, failing the run before any spend."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_oxen.plan import plan_dag

if TYPE_CHECKING:
    from airflow.sdk import Context


class OxenCostPlanOperator(BaseOperator):
    """Plan every Oxen generate task of this DAG for this run and fail (without retries) when the
    plan has problems or its estimated total is above ``budget``. Nothing is enqueued; make the
    Oxen tasks depend on this one.

    :param budget: the most the run's known Oxen requests may cost together (a decimal, in the
        unit of the model's prices; templated). None checks requests without a total.
    :return: (XCom) the estimated total, as a decimal string.

    .. seealso:: ``python -m airflow_provider_oxen plan DAG_ID`` prints the same plan before a run.
    """

    template_fields: Sequence[str] = ("budget",)
    ui_color = "#fff1c2"

    def __init__(self, *, budget: str | float | Decimal | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = budget

    def execute(self, context: Context) -> str:
        try:
            budget = None if self.budget in (None, "") else Decimal(str(self.budget).strip())
        except InvalidOperation:
            raise AirflowFailException(f"budget must be a decimal number, got {self.budget!r}") from None
        plan = plan_dag(self.dag, context["dag_run"], budget=budget)  # type: ignore[arg-type]
        self.log.info("Oxen cost plan:\n%s", plan.table())
        if plan.problems:
            raise AirflowFailException(
                "The Oxen cost plan refuses this run before anything is paid for: " + "; ".join(plan.problems)
            )
        return str(plan.total)
